"""Who is at the keyboard, and what they may do in which organization.

Sign-in checks the password against ``users.encrypted_password`` and refuses, each with one
sentence, a wrong password (or unknown email: the same sentence, so emails cannot be probed), an
inactive user, and a user with no active membership (platform admins need none).

An :class:`Actor` is what every service call takes: the signed-in user and the organization they
act in. :func:`require` re-reads the effective permissions from PostgreSQL inside the caller's
transaction, so a permission revoked a second ago is already refused, and an organization id the
user does not belong to gives nothing, whoever passes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row

from creatia_tui.data.models import User
from creatia_tui.data.organizations import effective_permissions
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


def permissions_of(conn: psycopg.Connection, actor: Actor) -> frozenset[str]:
    return effective_permissions(conn, actor.user.id, actor.organization_id)


def require(conn: psycopg.Connection, actor: Actor, permission: str) -> None:
    """Raise PermissionDenied (one sentence) unless the actor holds the permission now."""
    if permission not in permissions_of(conn, actor):
        resource, _, action = permission.partition(".")
        raise PermissionDenied(
            f"You may not {action} {resource} in this organization "
            f"(permission {permission} is not granted to you)."
        )
