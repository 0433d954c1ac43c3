"""Organization and membership services: permission-checked, validated, audited.

Each call takes the acting user (an :class:`~creatia_tui.data.access.Actor` for calls inside an
organization) and runs in one transaction on the caller's connection: the permission check, the
change and its ``permission_audit_logs`` row commit together or not at all. Validation happens
before anything is written.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from creatia_tui.data import organizations as repo
from creatia_tui.data.access import Actor, require
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.data.models import Membership, Organization, User
from creatia_tui.errors import PermissionDenied, ValidationError

READABLE_ORGANIZATIONS = """
SELECT m.organization_id::text
FROM organization_memberships m
JOIN roles r ON r.organization_id = m.organization_id AND r.key = m.role AND r.active
JOIN role_permissions rp ON rp.role_id = r.id AND rp.granted
JOIN permissions p ON p.id = rp.permission_id AND p.name = 'organizations.read'
WHERE m.user_id = %s AND m.active
"""


def _json(value: Any) -> dict[str, Any]:
    """A dataclass as JSON for the audit row's before/after."""
    return {
        key: (item.isoformat() if hasattr(item, "isoformat") else item)
        for key, item in asdict(value).items()
    }


# ---------------------------------------------------------------- organizations
def visible_organizations(
    conn: psycopg.Connection, user: User, search: str | None = None
) -> list[Organization]:
    """Every organization for a platform admin; otherwise those the user may read."""
    organizations = repo.list_organizations(conn, search=search)
    if user.is_platform_admin:
        return organizations
    with conn.cursor(row_factory=tuple_row) as cur:
        readable = {row[0] for row in cur.execute(READABLE_ORGANIZATIONS, (user.id,))}
    return [org for org in organizations if org.id in readable]


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
            conn, organization_id=org.id, user_id=user.id, action="organization.created",
            resource_type="Organization", resource_id=org.id, before=None, after=_json(org),
            client=client,
        )
    return org


def set_organization_active(
    conn: psycopg.Connection, actor: Actor, active: bool, client: ClientContext | None = None
) -> Organization:
    """Deactivate or reactivate the actor's organization (organizations.manage)."""
    with conn.transaction():
        require(conn, actor, "organizations.manage")
        before = repo.get_organization(conn, actor.organization_id)
        if before is None:
            raise ValidationError("That organization no longer exists.")
        if before.active == active:
            return before
        conn.execute(
            "UPDATE organizations SET active = %s, updated_at = now() WHERE id = %s",
            (active, actor.organization_id),
        )
        after = replace(before, active=active)
        write_audit(
            conn, organization_id=before.id, user_id=actor.user_id,
            action="organization.reactivated" if active else "organization.deactivated",
            resource_type="Organization", resource_id=before.id,
            before={"active": before.active}, after={"active": active}, client=client,
        )
    return after


# ---------------------------------------------------------------- members
def _active_owner_count(conn: psycopg.Connection, organization_id: str) -> int:
    with conn.cursor(row_factory=tuple_row) as cur:
        # FOR UPDATE: two admins demoting the last two owners at once cannot both succeed.
        rows = cur.execute(
            "SELECT id FROM organization_memberships WHERE organization_id = %s "
            "AND role = 'owner' AND active FOR UPDATE",
            (organization_id,),
        ).fetchall()
    return len(rows)


def _membership(conn: psycopg.Connection, actor: Actor, membership_id: str) -> Membership:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {repo.MEMBERSHIP_COLUMNS} FROM organization_memberships "
            "WHERE id = %s AND organization_id = %s",
            (membership_id, actor.organization_id),
        ).fetchone()
    if row is None:  # another organization's membership id finds nothing
        raise ValidationError("That membership does not exist in this organization.")
    return Membership(**row)


def add_member(
    conn: psycopg.Connection, actor: Actor, user_id: str, role: str = "member",
    client: ClientContext | None = None,
) -> Membership:
    with conn.transaction():
        require(conn, actor, "members.create")
        membership = repo.add_membership(
            conn, organization_id=actor.organization_id, user_id=user_id, role=role
        )
        write_audit(
            conn, organization_id=actor.organization_id, user_id=actor.user_id,
            action="membership.created", resource_type="Membership",
            resource_id=membership.id, before=None, after=_json(membership), client=client,
        )
    return membership


def change_member_role(
    conn: psycopg.Connection, actor: Actor, membership_id: str, role: str,
    client: ClientContext | None = None,
) -> Membership:
    """Refuses to demote the last active owner."""
    with conn.transaction():
        require(conn, actor, "members.update")
        before = _membership(conn, actor, membership_id)
        if before.role == role:
            return before
        if (
            before.role == "owner"
            and before.active
            and _active_owner_count(conn, actor.organization_id) <= 1
        ):
            raise ValidationError("The last active owner cannot be demoted; add another first.")
        try:
            with conn.transaction():
                conn.execute(
                    "UPDATE organization_memberships SET role = %s WHERE id = %s",
                    (role, membership_id),
                )
        except psycopg.errors.ForeignKeyViolation:
            raise ValidationError(f"There is no role {role!r} in this organization.") from None
        after = replace(before, role=role)
        write_audit(
            conn, organization_id=actor.organization_id, user_id=actor.user_id,
            action="membership.role_changed", resource_type="Membership",
            resource_id=membership_id, before={"role": before.role}, after={"role": role},
            client=client,
        )
    return after


def deactivate_member(
    conn: psycopg.Connection, actor: Actor, membership_id: str,
    client: ClientContext | None = None,
) -> Membership:
    """Refuses to deactivate the last active owner."""
    with conn.transaction():
        require(conn, actor, "members.delete")
        before = _membership(conn, actor, membership_id)
        if not before.active:
            return before
        if before.role == "owner" and _active_owner_count(conn, actor.organization_id) <= 1:
            raise ValidationError("The last active owner cannot be removed; add another first.")
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE id = %s", (membership_id,)
        )
        write_audit(
            conn, organization_id=actor.organization_id, user_id=actor.user_id,
            action="membership.deactivated", resource_type="Membership",
            resource_id=membership_id, before={"active": True}, after={"active": False},
            client=client,
        )
    return replace(before, active=False)
