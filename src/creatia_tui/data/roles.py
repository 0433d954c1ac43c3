"""Roles and the permission matrix: permission-checked, validated, audited.

Same conventions as :mod:`creatia_tui.data.admin`: each call takes an
:class:`~creatia_tui.data.access.Actor`, runs in one transaction on the caller's connection,
checks the permission first, validates before writing (a refusal writes nothing), and writes its
``permission_audit_logs`` row (resource_type ``Role``) in the same transaction. A call that
would change nothing writes nothing, audit row included. A role id from another organization is
"not found in this organization" and is never touched.

Decisions:

- System roles (``system_role = true``: owner, admin, member, viewer, made by the organization
  trigger) are read-only: they cannot be renamed, deactivated or have their permissions toggled.
- Every role has one ``role_permissions`` row per permission, granted or not; the matrix toggles
  that row (locked FOR UPDATE), it never inserts. The database trigger creates the rows for the
  system roles only, so :func:`create_role` inserts them for a dynamic role, all ungranted.
  A permission added to the catalogue after a role was made gets its row on first toggle.
- Nobody may grant a role a permission they do not hold themselves (platform admins hold all).
- A dynamic role still held by active memberships cannot be deactivated: its members are moved
  first. A deactivated role cannot be given to a member (see ``admin``); it can be reactivated.
- Role keys are ``^[a-z][a-z0-9_]{0,99}$``, never a system key, unique in the organization
  (deactivated roles keep theirs); role names are 1-255 characters, not blank, and unique in the
  organization ignoring case, so a sentence naming a role names one role.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row

from creatia_tui.data import organizations as repo
from creatia_tui.data.access import Actor, require
from creatia_tui.data.admin import as_json, is_uuid
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.data.models import SYSTEM_ROLE_KEYS, PermissionMatrix, Role, RoleSummary
from creatia_tui.errors import PermissionDenied, ValidationError

KEY_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
READ_ONLY = "System roles are read-only; create a dynamic role instead."
NOT_FOUND = "That role was not found in this organization."
UNCHANGED: Any = ...  # rename_role's default: leave the description as it is

# The organization's roles with their active member counts (and, for the matrix, the ids of
# the permissions each grants): system roles first in rank order, then dynamic roles by name.
ROLES_WITH_COUNTS = f"""
SELECT {repo.ROLE_COLUMNS},
       (SELECT count(*) FROM organization_memberships m
        WHERE m.organization_id = r.organization_id AND m.role = r.key AND m.active)
         AS active_member_count,
       ARRAY(SELECT rp.permission_id::text FROM role_permissions rp
             WHERE rp.role_id = r.id AND rp.granted) AS granted
FROM roles r
WHERE r.organization_id = %s
ORDER BY NOT r.system_role, (SELECT rank FROM system_role_templates t WHERE t.key = r.key),
         lower(r.name), r.id
"""


def _summaries(conn: psycopg.Connection, organization_id: str) -> list[tuple[RoleSummary, list]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(ROLES_WITH_COUNTS, (organization_id,)).fetchall()
    result = []
    for row in rows:
        granted = row.pop("granted")
        result.append((RoleSummary(**row), granted))
    return result


def list_roles(conn: psycopg.Connection, actor: Actor) -> list[RoleSummary]:
    """The Roles screen (roles.read)."""
    with conn.transaction():
        require(conn, actor, "roles.read")
        return [summary for summary, _ in _summaries(conn, actor.organization_id)]


def permission_matrix(conn: psycopg.Connection, actor: Actor) -> PermissionMatrix:
    """Roles, the permission catalogue and the granted pairs (roles.read), in two queries after
    the permission check."""
    with conn.transaction():
        require(conn, actor, "roles.read")
        summaries = _summaries(conn, actor.organization_id)
        permissions = repo.list_permissions(conn)
    return PermissionMatrix(
        roles=[summary for summary, _ in summaries],
        permissions=permissions,
        granted=frozenset(
            (summary.id, permission_id)
            for summary, granted in summaries
            for permission_id in granted
        ),
    )


# ---------------------------------------------------------------- validation
def _valid_key(key: str) -> str:
    key = (key or "").strip()
    if not key:
        raise ValidationError("The role key is empty.")
    if key in SYSTEM_ROLE_KEYS:
        raise ValidationError(f"{key} is a system role key; choose another key.")
    if not KEY_PATTERN.match(key):
        raise ValidationError(
            "The role key must start with a lowercase letter and hold only lowercase letters, "
            "digits and underscores, at most 100 characters."
        )
    return key


def _valid_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("The role name is empty.")
    if len(name) > 255:
        raise ValidationError("The role name is longer than 255 characters.")
    return name


def _clean_description(description: str | None) -> str | None:
    return (description or "").strip() or None


def _refuse_taken_name(
    conn: psycopg.Connection, organization_id: str, name: str, role_id: str | None = None
) -> None:
    taken = conn.execute(
        "SELECT 1 FROM roles WHERE organization_id = %s AND lower(name) = lower(%s) "
        "AND id IS DISTINCT FROM %s::uuid",
        (organization_id, name, role_id),
    ).fetchone()
    if taken:
        raise ValidationError(f"This organization already has a role named {name}.")


def _role(conn: psycopg.Connection, actor: Actor, role_id: str, lock: bool = True) -> Role:
    """The organization's role, locked for the change unless `lock` is false."""
    row = None
    if is_uuid(role_id):
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {repo.ROLE_COLUMNS} FROM roles WHERE id = %s AND organization_id = %s"
                + (" FOR UPDATE" if lock else ""),
                (role_id, actor.organization_id),
            ).fetchone()
    if row is None:
        raise ValidationError(NOT_FOUND)
    return Role(**row)


def _writable(role: Role) -> None:
    if role.system_role:
        raise ValidationError(READ_ONLY)


# ---------------------------------------------------------------- changes
def create_role(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    name: str,
    key: str,
    description: str | None = None,
    client: ClientContext | None = None,
) -> Role:
    """A dynamic role (roles.create) with one ungranted role_permissions row per permission."""
    with conn.transaction():
        require(conn, actor, "roles.create")
        key = _valid_key(key)
        name = _valid_name(name)
        description = _clean_description(description)
        existing = conn.execute(
            "SELECT name, active FROM roles WHERE organization_id = %s AND key = %s",
            (actor.organization_id, key),
        ).fetchone()
        if existing is not None:
            raise ValidationError(_key_taken(key))
        _refuse_taken_name(conn, actor.organization_id, name)
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    "INSERT INTO roles (organization_id, name, key, description, system_role) "
                    f"VALUES (%s, %s, %s, %s, false) RETURNING {repo.ROLE_COLUMNS}",
                    (actor.organization_id, name, key, description),
                ).fetchone()
        except pg_errors.UniqueViolation:  # created by someone else since the check
            raise ValidationError(_key_taken(key)) from None
        assert row is not None
        role = Role(**row)
        conn.execute(
            "INSERT INTO role_permissions (role_id, permission_id, granted) "
            "SELECT %s, p.id, false FROM permissions p",
            (role.id,),
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="role.created",
            resource_type="Role",
            resource_id=role.id,
            before=None,
            after=as_json(role),
            client=client,
        )
    return role


def _key_taken(key: str) -> str:
    return f"A role with the key {key} already exists in this organization; choose another key."


def rename_role(
    conn: psycopg.Connection,
    actor: Actor,
    role_id: str,
    *,
    name: str,
    description: str | None = UNCHANGED,
    client: ClientContext | None = None,
) -> Role:
    """Rename a dynamic role and, when given, change its description (roles.update)."""
    with conn.transaction():
        require(conn, actor, "roles.update")
        before = _role(conn, actor, role_id)
        _writable(before)
        after = replace(
            before,
            name=_valid_name(name),
            description=(
                before.description if description is UNCHANGED else _clean_description(description)
            ),
        )
        changed = [
            key for key in ("name", "description") if getattr(before, key) != getattr(after, key)
        ]
        if not changed:
            return before
        if after.name.lower() != before.name.lower():
            _refuse_taken_name(conn, actor.organization_id, after.name, before.id)
        conn.execute(
            "UPDATE roles SET name = %s, description = %s, updated_at = now() WHERE id = %s",
            (after.name, after.description, before.id),
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="role.renamed",
            resource_type="Role",
            resource_id=before.id,
            before={key: getattr(before, key) for key in changed},
            after={key: getattr(after, key) for key in changed},
            client=client,
        )
    return after


def _set_active(
    conn: psycopg.Connection,
    actor: Actor,
    role_id: str,
    active: bool,
    client: ClientContext | None,
) -> Role:
    with conn.transaction():
        require(conn, actor, "roles.delete")
        before = _role(conn, actor, role_id)
        _writable(before)
        if before.active == active:
            return before
        if not active:
            # The role row is locked FOR UPDATE, and giving a member a role locks it FOR SHARE
            # first, so no membership can take the role between this count and the update.
            with conn.cursor(row_factory=tuple_row) as cur:
                row = cur.execute(
                    "SELECT count(*) FROM organization_memberships "
                    "WHERE organization_id = %s AND role = %s AND active",
                    (actor.organization_id, before.key),
                ).fetchone()
            count = int(row[0]) if row else 0
            if count:
                members = (
                    "1 active member still has"
                    if count == 1
                    else (f"{count} active members still have")
                )
                raise ValidationError(
                    f"{members} the role {before.name}; move them to another role first."
                )
        conn.execute(
            "UPDATE roles SET active = %s, updated_at = now() WHERE id = %s", (active, before.id)
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="role.reactivated" if active else "role.deactivated",
            resource_type="Role",
            resource_id=before.id,
            before={"active": before.active},
            after={"active": active},
            client=client,
        )
    return replace(before, active=active)


def deactivate_role(
    conn: psycopg.Connection, actor: Actor, role_id: str, client: ClientContext | None = None
) -> Role:
    """Deactivate a dynamic role nobody active holds (roles.delete)."""
    return _set_active(conn, actor, role_id, False, client)


def reactivate_role(
    conn: psycopg.Connection, actor: Actor, role_id: str, client: ClientContext | None = None
) -> Role:
    """Reactivate a deactivated dynamic role (roles.delete)."""
    return _set_active(conn, actor, role_id, True, client)


def set_permission(
    conn: psycopg.Connection,
    actor: Actor,
    role_id: str,
    permission_id: str,
    granted: bool,
    client: ClientContext | None = None,
) -> bool:
    """Grant or revoke one permission of a dynamic role (roles.update); True when it changed."""
    with conn.transaction():
        held = require(conn, actor, "roles.update")
        role = _role(conn, actor, role_id, lock=False)
        _writable(role)
        found = None
        if is_uuid(permission_id):
            with conn.cursor(row_factory=tuple_row) as cur:
                found = cur.execute(
                    "SELECT name FROM permissions WHERE id = %s", (permission_id,)
                ).fetchone()
        if found is None:
            raise ValidationError("That permission does not exist.")
        name = str(found[0])
        if granted and name not in held:
            raise PermissionDenied(f"You cannot grant {name}: you do not hold it yourself.")
        current = _locked_grant(conn, role.id, permission_id)
        if current is None:  # a permission added to the catalogue after the role was made
            if not granted:
                return False  # no row means not granted: nothing to revoke
            conn.execute(
                "INSERT INTO role_permissions (role_id, permission_id, granted) "
                "VALUES (%s, %s, false) ON CONFLICT (role_id, permission_id) DO NOTHING",
                (role.id, permission_id),
            )
            current = _locked_grant(conn, role.id, permission_id)
        if current == granted:
            return False
        conn.execute(
            "UPDATE role_permissions SET granted = %s WHERE role_id = %s AND permission_id = %s",
            (granted, role.id, permission_id),
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="role.permission_granted" if granted else "role.permission_revoked",
            resource_type="Role",
            resource_id=role.id,
            before={"permission": name, "granted": current},
            after={"permission": name, "granted": granted},
            client=client,
        )
    return True


def _locked_grant(conn: psycopg.Connection, role_id: str, permission_id: str) -> bool | None:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT granted FROM role_permissions WHERE role_id = %s AND permission_id = %s "
            "FOR UPDATE",
            (role_id, permission_id),
        ).fetchone()
    return None if row is None else bool(row[0])
