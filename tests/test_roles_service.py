"""Role services: the rows each change writes, its audit row, and each validation refusal."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from creatia_tui.data import admin, roles
from creatia_tui.data.access import Actor, permissions_of
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.models import User
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.passwords import hash_password
from creatia_tui.data.users import USER_COLUMNS
from creatia_tui.errors import PermissionDenied, ValidationError

CLIENT = ClientContext(ip_address="198.51.100.4", user_agent="creatia-tui/test (pts/9)")


@functools.cache
def _hash() -> str:
    return hash_password("password-123")


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def lab(conn: psycopg.Connection) -> dict[str, Any]:
    org = create_organization(conn, name="크리에이티아 랩", subdomain="lab")
    people: dict[str, Any] = {"org": org.id}
    for who, role in [
        ("owner", "owner"),
        ("admin", "admin"),
        ("kim", "member"),
        ("lee", "member"),
        ("viewer", "viewer"),
    ]:
        user = User(
            **conn.execute(
                f"INSERT INTO users (email, encrypted_password, name) VALUES (%s, %s, %s) "
                f"RETURNING {USER_COLUMNS}",
                (f"{who}@example.com", _hash(), f"{who} 님"),
            ).fetchone()
        )
        people[who] = Actor(user, org.id)
        people[f"{who}_membership"] = add_membership(
            conn, organization_id=org.id, user_id=user.id, role=role
        ).id
    people["permissions"] = {
        r["name"]: r["id"] for r in conn.execute("SELECT name, id::text AS id FROM permissions")
    }
    people["role_ids"] = {
        r["key"]: r["id"]
        for r in conn.execute(
            "SELECT key, id::text AS id FROM roles WHERE organization_id = %s", (org.id,)
        )
    }
    return people


def _audit(conn: psycopg.Connection, org_id: str) -> list[dict[str, Any]]:
    return conn.execute(
        "SELECT action, resource_type, resource_id::text AS resource_id, user_id::text AS user_id,"
        " changes->'before' AS before, changes->'after' AS after, host(ip_address) AS ip, "
        "user_agent FROM permission_audit_logs WHERE organization_id = %s ORDER BY created_at",
        (org_id,),
    ).fetchall()


def _counts(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM roles) AS roles, "
        "(SELECT count(*) FROM role_permissions WHERE granted) AS granted, "
        "(SELECT count(*) FROM role_permissions) AS role_permissions, "
        "(SELECT md5(string_agg(r::text, '|' ORDER BY r.id)) FROM roles r) AS digest, "
        "(SELECT count(*) FROM permission_audit_logs) AS audit"
    ).fetchone()
    return tuple(row.values())


def _refused(conn, error, match: str, call) -> None:
    before = _counts(conn)
    with pytest.raises(error, match=match) as excinfo:
        call()
    assert "\n" not in str(excinfo.value)
    assert _counts(conn) == before


def _statements(conn: psycopg.Connection) -> list[str]:
    """Record every statement the connection's cursors execute from now on."""
    seen: list[str] = []

    class Recording(psycopg.Cursor):  # a real cursor that notes what it sends
        def execute(self, query, params=None, **kwargs):  # type: ignore[override]
            seen.append(str(query))
            return super().execute(query, params, **kwargs)

    conn.cursor_factory = Recording
    return seen


# ---------------------------------------------------------------- happy paths
def test_create_role_writes_the_role_a_row_per_permission_and_the_audit(conn, lab) -> None:
    role = roles.create_role(
        conn,
        lab["admin"],
        name=" 디자이너 ",
        key="designer",
        description="화면과 흐름을 그립니다",
        client=CLIENT,
    )
    row = conn.execute(
        "SELECT name, key, description, system_role, active, organization_id::text AS org "
        "FROM roles WHERE id = %s",
        (role.id,),
    ).fetchone()
    assert row == {
        "name": "디자이너",
        "key": "designer",
        "description": "화면과 흐름을 그립니다",
        "system_role": False,
        "active": True,
        "org": lab["org"],
    }
    grants = conn.execute(
        "SELECT count(*) AS n, count(*) FILTER (WHERE granted) AS granted "
        "FROM role_permissions WHERE role_id = %s",
        (role.id,),
    ).fetchone()
    assert grants == {"n": len(lab["permissions"]), "granted": 0}
    [audit] = _audit(conn, lab["org"])
    assert audit["action"] == "role.created" and audit["resource_type"] == "Role"
    assert audit["resource_id"] == role.id and audit["user_id"] == lab["admin"].user_id
    assert audit["before"] is None
    assert audit["after"]["name"] == "디자이너" and audit["after"]["key"] == "designer"
    assert audit["ip"] == "198.51.100.4" and audit["user_agent"] == CLIENT.user_agent


def test_roles_are_listed_with_their_active_member_counts(conn, lab) -> None:
    roles.create_role(conn, lab["owner"], name="디자이너", key="designer")
    conn.execute(
        "UPDATE organization_memberships SET active = false WHERE id = %s", (lab["lee_membership"],)
    )
    listed = roles.list_roles(conn, lab["viewer"])
    assert [(r.key, r.system_role, r.active_member_count) for r in listed] == [
        ("owner", True, 1),
        ("admin", True, 1),
        ("member", True, 1),
        ("viewer", True, 1),
        ("designer", False, 0),
    ]


def test_the_matrix_is_two_queries_after_the_permission_check(conn, lab) -> None:
    seen = _statements(conn)
    matrix = roles.permission_matrix(conn, lab["kim"])
    assert len([s for s in seen if "SELECT" in s]) <= 3
    by_key = {r.key: r.id for r in matrix.roles}
    names = {p.id: p.name for p in matrix.permissions}
    granted = {(role, names[p]) for role, p in matrix.granted}
    assert len(matrix.permissions) == len(lab["permissions"])
    assert all((by_key["owner"], name) in granted for name in names.values())
    assert {n for r, n in granted if r == by_key["viewer"]} == {
        "organizations.read",
        "members.read",
        "roles.read",
        "tasks.read",
        "sprints.read",
    }
    assert matrix.is_granted(by_key["admin"], lab["permissions"]["roles.update"])
    assert not matrix.is_granted(by_key["admin"], lab["permissions"]["organizations.manage"])


def test_rename_role_audits_only_what_changed(conn, lab) -> None:
    role = roles.create_role(conn, lab["admin"], name="디자이너", key="designer")
    renamed = roles.rename_role(conn, lab["admin"], role.id, name="시니어 디자이너", client=CLIENT)
    assert renamed.name == "시니어 디자이너" and renamed.description is None
    assert roles.rename_role(conn, lab["admin"], role.id, name="시니어 디자이너 ") == renamed
    roles.rename_role(conn, lab["admin"], role.id, name="시니어 디자이너", description="UI")
    assert conn.execute(
        "SELECT name, description FROM roles WHERE id = %s", (role.id,)
    ).fetchone() == {"name": "시니어 디자이너", "description": "UI"}
    audit = [(a["action"], a["before"], a["after"]) for a in _audit(conn, lab["org"])[1:]]
    assert audit == [
        ("role.renamed", {"name": "디자이너"}, {"name": "시니어 디자이너"}),
        ("role.renamed", {"description": None}, {"description": "UI"}),
    ]


def test_set_permission_toggles_the_row_and_audits_each_change_once(conn, lab) -> None:
    role = roles.create_role(conn, lab["owner"], name="디자이너", key="designer")
    admin.change_member_role(conn, lab["owner"], lab["kim_membership"], "designer")
    kim = lab["kim"]
    tasks_update = lab["permissions"]["tasks.update"]
    assert "tasks.update" not in permissions_of(conn, kim)
    assert roles.set_permission(conn, lab["admin"], role.id, tasks_update, True, CLIENT)
    assert not roles.set_permission(conn, lab["admin"], role.id, tasks_update, True, CLIENT)
    assert "tasks.update" in permissions_of(conn, kim)
    assert roles.set_permission(conn, lab["admin"], role.id, tasks_update, False, CLIENT)
    assert "tasks.update" not in permissions_of(conn, kim)
    audit = [
        (a["action"], a["resource_type"], a["resource_id"], a["before"], a["after"])
        for a in _audit(conn, lab["org"])
        if a["action"].startswith("role.permission")
    ]
    off = {"permission": "tasks.update", "granted": False}
    on = {"permission": "tasks.update", "granted": True}
    assert audit == [
        ("role.permission_granted", "Role", role.id, off, on),
        ("role.permission_revoked", "Role", role.id, on, off),
    ]
    assert conn.execute(
        "SELECT count(*) AS n FROM role_permissions WHERE role_id = %s", (role.id,)
    ).fetchone()["n"] == len(lab["permissions"])


def test_a_permission_added_to_the_catalogue_later_gets_its_row_on_first_grant(conn, lab) -> None:
    role = roles.create_role(conn, lab["owner"], name="디자이너", key="designer")
    new_id = conn.execute(
        "INSERT INTO permissions (name, resource, action) VALUES ('reports.read', 'reports', "
        "'read') RETURNING id::text AS id"
    ).fetchone()["id"]
    # Nobody in the organization holds it yet, so only a platform admin can grant it.
    _refused(
        conn,
        PermissionDenied,
        "cannot grant reports.read",
        lambda: roles.set_permission(conn, lab["owner"], role.id, new_id, True),
    )
    assert not roles.set_permission(conn, lab["owner"], role.id, new_id, False)
    root = User(
        **conn.execute(
            f"INSERT INTO users (email, encrypted_password, name, role) "
            f"VALUES ('root@example.com', %s, 'Root', 'admin') RETURNING {USER_COLUMNS}",
            (_hash(),),
        ).fetchone()
    )
    assert roles.set_permission(conn, Actor(root, lab["org"]), role.id, new_id, True)
    assert conn.execute(
        "SELECT granted FROM role_permissions WHERE role_id = %s AND permission_id = %s",
        (role.id, new_id),
    ).fetchall() == [{"granted": True}]


def test_a_role_with_active_members_is_kept_until_they_are_moved(conn, lab) -> None:
    owner = lab["owner"]
    role = roles.create_role(conn, owner, name="디자이너", key="designer")
    roles.set_permission(conn, owner, role.id, lab["permissions"]["tasks.read"], True)
    for who in ("kim", "lee"):
        admin.change_member_role(conn, owner, lab[f"{who}_membership"], "designer")
    _refused(
        conn,
        ValidationError,
        "^2 active members still have the role 디자이너; move them to another role first.$",
        lambda: roles.deactivate_role(conn, owner, role.id),
    )
    admin.change_member_role(conn, owner, lab["kim_membership"], "member")
    _refused(
        conn,
        ValidationError,
        "^1 active member still has the role 디자이너",
        lambda: roles.deactivate_role(conn, owner, role.id),
    )
    admin.deactivate_member(conn, owner, lab["lee_membership"])  # inactive members do not count
    assert not roles.deactivate_role(conn, owner, role.id, CLIENT).active
    assert roles.deactivate_role(conn, owner, role.id).active is False  # no-op, no audit
    _refused(
        conn,
        ValidationError,
        "role 디자이너 is deactivated",
        lambda: admin.change_member_role(conn, owner, lab["kim_membership"], "designer"),
    )
    _refused(
        conn,
        ValidationError,
        "role 디자이너 is deactivated",
        lambda: admin.reactivate_member(conn, owner, lab["lee_membership"]),
    )
    assert roles.reactivate_role(conn, owner, role.id, CLIENT).active
    admin.change_member_role(conn, owner, lab["kim_membership"], "designer")
    audit = [
        (a["action"], a["before"], a["after"])
        for a in _audit(conn, lab["org"])
        if a["action"] in ("role.deactivated", "role.reactivated")
    ]
    assert audit == [
        ("role.deactivated", {"active": True}, {"active": False}),
        ("role.reactivated", {"active": False}, {"active": True}),
    ]


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "key is empty"),
        ("Designer", "must start with a lowercase letter"),
        ("1st_team", "must start with a lowercase letter"),
        ("ui-team", "must start with a lowercase letter"),
        ("ui team", "must start with a lowercase letter"),
        ("디자이너", "must start with a lowercase letter"),
        ("a" * 101, "must start with a lowercase letter"),
        ("owner", "owner is a system role key"),
        ("viewer", "viewer is a system role key"),
    ],
)
def test_bad_role_keys_are_refused(conn, lab, key: str, message: str) -> None:
    _refused(
        conn,
        ValidationError,
        message,
        lambda: roles.create_role(conn, lab["admin"], name="디자이너", key=key),
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name is empty"),
        ("   ", "name is empty"),
        ("가" * 256, "longer than 255"),
        ("OWNER", "already has a role named OWNER"),
    ],
)
def test_bad_role_names_are_refused(conn, lab, name: str, message: str) -> None:
    _refused(
        conn,
        ValidationError,
        message,
        lambda: roles.create_role(conn, lab["admin"], name=name, key="designer"),
    )


def test_a_key_in_use_is_refused_even_by_a_deactivated_role(conn, lab) -> None:
    role = roles.create_role(conn, lab["admin"], name="디자이너", key="designer")
    _refused(
        conn,
        ValidationError,
        "key designer already exists",
        lambda: roles.create_role(conn, lab["admin"], name="다른 이름", key="designer"),
    )
    roles.deactivate_role(conn, lab["admin"], role.id)
    _refused(
        conn,
        ValidationError,
        "key designer already exists",
        lambda: roles.create_role(conn, lab["admin"], name="다른 이름", key="designer"),
    )
    other = roles.create_role(conn, lab["admin"], name="기획자", key="planner")
    _refused(
        conn,
        ValidationError,
        "already has a role named 디자이너",
        lambda: roles.rename_role(conn, lab["admin"], other.id, name="디자이너"),
    )


@pytest.mark.parametrize("key", ["owner", "admin", "member", "viewer"])
def test_system_roles_are_read_only(conn, lab, key: str) -> None:
    role_id, owner = lab["role_ids"][key], lab["owner"]
    tasks_delete = lab["permissions"]["tasks.delete"]
    for call in (
        lambda: roles.rename_role(conn, owner, role_id, name="새 이름"),
        lambda: roles.rename_role(conn, owner, role_id, name="x", description="y"),
        lambda: roles.deactivate_role(conn, owner, role_id),
        lambda: roles.reactivate_role(conn, owner, role_id),
        lambda: roles.set_permission(conn, owner, role_id, tasks_delete, True),
        lambda: roles.set_permission(conn, owner, role_id, tasks_delete, False),
    ):
        _refused(
            conn,
            ValidationError,
            "^System roles are read-only; create a dynamic role instead.$",
            call,
        )


def test_nobody_grants_a_permission_they_do_not_hold(conn, lab) -> None:
    role = roles.create_role(conn, lab["owner"], name="디자이너", key="designer")
    manage = lab["permissions"]["organizations.manage"]
    # An organization admin holds roles.update but not organizations.manage.
    _refused(
        conn,
        PermissionDenied,
        "^You cannot grant organizations.manage: you do not hold it yourself.$",
        lambda: roles.set_permission(conn, lab["admin"], role.id, manage, True),
    )
    assert roles.set_permission(conn, lab["owner"], role.id, manage, True)
    _refused(
        conn,
        PermissionDenied,
        "^You cannot assign the role 디자이너: it grants permissions you do not hold "
        r"\(organizations.manage\).$",
        lambda: admin.change_member_role(conn, lab["admin"], lab["kim_membership"], "designer"),
    )
    # Revoking what one does not hold takes nothing from anyone, and is allowed.
    assert roles.set_permission(conn, lab["admin"], role.id, manage, False)


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_unknown_ids_are_refused(conn, lab, bad_id: str) -> None:
    role = roles.create_role(conn, lab["owner"], name="디자이너", key="designer")
    owner, tasks_read = lab["owner"], lab["permissions"]["tasks.read"]
    for call in (
        lambda: roles.rename_role(conn, owner, bad_id, name="x"),
        lambda: roles.deactivate_role(conn, owner, bad_id),
        lambda: roles.set_permission(conn, owner, bad_id, tasks_read, True),
    ):
        _refused(conn, ValidationError, "^That role was not found in this organization.$", call)
    _refused(
        conn,
        ValidationError,
        "^That permission does not exist.$",
        lambda: roles.set_permission(conn, owner, role.id, bad_id, True),
    )
