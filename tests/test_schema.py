"""Migrations, indexes, validators and partitions against the real servers."""

from __future__ import annotations

import datetime as dt
import json

import psycopg
import pymongo
import pytest
from pymongo.errors import WriteError

from creatia_tui.data.migrations import load_migrations, migrate_postgres
from creatia_tui.data.mongo_schema import (
    apply_shard_keys,
    load_collection_specs,
    migrate_mongo,
)
from creatia_tui.errors import UserError

SEED_PG_INDEXES = {
    "idx_users_email", "idx_users_provider_uid", "idx_users_active_admin", "idx_users_name_trgm",
    "idx_organizations_subdomain", "idx_organizations_active", "idx_organizations_settings_gin",
    "idx_org_memberships_user", "idx_org_memberships_org", "idx_org_memberships_active",
    "idx_org_memberships_org_active", "idx_roles_organization", "idx_roles_system",
    "idx_permissions_resource_action", "idx_role_permissions_role",
    "idx_role_permissions_permission",
}
SEED_MONGO_INDEXES = {
    "tasks": {"idx_tasks_org_status_created", "idx_tasks_assignee_status", "idx_tasks_due_date",
              "idx_tasks_org_assignee_active"},
    "activity_logs": {"idx_activity_logs_ttl"},
    "user_snapshots": {"idx_user_snapshots_user_id"},
}


def _catalog(conn: psycopg.Connection) -> list[tuple]:
    """Everything a second migrate could change: tables, columns, indexes, functions, rows."""
    tables = conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "ORDER BY relname"
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
    ).fetchall()
    counts = conn.execute(
        "SELECT (SELECT count(*) FROM schema_migrations), (SELECT count(*) FROM permissions), "
        "(SELECT count(*) FROM system_role_grants)"
    ).fetchall()
    return [*tables, *indexes, *counts]


def test_migrations_apply_twice_without_change(empty_pg_dsn: str) -> None:
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        first = migrate_postgres(conn)
        assert first.applied == [f"{m.version}_{m.name}" for m in load_migrations()]
        before = _catalog(conn)
        second = migrate_postgres(conn)
        assert second.applied == []
        assert len(second.already) == len(first.applied)
        assert _catalog(conn) == before


def test_a_changed_migration_is_refused(empty_pg_dsn: str, tmp_path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_one.sql").write_text("CREATE TABLE t (id int);")
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        migrate_postgres(conn, folder)
        (folder / "0001_one.sql").write_text("CREATE TABLE t (id bigint);")
        with pytest.raises(UserError, match="changed after it was applied"):
            migrate_postgres(conn, folder)


def test_a_failing_migration_leaves_nothing_behind(empty_pg_dsn: str, tmp_path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "0001_ok.sql").write_text("CREATE TABLE ok (id int);")
    (folder / "0002_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    with psycopg.connect(empty_pg_dsn, autocommit=True) as conn:
        with pytest.raises(UserError, match="0002_broken failed"):
            migrate_postgres(conn, folder)
        assert conn.execute("SELECT to_regclass('ok'), to_regclass('half')").fetchone() == (
            "ok", None,
        )
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [("0001",)]


def test_every_seed_index_exists_in_postgres(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            ).fetchall()
        }
        partial = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_users_active_admin'"
        ).fetchone()[0]
        trgm = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_users_name_trgm'"
        ).fetchone()[0]
        gin = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_organizations_settings_gin'"
        ).fetchone()[0]
    assert names >= SEED_PG_INDEXES
    assert "WHERE" in partial and "'admin'" in partial and "active" in partial
    assert "gin_trgm_ops" in trgm
    assert "USING gin (settings)" in gin


def test_every_organization_gets_the_system_roles(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        org_id = conn.execute(
            "INSERT INTO organizations (name, subdomain) VALUES ('크리에이티아', 'creatia') "
            "RETURNING id"
        ).fetchone()[0]
        roles = dict(
            conn.execute(
                "SELECT r.key, count(*) FILTER (WHERE rp.granted) FROM roles r "
                "JOIN role_permissions rp ON rp.role_id = r.id WHERE r.organization_id = %s "
                "AND r.system_role GROUP BY r.key",
                (org_id,),
            ).fetchall()
        )
        total = conn.execute("SELECT count(*) FROM permissions").fetchone()[0]
        resources = {
            row[0] for row in conn.execute("SELECT DISTINCT resource FROM permissions")
        }
        viewer_writes = conn.execute(
            "SELECT count(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
            "JOIN permissions p ON p.id = rp.permission_id WHERE r.organization_id = %s "
            "AND r.key = 'viewer' AND rp.granted AND p.action <> 'read'",
            (org_id,),
        ).fetchone()[0]
    assert set(roles) == {"owner", "admin", "member", "viewer"}
    assert roles["owner"] == total
    assert roles["owner"] > roles["admin"] > roles["member"] > roles["viewer"] > 0
    assert viewer_writes == 0
    assert {"organizations", "members", "roles", "tasks", "sprints", "monitoring",
            "backups"} <= resources


def test_subdomain_must_be_a_dns_label(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        for bad in ("-acme", "acme-", "Acme", "ac_me", "a" * 64, ""):
            with pytest.raises(
                (psycopg.errors.CheckViolation, psycopg.errors.StringDataRightTruncation)
            ), conn.transaction():
                conn.execute(
                    "INSERT INTO organizations (name, subdomain) VALUES ('x', %s)", (bad,)
                )
        conn.execute("INSERT INTO organizations (name, subdomain) VALUES ('x', %s)", ("a" * 63,))


def test_audit_partitions_exist_ahead_and_writes_never_fail(pg_dsn: str) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    this_month = f"permission_audit_logs_{now:%Y_%m}"
    next_month_date = (now.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    next_month = f"permission_audit_logs_{next_month_date:%Y_%m}"
    with psycopg.connect(pg_dsn) as conn:
        parts = {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'permission_audit_logs'::regclass"
            )
        }
        assert {this_month, next_month, "permission_audit_logs_default"} <= parts

        # A write far outside the prepared months lands in the default partition...
        conn.execute(
            "INSERT INTO permission_audit_logs (organization_id, user_id, action, created_at) "
            "VALUES (gen_random_uuid(), gen_random_uuid(), 'role.updated', '2031-03-15Z')"
        )
        assert conn.execute(
            "SELECT tableoid::regclass::text FROM permission_audit_logs"
        ).fetchone()[0] == "permission_audit_logs_default"
        # ...and moves into its month when that month's partition is created.
        conn.execute("SELECT ensure_audit_log_partition('2031-03-01')")
        assert conn.execute(
            "SELECT tableoid::regclass::text, count(*) FROM permission_audit_logs GROUP BY 1"
        ).fetchall() == [("permission_audit_logs_2031_03", 1)]
        plan = conn.execute(
            "EXPLAIN SELECT * FROM permission_audit_logs WHERE created_at >= '2031-03-01Z' "
            "AND created_at < '2031-04-01Z'"
        ).fetchall()
        plan_text = "\n".join(row[0] for row in plan)
        assert "permission_audit_logs_2031_03" in plan_text
        assert this_month not in plan_text  # pruned


def test_mongo_schema_is_idempotent_and_has_every_seed_index(
    raw_mongo: pymongo.MongoClient, mongo_db_name: str
) -> None:
    db = raw_mongo[mongo_db_name]
    again = migrate_mongo(db)
    assert again.created_collections == [] and again.created_indexes == []
    assert again.rebuilt_indexes == []
    for collection, wanted in SEED_MONGO_INDEXES.items():
        indexes = {ix["name"]: ix for ix in db[collection].list_indexes()}
        assert wanted <= set(indexes), collection
    tasks = {ix["name"]: ix for ix in db.tasks.list_indexes()}
    assert tasks["idx_tasks_org_assignee_active"]["partialFilterExpression"] == {
        "status": {"$in": ["todo", "in_progress", "review"]}
    }
    ttl = {ix["name"]: ix for ix in db.activity_logs.list_indexes()}["idx_activity_logs_ttl"]
    assert ttl["expireAfterSeconds"] == 30 * 24 * 3600
    snap = {ix["name"]: ix for ix in db.user_snapshots.list_indexes()}
    assert snap["idx_user_snapshots_user_id"]["unique"] is True
    # The text index is optional: built where the server can, named and language-neutral.
    if "idx_tasks_text_search" in tasks:
        assert tasks["idx_tasks_text_search"]["default_language"] == "none"
    else:
        assert any("idx_tasks_text_search" in note for note in again.skipped)


def test_a_changed_index_definition_is_rebuilt(
    raw_mongo: pymongo.MongoClient, mongo_db_name: str
) -> None:
    db = raw_mongo[mongo_db_name]
    db.tasks.drop_index("idx_tasks_due_date")
    db.tasks.create_index([("due_date", -1)], name="idx_tasks_due_date")
    report = migrate_mongo(db)
    assert report.rebuilt_indexes == ["tasks.idx_tasks_due_date"]
    index = {ix["name"]: ix for ix in db.tasks.list_indexes()}["idx_tasks_due_date"]
    assert dict(index["key"]) == {"due_date": 1}


def _seed_example_task(org_id: str) -> dict:
    """The seed document's example task, field for field."""
    at = dt.datetime(2025, 9, 28, 8, 0, tzinfo=dt.timezone.utc)
    snapshot = {"user_id": "u-1", "name": "김개발", "email": "dev@example.com",
                "avatar_url": "https://example.com/a.png", "synced_at": at}
    return {
        "organization_id": org_id, "service_id": "svc-1", "sprint_id": "sprint-1",
        "created_by_id": "u-2", "task_id": "TASK-001", "external_id": "github-123",
        "title": "새로운 기능 개발", "description": "사용자 대시보드 개선", "task_type": "feature",
        "assignee_id": "u-1", "reviewer_id": "u-3", "team_id": "team-1",
        "assignee_snapshot": snapshot, "status": "in_progress", "priority": "high",
        "position": 100, "estimated_hours": 8.0, "actual_hours": 3.5, "remaining_hours": 4.5,
        "time_entries": [{"user_id": "u-1", "hours": 2.0, "description": "초기 설계",
                          "logged_at": at}],
        "due_date": at, "start_date": at, "completed_at": None,
        "tags": ["frontend", "ui", "dashboard"], "labels": ["urgent", "customer-request"],
        "created_at": at, "updated_at": at,
    }


def test_validators_accept_the_seed_examples(
    raw_mongo: pymongo.MongoClient, mongo_db_name: str
) -> None:
    db = raw_mongo[mongo_db_name]
    at = dt.datetime(2025, 9, 28, 14, 30, tzinfo=dt.timezone.utc)
    db.tasks.insert_one(_seed_example_task("org-1"))
    db.sprints.insert_one({
        "organization_id": "org-1", "milestone_id": "m-1", "name": "Sprint 2025-10",
        "goal": "사용자 경험 개선", "status": "active", "start_date": at, "end_date": at,
        "capacity": {"total_hours": 160, "allocated_hours": 120, "available_hours": 40},
        "metrics": {"total_tasks": 15, "completed_tasks": 8, "in_progress_tasks": 5,
                    "todo_tasks": 2, "completion_rate": 53.3,
                    "burndown_data": [{"date": "2025-09-23", "remaining_hours": 120}]},
        "retrospective": {"what_went_well": ["좋은 팀워크"], "what_to_improve": ["테스트 커버리지"],
                          "action_items": ["코드 리뷰 체크리스트 도입"]},
        "created_at": at, "updated_at": at,
    })
    db.activity_logs.insert_one({
        "organization_id": "org-1", "user_id": "u-1", "action": "task.status_changed",
        "resource_type": "Task", "resource_id": "task-uuid",
        "changes": {"status": {"from": "todo", "to": "in_progress"}},
        "metadata": {"user_agent": "Mozilla/5.0", "ip_address": "192.168.1.100",
                     "api_version": "v1", "client_type": "web"},
        "timestamp": at, "created_at": at,
    })
    db.user_snapshots.insert_one({
        "user_id": "u-1", "name": "김개발", "email": "dev@example.com",
        "avatar_url": None, "department": "플랫폼", "position": "엔지니어", "synced_at": at,
    })
    assert db.tasks.count_documents({"organization_id": "org-1"}) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"status": "doing"},                      # not one of the four statuses
        {"organization_id": None},                # no tenant
        {"title": ""},                            # empty title
        {"estimated_hours": "eight"},             # not a number
        {"time_entries": [{"user_id": "u", "hours": 0, "logged_at": None}]},
        {"tags": "frontend"},                     # not a list
        {"priority": "whenever"},
    ],
)
def test_validators_reject_a_malformed_task(
    raw_mongo: pymongo.MongoClient, mongo_db_name: str, change: dict
) -> None:
    db = raw_mongo[mongo_db_name]
    doc = _seed_example_task("org-1") | change
    with pytest.raises(WriteError) as excinfo:
        db.tasks.insert_one(doc)
    assert excinfo.value.code == 121  # DocumentValidationFailure
    assert db.tasks.count_documents({"organization_id": "org-1"}) == 0


def test_shard_keys_are_refused_on_a_server_that_is_not_mongos(
    raw_mongo: pymongo.MongoClient, mongo_db_name: str
) -> None:
    db = raw_mongo[mongo_db_name]
    before = json.dumps(
        {c: sorted(ix["name"] for ix in db[c].list_indexes()) for c in db.list_collection_names()}
    )
    with pytest.raises(UserError, match="not a mongos"):
        apply_shard_keys(db)
    after = json.dumps(
        {c: sorted(ix["name"] for ix in db[c].list_indexes()) for c in db.list_collection_names()}
    )
    assert before == after
    keys = {spec.name: spec.shard_key for spec in load_collection_specs()}
    assert keys["tasks"] == [("organization_id", 1), ("_id", 1)]
    assert keys["activity_logs"] == [("organization_id", 1), ("created_at", 1)]
