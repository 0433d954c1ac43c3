"""The activity log reads (read_activity, activity_actions) against the real servers."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring

from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.activity import (
    ACTIVITY_ACTIONS,
    ActivityCursor,
    ActivityFilter,
    activity_actions,
    read_activity,
)
from creatia_tui.data.db import Databases
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied, ValidationError
from tests.conftest import World


class Aggregates(monitoring.CommandListener):
    """The aggregate commands sent on activity_logs."""

    def __init__(self) -> None:
        self.pipelines: list[list[dict[str, Any]]] = []
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "aggregate" and event.command.get("aggregate") == "activity_logs":
            with self._lock:
                self.pipelines.append(list(event.command["pipeline"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


def insert_logs(dbs: Databases, world: World, count: int = 120) -> list[dict[str, Any]]:
    """`count` entries in the lab, three to a millisecond (ties broken by _id), over the users,
    actions and five resources; plus entries of another organization."""
    now = utcnow()
    people = (world.minjun, world.jiho, world.seoyeon)
    docs = []
    for n in range(count):
        at = now - dt.timedelta(minutes=n // 3)
        docs.append({
            "_id": ObjectId(),
            "organization_id": world.lab,
            "user_id": people[n % 3],
            "action": ACTIVITY_ACTIONS[n % len(ACTIVITY_ACTIONS)],
            "resource_type": "Task" if n % 10 else "Sprint",
            "resource_id": f"task-{n % 5}",
            "changes": {"status": {"from": "todo", "to": "in_progress"}} if n % 4 == 0 else None,
            "metadata": {"client_type": "tui"},
            "timestamp": at,
            "created_at": at,
        })
    other = [dict(doc, _id=ObjectId(), organization_id=world.acme) for doc in docs[:30]]
    dbs.mongo.activity_logs.insert_many(docs + other)
    return docs


def newest_first(docs: list[dict[str, Any]]) -> list[str]:
    return [str(d["_id"]) for d in sorted(docs, key=lambda d: (d["created_at"], d["_id"]),
                                          reverse=True)]


def read_all(
    dbs: Databases, who: Actor, filters: ActivityFilter | None = None, limit: int = 50
) -> list[list[str]]:
    pages: list[list[str]] = []
    after: ActivityCursor | None = None
    while True:
        page = read_activity(dbs, who, filters, after, limit)
        pages.append([entry.id for entry in page.entries])
        after = page.next_cursor
        if after is None:
            return pages
        assert len(pages) < 50, "paging does not end"


def test_three_pages_hold_every_entry_once_newest_first_with_ties(world, dbs) -> None:
    docs = insert_logs(dbs, world)
    who = actor(dbs, world.jiho, world.lab)
    pages = read_all(dbs, who)
    assert [len(page) for page in pages] == [50, 50, 20]
    flat = [entry for page in pages for entry in page]
    assert flat == newest_first(docs)
    assert len(set(flat)) == 120
    # Three entries share each millisecond, and a page boundary falls inside such a group.
    first = read_activity(dbs, who, limit=50)
    assert first.next_cursor is not None
    assert first.entries[-1].created_at == first.entries[-2].created_at


def test_an_entry_carries_its_actor_and_its_document(world, dbs) -> None:
    insert_logs(dbs, world, count=6)
    dbs.mongo.user_snapshots.insert_one(
        {"user_id": world.minjun, "name": "김민준 (스냅샷)", "synced_at": utcnow()}
    )
    page = read_activity(dbs, actor(dbs, world.yuna, world.lab))  # a viewer may read
    names = {entry.user_id: entry.actor_name for entry in page.entries}
    # A snapshot's name first; PostgreSQL for users without one.
    assert names == {world.minjun: "김민준 (스냅샷)", world.jiho: "박지호", world.seoyeon: "이서연"}
    entry = next(e for e in page.entries if e.action == "task.created")
    assert entry.organization_id == world.lab and entry.action == "task.created"
    assert entry.changes == {"status": {"from": "todo", "to": "in_progress"}}
    assert entry.metadata == {"client_type": "tui"}
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("make", "keep"),
    [
        (lambda w: ActivityFilter(user_id=w.jiho), lambda d, w: d["user_id"] == w.jiho),
        (lambda w: ActivityFilter(action="task.status_changed"),
         lambda d, w: d["action"] == "task.status_changed"),
        (lambda w: ActivityFilter(resource_type="Sprint"),
         lambda d, w: d["resource_type"] == "Sprint"),
        (lambda w: ActivityFilter(resource_type="Task", resource_id="task-3"),
         lambda d, w: (d["resource_type"], d["resource_id"]) == ("Task", "task-3")),
        (lambda w: ActivityFilter(user_id=w.minjun, action="task.created"),
         lambda d, w: (d["user_id"], d["action"]) == (w.minjun, "task.created")),
    ],
    ids=["user", "action", "resource type", "resource", "user and action"],
)
def test_each_filter_pages_through_its_entries_only(world, dbs, make, keep) -> None:
    docs = insert_logs(dbs, world)
    wanted = newest_first([d for d in docs if keep(d, world)])
    assert wanted
    pages = read_all(dbs, actor(dbs, world.jiho, world.lab), make(world), limit=7)
    assert [entry for page in pages for entry in page] == wanted
    assert all(len(page) == 7 for page in pages[:-1])


def test_sparse_entries_are_found_far_back(world, dbs) -> None:
    """Older than the first day's read: the page reads further back until it is full."""
    now = utcnow()
    docs = [
        {"organization_id": world.lab, "user_id": world.jiho, "action": "task.updated",
         "resource_type": "Task", "resource_id": "t", "changes": None,
         "created_at": now - dt.timedelta(days=days), "timestamp": now - dt.timedelta(days=days)}
        for days in (0.5, 3, 9, 20, 28, 29)
    ]
    dbs.mongo.activity_logs.insert_many(docs)
    who = actor(dbs, world.jiho, world.lab)
    assert read_all(dbs, who, limit=4) == [newest_first(docs)[:4], newest_first(docs)[4:]]
    assert read_all(dbs, who, limit=6) == [newest_first(docs)]


def explain_text(dbs: Databases, pipeline: list[dict[str, Any]]) -> str:
    plan = dbs.mongo.command(
        "explain", {"aggregate": "activity_logs", "pipeline": pipeline, "cursor": {}},
        verbosity="queryPlanner",
    )
    return json.dumps(plan, default=str)


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        (ActivityFilter(), "idx_activity_logs_org_created"),
        (ActivityFilter(user_id="u", action="task.moved"), "idx_activity_logs_org_created"),
        (ActivityFilter(resource_type="Task"), "idx_activity_logs_org_created"),
        (ActivityFilter(resource_type="Task", resource_id="task-1"),
         "idx_activity_logs_org_resource"),
    ],
    ids=["none", "user and action", "resource type", "resource"],
)
def test_every_read_is_planned_on_its_index_without_a_collection_scan(
    world, settings, shard_key_monitor, filters, index
) -> None:
    aggregates = Aggregates()
    with Databases(
        settings, mongo_options={"event_listeners": [shard_key_monitor, aggregates]}
    ) as dbs:
        insert_logs(dbs, world)
        if filters.user_id:
            filters = ActivityFilter(world.jiho, filters.action)
        who = actor(dbs, world.jiho, world.lab)
        read_all(dbs, who, filters, limit=10)
        assert aggregates.pipelines
        for pipeline in aggregates.pipelines:
            text = explain_text(dbs, pipeline)
            assert "COLLSCAN" not in text, pipeline
            assert "IXSCAN" in text and index in text, pipeline


def test_actions_menu_is_the_fixed_vocabulary(world, dbs) -> None:
    assert activity_actions(dbs, actor(dbs, world.yuna, world.lab)) == list(ACTIVITY_ACTIONS)
    assert {"task.created", "task.status_changed", "task.moved", "task.deleted"} <= set(
        ACTIVITY_ACTIONS
    )


def test_activity_needs_tasks_read_in_the_organization(world, dbs) -> None:
    insert_logs(dbs, world, count=3)
    for user, org in ((world.bob, world.lab), (world.bob, world.dormant)):
        with pytest.raises(PermissionDenied):
            read_activity(dbs, actor(dbs, user, org))
        with pytest.raises(PermissionDenied):
            activity_actions(dbs, actor(dbs, user, org))
    # Another organization's reader sees its own entries only.
    page = read_activity(dbs, actor(dbs, world.bob, world.acme))
    assert {entry.organization_id for entry in page.entries} == {world.acme}


def test_bad_requests_are_refused(world, dbs) -> None:
    who = actor(dbs, world.jiho, world.lab)
    with pytest.raises(ValidationError):
        read_activity(dbs, who, limit=0)
    with pytest.raises(ValidationError):
        read_activity(dbs, who, limit=201)
    with pytest.raises(ValidationError):
        read_activity(dbs, who, ActivityFilter(resource_id="task-1"))
    with pytest.raises(ValidationError):
        read_activity(dbs, who, after=ActivityCursor(utcnow(), "not an id"))
