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
3. Read grants (:class:`ReadGrants`): opening the kanban board may rely on the actor's standing
   as read from PostgreSQL at most :data:`GRANT_MAX_AGE_S` (15 s) ago instead of reading it
   again, so the board opens in one round trip per column. The grant is the data layer's own
   read (at sign-in or organization switch, by the board's previous check, and again by the
   status line's PostgreSQL check every 5 s, which runs this query instead of ``SELECT 1``),
   never the screen's copy of the permissions. Only a grant that *holds* the permission is
   trusted: a refusal is always checked again. Every permission audit row written in this
   process (a role, membership or organization changed here) voids every grant at once, so a
   change made in this app applies to its next read; a change made elsewhere applies within
   15 s to board reads and at once to every write, which always checks inside its transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
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
       EXISTS (SELECT 1 FROM users u
               WHERE u.id = %(user)s AND u.role = 'admin' AND u.active) AS platform_admin,
       ARRAY({GRANTED_PERMISSION_NAMES}) AS permissions
"""


@dataclass(frozen=True)
class Standing:
    """What :data:`STANDING` reads: the organization's state (None: no such organization),
    whether the user is an active member, and the permissions they hold there."""

    organization_active: bool | None
    member: bool
    permissions: frozenset[str]
    platform_admin: bool = False


def _read_standing(conn: psycopg.Connection, user_id: str, organization_id: str) -> Standing:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(STANDING, {"user": user_id, "org": organization_id}).fetchone()
    assert row is not None
    return Standing(
        row["organization_active"], row["member"], frozenset(row["permissions"]),
        row["platform_admin"],
    )


def standing_of(conn: psycopg.Connection, actor: Actor) -> Standing:
    return _read_standing(conn, actor.user_id, actor.organization_id)


def permissions_of(conn: psycopg.Connection, actor: Actor) -> frozenset[str]:
    """The permission names the actor holds now (nothing in a deactivated organization, unless
    they are a platform admin)."""
    return standing_of(conn, actor).permissions


def judge(standing: Standing, permission: str) -> frozenset[str]:
    """Every permission held when `permission` is among them; PermissionDenied otherwise."""
    held = standing.permissions
    if standing.organization_active is None:
        raise PermissionDenied("That organization does not exist.")
    if permission in held:
        return held
    if standing.member and not standing.organization_active:
        raise PermissionDenied(DEACTIVATED)
    resource, _, action = permission.partition(".")
    raise PermissionDenied(
        f"You may not {action} {resource} in this organization "
        f"(permission {permission} is not granted to you)."
    )


def require(conn: psycopg.Connection, actor: Actor, permission: str) -> frozenset[str]:
    """Raise PermissionDenied (one sentence) unless the actor holds the permission now.

    Returns every permission the actor holds, for the escalation checks that follow."""
    return judge(standing_of(conn, actor), permission)


def require_standing(conn: psycopg.Connection, actor: Actor, permission: str) -> Standing:
    """:func:`require`, returning the whole standing (whether the actor is a platform admin,
    read now, included)."""
    standing = standing_of(conn, actor)
    judge(standing, permission)
    return standing


GRANT_MAX_AGE_S = 15.0
GRANT_UNUSED_S = 300.0  # a grant nobody asked for in 5 minutes is no longer refreshed


class _Revision:
    """Counts the permission changes written in this process (decision 3)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def bump(self) -> None:
        with self._lock:
            self.value += 1


PERMISSION_REVISION = _Revision()


def permissions_changed() -> None:
    """Void every read grant in this process (called with every permission audit row)."""
    PERMISSION_REVISION.bump()


@dataclass
class _Grant:
    standing: Standing
    read_at: float
    revision: int
    used_at: float


class ReadGrants:
    """The standings this process read lately, per (user, organization): decision 3.

    Thread-safe; one per :class:`~creatia_tui.data.db.Databases`."""

    def __init__(
        self,
        max_age_s: float = GRANT_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._grants: dict[tuple[str, str], _Grant] = {}

    @staticmethod
    def _key(actor: Actor) -> tuple[str, str]:
        return (actor.user_id, actor.organization_id)

    def held(self, actor: Actor, permission: str) -> bool:
        """Whether a grant no older than max_age_s, read since the last permission change made
        in this process, holds the permission (False means: check in PostgreSQL)."""
        now = self._clock()
        with self._lock:
            grant = self._grants.get(self._key(actor))
            if grant is None:
                return False
            grant.used_at = now
            return (
                grant.revision == PERMISSION_REVISION.value
                and now - grant.read_at <= self.max_age_s
                and grant.standing.organization_active is not None
                and permission in grant.standing.permissions
            )

    def read(self, conn: psycopg.Connection, actor: Actor) -> Standing:
        """The standing from PostgreSQL now, kept as the actor's grant."""
        revision, started = PERMISSION_REVISION.value, self._clock()
        standing = standing_of(conn, actor)
        self.keep(actor, standing, started, revision)
        return standing

    def keep(self, actor: Actor, standing: Standing, read_at: float, revision: int) -> None:
        with self._lock:
            previous = self._grants.get(self._key(actor))
            used_at = previous.used_at if previous else read_at
            self._grants[self._key(actor)] = _Grant(standing, read_at, revision, used_at)

    def refresh(self, conn: psycopg.Connection) -> int:
        """Read again every grant used lately (the status line's check); returns how many."""
        now = self._clock()
        with self._lock:
            for key in [k for k, g in self._grants.items() if now - g.used_at > GRANT_UNUSED_S]:
                del self._grants[key]
            keys = list(self._grants)
        for user_id, organization_id in keys:
            revision, started = PERMISSION_REVISION.value, self._clock()
            standing = _read_standing(conn, user_id, organization_id)
            with self._lock:
                grant = self._grants.get((user_id, organization_id))
                if grant is not None and grant.read_at <= started:
                    self._grants[(user_id, organization_id)] = _Grant(
                        standing, started, revision, grant.used_at
                    )
        return len(keys)


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
