"""The live task feed against the real server: another client's writes reach an open feed.

Faults are the server's own (``configureFailPoint failCommand``, on with the embedded server's
``--enable-test-commands``), limited to the feed's client by its appName, so nothing else in the
session sees them.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest
from bson import ObjectId

from creatia_tui.config import Settings
from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.db import Databases
from creatia_tui.data.task_feed import TaskChange, TaskFeed
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied
from tests.conftest import World
from tests.shard_key_monitor import ShardKeyMonitor

DEADLINE = 2.0  # the board's target: others' changes visible within 2 seconds


@pytest.fixture
def feed_dbs(settings: Settings, shard_key_monitor: ShardKeyMonitor) -> Iterator[Databases]:
    """The feed's own connections, named so that fail points can single them out."""
    app = f"feed-test-{uuid.uuid4().hex[:8]}"
    databases = Databases(
        settings, mongo_options={"event_listeners": [shard_key_monitor], "appname": app}
    )
    yield databases
    databases.close()


@pytest.fixture
def writer(raw_mongo: pymongo.MongoClient, mongo_db_name: str) -> Any:
    """Another client (another user's TUI) writing to the same database."""
    return raw_mongo[mongo_db_name]


@pytest.fixture
def fail_points(raw_mongo: pymongo.MongoClient) -> Iterator[Callable[..., None]]:
    def arm(app: str, commands: list[str], times: int, **data: Any) -> None:
        raw_mongo.admin.command(
            "configureFailPoint", "failCommand", mode={"times": times},
            data={"failCommands": commands, "appName": app, **data},
        )

    yield arm
    raw_mongo.admin.command("configureFailPoint", "failCommand", mode="off")


def _appname(dbs: Databases) -> str:
    return dbs.mongo_options["appname"]


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


def new_task(org: str, n: int, **extra: Any) -> dict[str, Any]:
    now = utcnow()
    doc = {
        "organization_id": org, "task_id": f"TASK-{n:04d}", "title": f"실시간 작업 {n}",
        "status": "todo", "priority": "medium", "position": n * 1000.0, "tags": [],
        "labels": [], "time_entries": [], "created_at": now, "updated_at": now,
    }
    doc.update(extra)
    return doc


def wait_for(
    feed: TaskFeed, found: Callable[[TaskChange], bool], deadline: float = DEADLINE
) -> list[TaskChange]:
    """Every change read until one matches `found` or the deadline passes."""
    end = time.monotonic() + deadline
    seen: list[TaskChange] = []
    while time.monotonic() < end:
        seen += feed.next_changes(timeout_seconds=max(0.05, end - time.monotonic()))
        if any(found(change) for change in seen):
            return seen
    raise AssertionError(f"no matching change within {deadline} s; saw {seen}")


def test_an_update_by_another_client_arrives_within_two_seconds(
    world: World, feed_dbs, writer
) -> None:
    [task_id] = writer.tasks.insert_many([new_task(world.lab, 1)]).inserted_ids
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        assert feed.mode == "change_stream"  # SecantusDB has change streams
        assert feed.next_changes(timeout_seconds=0.2) == []
        writer.tasks.update_one(
            {"_id": task_id, "organization_id": world.lab},
            {"$set": {"status": "in_progress", "title": "검토 중인 작업", "updated_at": utcnow()}},
        )
        seen = wait_for(feed, lambda c: c.task_id == str(task_id))
        change = next(c for c in seen if c.task_id == str(task_id))
        assert change.kind == "upsert" and change.task is not None
        assert (change.task.status, change.task.title) == ("in_progress", "검토 중인 작업")
        assert change.task.organization_id == world.lab


def test_inserts_replaces_and_deletes_arrive_and_other_organizations_do_not(
    world: World, feed_dbs, writer
) -> None:
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        other_org = writer.tasks.insert_one(new_task(world.acme, 1)).inserted_id
        mine = writer.tasks.insert_one(new_task(world.lab, 1)).inserted_id
        seen = wait_for(feed, lambda c: c.task_id == str(mine))
        assert all(c.task_id != str(other_org) for c in seen)
        replacement = new_task(world.lab, 1, title="통째로 바뀐 작업")
        writer.tasks.replace_one({"_id": mine, "organization_id": world.lab}, replacement)
        seen = wait_for(feed, lambda c: c.task is not None and c.task.title == "통째로 바뀐 작업")
        writer.tasks.delete_one({"_id": mine, "organization_id": world.lab})
        seen = wait_for(feed, lambda c: c.kind == "delete" and c.task_id == str(mine))
        assert [c for c in seen if c.task_id == str(mine)][-1] == TaskChange(
            "delete", str(mine), None
        )


def test_several_changes_of_one_task_come_as_its_last(world: World, feed_dbs, writer) -> None:
    [task_id] = writer.tasks.insert_many([new_task(world.lab, 1)]).inserted_ids
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        for n in range(1, 4):
            writer.tasks.update_one(
                {"_id": task_id, "organization_id": world.lab}, {"$set": {"position": n * 10.0}}
            )
        time.sleep(0.3)  # all three are on the server before the feed reads
        changes = feed.next_changes(timeout_seconds=DEADLINE)
        assert [(c.task_id, c.task and c.task.position) for c in changes] == [
            (str(task_id), 30.0)
        ]


def test_a_feed_opened_after_a_read_reports_what_changed_since_that_read(
    world: World, feed_dbs, writer
) -> None:
    """The board opens its feed after its first load: a change made between that load and the
    feed (updated_at after ``since``) is reported; one from before it is not."""
    old = writer.tasks.insert_one(new_task(
        world.lab, 1, updated_at=utcnow() - dt.timedelta(minutes=5))).inserted_id
    since = utcnow()
    between = writer.tasks.insert_one(new_task(world.lab, 2)).inserted_id
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab), since=since) as feed:
        seen = wait_for(feed, lambda c: c.task_id == str(between))
        assert str(old) not in {c.task_id for c in seen}


def test_the_polling_fallback_sees_updates(world: World, feed_dbs, writer) -> None:
    [task_id] = writer.tasks.insert_many([new_task(world.lab, 1)]).inserted_ids
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab), force_polling=True) as feed:
        assert feed.mode == "polling"
        first = feed.next_changes(timeout_seconds=1.5)  # tasks changed just before it opened
        assert {c.task_id for c in first} <= {str(task_id)}
        writer.tasks.update_one(
            {"_id": task_id, "organization_id": world.lab},
            {"$set": {"status": "review", "updated_at": utcnow()}},
        )
        writer.tasks.insert_one(new_task(world.acme, 5))
        seen = wait_for(
            feed, lambda c: c.task is not None and c.task.status == "review", deadline=3.0
        )
        assert {c.task.organization_id for c in seen if c.task} == {world.lab}
        # Reported once: the next poll finds nothing new.
        assert feed.next_changes(timeout_seconds=1.2) == []


def test_the_feed_polls_when_the_server_refuses_change_streams(
    world: World, feed_dbs, writer, fail_points
) -> None:
    # What a standalone mongod answers to $changeStream.
    fail_points(_appname(feed_dbs), ["aggregate"], 1, errorCode=40573)
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        assert feed.mode == "polling"
        task_id = writer.tasks.insert_one(new_task(world.lab, 1)).inserted_id
        wait_for(feed, lambda c: c.task_id == str(task_id), deadline=3.0)


def test_a_broken_connection_is_logged_and_the_stream_resumes(
    world: World, feed_dbs, writer, fail_points, caplog
) -> None:
    [task_id] = writer.tasks.insert_many([new_task(world.lab, 1)]).inserted_ids
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        # The next read, the driver's resume and its retry all lose their connection.
        fail_points(_appname(feed_dbs), ["getMore", "aggregate"], 3, closeConnection=True)
        writer.tasks.update_one(
            {"_id": task_id, "organization_id": world.lab}, {"$set": {"title": "끊긴 뒤의 변경"}}
        )
        assert feed.next_changes(timeout_seconds=0.5) == []  # no exception
        assert "task feed" in caplog.text and "retrying" in caplog.text
        # Resumed from its token: the change made while it was broken is not lost.
        wait_for(feed, lambda c: c.task is not None and c.task.title == "끊긴 뒤의 변경", 3.0)
        assert feed.mode == "change_stream"


def test_close_ends_the_feed(world: World, feed_dbs, writer) -> None:
    feed = TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab))
    feed.close()
    feed.close()
    assert feed.closed
    writer.tasks.insert_one(new_task(world.lab, 1))
    assert feed.next_changes(timeout_seconds=0.3) == []


def test_the_feed_needs_tasks_read(world: World, feed_dbs) -> None:
    for user, org in ((world.bob, world.lab), (world.bob, world.dormant)):
        with pytest.raises(PermissionDenied):
            TaskFeed(feed_dbs, actor(feed_dbs, user, org))


def test_a_delete_names_the_document_id(world: World, feed_dbs, writer) -> None:
    ids = writer.tasks.insert_many([new_task(world.lab, n) for n in (1, 2)]).inserted_ids
    with TaskFeed(feed_dbs, actor(feed_dbs, world.jiho, world.lab)) as feed:
        writer.tasks.delete_many({"organization_id": world.lab, "_id": {"$in": ids}})
        seen = wait_for(feed, lambda c: c.task_id == str(ids[1]) and c.kind == "delete")
        deleted = {c.task_id for c in seen if c.kind == "delete"}
        assert deleted >= {str(ids[0]), str(ids[1])}
        assert all(ObjectId(task_id) for task_id in deleted)
