"""Sign-in and permission checks in the data layer, against the real PostgreSQL."""

from __future__ import annotations

import pytest

from creatia_tui.data.access import (
    Actor,
    SignInRefused,
    listed,
    organizations_for,
    permissions_of,
    refuse_escalation,
    require,
    sign_in,
)
from creatia_tui.data.db import Databases
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.users import create_user
from creatia_tui.errors import PermissionDenied

ROLES = ("owner", "admin", "member", "viewer")


@pytest.fixture
def people(dbs: Databases) -> dict[str, object]:
    with dbs.pg() as conn:
        org = create_organization(conn, name="크리에이티아 랩", subdomain="lab")
        other = create_organization(conn, name="Acme", subdomain="acme")
        users = {}
        for role in ROLES:
            user = create_user(
                conn, email=f"{role}@example.com", name=f"{role} 김", password="password-123"
            )
            add_membership(conn, organization_id=org.id, user_id=user.id, role=role)
            users[role] = user
        users["admin_platform"] = create_user(
            conn, email="root@example.com", name="Root", password="password-123", admin=True
        )
        users["lonely"] = create_user(
            conn, email="lonely@example.com", name="혼자", password="password-123"
        )
    return {"org": org, "other": other, **users}


def test_sign_in_returns_the_user_and_their_organizations(dbs, people) -> None:
    with dbs.pg() as conn:
        user, choices = sign_in(conn, "Viewer@Example.com", "password-123")
    assert user.email == "viewer@example.com"
    assert [(c.name, c.role) for c in choices] == [("크리에이티아 랩", "viewer")]


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("viewer@example.com", "wrong-password", "email or password is wrong"),
        ("nobody@example.com", "password-123", "email or password is wrong"),
        ("lonely@example.com", "password-123", "no active membership"),
    ],
)
def test_sign_in_refusals_are_one_sentence(dbs, people, email, password, message) -> None:
    with dbs.pg() as conn, pytest.raises(SignInRefused, match=message) as excinfo:
        sign_in(conn, email, password)
    assert "\n" not in str(excinfo.value)


def test_an_inactive_user_cannot_sign_in(dbs, people) -> None:
    with dbs.pg() as conn:
        conn.execute("UPDATE users SET active = false WHERE email = 'member@example.com'")
        with pytest.raises(SignInRefused, match="deactivated"):
            sign_in(conn, "member@example.com", "password-123")


def test_a_deactivated_membership_is_no_way_in(dbs, people) -> None:
    with dbs.pg() as conn:
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE user_id = %s",
            (people["member"].id,),
        )
        with pytest.raises(SignInRefused, match="no active membership"):
            sign_in(conn, "member@example.com", "password-123")


def test_platform_admins_may_pick_any_organization(dbs, people) -> None:
    with dbs.pg() as conn:
        choices = organizations_for(conn, people["admin_platform"])
        actor = Actor(people["admin_platform"], people["other"].id)
        require(conn, actor, "organizations.manage")
    assert {c.subdomain for c in choices} == {"lab", "acme"}


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        ("viewer", "tasks.read", True),
        ("viewer", "tasks.update", False),
        ("viewer", "members.create", False),
        ("member", "tasks.update", True),
        ("member", "roles.update", False),
        ("member", "members.delete", False),
        ("admin", "roles.update", True),
        ("admin", "organizations.manage", False),
        ("owner", "organizations.manage", True),
    ],
)
def test_require_follows_the_membership_role(dbs, people, role, permission, allowed) -> None:
    actor = Actor(people[role], people["org"].id)
    with dbs.pg() as conn:
        if allowed:
            require(conn, actor, permission)
        else:
            with pytest.raises(PermissionDenied, match=permission):
                require(conn, actor, permission)


def test_another_organizations_id_gives_nothing(dbs, people) -> None:
    actor = Actor(people["owner"], people["other"].id)  # owner of "lab", stranger to "acme"
    with dbs.pg() as conn:
        assert permissions_of(conn, actor) == frozenset()
        with pytest.raises(PermissionDenied):
            require(conn, actor, "tasks.read")


def test_a_revoked_grant_is_refused_at_once(dbs, people) -> None:
    actor = Actor(people["member"], people["org"].id)
    with dbs.pg() as conn:
        require(conn, actor, "tasks.delete")
        conn.execute(
            "UPDATE role_permissions rp SET granted = false FROM roles r, permissions p "
            "WHERE rp.role_id = r.id AND rp.permission_id = p.id AND r.key = 'member' "
            "AND r.organization_id = %s AND p.name = 'tasks.delete'",
            (people["org"].id,),
        )
        with pytest.raises(PermissionDenied):
            require(conn, actor, "tasks.delete")


def test_a_deactivated_organization_gives_its_members_nothing(dbs, people) -> None:
    owner = Actor(people["owner"], people["org"].id)
    with dbs.pg() as conn:
        conn.execute("UPDATE organizations SET active = false WHERE id = %s", (people["org"].id,))
        assert permissions_of(conn, owner) == frozenset()
        with pytest.raises(
            PermissionDenied,
            match=r"^This organization is deactivated; only a platform admin can reactivate it.$",
        ):
            require(conn, owner, "organizations.read")
        # A stranger learns nothing about its state.
        conn.execute("UPDATE organizations SET active = false WHERE id = %s", (people["other"].id,))
        with pytest.raises(PermissionDenied, match="is not granted to you"):
            require(conn, Actor(people["owner"], people["other"].id), "tasks.read")
        # A platform admin still holds everything there.
        root = Actor(people["admin_platform"], people["org"].id)
        held = require(conn, root, "organizations.manage")
        assert held == permissions_of(conn, root) and len(held) == 26


def test_require_returns_what_the_actor_holds(dbs, people) -> None:
    with dbs.pg() as conn:
        held = require(conn, Actor(people["viewer"], people["org"].id), "tasks.read")
    assert held == {
        "organizations.read",
        "members.read",
        "roles.read",
        "tasks.read",
        "sprints.read",
    }


def test_platform_admin_status_is_read_from_the_database(dbs, people) -> None:
    root = people["admin_platform"]
    with dbs.pg() as conn:
        conn.execute("UPDATE users SET role = 'user' WHERE id = %s", (root.id,))
        assert root.is_platform_admin  # the signed-in object is stale...
        with pytest.raises(PermissionDenied):  # ...the check is not
            require(conn, Actor(root, people["other"].id), "organizations.read")


def test_an_unknown_organization_is_refused(dbs, people) -> None:
    actor = Actor(people["admin_platform"], "00000000-0000-0000-0000-000000000000")
    with dbs.pg() as conn, pytest.raises(PermissionDenied, match="does not exist"):
        require(conn, actor, "tasks.read")


def test_escalation_messages_name_at_most_three_permissions() -> None:
    assert listed(["b.read", "a.read"]) == "a.read, b.read"
    assert listed(["d", "c", "b", "a"]) == "a, b, c, …"
    refuse_escalation(frozenset({"a", "b"}), "Designer", ["a"])
    with pytest.raises(PermissionDenied) as excinfo:
        refuse_escalation(frozenset({"a"}), "디자이너", ["a", "b", "c", "d", "e"])
    assert str(excinfo.value) == (
        "You cannot assign the role 디자이너: it grants permissions you do not hold (b, c, d, …)."
    )
