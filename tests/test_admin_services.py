"""Organization and membership services: each change and its audit row, each refusal."""

from __future__ import annotations

import pytest

from creatia_tui.data import admin
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.db import Databases
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.users import create_user
from creatia_tui.errors import PermissionDenied, ValidationError

CLIENT = ClientContext(ip_address="192.0.2.10", user_agent="creatia-tui/test (pts/3)")


@pytest.fixture
def lab(dbs: Databases) -> dict:
    with dbs.pg() as conn:
        org = create_organization(conn, name="크리에이티아 랩", subdomain="lab")
        people = {"org": org}
        for role in ("owner", "admin", "member", "viewer"):
            user = create_user(conn, email=f"{role}@example.com", name=f"{role} 박",
                               password="password-123")
            people[role] = user
            people[f"{role}_membership"] = add_membership(
                conn, organization_id=org.id, user_id=user.id, role=role
            )
        people["root"] = create_user(conn, email="root@example.com", name="Root",
                                     password="password-123", admin=True)
        people["newbie"] = create_user(conn, email="new@example.com", name="신입",
                                       password="password-123")
    return people


def _audit(conn, org_id: str) -> list[tuple]:
    return conn.execute(
        "SELECT action, changes->'before' AS before, changes->'after' AS after, "
        "host(ip_address) AS ip, user_agent "
        "FROM permission_audit_logs WHERE organization_id = %s ORDER BY created_at",
        (org_id,),
    ).fetchall()


def _rows(conn, sql: str, *params) -> list:
    return [tuple(r.values()) for r in conn.execute(sql, params).fetchall()]


def test_only_platform_admins_create_organizations_and_become_owner(dbs, lab) -> None:
    with dbs.pg() as conn:
        with pytest.raises(PermissionDenied):
            admin.create_organization(conn, lab["owner"], name="X", subdomain="x")
        with pytest.raises(ValidationError, match="hyphen"):
            admin.create_organization(conn, lab["root"], name="X", subdomain="x-")
        assert _rows(conn, "SELECT count(*) FROM organizations") == [(1,)]
        org = admin.create_organization(conn, lab["root"], name="새 조직", subdomain="new-org",
                                        plan="pro", client=CLIENT)
        assert _rows(conn, "SELECT role FROM organization_memberships WHERE organization_id = %s",
                     org.id) == [("owner",)]
        [(action, before, after, ip, agent)] = [tuple(r.values()) for r in _audit(conn, org.id)]
    assert action == "organization.created" and before is None
    assert after["subdomain"] == "new-org" and ip == "192.0.2.10" and "pts/3" in agent


def test_visible_organizations_follow_membership(dbs, lab) -> None:
    with dbs.pg() as conn:
        create_organization(conn, name="Acme", subdomain="acme")
        assert [o.subdomain for o in admin.visible_organizations(conn, lab["viewer"])] == ["lab"]
        assert {o.subdomain for o in admin.visible_organizations(conn, lab["root"])} == {
            "lab", "acme",
        }
        assert admin.visible_organizations(conn, lab["newbie"]) == []


def test_deactivate_and_reactivate_are_audited(dbs, lab) -> None:
    owner = Actor(lab["owner"], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(PermissionDenied):
            admin.set_organization_active(conn, Actor(lab["admin"], lab["org"].id), False)
        admin.set_organization_active(conn, owner, False, client=CLIENT)
        assert _rows(conn, "SELECT active FROM organizations WHERE id = %s",
                     lab["org"].id) == [(False,)]
        admin.set_organization_active(conn, owner, True, client=CLIENT)
        actions = [r["action"] for r in _audit(conn, lab["org"].id)]
    assert actions == ["organization.deactivated", "organization.reactivated"]


def test_members_are_added_and_their_role_changed_with_audit(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        membership = admin.add_member(conn, actor, lab["newbie"].id, "viewer", client=CLIENT)
        admin.change_member_role(conn, actor, membership.id, "member", client=CLIENT)
        assert _rows(conn, "SELECT role FROM organization_memberships WHERE id = %s",
                     membership.id) == [("member",)]
        audit = [(r["action"], r["role"]) for r in conn.execute(
            "SELECT action, changes->'after'->>'role' AS role FROM permission_audit_logs "
            "WHERE organization_id = %s ORDER BY created_at", (lab["org"].id,)).fetchall()]
    assert audit == [("membership.created", "viewer"), ("membership.role_changed", "member")]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_members_and_nothing_is_written(
    dbs, lab, role
) -> None:
    actor = Actor(lab[role], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(PermissionDenied):
            admin.add_member(conn, actor, lab["newbie"].id)
        with pytest.raises(PermissionDenied):
            admin.change_member_role(conn, actor, lab["viewer_membership"].id, "admin")
        with pytest.raises(PermissionDenied):
            admin.deactivate_member(conn, actor, lab["viewer_membership"].id)
        assert _rows(conn, "SELECT count(*) FROM organization_memberships") == [(4,)]
        assert _rows(conn, "SELECT role, active FROM organization_memberships WHERE id = %s",
                     lab["viewer_membership"].id) == [("viewer", True)]
        assert _audit(conn, lab["org"].id) == []


def test_the_last_active_owner_can_be_neither_demoted_nor_removed(dbs, lab) -> None:
    actor = Actor(lab["owner"], lab["org"].id)
    owner_membership = lab["owner_membership"].id
    with dbs.pg() as conn:
        with pytest.raises(ValidationError, match="last active owner"):
            admin.change_member_role(conn, actor, owner_membership, "admin")
        with pytest.raises(ValidationError, match="last active owner"):
            admin.deactivate_member(conn, actor, owner_membership)
        assert _audit(conn, lab["org"].id) == []
        # With a second owner, the first may step down.
        admin.change_member_role(conn, actor, lab["admin_membership"].id, "owner")
        admin.change_member_role(conn, actor, owner_membership, "admin")
        assert _rows(conn, "SELECT role FROM organization_memberships WHERE id = %s",
                     owner_membership) == [("admin",)]


def test_another_organizations_membership_is_out_of_reach(dbs, lab) -> None:
    with dbs.pg() as conn:
        other = create_organization(conn, name="Acme", subdomain="acme")
        stranger = add_membership(conn, organization_id=other.id, user_id=lab["newbie"].id,
                                  role="member")
        with pytest.raises(ValidationError, match="does not exist in this organization"):
            admin.deactivate_member(conn, Actor(lab["owner"], lab["org"].id), stranger.id)
        assert _rows(conn, "SELECT active FROM organization_memberships WHERE id = %s",
                     stranger.id) == [(True,)]


def test_an_unknown_role_is_refused_and_nothing_written(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(ValidationError, match="no role 'wizard'"):
            admin.change_member_role(conn, actor, lab["member_membership"].id, "wizard")
        assert _rows(conn, "SELECT role FROM organization_memberships WHERE id = %s",
                     lab["member_membership"].id) == [("member",)]
        assert _audit(conn, lab["org"].id) == []
