"""The shared cache (MongoDB dashboard_cache) and the user dashboard, against the real servers.

Two ``Databases`` on the same settings stand for two creatia-tui processes: what one caches or
invalidates, the other sees.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pymongo import monitoring

from creatia_tui.config import Settings
from creatia_tui.data import cache, users
from creatia_tui.data.access import Actor
from creatia_tui.data.dashboard import DASHBOARD_TTL_SECONDS, dashboard_key, load_dashboard
from creatia_tui.data.db import Databases
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied
from tests.conftest import World
from tests.shard_key_monitor import ShardKeyMonitor


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[tuple[str, Any]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "update", "delete", "insert"):
            with self._lock:
                self.names.append((event.command_name, event.command.get(event.command_name)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def other(settings: Settings, shard_key_monitor: ShardKeyMonitor) -> Iterator[Databases]:
    """A second process's connections to the same databases."""
    databases = Databases(settings, mongo_options={"event_listeners": [shard_key_monitor]})
    yield databases
    databases.close()


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


class Builder:
    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        return dict(self.value, call=self.calls)


# ---------------------------------------------------------------- cache
def test_a_value_cached_by_one_process_is_a_hit_in_another(dbs, other) -> None:
    at = utcnow()
    value = {"제목": "대시보드", "when": at, "nested": {"counts": [1, 2, 3]}, "pair": (1, "a")}
    build = Builder(value)
    before = cache.cache_stats()
    first, hit = cache.get_or_build(dbs.mongo, "org-a", "k", 600, build, user_id="u1")
    assert not hit and build.calls == 1
    second, hit = cache.get_or_build(other.mongo, "org-a", "k", 600, build, user_id="u1")
    assert hit and build.calls == 1
    # A miss returns the value as a hit reads it back: aware datetimes, tuples as lists.
    assert first == second
    assert second["when"] == at and second["when"].tzinfo is not None
    assert second["pair"] == [1, "a"] and second["제목"] == "대시보드"
    after = cache.cache_stats()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 1)
    [doc] = dbs.mongo.dashboard_cache.find({"organization_id": "org-a"})
    assert doc["key"] == "k" and doc["user_id"] == "u1"
    assert doc["expires_at"] == doc["created_at"] + dt.timedelta(seconds=600)


def test_an_entry_expires_on_read_without_a_ttl_index(dbs, other) -> None:
    t0 = utcnow()
    build = Builder({"n": 1})
    cache.get_or_build(dbs.mongo, "org-a", "k", 60, build, now=t0)
    almost = t0 + dt.timedelta(seconds=59)
    _, hit = cache.get_or_build(other.mongo, "org-a", "k", 60, build, now=almost)
    assert hit and build.calls == 1
    value, hit = cache.get_or_build(
        other.mongo, "org-a", "k", 60, build, now=t0 + dt.timedelta(seconds=61)
    )
    assert not hit and build.calls == 2 and value["call"] == 2
    assert dbs.mongo.dashboard_cache.count_documents({"organization_id": "org-a"}) == 1
    indexes = list(dbs.mongo.dashboard_cache.list_indexes())
    assert not any("expireAfterSeconds" in ix for ix in indexes)
    assert {ix["name"] for ix in indexes} >= {
        "idx_dashboard_cache_org_key",
        "idx_dashboard_cache_org_user",
        "idx_dashboard_cache_expires",
    }


def test_invalidating_an_organization_drops_every_entry_of_it_for_every_process(
    dbs, other
) -> None:
    build = Builder({"n": 1})
    for org, key, user in (("org-a", "dashboard:u1", "u1"), ("org-a", "dashboard:u2", "u2"),
                           ("org-a", "stats", None), ("org-b", "dashboard:u1", "u1")):
        cache.get_or_build(dbs.mongo, org, key, 600, build, user_id=user)
    before = cache.cache_stats().invalidations
    cache.invalidate_organization(other.mongo, "org-a")
    assert cache.cache_stats().invalidations == before + 1
    assert dbs.mongo.dashboard_cache.count_documents({"organization_id": "org-a"}) == 0
    _, hit = cache.get_or_build(dbs.mongo, "org-a", "dashboard:u1", 600, build, user_id="u1")
    assert not hit
    _, hit = cache.get_or_build(dbs.mongo, "org-b", "dashboard:u1", 600, build, user_id="u1")
    assert hit


def test_invalidating_a_user_drops_their_entries_in_that_organization_only(dbs, other) -> None:
    build = Builder({"n": 1})
    for org, key, user in (("org-a", "dashboard:u1", "u1"), ("org-a", "dashboard:u2", "u2"),
                           ("org-b", "dashboard:u1", "u1")):
        cache.get_or_build(dbs.mongo, org, key, 600, build, user_id=user)
    cache.invalidate_user(other.mongo, "org-a", "u1")
    hits = {
        (org, key): cache.get_or_build(dbs.mongo, org, key, 600, build, user_id=user)[1]
        for org, key, user in (("org-a", "dashboard:u1", "u1"), ("org-a", "dashboard:u2", "u2"),
                               ("org-b", "dashboard:u1", "u1"))
    }
    assert hits == {("org-a", "dashboard:u1"): False, ("org-a", "dashboard:u2"): True,
                    ("org-b", "dashboard:u1"): True}


def test_a_build_racing_an_invalidation_is_returned_but_not_stored(dbs, other) -> None:
    def build() -> dict[str, Any]:
        # Another process writes a task (and invalidates) while this value is being built.
        cache.invalidate_organization(other.mongo, "org-a")
        return {"stale": True}

    before = cache.cache_stats().discarded
    value, hit = cache.get_or_build(dbs.mongo, "org-a", "k", 600, build)
    assert value == {"stale": True} and not hit
    assert cache.cache_stats().discarded == before + 1
    fresh = Builder({"stale": False})
    value, hit = cache.get_or_build(other.mongo, "org-a", "k", 600, fresh)
    assert not hit and value["stale"] is False


def test_purge_expired_deletes_only_expired_entries(dbs) -> None:
    t0 = utcnow()
    cache.get_or_build(dbs.mongo, "org-a", "old", 60, Builder({}), now=t0 - dt.timedelta(hours=1))
    cache.get_or_build(dbs.mongo, "org-a", "new", 60, Builder({}), now=t0)
    assert cache.purge_expired(dbs.mongo, now=t0) == 1
    assert [d["key"] for d in dbs.mongo.dashboard_cache.find({"organization_id": "org-a"})] == [
        "new"
    ]


def test_a_non_positive_ttl_is_refused(dbs) -> None:
    with pytest.raises(ValueError):
        cache.get_or_build(dbs.mongo, "org-a", "k", 0, Builder({}))


# ---------------------------------------------------------------- dashboard
def task(org: str, n: int, status: str, **extra: Any) -> dict[str, Any]:
    base = utcnow() - dt.timedelta(days=2)
    doc = {
        "organization_id": org,
        "task_id": f"TASK-{n:04d}",
        "title": f"사용자 대시보드 개선 {n}",
        "description": "대시보드 작업",
        "status": status,
        "priority": "medium",
        "position": n * 1000.0,
        "tags": ["대시보드"],
        "labels": [],
        "time_entries": [],
        "created_at": base,
        "updated_at": base,
    }
    doc.update(extra)
    return doc


@pytest.fixture
def lab_world(world: World, dbs: Databases) -> dict[str, Any]:
    """minjun's work in the lab: tasks, an active sprint and activity, with decoys around it."""
    now = utcnow()
    day = dt.timedelta(days=1)
    sprint_id = dbs.mongo.sprints.insert_one({
        "organization_id": world.lab, "name": "스프린트 2026-11", "goal": "사용자 경험 개선",
        "status": "active", "start_date": now - 7 * day, "end_date": now + 7 * day,
        "metrics": {"total_tasks": 99, "completed_tasks": 0},  # stale: recounted from tasks
        "created_at": now - 8 * day, "updated_at": now - 8 * day,
    }).inserted_id
    dbs.mongo.sprints.insert_many([
        {"organization_id": world.lab, "name": "다음 스프린트", "status": "planned",
         "start_date": now + 8 * day, "end_date": now + 21 * day,
         "created_at": now, "updated_at": now},
        {"organization_id": world.acme, "name": "Acme sprint", "status": "active",
         "start_date": now, "end_date": now + 7 * day, "created_at": now, "updated_at": now},
    ])
    sprint = str(sprint_id)
    me, lab = world.minjun, world.lab
    docs = [
        # six todo (the first five by position are shown), one of them due this week
        *(task(lab, n, "todo", assignee_id=me, position=(10 - n) * 100.0) for n in range(1, 6)),
        task(lab, 6, "todo", assignee_id=me, position=5000.0, due_date=now + 2 * day,
             sprint_id=sprint),
        task(lab, 7, "in_progress", assignee_id=me, due_date=now + 6 * day, sprint_id=sprint),
        task(lab, 8, "in_progress", assignee_id=me, due_date=now - 3 * day),  # overdue
        task(lab, 9, "review", assignee_id=me, due_date=now - 1 * day, sprint_id=sprint),
        task(lab, 10, "done", assignee_id=me, due_date=now - 5 * day, sprint_id=sprint,
             completed_at=now - 6 * day),  # done: neither open nor overdue
        task(lab, 11, "done", assignee_id=me, due_date=now + 1 * day, sprint_id=sprint,
             completed_at=now),  # done: not due this week either
        task(lab, 12, "todo", assignee_id=world.jiho, due_date=now - day, sprint_id=sprint),
        task(lab, 13, "todo", due_date=now + day),  # unassigned
        task(lab, 14, "todo", assignee_id=me, due_date=now + 8 * day),  # due next week
        task(world.acme, 1, "todo", assignee_id=me, due_date=now - day),  # another organization
    ]
    dbs.mongo.tasks.insert_many(docs)
    dbs.mongo.user_snapshots.insert_one(
        {"user_id": me, "name": "김민준 (스냅샷)", "email": "minjun@example.com", "synced_at": now}
    )
    logs = []
    for n in range(12):
        who = me if n % 2 else world.jiho  # jiho has no snapshot: named from PostgreSQL
        at = now - dt.timedelta(minutes=n)
        logs.append({"organization_id": lab, "user_id": who, "action": "task.commented",
                     "resource_type": "Task", "resource_id": f"r{n}", "changes": None,
                     "created_at": at, "timestamp": at})
    logs.append({"organization_id": world.acme, "user_id": me, "action": "task.created",
                 "resource_type": "Task", "resource_id": "acme", "changes": None,
                 "created_at": now, "timestamp": now})
    dbs.mongo.activity_logs.insert_many(logs)
    return {"now": now, "sprint": sprint}


def test_the_dashboard_counts_the_users_open_work(world, dbs, lab_world) -> None:
    board, cached = load_dashboard(dbs, actor(dbs, world.minjun, world.lab), now=lab_world["now"])
    assert not cached
    assert (board.organization_id, board.user_id) == (world.lab, world.minjun)
    counts = {status: group.count for status, group in board.open_by_status.items()}
    assert counts == {"todo": 7, "in_progress": 2, "review": 1}
    assert board.open_count == 10
    # The first five todo tasks in board order (positions 500, 600, ... 900 for tasks 5..1).
    assert [t.task_id for t in board.open_by_status["todo"].tasks] == [
        "TASK-0005", "TASK-0004", "TASK-0003", "TASK-0002", "TASK-0001",
    ]
    assert board.open_by_status["todo"].tasks[0].title == "사용자 대시보드 개선 5"
    assert (board.due_this_week.count, [t.task_id for t in board.due_this_week.tasks]) == (
        2, ["TASK-0006", "TASK-0007"],
    )
    assert (board.overdue.count, [t.task_id for t in board.overdue.tasks]) == (
        2, ["TASK-0008", "TASK-0009"],
    )
    sprint = board.sprint
    assert sprint is not None
    assert (sprint.sprint_id, sprint.name, sprint.goal) == (
        lab_world["sprint"], "스프린트 2026-11", "사용자 경험 개선",
    )
    assert (sprint.total, sprint.completed, sprint.in_progress, sprint.review, sprint.todo) == (
        6, 2, 1, 1, 2,
    )
    assert sprint.completion_rate == 33.3
    assert len(board.recent_activity) == 10
    assert [e.resource_id for e in board.recent_activity] == [f"r{n}" for n in range(10)]
    names = {e.user_id: e.actor_name for e in board.recent_activity}
    assert names == {world.minjun: "김민준 (스냅샷)", world.jiho: "박지호"}


def test_the_dashboard_is_cached_per_user_and_dropped_by_a_task_write(
    world, dbs, other, lab_world
) -> None:
    now = lab_world["now"]
    minjun = actor(dbs, world.minjun, world.lab)
    first, cached = load_dashboard(dbs, minjun, now=now)
    assert not cached
    again, cached = load_dashboard(other, actor(other, world.minjun, world.lab), now=now)
    assert cached and again == first
    # Another user's dashboard is their own entry.
    jiho_board, cached = load_dashboard(dbs, actor(dbs, world.jiho, world.lab), now=now)
    assert not cached and jiho_board.open_count == 1
    assert {d["key"] for d in dbs.mongo.dashboard_cache.find({"organization_id": world.lab})} == {
        dashboard_key(world.minjun), dashboard_key(world.jiho),
    }
    # A write, as the board service makes one: the task moves, the organization is invalidated.
    dbs.mongo.tasks.update_one(
        {"organization_id": world.lab, "task_id": "TASK-0008"},
        {"$set": {"status": "done", "completed_at": now, "updated_at": now}},
    )
    cache.invalidate_organization(other.mongo, world.lab)
    after, cached = load_dashboard(dbs, minjun, now=now)
    assert not cached
    assert after.open_by_status["in_progress"].count == 1
    assert after.overdue.count == 1
    _, cached = load_dashboard(dbs, minjun, now=now)
    assert cached


def test_a_cached_dashboard_expires_after_ten_minutes(world, dbs, lab_world) -> None:
    minjun = actor(dbs, world.minjun, world.lab)
    now = lab_world["now"]
    load_dashboard(dbs, minjun, now=now)
    almost = now + dt.timedelta(seconds=DASHBOARD_TTL_SECONDS - 1)
    assert load_dashboard(dbs, minjun, now=almost)[1]
    later = now + dt.timedelta(seconds=DASHBOARD_TTL_SECONDS + 1)
    board, cached = load_dashboard(dbs, minjun, now=later)
    assert not cached and board.generated_at == later


def test_a_hit_is_one_mongodb_round_trip(
    world, settings, shard_key_monitor, lab_world
) -> None:
    commands = Commands()
    with Databases(
        settings, mongo_options={"event_listeners": [shard_key_monitor, commands]}
    ) as dbs:
        minjun = actor(dbs, world.minjun, world.lab)
        load_dashboard(dbs, minjun, now=lab_world["now"])
        miss = list(commands.names)
        commands.names.clear()
        load_dashboard(dbs, minjun, now=lab_world["now"])
        assert commands.names == [("find", "dashboard_cache")]
    assert sorted(miss) == sorted([
        ("find", "dashboard_cache"), ("update", "dashboard_cache"),
        ("aggregate", "tasks"), ("find", "sprints"), ("aggregate", "tasks"),
        ("aggregate", "activity_logs"), ("find", "user_snapshots"),
        ("update", "dashboard_cache"),
    ])


def test_an_empty_dashboard(world, dbs) -> None:
    board, _ = load_dashboard(dbs, actor(dbs, world.yuna, world.lab))  # a viewer may read
    assert board.open_count == 0 and board.sprint is None and board.recent_activity == []
    assert all(group.tasks == [] for group in board.open_by_status.values())
    assert board.due_this_week.count == board.overdue.count == 0


def test_the_dashboard_needs_tasks_read_in_the_organization(world, dbs) -> None:
    with pytest.raises(PermissionDenied):
        load_dashboard(dbs, actor(dbs, world.bob, world.lab))  # not a member
    with pytest.raises(PermissionDenied):
        load_dashboard(dbs, actor(dbs, world.bob, world.dormant))  # deactivated organization
    assert dbs.mongo.dashboard_cache.count_documents({"organization_id": world.lab}) == 0
