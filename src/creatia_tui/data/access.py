"""Who is at the keyboard, and what they may do in which organization.

Sign-in checks the password against ``users.encrypted_password`` and refuses, each with one
sentence, a wrong password (or unknown email: the same sentence, so emails cannot be probed), an
inactive user, and a user with no active membership (platform admins need none).

An :class:`Actor` is what every service call takes: the signed-in user and the organization they
act in. :func:`require` re-reads the effective permissions from PostgreSQL inside the caller's
transaction, so a permission revoked a second ago is already refused, and an organization id the
user does not belong to gives nothing, whoever passes it.

Decisions, enforced here for every service:

1. Deactivated organizations: a user who is not a platform admin holds no permission at all in a
   deactivated organization, whatever their role; :func:`require` refuses with "This
   organization is deactivated; only a platform admin can reactivate it." A platform admin
   (``users.role = 'admin'`` and active, read from the database on every check, not from the
   signed-in ``User`` object) holds every permission in every organization, deactivated ones
   included. The check, the organization's state and the permission set are one query.
2. No privilege escalation: nobody may hand out a permission they do not hold themselves, either
   by granting it to a role or by giving a member a role that holds it
   (:func:`refuse_escalation`); nor change or deactivate a member whose current role holds a
   permission they lack (an admin cannot demote or remove an owner). Platform admins hold every
   permission, so they pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from creatia_tui.data.models import User
from creatia_tui.data.organizations import GRANTED_PERMISSION_NAMES
from creatia_tui.data.users import check_password
from creatia_tui.errors import PermissionDenied, UserError


class SignInRefused(UserError):
    """The email, password or account state does not allow signing in."""


@dataclass(frozen=True)
class OrganizationChoice:
    id: str
    name: str
    subdomain: str
    role: str | None  # the membership role; None for a platform admin without membership


@dataclass(frozen=True)
class Actor:
    user: User
    organization_id: str

    @property
    def user_id(self) -> str:
        return self.user.id


def organizations_for(conn: psycopg.Connection, user: User) -> list[OrganizationChoice]:
    """The organizations a user may switch to: active memberships in active organizations;
    for a platform admin, every organization."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT o.id::text AS id, o.name, o.subdomain, m.role
            FROM organizations o
            LEFT JOIN organization_memberships m
              ON m.organization_id = o.id AND m.user_id = %(user)s AND m.active
            WHERE (m.id IS NOT NULL AND o.active) OR %(admin)s
            ORDER BY o.name, o.id
            """,
            {"user": user.id, "admin": user.is_platform_admin},
        ).fetchall()
    return [OrganizationChoice(**row) for row in rows]


def sign_in(
    conn: psycopg.Connection, email: str, password: str
) -> tuple[User, list[OrganizationChoice]]:
    """The user and the organizations they may act in; SignInRefused otherwise."""
    user = check_password(conn, email, password)
    if user is None:
        raise SignInRefused("The email or password is wrong.")
    if not user.active:
        raise SignInRefused("This account is deactivated; ask an administrator.")
    choices = organizations_for(conn, user)
    if not choices and not user.is_platform_admin:
        raise SignInRefused("This account has no active membership in any organization.")
    return user, choices


DEACTIVATED = "This organization is deactivated; only a platform admin can reactivate it."

# One round trip: the organization's state, whether the user is an active member of it, and the
# permission names they hold there (decision 1 lives in GRANTED_PERMISSION_NAMES).
STANDING = f"""
SELECT (SELECT o.active FROM organizations o WHERE o.id = %(org)s) AS organization_active,
       EXISTS (SELECT 1 FROM organization_memberships m
               WHERE m.user_id = %(user)s AND m.organization_id = %(org)s AND m.active) AS member,
       ARRAY({GRANTED_PERMISSION_NAMES}) AS permissions
"""


def permissions_of(conn: psycopg.Connection, actor: Actor) -> frozenset[str]:
    """The permission names the actor holds now (nothing in a deactivated organization, unless
    they are a platform admin)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            STANDING, {"user": actor.user_id, "org": actor.organization_id}
        ).fetchone()
    assert row is not None
    return frozenset(row["permissions"])


def require(conn: psycopg.Connection, actor: Actor, permission: str) -> frozenset[str]:
    """Raise PermissionDenied (one sentence) unless the actor holds the permission now.

    Returns every permission the actor holds, for the escalation checks that follow."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            STANDING, {"user": actor.user_id, "org": actor.organization_id}
        ).fetchone()
    assert row is not None
    held = frozenset(row["permissions"])
    if row["organization_active"] is None:
        raise PermissionDenied("That organization does not exist.")
    if permission in held:
        return held
    if row["member"] and not row["organization_active"]:
        raise PermissionDenied(DEACTIVATED)
    resource, _, action = permission.partition(".")
    raise PermissionDenied(
        f"You may not {action} {resource} in this organization "
        f"(permission {permission} is not granted to you)."
    )


def listed(names: Iterable[str], limit: int = 3) -> str:
    """At most `limit` names, sorted and comma-separated, then "…" when there were more."""
    ordered = sorted(names)
    shown = ", ".join(ordered[:limit])
    return shown + ", …" if len(ordered) > limit else shown


def refuse_escalation(held: frozenset[str], role_name: str, granted: Iterable[str]) -> None:
    """PermissionDenied when the role grants a permission the actor does not hold (decision 2)."""
    missing = set(granted) - held
    if missing:
        raise PermissionDenied(
            f"You cannot assign the role {role_name}: it grants permissions you do not hold "
            f"({listed(missing)})."
        )
