"""Organizations, memberships, roles and permissions (PostgreSQL).

Repositories take a psycopg connection and run inside the caller's transaction, so a service can
write a change and its audit row atomically. They validate before writing. Permission checks live
in the services built on top of them (``access``, ``admin``, ``roles``), not here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from creatia_tui.data.models import Membership, Organization, Permission, Role
from creatia_tui.errors import ValidationError

SUBDOMAIN_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
PLANS = ("free", "pro", "enterprise")

ORG_COLUMNS = "id::text AS id, name, subdomain, plan, active, settings, created_at, updated_at"
MEMBERSHIP_COLUMNS = (
    "id::text AS id, user_id::text AS user_id, organization_id::text AS organization_id, "
    "role, active, joined_at"
)
ROLE_COLUMNS = (
    "id::text AS id, organization_id::text AS organization_id, name, key, description, "
    "system_role, active"
)


def subdomain_problem(subdomain: str) -> str | None:
    """Why a subdomain is not a DNS label, or None when it is one."""
    if not subdomain:
        return "The subdomain is empty."
    if len(subdomain) > 63:
        return "The subdomain is longer than 63 characters."
    if subdomain != subdomain.lower():
        return "The subdomain must be lowercase."
    if subdomain.startswith("-") or subdomain.endswith("-"):
        return "The subdomain cannot start or end with a hyphen."
    if not SUBDOMAIN_PATTERN.match(subdomain):
        return "The subdomain may hold only lowercase letters, digits and hyphens."
    return None


def parse_settings(text: str) -> dict[str, Any]:
    """Settings JSON as typed in a form: an object, or a one-line reason why not."""
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"The settings are not valid JSON: {exc.msg} at line {exc.lineno}."
        ) from None
    if not isinstance(value, dict):
        raise ValidationError("The settings must be a JSON object ({...}).")
    return value


def validate_organization(name: str, subdomain: str, plan: str) -> None:
    if not name.strip():
        raise ValidationError("The organization name is empty.")
    if len(name) > 255:
        raise ValidationError("The organization name is longer than 255 characters.")
    problem = subdomain_problem(subdomain)
    if problem:
        raise ValidationError(problem)
    if plan not in PLANS:
        raise ValidationError(f"Unknown plan {plan!r}; choose one of {', '.join(PLANS)}.")


def create_organization(
    conn: psycopg.Connection,
    *,
    name: str,
    subdomain: str,
    plan: str = "free",
    settings: dict[str, Any] | None = None,
) -> Organization:
    """Insert an organization; its system roles are created by the database trigger."""
    validate_organization(name, subdomain, plan)
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"INSERT INTO organizations (name, subdomain, plan, settings) "
                f"VALUES (%s, %s, %s, %s) RETURNING {ORG_COLUMNS}",
                (name.strip(), subdomain, plan, Jsonb(settings or {})),
            ).fetchone()
    except pg_errors.UniqueViolation:
        raise ValidationError(f"The subdomain {subdomain} is already taken.") from None
    assert row is not None
    return Organization(**row)


def get_organization(conn: psycopg.Connection, organization_id: str) -> Organization | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {ORG_COLUMNS} FROM organizations WHERE id = %s", (organization_id,)
        ).fetchone()
    return Organization(**row) if row else None


def list_organizations(
    conn: psycopg.Connection, search: str | None = None, limit: int = 200
) -> list[Organization]:
    """By name; `search` matches name or subdomain substrings (pg_trgm index on name)."""
    where, params = "", {"limit": limit}
    if search:
        where = "WHERE name ILIKE %(pattern)s OR subdomain ILIKE %(pattern)s"
        params["pattern"] = f"%{_escape_like(search)}%"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {ORG_COLUMNS} FROM organizations {where} ORDER BY name, id LIMIT %(limit)s",
            params,
        ).fetchall()
    return [Organization(**row) for row in rows]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_pattern(search: str | None) -> str | None:
    """An ILIKE pattern matching `search` as a plain substring, or None for no search."""
    search = (search or "").strip()
    return f"%{_escape_like(search)}%" if search else None


# ---------------------------------------------------------------- memberships
def add_membership(
    conn: psycopg.Connection, *, organization_id: str, user_id: str, role: str = "member"
) -> Membership:
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"INSERT INTO organization_memberships (organization_id, user_id, role) "
                f"VALUES (%s, %s, %s) RETURNING {MEMBERSHIP_COLUMNS}",
                (organization_id, user_id, role),
            ).fetchone()
    except pg_errors.UniqueViolation:
        raise ValidationError("That user is already a member of this organization.") from None
    except pg_errors.ForeignKeyViolation:
        raise ValidationError(f"There is no role {role!r} in this organization.") from None
    assert row is not None
    return Membership(**row)


def _memberships(
    conn: psycopg.Connection, column: str, value: str, active_only: bool
) -> list[Membership]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {MEMBERSHIP_COLUMNS} FROM organization_memberships WHERE {column} = %s "
            f"AND (active OR NOT %s) ORDER BY joined_at, id",
            (value, active_only),
        ).fetchall()
    return [Membership(**row) for row in rows]


def memberships_of_user(
    conn: psycopg.Connection, user_id: str, active_only: bool = True
) -> list[Membership]:
    return _memberships(conn, "user_id", user_id, active_only)


def members_of_organization(
    conn: psycopg.Connection, organization_id: str, active_only: bool = False
) -> list[Membership]:
    return _memberships(conn, "organization_id", organization_id, active_only)


# ---------------------------------------------------------------- roles and permissions
def list_roles(conn: psycopg.Connection, organization_id: str) -> list[Role]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {ROLE_COLUMNS} FROM roles r WHERE organization_id = %s "
            "ORDER BY NOT system_role, "
            "(SELECT rank FROM system_role_templates t WHERE t.key = r.key), name",
            (organization_id,),
        ).fetchall()
    return [Role(**row) for row in rows]


def list_permissions(conn: psycopg.Connection) -> list[Permission]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id::text AS id, name, resource, action, description FROM permissions "
            "ORDER BY resource, action"
        ).fetchall()
    return [Permission(**row) for row in rows]


# Names the user holds in the organization: through an active membership of an active user in an
# active organization, whose role is active; every name for an active platform admin. A
# subquery with %(user)s and %(org)s, so access.require can embed it in its one round trip.
GRANTED_PERMISSION_NAMES = """
SELECT p.name
FROM permissions p
WHERE EXISTS (SELECT 1 FROM users u
              WHERE u.id = %(user)s AND u.role = 'admin' AND u.active)
   OR EXISTS (
        SELECT 1
        FROM organization_memberships m
        JOIN users u ON u.id = m.user_id AND u.active
        JOIN organizations o ON o.id = m.organization_id AND o.active
        JOIN roles r ON r.organization_id = m.organization_id AND r.key = m.role AND r.active
        JOIN role_permissions rp ON rp.role_id = r.id AND rp.granted
        WHERE m.user_id = %(user)s AND m.organization_id = %(org)s AND m.active
          AND rp.permission_id = p.id)
"""


def effective_permissions(
    conn: psycopg.Connection, user_id: str, organization_id: str
) -> frozenset[str]:
    """Permission names the user holds in the organization through an active membership whose
    role is active, in an active organization; a platform admin holds every permission
    everywhere, deactivated organizations included."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            GRANTED_PERMISSION_NAMES, {"user": user_id, "org": organization_id}
        ).fetchall()
    return frozenset(row[0] for row in rows)
