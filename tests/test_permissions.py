"""Every protected service, called directly, against the real PostgreSQL.

One table row per service: its required permission, whether it writes, and a call that succeeds
for a platform admin. Each refusal is proved to leave every row of every table as it was and to
write no audit row. Adding a service means adding a row to SERVICES.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from creatia_tui.data import admin, roles
from creatia_tui.data import monitor as monitoring
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.models import User
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.passwords import hash_password
from creatia_tui.data.users import USER_COLUMNS
from creatia_tui.errors import PermissionDenied, ValidationError

CLIENT = ClientContext(ip_address="192.0.2.7", user_agent="creatia-tui/test (permissions)")
TABLES = (
    "organizations",
    "users",
    "organization_memberships",
    "roles",
    "role_permissions",
    "permission_audit_logs",
)


@functools.cache
def _hash() -> str:
    return hash_password("password-123")


def _user(conn: psycopg.Connection, email: str, name: str, admin: bool = False) -> User:
    row = conn.execute(
        f"INSERT INTO users (email, encrypted_password, name, role) VALUES (%s, %s, %s, %s) "
        f"RETURNING {USER_COLUMNS}",
        (email, _hash(), name, "admin" if admin else "user"),
    ).fetchone()
    return User(**row)


def _dynamic_role(conn, org_id: str, key: str, name: str, grants: str, active=True) -> str:
    """A dynamic role granting the permissions whose names match the LIKE pattern `grants`."""
    role_id = conn.execute(
        "INSERT INTO roles (organization_id, key, name, active) VALUES (%s, %s, %s, %s) "
        "RETURNING id::text AS id",
        (org_id, key, name, active),
    ).fetchone()["id"]
    conn.execute(
        "INSERT INTO role_permissions (role_id, permission_id, granted) "
        "SELECT %s, id, name LIKE %s FROM permissions",
        (role_id, grants),
    )
    return role_id


@dataclass
class World:
    conn: psycopg.Connection
    lab: str
    acme: str
    people: dict[str, User]
    memberships: dict[str, str]
    roles: dict[str, str]
    permissions: dict[str, str]

    def actor(self, who: str, org: str | None = None) -> Actor:
        return Actor(self.people[who], org or self.lab)


@pytest.fixture
def world(pg_dsn: str) -> Iterator[World]:
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as conn:
        lab = create_organization(conn, name="크리에이티아 랩", subdomain="lab").id
        acme = create_organization(conn, name="Acme", subdomain="acme").id
        people, memberships = {}, {}
        for role in ("owner", "admin", "member", "viewer", "former"):
            people[role] = _user(conn, f"{role}@example.com", f"{role} 이")
            memberships[role] = add_membership(
                conn,
                organization_id=lab,
                user_id=people[role].id,
                role="member" if role == "former" else role,
            ).id
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE id = %s",
            (memberships["former"],),
        )
        people["root"] = _user(conn, "root@example.com", "Root", admin=True)
        people["newbie"] = _user(conn, "new@example.com", "신입")
        people["acme_member"] = _user(conn, "acme@example.com", "Acme Person")
        memberships["acme"] = add_membership(
            conn, organization_id=acme, user_id=people["acme_member"].id, role="member"
        ).id
        role_ids = {
            "designer": _dynamic_role(conn, lab, "designer", "디자이너", "tasks.read"),
            "retired": _dynamic_role(conn, lab, "retired", "은퇴", "tasks.read", active=False),
            "acme_only": _dynamic_role(conn, acme, "acme_only", "Acme only", "tasks.%"),
            "acme_retired": _dynamic_role(conn, acme, "acme_gone", "Gone", "", active=False),
        }
        permissions = {
            row["name"]: row["id"]
            for row in conn.execute("SELECT name, id::text AS id FROM permissions")
        }
        yield World(conn, lab, acme, people, memberships, role_ids, permissions)


def _snapshot(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    """Each table's row count and a digest of every row's every column."""
    result = {}
    for table in TABLES:
        row = conn.execute(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            f"AS digest FROM {table} t"
        ).fetchone()
        result[table] = (row["n"], row["digest"])
    return result


def _audit_count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM permission_audit_logs").fetchone()["n"]


def _refused(world: World, call: Callable[[], Any], error: type[Exception], match: str) -> None:
    """The call raises `error`, and no row of any table changed, audit log included."""
    before, audit_before = _snapshot(world.conn), _audit_count(world.conn)
    with pytest.raises(error, match=match) as excinfo:
        call()
    assert "\n" not in str(excinfo.value)
    assert _audit_count(world.conn) == audit_before
    assert _snapshot(world.conn) == before


def _toggle_organization(conn: psycopg.Connection, actor: Actor, w: World) -> Any:
    active = conn.execute(
        "SELECT active FROM organizations WHERE id = %s", (actor.organization_id,)
    ).fetchone()["active"]
    return admin.set_organization_active(conn, actor, not active, client=CLIENT)


@dataclass(frozen=True)
class Service:
    name: str
    permission: str
    writes: bool
    call: Callable[[psycopg.Connection, Actor, World], Any]
    # Acts on what every organization shares: the permission is needed, and not enough.
    platform_admin_only: bool = False

    def __str__(self) -> str:
        return self.name


def _idle_backend(conn: psycopg.Connection, w: World) -> int:
    """The pid of another session of the test's database, to be cancelled (harmless: idle)."""
    other = psycopg.connect(conn.info.dsn, autocommit=True)
    w.__dict__.setdefault("idle_sessions", []).append(other)  # closed with the world
    return other.info.backend_pid


Call = Callable[[psycopg.Connection, Actor, World], Any]
# fmt: off
SERVICES = [
    Service("update_organization", "organizations.update", True,
            lambda c, a, w: admin.update_organization(c, a, name="랩 2", client=CLIENT)),
    Service("set_organization_active", "organizations.manage", True, _toggle_organization),
    Service("list_members", "members.read", False, lambda c, a, w: admin.list_members(c, a)),
    Service("add_member", "members.create", True,
            lambda c, a, w: admin.add_member(c, a, w.people["newbie"].id, "viewer", CLIENT)),
    Service("add_member_by_email", "members.create", True,
            lambda c, a, w: admin.add_member_by_email(c, a, "new@example.com", "member", CLIENT)),
    Service("create_user_and_add_member", "members.create", True,
            lambda c, a, w: admin.create_user_and_add_member(
                c, a, email="fresh@example.com", name="새사람", password="password-123",
                role="viewer", client=CLIENT)),
    Service("change_member_role", "members.update", True,
            lambda c, a, w: admin.change_member_role(
                c, a, w.memberships["member"], "viewer", CLIENT)),
    Service("reactivate_member", "members.update", True,
            lambda c, a, w: admin.reactivate_member(c, a, w.memberships["former"], CLIENT)),
    Service("deactivate_member", "members.delete", True,
            lambda c, a, w: admin.deactivate_member(c, a, w.memberships["viewer"], CLIENT)),
    Service("list_roles", "roles.read", False, lambda c, a, w: roles.list_roles(c, a)),
    Service("permission_matrix", "roles.read", False,
            lambda c, a, w: roles.permission_matrix(c, a)),
    Service("create_role", "roles.create", True,
            lambda c, a, w: roles.create_role(c, a, name="기획자", key="planner", client=CLIENT)),
    Service("rename_role", "roles.update", True,
            lambda c, a, w: roles.rename_role(
                c, a, w.roles["designer"], name="시니어 디자이너", client=CLIENT)),
    Service("set_permission", "roles.update", True,
            lambda c, a, w: roles.set_permission(
                c, a, w.roles["designer"], w.permissions["tasks.update"], True, CLIENT)),
    Service("deactivate_role", "roles.delete", True,
            lambda c, a, w: roles.deactivate_role(c, a, w.roles["designer"], CLIENT)),
    Service("reactivate_role", "roles.delete", True,
            lambda c, a, w: roles.reactivate_role(c, a, w.roles["retired"], CLIENT)),
    Service("monitoring.read_postgres", "monitoring.read", False,
            lambda c, a, w: monitoring.read_postgres(c, a, full=False)),
    Service("monitoring.signal_backend", "monitoring.manage", True,
            lambda c, a, w: monitoring.signal_backend(c, a, _idle_backend(c, w), client=CLIENT)
            or "signalled", platform_admin_only=True),
]
WRITES = [s for s in SERVICES if s.writes]

# Services that take an id (or a role key) of the organization: the same call with another
# organization's id must find nothing, whoever calls it.
FOREIGN_IDS: list[tuple[str, Call]] = [
    ("change_member_role",
     lambda c, a, w: admin.change_member_role(c, a, w.memberships["acme"], "viewer")),
    ("deactivate_member", lambda c, a, w: admin.deactivate_member(c, a, w.memberships["acme"])),
    ("reactivate_member", lambda c, a, w: admin.reactivate_member(c, a, w.memberships["acme"])),
    ("rename_role", lambda c, a, w: roles.rename_role(c, a, w.roles["acme_only"], name="x")),
    ("deactivate_role", lambda c, a, w: roles.deactivate_role(c, a, w.roles["acme_only"])),
    ("reactivate_role", lambda c, a, w: roles.reactivate_role(c, a, w.roles["acme_retired"])),
    ("set_permission",
     lambda c, a, w: roles.set_permission(
         c, a, w.roles["acme_only"], w.permissions["tasks.read"], False)),
    ("add_member with a foreign role key",
     lambda c, a, w: admin.add_member(c, a, w.people["newbie"].id, "acme_only")),
    ("change_member_role to a foreign role key",
     lambda c, a, w: admin.change_member_role(c, a, w.memberships["member"], "acme_only")),
    ("create_user_and_add_member with a foreign role key",
     lambda c, a, w: admin.create_user_and_add_member(
         c, a, email="x@example.com", name="X", password="password-123", role="acme_only")),
]
# fmt: on


def test_the_table_covers_every_public_service() -> None:
    """A new public service in admin or roles must get a row (or be listed here as user-level)."""
    user_level = {"list_organizations", "visible_organizations", "create_organization"}
    helpers = {"as_json", "is_uuid"}
    public = {
        name
        for module in (admin, roles)
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and name not in user_level | helpers
        and not isinstance(value, type)
    }
    assert public == {s.name for s in SERVICES if "." not in s.name}


@pytest.mark.parametrize("role", ["viewer", "member"])
@pytest.mark.parametrize("service", WRITES, ids=str)
def test_viewers_and_members_change_nothing(world: World, role: str, service: Service) -> None:
    actor = world.actor(role)
    _refused(
        world, lambda: service.call(world.conn, actor, world), PermissionDenied, service.permission
    )


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_each_service_requires_exactly_its_permission(world: World, service: Service) -> None:
    """A role holding every permission but this one is refused; granting it lets the call in."""
    conn = world.conn
    role_id = _dynamic_role(conn, world.lab, "almost", "거의 다", "%")
    conn.execute(
        "UPDATE role_permissions SET granted = false WHERE role_id = %s AND permission_id = %s",
        (role_id, world.permissions[service.permission]),
    )
    user = _user(conn, "almost@example.com", "거의")
    add_membership(conn, organization_id=world.lab, user_id=user.id, role="almost")
    actor = Actor(user, world.lab)
    _refused(world, lambda: service.call(conn, actor, world), PermissionDenied, service.permission)
    conn.execute("UPDATE role_permissions SET granted = true WHERE role_id = %s", (role_id,))
    if service.platform_admin_only:
        _refused(world, lambda: service.call(conn, actor, world), PermissionDenied,
                 "only a platform admin")
        return
    service.call(conn, actor, world)


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_nobody_acts_in_an_organization_they_do_not_belong_to(
    world: World, service: Service
) -> None:
    # The owner of "lab" passes the id of "acme", where they have no membership.
    actor = world.actor("owner", world.acme)
    _refused(
        world,
        lambda: service.call(world.conn, actor, world),
        PermissionDenied,
        "is not granted to you",
    )


@pytest.mark.parametrize(("name", "call"), FOREIGN_IDS, ids=[n for n, _ in FOREIGN_IDS])
def test_another_organizations_ids_are_not_found(world: World, name: str, call: Call) -> None:
    actor = world.actor("owner")  # holds every permission in "lab"
    match = "no role 'acme_only'" if "role key" in name else "not found in this organization"
    _refused(world, lambda: call(world.conn, actor, world), ValidationError, match)


@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_a_deactivated_organization_refuses_its_owner(world: World, service: Service) -> None:
    world.conn.execute("UPDATE organizations SET active = false WHERE id = %s", (world.lab,))
    actor = world.actor("owner")
    _refused(
        world,
        lambda: service.call(world.conn, actor, world),
        PermissionDenied,
        "deactivated; only a platform admin can reactivate it",
    )


@pytest.mark.parametrize("org_active", [True, False], ids=["active", "deactivated"])
@pytest.mark.parametrize("service", SERVICES, ids=str)
def test_a_platform_admin_may_do_everything(
    world: World, service: Service, org_active: bool
) -> None:
    """Without any membership, in an active or a deactivated organization."""
    conn = world.conn
    conn.execute("UPDATE organizations SET active = %s WHERE id = %s", (org_active, world.lab))
    before, audit_before = _snapshot(conn), _audit_count(conn)
    result = service.call(conn, world.actor("root"), world)
    assert result is not None
    if service.writes:
        assert _audit_count(conn) > audit_before
        assert _snapshot(conn) != before
    else:
        assert _snapshot(conn) == before


def test_only_platform_admins_create_organizations(world: World) -> None:
    for who in ("owner", "admin", "newbie"):
        _refused(
            world,
            lambda who=who: admin.create_organization(
                world.conn, world.people[who], name="새 조직", subdomain="new-org"
            ),
            PermissionDenied,
            "Only a platform admin",
        )
    org = admin.create_organization(world.conn, world.people["root"], name="새", subdomain="new")
    assert org.subdomain == "new"


def test_organization_listings_show_only_readable_organizations(world: World) -> None:
    conn = world.conn

    def listed(who: str) -> set[str]:
        return {o.subdomain for o in admin.list_organizations(conn, world.people[who])}

    assert listed("viewer") == {"lab"}
    assert listed("acme_member") == {"acme"}
    assert listed("newbie") == listed("former") == set()
    assert listed("root") == {"lab", "acme"}
    conn.execute("UPDATE organizations SET active = false WHERE id = %s", (world.lab,))
    assert listed("owner") == set()
    assert listed("root") == {"lab", "acme"}
