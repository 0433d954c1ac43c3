"""The seed against real servers: counts, consistency, determinism, the demo admin, refusals."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pymongo
import pytest
from psycopg.rows import dict_row

from creatia_tui.data.audit import AUDIT_ACTIONS
from creatia_tui.data.db import Databases
from creatia_tui.data.models import TASK_STATUSES
from creatia_tui.data.mongo_schema import load_collection_specs, migrate_mongo
from creatia_tui.data.passwords import verify_password
from creatia_tui.errors import UserError
from creatia_tui.ops import consistency, sync
from creatia_tui.ops import seed as seed_module
from creatia_tui.ops.seed import (
    DEMO_ADMIN_EMAIL,
    SeedOptions,
    SeedReport,
    default_now,
    is_seeded,
    seed,
)
from tests.conftest import ServerInfo, scratch_database

# The seed's own anchor (today, 09:00 UTC): its activity logs are then younger than the 30-day TTL,
# so the server's TTL sweeper (every few minutes) cannot delete them in the middle of a test.
NOW = default_now()
SMALL = {"orgs": 2, "users": 12, "tasks": 60, "activity": 100}
HANGUL = re.compile("[\uac00-\ud7a3]")
MONGO_COLLECTIONS = ("user_snapshots", "tasks", "sprints", "activity_logs")


def small(**overrides: Any) -> SeedOptions:
    return SeedOptions(**{**SMALL, "now": NOW, **overrides})


@pytest.fixture
def pg(pg_dsn: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture
def seeded(
    pg: psycopg.Connection[dict[str, Any]], dbs: Databases, mongo_db_name: str,
    raw_mongo: pymongo.MongoClient,
) -> tuple[SeedReport, psycopg.Connection[dict[str, Any]], pymongo.database.Database]:
    """A small seed written through the monitored client (its queries must name the tenant)."""
    report = seed(pg, dbs.mongo, small())
    return report, pg, raw_mongo[mongo_db_name]


@pytest.fixture
def second_target(
    servers: ServerInfo, pg_template: str, raw_mongo: pymongo.MongoClient
) -> Iterator[tuple[str, str]]:
    """Another fresh pair of databases (PostgreSQL DSN, MongoDB database name)."""
    name = f"creatia_seed_{uuid.uuid4().hex[:12]}"
    migrate_mongo(raw_mongo[name])
    try:
        with scratch_database(servers, pg_template) as dsn:
            yield dsn, name
    finally:
        raw_mongo.drop_database(name)


def count(conn: psycopg.Connection[dict[str, Any]], sql: str) -> int:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return int(next(iter(row.values())))


# ---------------------------------------------------------------- counts
def test_small_seed_writes_the_expected_counts(seeded: Any) -> None:
    report, pg, mongo = seeded
    users = SMALL["users"] + 1  # and the demo admin
    assert (report.organizations, report.users, report.tasks, report.activity_logs) == (
        2, users, 60, 100)
    assert report.sprints == 4 and report.snapshots == users
    assert report.bulk_collections == []
    assert count(pg, "SELECT count(*) FROM organizations") == 2
    assert count(pg, "SELECT count(*) FROM users") == users
    assert count(pg, "SELECT count(*) FROM organization_memberships") == report.memberships
    # Every generated person belongs somewhere; the admin belongs everywhere.
    assert count(pg, "SELECT count(DISTINCT user_id) FROM organization_memberships") == users
    # Four system roles from the trigger and two dynamic ones, each with a row per permission.
    assert count(pg, "SELECT count(*) FROM roles") == 2 * 6
    assert count(pg, "SELECT count(*) FROM roles WHERE NOT system_role") == 2 * 2
    permissions = count(pg, "SELECT count(*) FROM permissions")
    assert count(pg, "SELECT count(*) FROM role_permissions") == 2 * 6 * permissions
    assert count(pg, "SELECT count(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
                     "WHERE NOT r.system_role AND rp.granted") > 0
    assert count(pg, "SELECT count(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
                     "WHERE NOT r.system_role AND NOT rp.granted") > 0
    assert count(pg, "SELECT count(*) FROM permission_audit_logs") > 0
    # Audit rows sit in their monthly partitions, none in the default one.
    assert count(pg, "SELECT count(*) FROM permission_audit_logs_default") == 0
    assert count(pg, "SELECT count(DISTINCT tableoid) FROM permission_audit_logs") == 2
    # The seed speaks the services' audit vocabulary, so the audit screen's filter finds it.
    rows = pg.execute("SELECT DISTINCT action FROM permission_audit_logs").fetchall()
    assert {row["action"] for row in rows} <= set(AUDIT_ACTIONS)
    assert report.pg_rows["users"] == users
    for name, expected in zip(MONGO_COLLECTIONS, (users, 60, 4, 100), strict=True):
        assert mongo[name].count_documents({}) == expected, name


def test_every_document_passes_its_validator(seeded: Any) -> None:
    _, _, mongo = seeded
    for spec in load_collection_specs():
        assert mongo[spec.name].count_documents({"$nor": [spec.validator]}) == 0, spec.name


# ---------------------------------------------------------------- consistency
def test_tasks_are_consistent(seeded: Any) -> None:
    _, pg, mongo = seeded
    members: dict[str, set[str]] = defaultdict(set)
    for row in pg.execute("SELECT organization_id::text AS org, user_id::text AS user_id "
                          "FROM organization_memberships"):
        members[row["org"]].add(row["user_id"])
    sprints = {str(s["_id"]): s for s in mongo.sprints.find()}
    tasks = list(mongo.tasks.find())
    assert {t["status"] for t in tasks} == set(TASK_STATUSES)
    assert any(t["assignee_id"] is None for t in tasks)
    assert any(t["sprint_id"] for t in tasks) and any(not t["sprint_id"] for t in tasks)
    positions: dict[tuple[str, str], list[float]] = defaultdict(list)
    numbers: dict[str, list[int]] = defaultdict(list)
    overdue = this_week = 0
    for t in tasks:
        org = t["organization_id"]
        assert (t["status"] == "done") == (t["completed_at"] is not None), t["task_id"]
        entries = t["time_entries"]
        assert all(0 < e["hours"] <= 24 for e in entries)
        assert t["actual_hours"] == sum(e["hours"] for e in entries)
        assert t["remaining_hours"] == max(t["estimated_hours"] - t["actual_hours"], 0)
        assert t["status"] != "todo" or t["actual_hours"] == 0
        assert t["created_at"] <= t["updated_at"] <= NOW
        assert t["_id"].generation_time == t["created_at"]
        if t["completed_at"] is not None:
            assert t["start_date"] <= t["completed_at"] <= NOW
        for role in ("assignee", "reviewer"):
            if t[f"{role}_id"] is None:
                assert t[f"{role}_snapshot"] is None
            else:
                assert t[f"{role}_id"] in members[org]
                assert t[f"{role}_snapshot"]["user_id"] == t[f"{role}_id"]
        assert t["created_by_id"] in members[org]
        if t["sprint_id"]:
            assert sprints[t["sprint_id"]]["organization_id"] == org
        if t["status"] != "done" and t["due_date"] is not None:
            overdue += t["due_date"] < NOW
            this_week += NOW <= t["due_date"] + timedelta(days=1) <= NOW + timedelta(days=7)
        positions[(org, t["status"])].append(t["position"])
        numbers[org].append(int(t["task_id"].removeprefix("TASK-")))
    assert overdue and this_week
    for column in positions.values():
        assert sorted(column) == [1000.0 * (k + 1) for k in range(len(column))]
    for taken in numbers.values():
        assert sorted(taken) == list(range(1, len(taken) + 1))
    assert min(min(taken) for taken in numbers.values()) == 1


def test_sprints_match_their_tasks(seeded: Any) -> None:
    _, _, mongo = seeded
    for sprint in mongo.sprints.find():
        tasks = list(mongo.tasks.find({"sprint_id": str(sprint["_id"])}))
        metrics = sprint["metrics"]
        by_status = defaultdict(int)
        for t in tasks:
            by_status[t["status"]] += 1
        assert metrics["total_tasks"] == len(tasks)
        assert metrics["completed_tasks"] == by_status["done"]
        assert metrics["in_progress_tasks"] == by_status["in_progress"] + by_status["review"]
        assert metrics["todo_tasks"] == by_status["todo"]
        assert sprint["capacity"]["allocated_hours"] == sum(t["estimated_hours"] for t in tasks)
        burndown = [point["remaining_hours"] for point in metrics["burndown_data"]]
        assert burndown == sorted(burndown, reverse=True)
        if sprint["status"] == "planned":
            assert burndown == [] and sprint["start_date"] > NOW
            continue
        elapsed = (min(sprint["end_date"], NOW) - sprint["start_date"]).days + 1
        assert len(burndown) == elapsed
        assert metrics["burndown_data"][0]["date"] == sprint["start_date"].strftime("%Y-%m-%d")
        if sprint["status"] == "completed":
            assert sprint["end_date"] < NOW
            assert all(HANGUL.search(item) for item in sprint["retrospective"]["what_went_well"])
            assert sprint["retrospective"]["action_items"]
    statuses = [s["status"] for s in mongo.sprints.find()]
    assert statuses.count("completed") == statuses.count("active") == 2


def test_activity_stays_inside_the_ttl_and_points_at_tasks(seeded: Any) -> None:
    _, _, mongo = seeded
    tasks = {
        str(t["_id"]): t["organization_id"] for t in mongo.tasks.find({}, {"organization_id": 1})
    }
    actions = set()
    for log in mongo.activity_logs.find():
        assert NOW - timedelta(days=29) <= log["created_at"] <= NOW
        assert log["timestamp"] == log["created_at"]
        assert tasks[log["resource_id"]] == log["organization_id"]
        assert log["metadata"]["api_version"] == "v1"
        assert log["metadata"]["client_type"] in ("web", "tui")
        if log["action"] == "task.status_changed":
            assert set(log["changes"]["status"]) == {"from", "to"}
        actions.add(log["action"])
    assert {"task.status_changed", "task.assigned"} <= actions


# ---------------------------------------------------------------- determinism
def pg_snapshot(dsn: str) -> dict[str, list[Any]]:
    """Every row the seed wrote, minus what cannot repeat (the salted hash, trigger-made ids)."""
    queries = {
        "users": "SELECT id, email, name, role, provider, uid, active, avatar_url, department, "
                 "position, created_at, updated_at FROM users ORDER BY id",
        "organizations": "SELECT * FROM organizations ORDER BY id",
        "memberships": "SELECT * FROM organization_memberships ORDER BY id",
        "roles": "SELECT CASE WHEN system_role THEN NULL ELSE id END AS id, organization_id, name, "
                 "key, description, system_role, active, created_at, updated_at FROM roles "
                 "ORDER BY organization_id, key",
        "role_permissions": "SELECT CASE WHEN r.system_role THEN NULL ELSE rp.id END AS id, "
                            "r.organization_id, r.key, p.name, rp.granted, rp.created_at "
                            "FROM role_permissions rp JOIN roles r ON r.id = rp.role_id "
                            "JOIN permissions p ON p.id = rp.permission_id "
                            "ORDER BY r.organization_id, r.key, p.name",
        "audit": "SELECT * FROM permission_audit_logs ORDER BY id",
    }
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


def mongo_snapshot(db: pymongo.database.Database) -> dict[str, list[Any]]:
    return {name: list(db[name].find().sort("_id", 1)) for name in MONGO_COLLECTIONS}


def seed_into(dsn: str, db: pymongo.database.Database, options: SeedOptions) -> SeedReport:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return seed(conn, db, options)


def test_same_options_give_identical_data(
    pg_dsn: str, mongo_db_name: str, second_target: tuple[str, str],
    raw_mongo: pymongo.MongoClient,
) -> None:
    other_dsn, other_db = second_target
    seed_into(pg_dsn, raw_mongo[mongo_db_name], small())
    seed_into(other_dsn, raw_mongo[other_db], small())
    first_pg, second_pg = pg_snapshot(pg_dsn), pg_snapshot(other_dsn)
    for table, rows in first_pg.items():
        assert rows, table
        assert rows == second_pg[table], table
    first_mongo, second_mongo = mongo_snapshot(raw_mongo[mongo_db_name]), mongo_snapshot(
        raw_mongo[other_db])
    for name, docs in first_mongo.items():
        assert docs, name
        assert docs == second_mongo[name], name


def test_another_seed_gives_other_data(
    pg_dsn: str, mongo_db_name: str, second_target: tuple[str, str],
    raw_mongo: pymongo.MongoClient,
) -> None:
    other_dsn, other_db = second_target
    seed_into(pg_dsn, raw_mongo[mongo_db_name], small())
    seed_into(other_dsn, raw_mongo[other_db], small(seed=7))
    first, second = pg_snapshot(pg_dsn), pg_snapshot(other_dsn)
    assert {row[0] for row in first["users"]}.isdisjoint(row[0] for row in second["users"])
    first_tasks = [(t["title"], t["status"]) for t in raw_mongo[mongo_db_name].tasks.find()]
    second_tasks = [(t["title"], t["status"]) for t in raw_mongo[other_db].tasks.find()]
    assert first_tasks != second_tasks


def test_default_anchor_is_the_latest_nine_oclock_utc() -> None:
    morning = datetime(2026, 3, 4, 8, 59, tzinfo=timezone.utc)
    evening = datetime(2026, 3, 4, 23, 0, tzinfo=timezone(timedelta(hours=9)))  # 14:00 UTC
    assert default_now(morning) == datetime(2026, 3, 3, 9, 0, tzinfo=timezone.utc)
    assert default_now(evening) == datetime(2026, 3, 4, 9, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- the demo admin and names
def test_demo_admin_owns_every_organization(seeded: Any) -> None:
    _, pg, mongo = seeded
    admin = pg.execute("SELECT * FROM users WHERE email = %s", (DEMO_ADMIN_EMAIL,)).fetchone()
    assert admin is not None
    assert admin["role"] == "admin" and admin["active"] and admin["name"] == "Demo Admin"
    assert verify_password(admin["encrypted_password"], "creatia-demo")
    assert not verify_password(admin["encrypted_password"], "not-the-password")
    owned = pg.execute(
        "SELECT count(*) AS n FROM organization_memberships "
        "WHERE user_id = %s AND role = 'owner' AND active", (admin["id"],)
    ).fetchone()
    assert owned is not None and owned["n"] == count(pg, "SELECT count(*) FROM organizations")
    # One hash serves every user, and every user can sign in with the demo password.
    assert count(pg, "SELECT count(DISTINCT encrypted_password) FROM users") == 1
    assert mongo.user_snapshots.find_one({"user_id": str(admin["id"])})["email"] == DEMO_ADMIN_EMAIL


def test_names_mix_korean_and_english(seeded: Any) -> None:
    _, pg, mongo = seeded
    names = [row["name"] for row in pg.execute("SELECT name FROM users")]
    assert "김민준" in names and "Alice Kim" in names
    assert any(HANGUL.search(name) for name in names)
    assert any(name.isascii() for name in names)
    emails = [row["email"] for row in pg.execute("SELECT email FROM users")]
    assert all(email.isascii() and email == email.lower() for email in emails)
    orgs = [row["name"] for row in pg.execute("SELECT name FROM organizations")]
    assert "크리에이티아 랩" in orgs and "Acme Robotics" in orgs
    titles = [t["title"] for t in mongo.tasks.find({}, {"title": 1})]
    assert any(HANGUL.search(title) for title in titles)
    assert any(title.isascii() for title in titles)


# ---------------------------------------------------------------- refusals and failures
def test_a_seed_is_what_the_snapshot_sync_would_write(seeded: Any, dbs: Databases) -> None:
    """Snapshots and the copies in tasks carry PostgreSQL's content hash and the memberships:
    the first sync after a seed rewrites nothing, and the check finds nothing to repair."""
    report, _, _ = seeded
    first = sync.batch_sync(dbs)
    assert (first.snapshots_written, first.tasks_modified) == (0, 0)
    assert first.unchanged == report.users
    checked = consistency.check_consistency(dbs)
    assert checked.repairable == 0, checked.lines()


def test_a_seeded_target_is_refused(seeded: Any, dbs: Databases) -> None:
    _, pg, _ = seeded
    assert is_seeded(pg, dbs.mongo)
    with pytest.raises(UserError, match="already has organizations"):
        seed(pg, dbs.mongo, small())


def test_is_seeded_is_false_on_an_empty_target_and_closes_its_transaction(
    pg_dsn: str, dbs: Databases
) -> None:
    with psycopg.connect(pg_dsn) as conn:  # not autocommit
        assert not is_seeded(conn, dbs.mongo)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_mongo_data_without_organizations_is_refused(
    pg: psycopg.Connection[dict[str, Any]], dbs: Databases
) -> None:
    dbs.mongo.tasks.insert_one({
        "organization_id": "left-over", "task_id": "TASK-0001", "title": "x", "status": "todo",
        "created_at": NOW, "updated_at": NOW,
    })
    with pytest.raises(UserError, match="already holds tasks"):
        seed(pg, dbs.mongo, small())
    assert not is_seeded(pg, dbs.mongo)


def test_a_failed_seed_leaves_nothing_behind(
    pg: psycopg.Connection[dict[str, Any]], dbs: Databases, mongo_db_name: str,
    raw_mongo: pymongo.MongoClient,
) -> None:
    # An account that the seed's first person collides with: PostgreSQL fails mid-seed.
    pg.execute("INSERT INTO users (email, encrypted_password, name) "
               "VALUES ('minjun.kim@example.com', 'x', 'Someone Else')")
    with pytest.raises(UserError, match=re.escape("minjun.kim@example.com")):
        seed(pg, dbs.mongo, small())
    assert not is_seeded(pg, dbs.mongo)
    assert count(pg, "SELECT count(*) FROM users") == 1
    for name in MONGO_COLLECTIONS:
        assert raw_mongo[mongo_db_name][name].count_documents({}) == 0, name
    pg.execute("DELETE FROM users")
    assert seed(pg, dbs.mongo, small()).tasks == 60


def test_bad_options_are_one_sentence() -> None:
    with pytest.raises(UserError, match="at least one organization"):
        seed_module.SeedPlan(SeedOptions(orgs=0))
    with pytest.raises(UserError, match="time zone"):
        seed_module.SeedPlan(SeedOptions(now=datetime(2026, 1, 1, 9)))


# ---------------------------------------------------------------- the bulk path, small
def test_bulk_load_rebuilds_indexes_and_writes_the_same_data(
    monkeypatch: pytest.MonkeyPatch, pg: psycopg.Connection[dict[str, Any]], dbs: Databases,
    mongo_db_name: str, second_target: tuple[str, str], raw_mongo: pymongo.MongoClient,
) -> None:
    # Tiny thresholds and batches send a small seed down the path a million tasks take.
    for name in seed_module.BULK_THRESHOLDS:
        monkeypatch.setitem(seed_module.BULK_THRESHOLDS, name, 5)
    for name in seed_module.BATCH_SIZES:
        monkeypatch.setitem(seed_module.BATCH_SIZES, name, 7)
    lines: list[str] = []
    report = seed(pg, dbs.mongo, small(), lines.append)
    assert sorted(report.bulk_collections) == sorted(seed_module.BULK_THRESHOLDS)
    assert "indexes" in report.timings
    assert any(line.startswith("tasks ") and line.endswith("/60") for line in lines)
    db = raw_mongo[mongo_db_name]
    for spec in load_collection_specs():
        present = {ix["name"] for ix in db[spec.name].list_indexes()}
        wanted = {ix.name for ix in spec.indexes if not ix.optional}
        assert wanted <= present, spec.name
    other_dsn, other_db = second_target
    monkeypatch.undo()
    seed_into(other_dsn, raw_mongo[other_db], small())
    assert mongo_snapshot(db) == mongo_snapshot(raw_mongo[other_db])


def test_no_tasks_still_plans_sprints(
    pg: psycopg.Connection[dict[str, Any]], dbs: Databases
) -> None:
    report = seed(pg, dbs.mongo, small(tasks=0, activity=50, sprints_per_org=3))
    assert (report.tasks, report.activity_logs, report.sprints) == (0, 0, 6)


def test_a_plain_connection_is_committed(pg_dsn: str, dbs: Databases) -> None:
    # psycopg's default (not autocommit), as the CLI's connect_pg() gives it.
    with psycopg.connect(pg_dsn) as conn:
        assert not is_seeded(conn, dbs.mongo)
        seed(conn, dbs.mongo, small())
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with psycopg.connect(pg_dsn, autocommit=True) as other:
        assert is_seeded(other, dbs.mongo)
