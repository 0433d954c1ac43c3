"""Organization and membership services: permission-checked, validated, audited.

Each call takes the acting user (an :class:`~creatia_tui.data.access.Actor` for calls inside an
organization) and runs in one transaction on the caller's connection: the permission check, the
change and its ``permission_audit_logs`` row commit together or not at all. Validation happens
before anything is written, so a refusal (PermissionDenied or ValidationError) writes nothing.
A call that would change nothing returns the current state and writes no audit row.

Decisions (see also :mod:`creatia_tui.data.access` and :mod:`creatia_tui.data.roles`):

- A non-platform-admin holds no permission in a deactivated organization, and sees only the
  active organizations where their role grants ``organizations.read``.
- A member can only be given (added with, changed to, reactivated with) a role that exists in
  the organization, is active, and grants nothing the actor lacks; and an actor cannot change or
  deactivate a member whose current role grants something the actor lacks.
- The last active owner can be neither demoted nor deactivated.
- Adding an email whose membership was deactivated reactivates it, with the role given
  (audited as ``membership.reactivated``); an unknown email is refused with a pointer to
  :func:`create_user_and_add_member`, which creates the account (argon2 hash) and the
  membership in one transaction, auditing ``user.created`` (never the password or its hash) and
  ``membership.created``.
- ``update_organization`` audits only the fields that change, before and after.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, fields, replace
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from creatia_tui.data import organizations as repo
from creatia_tui.data.access import Actor, listed, refuse_escalation, require
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.data.models import (
    MemberRow,
    Membership,
    Organization,
    OrganizationListing,
    Role,
    User,
)
from creatia_tui.data.users import (
    USER_COLUMNS,
    create_user,
    get_user,
    normalise_email,
    validate_name,
    validate_password,
)
from creatia_tui.errors import PermissionDenied, ValidationError

# Organizations the user may list: every one for an active platform admin (read from the
# database, not from the signed-in User object); otherwise active organizations where an active
# membership's active role grants organizations.read. One query with the member counts.
LISTED_ORGANIZATIONS = f"""
SELECT {", ".join("o." + c for c in repo.ORG_COLUMNS.split(", "))},
       (SELECT count(*) FROM organization_memberships c
        WHERE c.organization_id = o.id AND c.active) AS active_member_count
FROM organizations o
WHERE (EXISTS (SELECT 1 FROM users u WHERE u.id = %(user)s AND u.role = 'admin' AND u.active)
       OR (o.active AND EXISTS (
            SELECT 1
            FROM organization_memberships m
            JOIN users u ON u.id = m.user_id AND u.active
            JOIN roles r ON r.organization_id = m.organization_id AND r.key = m.role AND r.active
            JOIN role_permissions rp ON rp.role_id = r.id AND rp.granted
            JOIN permissions p ON p.id = rp.permission_id AND p.name = 'organizations.read'
            WHERE m.user_id = %(user)s AND m.organization_id = o.id AND m.active)))
  AND (%(pattern)s::text IS NULL OR o.name ILIKE %(pattern)s OR o.subdomain ILIKE %(pattern)s)
ORDER BY o.name, o.id
LIMIT %(limit)s
"""

# A role of the organization with the names it grants, locked against a concurrent
# deactivation (deactivate_role locks it FOR UPDATE, then counts its members).
ROLE_WITH_GRANTS = f"""
SELECT {repo.ROLE_COLUMNS},
       ARRAY(SELECT p.name FROM role_permissions rp JOIN permissions p ON p.id = rp.permission_id
             WHERE rp.role_id = r.id AND rp.granted) AS granted
FROM roles r
WHERE r.organization_id = %s AND r.key = %s
FOR SHARE OF r
"""


def as_json(value: Any) -> dict[str, Any]:
    """A dataclass as JSON for the audit row's before/after."""
    return {
        key: (item.isoformat() if hasattr(item, "isoformat") else item)
        for key, item in asdict(value).items()
    }


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- organizations
def list_organizations(
    conn: psycopg.Connection, user: User, search: str | None = None, limit: int = 200
) -> list[OrganizationListing]:
    """The Organizations screen: by name, `search` matching name or subdomain substrings."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            LISTED_ORGANIZATIONS,
            {"user": user.id, "pattern": repo.like_pattern(search), "limit": limit},
        ).fetchall()
    return [OrganizationListing(**row) for row in rows]


def visible_organizations(
    conn: psycopg.Connection, user: User, search: str | None = None
) -> list[Organization]:
    """Every organization for a platform admin; otherwise those the user may read."""
    names = [f.name for f in fields(Organization)]
    return [
        Organization(**{name: getattr(listing, name) for name in names})
        for listing in list_organizations(conn, user, search)
    ]


def create_organization(
    conn: psycopg.Connection,
    user: User,
    *,
    name: str,
    subdomain: str,
    plan: str = "free",
    settings: dict[str, Any] | None = None,
    client: ClientContext | None = None,
) -> Organization:
    """Platform admins only; the creator becomes the new organization's owner."""
    if not user.is_platform_admin:
        raise PermissionDenied("Only a platform admin may create organizations.")
    repo.validate_organization(name, subdomain, plan)
    with conn.transaction():
        org = repo.create_organization(
            conn, name=name, subdomain=subdomain, plan=plan, settings=settings
        )
        repo.add_membership(conn, organization_id=org.id, user_id=user.id, role="owner")
        write_audit(
            conn,
            organization_id=org.id,
            user_id=user.id,
            action="organization.created",
            resource_type="Organization",
            resource_id=org.id,
            before=None,
            after=as_json(org),
            client=client,
        )
    return org


def _locked_organization(conn: psycopg.Connection, organization_id: str) -> Organization:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {repo.ORG_COLUMNS} FROM organizations WHERE id = %s FOR UPDATE",
            (organization_id,),
        ).fetchone()
    if row is None:
        raise ValidationError("That organization no longer exists.")
    return Organization(**row)


def _settings(value: dict[str, Any] | str) -> dict[str, Any]:
    """Settings as a dict or as the JSON text typed in a form; refused unless a JSON object."""
    parsed = repo.parse_settings(value) if isinstance(value, str) else value
    if not isinstance(parsed, dict):
        raise ValidationError("The settings must be a JSON object ({...}).")
    try:
        json.dumps(parsed)
    except (TypeError, ValueError):
        raise ValidationError("The settings hold a value that is not JSON.") from None
    return parsed


def update_organization(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    name: str | None = None,
    subdomain: str | None = None,
    plan: str | None = None,
    settings: dict[str, Any] | str | None = None,
    client: ClientContext | None = None,
) -> Organization:
    """Edit the actor's organization (organizations.update); None leaves a field as it is."""
    with conn.transaction():
        require(conn, actor, "organizations.update")
        before = _locked_organization(conn, actor.organization_id)
        after = replace(
            before,
            name=before.name if name is None else name.strip(),
            subdomain=before.subdomain if subdomain is None else subdomain.strip(),
            plan=before.plan if plan is None else plan,
            settings=before.settings if settings is None else _settings(settings),
        )
        repo.validate_organization(after.name, after.subdomain, after.plan)
        changed = [
            key
            for key in ("name", "subdomain", "plan", "settings")
            if getattr(before, key) != getattr(after, key)
        ]
        if not changed:
            return before
        taken = conn.execute(
            "SELECT 1 FROM organizations WHERE subdomain = %s AND id <> %s",
            (after.subdomain, before.id),
        ).fetchone()
        if taken:
            raise ValidationError(f"The subdomain {after.subdomain} is already taken.")
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    "UPDATE organizations SET name = %s, subdomain = %s, plan = %s, "
                    f"settings = %s, updated_at = now() WHERE id = %s RETURNING {repo.ORG_COLUMNS}",
                    (after.name, after.subdomain, after.plan, Jsonb(after.settings), before.id),
                ).fetchone()
        except pg_errors.UniqueViolation:  # taken between the check and the update
            raise ValidationError(f"The subdomain {after.subdomain} is already taken.") from None
        assert row is not None
        updated = Organization(**row)
        write_audit(
            conn,
            organization_id=before.id,
            user_id=actor.user_id,
            action="organization.updated",
            resource_type="Organization",
            resource_id=before.id,
            before={key: getattr(before, key) for key in changed},
            after={key: getattr(updated, key) for key in changed},
            client=client,
        )
    return updated


def set_organization_active(
    conn: psycopg.Connection, actor: Actor, active: bool, client: ClientContext | None = None
) -> Organization:
    """Deactivate or reactivate the actor's organization (organizations.manage). Once it is
    deactivated only a platform admin holds permissions in it, so only they can reactivate it."""
    with conn.transaction():
        require(conn, actor, "organizations.manage")
        before = _locked_organization(conn, actor.organization_id)
        if before.active == active:
            return before
        conn.execute(
            "UPDATE organizations SET active = %s, updated_at = now() WHERE id = %s",
            (active, actor.organization_id),
        )
        after = replace(before, active=active)
        write_audit(
            conn,
            organization_id=before.id,
            user_id=actor.user_id,
            action="organization.reactivated" if active else "organization.deactivated",
            resource_type="Organization",
            resource_id=before.id,
            before={"active": before.active},
            after={"active": active},
            client=client,
        )
    return after


# ---------------------------------------------------------------- members
def list_members(
    conn: psycopg.Connection, actor: Actor, search: str | None = None, limit: int = 1000
) -> list[MemberRow]:
    """Members of the actor's organization (members.read): active first, then by name;
    `search` matches name or email substrings."""
    with conn.transaction():
        require(conn, actor, "members.read")
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                """
                SELECT m.id::text AS membership_id, u.id::text AS user_id, u.email, u.name,
                       m.role AS role_key, r.name AS role_name, m.active,
                       u.active AS user_active, m.joined_at
                FROM organization_memberships m
                JOIN users u ON u.id = m.user_id
                JOIN roles r ON r.organization_id = m.organization_id AND r.key = m.role
                WHERE m.organization_id = %(org)s
                  AND (%(pattern)s::text IS NULL
                       OR u.name ILIKE %(pattern)s OR u.email ILIKE %(pattern)s)
                ORDER BY m.active DESC, lower(coalesce(u.name, u.email)), u.email
                LIMIT %(limit)s
                """,
                {
                    "org": actor.organization_id,
                    "pattern": repo.like_pattern(search),
                    "limit": limit,
                },
            ).fetchall()
    return [MemberRow(**row) for row in rows]


def _active_owner_count(conn: psycopg.Connection, organization_id: str) -> int:
    # FOR UPDATE: two admins demoting the last two owners at once cannot both succeed.
    rows = conn.execute(
        "SELECT id FROM organization_memberships WHERE organization_id = %s "
        "AND role = 'owner' AND active FOR UPDATE",
        (organization_id,),
    ).fetchall()
    return len(rows)


def _membership(conn: psycopg.Connection, actor: Actor, membership_id: str) -> Membership:
    """The organization's membership, locked for the change; another organization's id (or no
    id at all) finds nothing."""
    row = None
    if is_uuid(membership_id):
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {repo.MEMBERSHIP_COLUMNS} FROM organization_memberships "
                "WHERE id = %s AND organization_id = %s FOR UPDATE",
                (membership_id, actor.organization_id),
            ).fetchone()
    if row is None:
        raise ValidationError("That membership was not found in this organization.")
    return Membership(**row)


def _role_with_grants(
    conn: psycopg.Connection, organization_id: str, key: str
) -> tuple[Role, list[str]] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(ROLE_WITH_GRANTS, (organization_id, key)).fetchone()
    if row is None:
        return None
    granted = row.pop("granted")
    return Role(**row), granted


def _assignable_role(
    conn: psycopg.Connection, actor: Actor, key: str, held: frozenset[str]
) -> Role:
    """The role a member may be given: in this organization, active, and granting nothing the
    actor lacks."""
    found = _role_with_grants(conn, actor.organization_id, key)
    if found is None:
        raise ValidationError(f"There is no role {key!r} in this organization.")
    role, granted = found
    if not role.active:
        raise ValidationError(
            f"The role {role.name} is deactivated; reactivate it or choose another role."
        )
    refuse_escalation(held, role.name, granted)
    return role


def _refuse_outranked(
    conn: psycopg.Connection, actor: Actor, membership: Membership, held: frozenset[str], verb: str
) -> None:
    """An actor may not change or deactivate a member whose role grants what they lack."""
    found = _role_with_grants(conn, actor.organization_id, membership.role)
    if found is None:
        return
    role, granted = found
    missing = set(granted) - held
    if missing:
        raise PermissionDenied(
            f"You cannot {verb} a member whose role {role.name} grants permissions you do not "
            f"hold ({listed(missing)})."
        )


def _add_or_reactivate(
    conn: psycopg.Connection,
    actor: Actor,
    held: frozenset[str],
    user: User,
    role_key: str,
    client: ClientContext | None,
) -> Membership:
    """Give `user` an active membership with the role; inside the caller's transaction."""
    if not user.active:
        raise ValidationError(
            f"The account {user.email} is deactivated; a platform admin must reactivate it first."
        )
    role = _assignable_role(conn, actor, role_key, held)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {repo.MEMBERSHIP_COLUMNS} FROM organization_memberships "
            "WHERE organization_id = %s AND user_id = %s FOR UPDATE",
            (actor.organization_id, user.id),
        ).fetchone()
    if row is not None and row["active"]:
        raise ValidationError(f"{user.email} is already a member of this organization.")
    if row is not None:
        before = Membership(**row)
        conn.execute(
            "UPDATE organization_memberships SET active = true, role = %s WHERE id = %s",
            (role.key, before.id),
        )
        membership = replace(before, active=True, role=role.key)
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="membership.reactivated",
            resource_type="Membership",
            resource_id=membership.id,
            before={"active": False, "role": before.role},
            after={"active": True, "role": role.key},
            client=client,
        )
        return membership
    membership = repo.add_membership(
        conn, organization_id=actor.organization_id, user_id=user.id, role=role.key
    )
    write_audit(
        conn,
        organization_id=actor.organization_id,
        user_id=actor.user_id,
        action="membership.created",
        resource_type="Membership",
        resource_id=membership.id,
        before=None,
        after=as_json(membership),
        client=client,
    )
    return membership


def add_member(
    conn: psycopg.Connection,
    actor: Actor,
    user_id: str,
    role: str = "member",
    client: ClientContext | None = None,
) -> Membership:
    """Add an existing user (members.create); a deactivated membership is reactivated."""
    with conn.transaction():
        held = require(conn, actor, "members.create")
        user = get_user(conn, user_id) if is_uuid(user_id) else None
        if user is None:
            raise ValidationError("That user does not exist.")
        return _add_or_reactivate(conn, actor, held, user, role, client)


def add_member_by_email(
    conn: psycopg.Connection,
    actor: Actor,
    email: str,
    role: str = "member",
    client: ClientContext | None = None,
) -> Membership:
    """Add the user with this email (members.create); a deactivated membership is reactivated
    with the role given."""
    with conn.transaction():
        held = require(conn, actor, "members.create")
        address = normalise_email(email)
        with conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE email = %s", (address,)
            ).fetchone()
        if row is None:
            raise ValidationError(f"No user has the email {address}; create the user instead.")
        return _add_or_reactivate(conn, actor, held, User(**row), role, client)


def create_user_and_add_member(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    email: str,
    name: str,
    password: str,
    role: str = "member",
    client: ClientContext | None = None,
) -> tuple[User, Membership]:
    """Create the account and its membership (members.create), with two audit rows."""
    with conn.transaction():
        held = require(conn, actor, "members.create")
        address = normalise_email(email)
        name = validate_name(name)
        validate_password(password)
        role_row = _assignable_role(conn, actor, role, held)
        if conn.execute("SELECT 1 FROM users WHERE email = %s", (address,)).fetchone():
            raise ValidationError(
                f"A user with the email {address} already exists; add them by email instead."
            )
        user = create_user(conn, email=address, name=name, password=password)
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="user.created",
            resource_type="User",
            resource_id=user.id,
            before=None,
            after=as_json(user),  # the User dataclass holds no password or hash
            client=client,
        )
        membership = _add_or_reactivate(conn, actor, held, user, role_row.key, client)
    return user, membership


def change_member_role(
    conn: psycopg.Connection,
    actor: Actor,
    membership_id: str,
    role: str,
    client: ClientContext | None = None,
) -> Membership:
    """Refuses to demote the last active owner, a member who outranks the actor, and a role
    that is deactivated or grants what the actor lacks."""
    with conn.transaction():
        held = require(conn, actor, "members.update")
        before = _membership(conn, actor, membership_id)
        if before.role == role:
            return before
        _refuse_outranked(conn, actor, before, held, "change the role of")
        target = _assignable_role(conn, actor, role, held)
        if (
            before.role == "owner"
            and before.active
            and _active_owner_count(conn, actor.organization_id) <= 1
        ):
            raise ValidationError("The last active owner cannot be demoted; add another first.")
        conn.execute(
            "UPDATE organization_memberships SET role = %s WHERE id = %s",
            (target.key, membership_id),
        )
        after = replace(before, role=target.key)
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="membership.role_changed",
            resource_type="Membership",
            resource_id=membership_id,
            before={"role": before.role},
            after={"role": target.key},
            client=client,
        )
    return after


def deactivate_member(
    conn: psycopg.Connection,
    actor: Actor,
    membership_id: str,
    client: ClientContext | None = None,
) -> Membership:
    """Refuses to deactivate the last active owner, or a member who outranks the actor."""
    with conn.transaction():
        held = require(conn, actor, "members.delete")
        before = _membership(conn, actor, membership_id)
        if not before.active:
            return before
        _refuse_outranked(conn, actor, before, held, "deactivate")
        if before.role == "owner" and _active_owner_count(conn, actor.organization_id) <= 1:
            raise ValidationError("The last active owner cannot be removed; add another first.")
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE id = %s", (membership_id,)
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="membership.deactivated",
            resource_type="Membership",
            resource_id=membership_id,
            before={"active": True},
            after={"active": False},
            client=client,
        )
    return replace(before, active=False)


def reactivate_member(
    conn: psycopg.Connection,
    actor: Actor,
    membership_id: str,
    client: ClientContext | None = None,
) -> Membership:
    """Reactivate a membership with the role it had (members.update); that role must be active
    and grant nothing the actor lacks."""
    with conn.transaction():
        held = require(conn, actor, "members.update")
        before = _membership(conn, actor, membership_id)
        if before.active:
            return before
        user = get_user(conn, before.user_id)
        if user is None or not user.active:
            # As when adding a member: a deactivated account gets no membership back, or the
            # members list would show an active member who cannot sign in.
            email = user.email if user else "of this member"
            raise ValidationError(
                f"The account {email} is deactivated; a platform admin must reactivate it first."
            )
        _assignable_role(conn, actor, before.role, held)
        conn.execute(
            "UPDATE organization_memberships SET active = true WHERE id = %s", (membership_id,)
        )
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="membership.reactivated",
            resource_type="Membership",
            resource_id=membership_id,
            before={"active": False, "role": before.role},
            after={"active": True, "role": before.role},
            client=client,
        )
    return replace(before, active=True)
