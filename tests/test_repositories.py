"""Repositories against the real servers: what they write and what they refuse."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from creatia_tui.data.audit import AuditCursor, ClientContext, page_audit, write_audit
from creatia_tui.data.db import Databases
from creatia_tui.data.organizations import (
    add_membership,
    create_organization,
    effective_permissions,
    list_organizations,
    list_permissions,
    list_roles,
    members_of_organization,
    memberships_of_user,
    parse_settings,
    subdomain_problem,
)
from creatia_tui.data.tasks import (
    ActivityRepository,
    SnapshotRepository,
    SprintRepository,
    TaskRepository,
    utcnow,
)
from creatia_tui.data.users import check_password, create_user, get_user_by_email
from creatia_tui.errors import ValidationError


@pytest.fixture
def org_and_users(dbs: Databases) -> dict[str, str]:
    with dbs.pg() as conn:
        org = create_organization(conn, name="크리에이티아 랩", subdomain="creatia-lab", plan="pro")
        other = create_organization(conn, name="Acme", subdomain="acme")
        viewer = create_user(conn, email="viewer@example.com", name="이서연", password="password-1")
        admin = create_user(conn, email="root@example.com", name="Root", password="password-2",
                            admin=True)
        add_membership(conn, organization_id=org.id, user_id=viewer.id, role="viewer")
    return {"org": org.id, "other": other.id, "viewer": viewer.id, "admin": admin.id}


@pytest.mark.parametrize(
    ("subdomain", "reason"),
    [("", "empty"), ("a" * 64, "longer than 63"), ("Acme", "lowercase"),
     ("-acme", "hyphen"), ("acme-", "hyphen"), ("ac_me", "only lowercase letters")],
)
def test_subdomain_problems_are_explained(subdomain: str, reason: str) -> None:
    assert reason in (subdomain_problem(subdomain) or "")


def test_valid_subdomains_pass() -> None:
    for ok in ("a", "acme", "acme-2", "a" * 63, "0day"):
        assert subdomain_problem(ok) is None


def test_settings_json_must_be_an_object() -> None:
    assert parse_settings('{"theme": "dark"}') == {"theme": "dark"}
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_settings("{theme: dark}")
    with pytest.raises(ValidationError, match="JSON object"):
        parse_settings("[1, 2]")


def test_duplicate_subdomain_is_refused_and_nothing_written(dbs: Databases) -> None:
    with dbs.pg() as conn:
        create_organization(conn, name="One", subdomain="dup")
        with pytest.raises(ValidationError, match="already taken"):
            create_organization(conn, name="Two", subdomain="dup")
        assert [o.name for o in list_organizations(conn)] == ["One"]


def test_organization_search_matches_korean_substrings(dbs, org_and_users) -> None:
    with dbs.pg() as conn:
        assert [o.subdomain for o in list_organizations(conn, search="이티아")] == ["creatia-lab"]
        assert [o.subdomain for o in list_organizations(conn, search="ACM")] == ["acme"]
        assert list_organizations(conn, search="100%") == []


def test_memberships_and_roles(dbs, org_and_users) -> None:
    ids = org_and_users
    with dbs.pg() as conn:
        roles = list_roles(conn, ids["org"])
        assert [r.key for r in roles][:4] == ["owner", "admin", "member", "viewer"]
        assert all(r.system_role for r in roles)
        assert [m.role for m in memberships_of_user(conn, ids["viewer"])] == ["viewer"]
        assert len(members_of_organization(conn, ids["org"])) == 1
        with pytest.raises(ValidationError, match="already a member"):
            add_membership(conn, organization_id=ids["org"], user_id=ids["viewer"])
        with pytest.raises(ValidationError, match="no role 'wizard'"):
            add_membership(conn, organization_id=ids["other"], user_id=ids["viewer"],
                           role="wizard")


def test_the_permission_catalogue_is_resource_by_action(dbs: Databases) -> None:
    with dbs.pg() as conn:
        catalogue = list_permissions(conn)
    names = [p.name for p in catalogue]
    assert len(names) == len(set(names)) == 26
    assert all(p.name == f"{p.resource}.{p.action}" for p in catalogue)
    assert {"monitoring.manage", "backups.restore", "roles.update", "audit.read"} <= set(names)


def test_effective_permissions_follow_the_membership_role(dbs, org_and_users) -> None:
    ids = org_and_users
    with dbs.pg() as conn:
        viewer = effective_permissions(conn, ids["viewer"], ids["org"])
        assert "tasks.read" in viewer and "tasks.update" not in viewer
        assert effective_permissions(conn, ids["viewer"], ids["other"]) == frozenset()
        admin = effective_permissions(conn, ids["admin"], ids["other"])
        assert "organizations.manage" in admin  # platform admins manage every organization
        conn.execute("UPDATE organization_memberships SET active = false WHERE user_id = %s",
                     (ids["viewer"],))
        assert effective_permissions(conn, ids["viewer"], ids["org"]) == frozenset()


def test_passwords_are_checked_against_the_hash(dbs, org_and_users) -> None:
    with dbs.pg() as conn:
        assert check_password(conn, "Viewer@Example.com", "password-1") is not None
        assert check_password(conn, "viewer@example.com", "wrong-password") is None
        assert check_password(conn, "nobody@example.com", "password-1") is None
        user = get_user_by_email(conn, "viewer@example.com")
    assert user is not None and user.name == "이서연"


def test_audit_rows_page_by_keyset(dbs, org_and_users) -> None:
    ids = org_and_users
    client = ClientContext(ip_address="10.0.0.7", user_agent="creatia-tui/test (tty)")
    with dbs.pg() as conn:
        for i in range(7):
            write_audit(conn, organization_id=ids["org"], user_id=ids["admin"],
                        action="role.updated" if i % 2 else "membership.created",
                        resource_type="Role", resource_id=None,
                        before={"n": i}, after={"n": i + 1}, client=client)
        first, cursor = page_audit(conn, ids["org"], limit=3)
        second, cursor2 = page_audit(conn, ids["org"], after=cursor, limit=3)
        third, cursor3 = page_audit(conn, ids["org"], after=cursor2, limit=3)
        only_roles, _ = page_audit(conn, ids["org"], action="role.updated", limit=10)
        this_month, _ = page_audit(conn, ids["org"], month=dt.date.today(), limit=10)
        other_org, _ = page_audit(conn, ids["other"], limit=10)
    seen = [e.id for e in first + second + third]
    assert len(seen) == 7 == len(set(seen))
    assert cursor3 is None and isinstance(cursor, AuditCursor)
    assert [e.changes["after"]["n"] for e in first] == [7, 6, 5]
    assert len(only_roles) == 3 and {e.action for e in only_roles} == {"role.updated"}
    assert len(this_month) == 7 and other_org == []
    assert first[0].ip_address == "10.0.0.7" and first[0].user_agent.startswith("creatia-tui")


def test_audit_paging_uses_the_index_and_prunes_partitions(dbs, org_and_users) -> None:
    ids = org_and_users
    with dbs.pg() as conn, conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
        plan = cur.execute(
            "EXPLAIN SELECT * FROM permission_audit_logs WHERE organization_id = %s "
            "AND created_at >= %s AND created_at < %s ORDER BY created_at DESC, id DESC LIMIT 50",
            (ids["org"], start, start + dt.timedelta(days=30)),
        ).fetchall()
    text = "\n".join(row[0] for row in plan)
    assert "permission_audit_logs_2026_11" in text
    assert "permission_audit_logs_2026_12" not in text


def _task(org: str, n: int, status: str = "todo", **extra) -> dict:
    now = utcnow()
    return {"organization_id": org, "task_id": f"TASK-{n:04d}", "title": f"작업 {n}",
            "status": status, "position": n * 1000.0, "created_at": now, "updated_at": now,
            "tags": [], "labels": []} | extra


def test_task_queries_stay_in_one_organization(dbs: Databases) -> None:
    dbs.mongo.tasks.insert_many(
        [_task("o1", 1, title="사용자 대시보드 개선", tags=["frontend"]),
         _task("o1", 2, status="done", description="대시보드 버그"),
         _task("o1", 3, position=500.0),
         _task("o2", 1, title="사용자 대시보드 개선")]
    )
    repo = TaskRepository(dbs.mongo)
    assert [t.task_id for t in repo.column("o1", "todo")] == ["TASK-0003", "TASK-0001"]
    assert repo.count_by_status("o1") == {"todo": 2, "in_progress": 0, "review": 0, "done": 1}
    assert {t.task_id for t in repo.search("o1", "대시보드")} == {"TASK-0001", "TASK-0002"}
    assert [t.task_id for t in repo.search("o1", "FRONT")] == ["TASK-0001"]
    assert repo.search("o1", ".*") == []  # the needle is literal, not a pattern
    task = repo.get_by_key("o1", "TASK-0001")
    assert task is not None and repo.get("o1", task.id) is not None
    assert repo.get("o2", task.id) is None  # another organization's id finds nothing
    with pytest.raises(ValidationError):
        repo.get("o1", "not-an-id")


def test_column_reads_use_the_board_index(dbs: Databases) -> None:
    dbs.mongo.tasks.insert_many([_task("o1", n) for n in range(1, 30)])
    plan = dbs.mongo.tasks.find({"organization_id": "o1", "status": "todo"}).sort(
        [("position", 1), ("_id", 1)]
    ).explain()
    text = str(plan["queryPlanner"]["winningPlan"])
    assert "IXSCAN" in text and "COLLSCAN" not in text


def test_activity_records_the_seed_shape_and_pages(dbs: Databases) -> None:
    repo = ActivityRepository(dbs.mongo)
    base = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    for i in range(5):
        repo.record(organization_id="o1", user_id="u1", action="task.status_changed",
                    resource_type="Task", resource_id=f"t{i}",
                    changes={"status": {"from": "todo", "to": "in_progress"}},
                    at=base + dt.timedelta(minutes=i % 3))
    first = repo.page("o1", limit=3)
    rest = repo.page("o1", after=(first[-1].created_at, first[-1].id), limit=3)
    assert len({a.id for a in first + rest}) == 5
    assert first[0].metadata["client_type"] == "tui"
    assert first[0].changes == {"status": {"from": "todo", "to": "in_progress"}}


def test_snapshots_upsert_and_sprints(dbs: Databases, org_and_users) -> None:
    with dbs.pg() as conn:
        user = get_user_by_email(conn, "viewer@example.com")
    assert user is not None
    snapshots = SnapshotRepository(dbs.mongo)
    assert snapshots.upsert([user]) == 1
    user.name = "이서연 (QA)"
    assert snapshots.upsert([user]) == 1
    snap = snapshots.get(user.id)
    assert snap is not None and snap.name == "이서연 (QA)" and snap.synced_at is not None
    assert dbs.mongo.user_snapshots.count_documents({"user_id": user.id}) == 1

    now = utcnow()
    dbs.mongo.sprints.insert_one({"organization_id": "o1", "name": "Sprint 1", "status": "active",
                                  "start_date": now, "end_date": now, "created_at": now,
                                  "updated_at": now})
    sprints = SprintRepository(dbs.mongo)
    [sprint] = sprints.list("o1", status="active")
    assert sprints.get("o1", sprint.id) is not None and sprints.get("o2", sprint.id) is None
