"""Organization and membership services: each change and its audit row, each refusal."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.rows import dict_row

from creatia_tui.data import admin, roles
from creatia_tui.data.access import Actor, sign_in
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.db import Databases
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.users import create_user, get_user
from creatia_tui.errors import PermissionDenied, ValidationError

CLIENT = ClientContext(ip_address="192.0.2.10", user_agent="creatia-tui/test (pts/3)")


@pytest.fixture
def lab(dbs: Databases) -> dict:
    with dbs.pg() as conn:
        org = create_organization(conn, name="크리에이티아 랩", subdomain="lab")
        people = {"org": org}
        for role in ("owner", "admin", "member", "viewer"):
            user = create_user(
                conn, email=f"{role}@example.com", name=f"{role} 박", password="password-123"
            )
            people[role] = user
            people[f"{role}_membership"] = add_membership(
                conn, organization_id=org.id, user_id=user.id, role=role
            )
        people["root"] = create_user(
            conn, email="root@example.com", name="Root", password="password-123", admin=True
        )
        people["newbie"] = create_user(
            conn, email="new@example.com", name="신입", password="password-123"
        )
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
        org = admin.create_organization(
            conn, lab["root"], name="새 조직", subdomain="new-org", plan="pro", client=CLIENT
        )
        assert _rows(
            conn, "SELECT role FROM organization_memberships WHERE organization_id = %s", org.id
        ) == [("owner",)]
        [(action, before, after, ip, agent)] = [tuple(r.values()) for r in _audit(conn, org.id)]
    assert action == "organization.created" and before is None
    assert after["subdomain"] == "new-org" and ip == "192.0.2.10" and "pts/3" in agent


def test_visible_organizations_follow_membership(dbs, lab) -> None:
    with dbs.pg() as conn:
        create_organization(conn, name="Acme", subdomain="acme")
        assert [o.subdomain for o in admin.visible_organizations(conn, lab["viewer"])] == ["lab"]
        assert {o.subdomain for o in admin.visible_organizations(conn, lab["root"])} == {
            "lab",
            "acme",
        }
        assert admin.visible_organizations(conn, lab["newbie"]) == []


def test_deactivate_and_reactivate_are_audited(dbs, lab) -> None:
    owner = Actor(lab["owner"], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(PermissionDenied):
            admin.set_organization_active(conn, Actor(lab["admin"], lab["org"].id), False)
        admin.set_organization_active(conn, owner, False, client=CLIENT)
        assert _rows(conn, "SELECT active FROM organizations WHERE id = %s", lab["org"].id) == [
            (False,)
        ]
        # Its owner holds nothing in it any more: only a platform admin brings it back.
        with pytest.raises(PermissionDenied, match="only a platform admin can reactivate it"):
            admin.set_organization_active(conn, owner, True, client=CLIENT)
        admin.set_organization_active(conn, Actor(lab["root"], lab["org"].id), True, client=CLIENT)
        actions = [r["action"] for r in _audit(conn, lab["org"].id)]
    assert actions == ["organization.deactivated", "organization.reactivated"]


def test_members_are_added_and_their_role_changed_with_audit(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        membership = admin.add_member(conn, actor, lab["newbie"].id, "viewer", client=CLIENT)
        admin.change_member_role(conn, actor, membership.id, "member", client=CLIENT)
        assert _rows(
            conn, "SELECT role FROM organization_memberships WHERE id = %s", membership.id
        ) == [("member",)]
        audit = [
            (r["action"], r["role"])
            for r in conn.execute(
                "SELECT action, changes->'after'->>'role' AS role FROM permission_audit_logs "
                "WHERE organization_id = %s ORDER BY created_at",
                (lab["org"].id,),
            ).fetchall()
        ]
    assert audit == [("membership.created", "viewer"), ("membership.role_changed", "member")]


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_manage_members_and_nothing_is_written(dbs, lab, role) -> None:
    actor = Actor(lab[role], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(PermissionDenied):
            admin.add_member(conn, actor, lab["newbie"].id)
        with pytest.raises(PermissionDenied):
            admin.change_member_role(conn, actor, lab["viewer_membership"].id, "admin")
        with pytest.raises(PermissionDenied):
            admin.deactivate_member(conn, actor, lab["viewer_membership"].id)
        assert _rows(conn, "SELECT count(*) FROM organization_memberships") == [(4,)]
        assert _rows(
            conn,
            "SELECT role, active FROM organization_memberships WHERE id = %s",
            lab["viewer_membership"].id,
        ) == [("viewer", True)]
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
        assert _rows(
            conn, "SELECT role FROM organization_memberships WHERE id = %s", owner_membership
        ) == [("admin",)]


def test_another_organizations_membership_is_out_of_reach(dbs, lab) -> None:
    with dbs.pg() as conn:
        other = create_organization(conn, name="Acme", subdomain="acme")
        stranger = add_membership(
            conn, organization_id=other.id, user_id=lab["newbie"].id, role="member"
        )
        with pytest.raises(ValidationError, match="not found in this organization"):
            admin.deactivate_member(conn, Actor(lab["owner"], lab["org"].id), stranger.id)
        assert _rows(
            conn, "SELECT active FROM organization_memberships WHERE id = %s", stranger.id
        ) == [(True,)]


def test_an_unknown_role_is_refused_and_nothing_written(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(ValidationError, match="no role 'wizard'"):
            admin.change_member_role(conn, actor, lab["member_membership"].id, "wizard")
        assert _rows(
            conn,
            "SELECT role FROM organization_memberships WHERE id = %s",
            lab["member_membership"].id,
        ) == [("member",)]
        assert _audit(conn, lab["org"].id) == []


# ---------------------------------------------------------------- organizations screen
def test_organization_listings_count_members_search_and_take_one_query(dbs, lab) -> None:
    with dbs.pg() as conn:
        create_organization(conn, name="Acme", subdomain="acme")
    seen: list[str] = []

    class Recording(psycopg.Cursor):  # a real cursor that notes what it sends
        def execute(self, query, params=None, **kwargs):  # type: ignore[override]
            seen.append(str(query))
            return super().execute(query, params, **kwargs)

    with dbs.connect_pg(row_factory=dict_row, cursor_factory=Recording) as conn:
        listed = admin.list_organizations(conn, lab["root"])
        assert len(seen) == 1
        assert [(o.subdomain, o.active_member_count) for o in listed] == [("acme", 0), ("lab", 4)]
        assert [o.subdomain for o in admin.list_organizations(conn, lab["root"], "이티아")] == [
            "lab"
        ]
        assert [o.subdomain for o in admin.list_organizations(conn, lab["root"], "ACM")] == ["acme"]
        assert admin.list_organizations(conn, lab["root"], "100%") == []
        assert [o.name for o in admin.list_organizations(conn, lab["viewer"])] == [
            "크리에이티아 랩"
        ]
        assert admin.list_organizations(conn, lab["newbie"]) == []


def test_update_organization_audits_the_changed_fields_only(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        org = admin.update_organization(
            conn,
            actor,
            name=" 크리에이티아 랩 (서울) ",
            subdomain="lab",
            plan="pro",
            settings='{"timezone": "Asia/Seoul"}',
            client=CLIENT,
        )
        assert (org.name, org.subdomain, org.plan, org.settings) == (
            "크리에이티아 랩 (서울)",
            "lab",
            "pro",
            {"timezone": "Asia/Seoul"},
        )
        # The same values again change nothing and write no audit row.
        assert (
            admin.update_organization(
                conn, actor, name="크리에이티아 랩 (서울)", settings={"timezone": "Asia/Seoul"}
            )
            == org
        )
        [(action, before, after, ip, _)] = [tuple(r.values()) for r in _audit(conn, org.id)]
    assert action == "organization.updated" and ip == "192.0.2.10"
    assert before == {"name": "크리에이티아 랩", "plan": "free", "settings": {}}
    assert after == {
        "name": "크리에이티아 랩 (서울)",
        "plan": "pro",
        "settings": {"timezone": "Asia/Seoul"},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"subdomain": "acme"}, "^The subdomain acme is already taken.$"),
        ({"subdomain": "Lab"}, "lowercase"),
        ({"subdomain": "-lab"}, "hyphen"),
        ({"name": "   "}, "name is empty"),
        ({"plan": "gold"}, "Unknown plan 'gold'"),
        ({"settings": "{oops"}, "not valid JSON"),
        ({"settings": "[1, 2]"}, "JSON object"),
    ],
)
def test_update_organization_refusals_write_nothing(dbs, lab, change, message) -> None:
    actor = Actor(lab["owner"], lab["org"].id)
    with dbs.pg() as conn:
        create_organization(conn, name="Acme", subdomain="acme")
        before = _rows(conn, "SELECT * FROM organizations ORDER BY id")
        with pytest.raises(ValidationError, match=message):
            admin.update_organization(conn, actor, **change)
        assert _rows(conn, "SELECT * FROM organizations ORDER BY id") == before
        assert _audit(conn, lab["org"].id) == []


# ---------------------------------------------------------------- members screen
def test_members_are_listed_active_first_then_by_name(dbs, lab) -> None:
    owner = Actor(lab["owner"], lab["org"].id)
    with dbs.pg() as conn:
        admin.deactivate_member(conn, owner, lab["admin_membership"].id)
        rows = admin.list_members(conn, Actor(lab["viewer"], lab["org"].id))
        assert [(r.name, r.role_key, r.role_name, r.active) for r in rows] == [
            ("member 박", "member", "Member", True),
            ("owner 박", "owner", "Owner", True),
            ("viewer 박", "viewer", "Viewer", True),
            ("admin 박", "admin", "Admin", False),
        ]
        assert rows[0].email == "member@example.com" and rows[0].user_active
        assert rows[0].membership_id == lab["member_membership"].id
        assert [r.email for r in admin.list_members(conn, owner, "OWNER@")] == ["owner@example.com"]
        assert len(admin.list_members(conn, owner, "박")) == 4
        assert admin.list_members(conn, owner, "%") == []


def test_adding_by_email_creates_or_reactivates_the_membership(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        with pytest.raises(
            ValidationError,
            match=r"^No user has the email ghost@example.com; create the user instead.$",
        ):
            admin.add_member_by_email(conn, actor, " Ghost@Example.com ")
        with pytest.raises(ValidationError, match="not a valid email"):
            admin.add_member_by_email(conn, actor, "not-an-email")
        assert _audit(conn, lab["org"].id) == []
        first = admin.add_member_by_email(conn, actor, "New@Example.com", "viewer", CLIENT)
        with pytest.raises(ValidationError, match="already a member"):
            admin.add_member_by_email(conn, actor, "new@example.com", "viewer")
        admin.deactivate_member(conn, actor, first.id)
        again = admin.add_member_by_email(conn, actor, "new@example.com", "member", CLIENT)
        assert (again.id, again.active, again.role) == (first.id, True, "member")
        assert _rows(
            conn,
            "SELECT count(*) FROM organization_memberships WHERE user_id = %s",
            lab["newbie"].id,
        ) == [(1,)]
        audit = [(r["action"], r["before"], r["after"]) for r in _audit(conn, lab["org"].id)]
    assert [a for a, _, _ in audit] == [
        "membership.created",
        "membership.deactivated",
        "membership.reactivated",
    ]
    assert audit[2][1:] == ({"active": False, "role": "viewer"}, {"active": True, "role": "member"})


def test_a_deactivated_account_is_not_added(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        conn.execute("UPDATE users SET active = false WHERE id = %s", (lab["newbie"].id,))
        with pytest.raises(ValidationError, match=r"account new@example\.com is deactivated"):
            admin.add_member(conn, actor, lab["newbie"].id, "viewer")
        with pytest.raises(ValidationError, match="That user does not exist"):
            admin.add_member(conn, actor, "00000000-0000-0000-0000-000000000000", "viewer")
        assert _audit(conn, lab["org"].id) == []


def test_create_user_and_add_member_writes_both_with_two_audit_rows(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    with dbs.pg() as conn:
        user, membership = admin.create_user_and_add_member(
            conn,
            actor,
            email=" Fresh@Example.com ",
            name=" 새 사람 ",
            password="correct horse 배터리",
            role="member",
            client=CLIENT,
        )
        assert (user.email, user.name, user.role) == ("fresh@example.com", "새 사람", "user")
        assert (membership.user_id, membership.role) == (user.id, "member")
        [(stored,)] = _rows(conn, "SELECT encrypted_password FROM users WHERE id = %s", user.id)
        assert stored.startswith("$argon2id$")
        audit = _audit(conn, lab["org"].id)
        assert [r["action"] for r in audit] == ["user.created", "membership.created"]
        text = str([r["after"] for r in audit])
        assert "password" not in text and "argon2" not in text and "배터리" not in text
        assert audit[0]["after"]["email"] == "fresh@example.com"
        signed_in, choices = sign_in(conn, "fresh@example.com", "correct horse 배터리")
    assert signed_in.id == user.id and [c.role for c in choices] == ["member"]


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"email": "owner@example.com"}, ValidationError, "already exists; add them by email"),
        ({"email": "nope"}, ValidationError, "not a valid email"),
        ({"password": "short"}, ValidationError, "too short"),
        ({"name": " "}, ValidationError, "name is empty"),
        ({"role": "wizard"}, ValidationError, "no role 'wizard'"),
        ({"role": "owner"}, PermissionDenied, "cannot assign the role Owner"),
    ],
)
def test_create_user_and_add_member_refusals_write_nothing(
    dbs, lab, fields, error, message
) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    values = {
        "email": "fresh@example.com",
        "name": "새 사람",
        "password": "password-123",
        "role": "member",
        **fields,
    }
    with dbs.pg() as conn:
        counts = _rows(
            conn,
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM organization_memberships)",
        )
        with pytest.raises(error, match=message):
            admin.create_user_and_add_member(conn, actor, **values)
        assert (
            _rows(
                conn,
                "SELECT (SELECT count(*) FROM users), "
                "(SELECT count(*) FROM organization_memberships)",
            )
            == counts
        )
        assert _audit(conn, lab["org"].id) == []


def test_nobody_hands_out_or_touches_more_than_they_hold(dbs, lab) -> None:
    org_admin = Actor(lab["admin"], lab["org"].id)  # everything but organizations.manage
    owner_membership = lab["owner_membership"].id
    with dbs.pg() as conn:
        with pytest.raises(
            PermissionDenied,
            match=(
                r"^You cannot assign the role Owner: it grants permissions you do not hold "
                r"\(organizations.manage\).$"
            ),
        ):
            admin.add_member(conn, org_admin, lab["newbie"].id, "owner")
        with pytest.raises(PermissionDenied, match="change the role of a member whose role Owner"):
            admin.change_member_role(conn, org_admin, owner_membership, "viewer")
        with pytest.raises(PermissionDenied, match="deactivate a member whose role Owner"):
            admin.deactivate_member(conn, org_admin, owner_membership)
        assert _audit(conn, lab["org"].id) == []
        # A recruiter may add members, but only with roles that grant nothing more than theirs.
        owner = Actor(lab["owner"], lab["org"].id)
        recruiter = roles.create_role(conn, owner, name="채용 담당", key="recruiter")
        for name in ("members.read", "members.create"):
            permission_id = _rows(conn, "SELECT id::text FROM permissions WHERE name = %s", name)[
                0
            ][0]
            roles.set_permission(conn, owner, recruiter.id, permission_id, True)
        admin.add_member(conn, owner, lab["newbie"].id, "recruiter")
        with pytest.raises(
            PermissionDenied,
            match=(
                r"^You cannot assign the role Viewer: it grants permissions you do not hold "
                r"\(organizations.read, roles.read, sprints.read, …\).$"
            ),
        ):
            admin.add_member(conn, Actor(lab["newbie"], lab["org"].id), lab["root"].id, "viewer")


def test_reactivate_member_refuses_a_deactivated_account(dbs, world) -> None:
    with dbs.pg() as conn:
        owner = get_user(conn, world.minjun)
        assert owner is not None
        actor = Actor(owner, world.lab)
        membership = world.memberships[(world.gone, world.lab)]
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE id = %s", (membership,)
        )
        conn.commit()
        with pytest.raises(ValidationError, match=r"^The account gone@example.com is deactivated"):
            admin.reactivate_member(conn, actor, membership, CLIENT)
        active = conn.execute(
            "SELECT active FROM organization_memberships WHERE id = %s", (membership,)
        ).fetchone()
        audited = conn.execute(
            "SELECT count(*) AS n FROM permission_audit_logs WHERE resource_id = %s",
            (membership,),
        ).fetchone()
    assert active is not None and active["active"] is False
    assert audited is not None and audited["n"] == 0


def test_reactivate_member_restores_the_role_it_had(dbs, lab) -> None:
    actor = Actor(lab["admin"], lab["org"].id)
    membership = lab["member_membership"].id
    with dbs.pg() as conn:
        admin.deactivate_member(conn, actor, membership)
        restored = admin.reactivate_member(conn, actor, membership, CLIENT)
        assert (restored.active, restored.role) == (True, "member")
        assert admin.reactivate_member(conn, actor, membership) == restored  # no-op
        audit = [(r["action"], r["after"]) for r in _audit(conn, lab["org"].id)]
    assert audit == [
        ("membership.deactivated", {"active": False}),
        ("membership.reactivated", {"active": True, "role": "member"}),
    ]
