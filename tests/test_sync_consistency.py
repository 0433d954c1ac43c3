"""The consistency check and repair (seed: CrossDbSyncService), its permission-checked and
audited service, and the caches the sync and the board's writes invalidate."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.board import BoardService
from creatia_tui.data.dashboard import load_dashboard
from creatia_tui.data.db import Databases
from creatia_tui.data.maintenance import consistency_report, repair_consistency
from creatia_tui.data.stats import task_stats
from creatia_tui.errors import PermissionDenied
from creatia_tui.ops import consistency, sync
from tests.conftest import World
from tests.test_sync import new_task

CLIENT = ClientContext(ip_address="192.0.2.77", user_agent="creatia-tui/test (consistency)")
GHOST_ORG = str(uuid.uuid4())
GHOST_USER = str(uuid.uuid4())


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


def make_drift(dbs: Databases, world: World) -> None:
    """One of every kind of drift, on top of a synced world."""
    sync.batch_sync(dbs)
    stale = {"user_id": world.seoyeon, "name": "옛 이름", "email": "old@example.com"}
    dbs.mongo.tasks.insert_many([
        new_task(GHOST_ORG, 1, assignee_id=world.jiho),  # orphaned (no snapshot either)
        new_task(GHOST_ORG, 2),
        new_task(world.dormant, 3),  # a deactivated organization's
        new_task(world.lab, 4, assignee_id=world.jiho),  # no snapshot
        new_task(world.lab, 5, assignee_id=world.seoyeon, assignee_snapshot=stale),
        new_task(world.lab, 6, reviewer_id=world.seoyeon, reviewer_snapshot=stale),
        new_task(world.acme, 7, assignee_id=world.jiho,  # not a member of acme
                 assignee_snapshot=sync.task_snapshot(
                     dbs.mongo.user_snapshots.find_one({"user_id": world.jiho}))),
    ])
    dbs.mongo.user_snapshots.delete_one({"user_id": world.yuna})
    dbs.mongo.user_snapshots.update_one({"user_id": world.bob}, {"$set": {"name": "Robert"}})
    dbs.mongo.user_snapshots.insert_one(
        {"user_id": GHOST_USER, "name": "유령", "email": "ghost@example.com",
         "organization_ids": [world.lab], "content_hash": "x", "synced_at": sync.utcnow()}
    )


def counts(report: consistency.ConsistencyReport) -> dict[str, int]:
    return {f.kind: f.count for f in report.ordered()}


def test_each_kind_of_drift_is_found_and_repaired(dbs: Databases, world: World) -> None:
    make_drift(dbs, world)
    before = consistency.check_consistency(dbs)
    assert counts(before) == {
        "orphaned_tasks": 2,
        "inactive_organization_tasks": 1,
        "missing_task_snapshots": 1,  # TASK-0004 (the orphan's is not compared)
        "stale_task_snapshots": 2,  # TASK-0005 assignee, TASK-0006 reviewer
        "non_member_assignees": 1,  # TASK-0007: jiho in acme
        "missing_user_snapshots": 1,
        "stale_user_snapshots": 1,
        "deleted_user_snapshots": 1,
    }
    stale = before.findings["stale_task_snapshots"].samples
    assert any("옛 이름 → 이서연" in sample for sample in stale)
    assert consistency.last_report(dbs.mongo).to_document() == before.to_document()  # type: ignore[union-attr]
    assert "repairable" in "\n".join(before.lines())
    tasks_before = dbs.mongo.tasks.count_documents({"organization_id": {"$exists": True}})

    result = consistency.repair(dbs, before)
    after = result.after
    assert after is not None
    assert after.repairable == 0
    assert counts(after)["inactive_organization_tasks"] == 1  # reported, never touched
    assert counts(after)["non_member_assignees"] == 1
    assert after.quarantined == 2 and result.tasks_quarantined == 2
    # Quarantined, never deleted.
    assert dbs.mongo.tasks.count_documents({"organization_id": {"$exists": True}}) == tasks_before
    orphan = dbs.mongo.tasks.find_one({"organization_id": GHOST_ORG, "task_id": "TASK-0001"})
    assert orphan is not None and orphan["quarantine_reason"] == consistency.QUARANTINE_REASON
    fixed = dbs.mongo.tasks.find_one({"organization_id": world.lab, "task_id": "TASK-0006"})
    assert fixed is not None and fixed["reviewer_snapshot"]["name"] == "이서연"
    ghost = dbs.mongo.user_snapshots.find_one({"user_id": GHOST_USER})
    assert ghost is not None and ghost["deleted"] is True
    assert dbs.mongo.user_snapshots.find_one({"user_id": world.bob})["name"] == "Bob Stone"  # type: ignore[index]

    again = consistency.repair(dbs)  # nothing left to do
    assert (again.tasks_fixed, again.tasks_quarantined, again.sync.snapshots_written) == (0, 0, 0)


def _audit_rows(pg_dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute(
            "SELECT user_id::text, organization_id::text, action, changes "
            "FROM permission_audit_logs ORDER BY created_at"
        ).fetchall()


def test_repair_from_the_tui_is_for_platform_admins_and_audited(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    make_drift(dbs, world)
    owner = actor(dbs, world.minjun, world.lab)  # holds monitoring.manage, but only in lab
    viewer = actor(dbs, world.yuna, world.lab)
    tasks_before = list(dbs.mongo.tasks.find({"organization_id": GHOST_ORG}).sort("task_id"))
    with pytest.raises(PermissionDenied, match="Only a platform admin may repair"):
        repair_consistency(dbs, owner, CLIENT)
    with pytest.raises(PermissionDenied, match=r"monitoring\.manage"):
        repair_consistency(dbs, viewer, CLIENT)
    with pytest.raises(PermissionDenied, match="platform admin"):
        consistency_report(dbs, owner)
    assert list(dbs.mongo.tasks.find({"organization_id": GHOST_ORG}).sort("task_id")) == (
        tasks_before
    )
    assert _audit_rows(pg_dsn) == []

    root = actor(dbs, world.root, world.lab)
    report = consistency_report(dbs, root, run=True)
    assert report is not None and report.repairable == 8
    result = repair_consistency(dbs, root, CLIENT)
    assert result.after is not None and result.after.repairable == 0
    [(who, org, action, changes)] = _audit_rows(pg_dsn)
    assert (who, org, action) == (world.root, world.lab, "consistency.repaired")
    assert changes["after"]["written"]["quarantined_tasks"] == 2
    assert {f["kind"]: f["count"] for f in changes["before"]["findings"]}["orphaned_tasks"] == 2


def test_caches_are_dropped_by_board_writes_and_by_the_sync(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    sync.batch_sync(dbs)
    jiho = sync.task_snapshot(dbs.mongo.user_snapshots.find_one({"user_id": world.jiho}))
    dbs.mongo.tasks.insert_many([
        new_task(world.lab, 1, assignee_id=world.jiho, assignee_snapshot=jiho,
                 estimated_hours=3.0),
        new_task(world.lab, 2, status="done", estimated_hours=2.0),
    ])
    member = actor(dbs, world.jiho, world.lab)
    stats, cached = task_stats(dbs, member)
    assert not cached and stats.by_status["todo"].count == 1
    assert stats.by_status["done"].estimated_hours == 2.0
    assert task_stats(dbs, member)[1] is True
    dashboard, _ = load_dashboard(dbs, member)
    assert dashboard.open_by_status["todo"].tasks[0].assignee_snapshot["name"] == "박지호"  # type: ignore[index]
    assert load_dashboard(dbs, member)[1] is True

    # A board write drops both.
    board = BoardService(dbs, member, CLIENT)
    task = board.get_task(str(dbs.mongo.tasks.find_one({"task_id": "TASK-0001",
                                                         "organization_id": world.lab})["_id"]))
    board.move(task, "in_progress", 1000.0)
    stats, cached = task_stats(dbs, member)
    assert not cached and stats.by_status["in_progress"].count == 1
    assert load_dashboard(dbs, member)[1] is False

    # A rename synced from PostgreSQL drops them too: the dashboard shows the new name at once.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = '박지호 선임' WHERE id = %s", (world.jiho,))
    synced = sync.sync_user_ids(dbs, [world.jiho])
    assert world.lab in synced.organizations
    dashboard, cached = load_dashboard(dbs, member)
    assert not cached
    assert dashboard.open_by_status["in_progress"].tasks[0].assignee_snapshot["name"] == (  # type: ignore[index]
        "박지호 선임"
    )
    assert task_stats(dbs, member)[1] is False
