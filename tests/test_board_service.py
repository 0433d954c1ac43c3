"""The board service against the real servers: what it reads, writes, logs and refuses.

Tasks are inserted straight into the world's lab organization (크리에이티아 연구소); the service is
driven as its owner (minjun), member (jiho), viewer (yuna), an outsider (bob) and the owner of a
deactivated organization (bob in 휴면 조직).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from bson import ObjectId
from pymongo import monitoring

from creatia_tui.config import Settings
from creatia_tui.data import users
from creatia_tui.data.access import DEACTIVATED, Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.board import (
    CARD_FIELDS,
    BoardService,
    MemberChoice,
    TaskConflict,
    TaskDraft,
    board_filter,
    column_pipeline,
    highest_key_pipeline,
)
from creatia_tui.data.db import Databases
from creatia_tui.data.models import TASK_STATUSES, Task
from creatia_tui.data.task_filters import ME, NO_SPRINT, UNASSIGNED, TaskFilter
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied, ValidationError
from tests.conftest import World
from tests.shard_key_monitor import ShardKeyMonitor

CLIENT = ClientContext(ip_address="192.0.2.44", user_agent="creatia-tui/test (board)")
ACTIVITY_KEYS = {
    "_id", "organization_id", "user_id", "action", "resource_type", "resource_id", "changes",
    "metadata", "timestamp", "created_at",
}


# ---------------------------------------------------------------- helpers
def service(dbs: Databases, user_id: str, org_id: str) -> BoardService:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return BoardService(dbs, Actor(user, org_id), CLIENT)


def insert_tasks(dbs: Databases, org: str, *specs: dict[str, Any]) -> dict[str, str]:
    """Insert tasks (TASK-0001, … unless a spec names its task_id); {task_id: document id}."""
    base = utcnow() - dt.timedelta(hours=1)
    docs = []
    for n, spec in enumerate(specs, start=1):
        doc = {
            "organization_id": org,
            "task_id": f"TASK-{n:04d}",
            "title": f"작업 {n}",
            "description": None,
            "status": "todo",
            "priority": "medium",
            "position": n * 1000.0,
            "tags": [],
            "labels": [],
            "time_entries": [],
            "created_at": base,
            "updated_at": base,
        }
        doc.update(spec)
        docs.append(doc)
    result = dbs.mongo.tasks.insert_many(docs)
    return {doc["task_id"]: str(oid) for doc, oid in zip(docs, result.inserted_ids, strict=True)}


def raw(dbs: Databases, org: str, task_id: str) -> dict[str, Any]:
    doc = dbs.mongo.tasks.find_one({"_id": ObjectId(task_id), "organization_id": org})
    assert doc is not None
    return doc


def activity(dbs: Databases, org: str) -> list[dict[str, Any]]:
    return list(dbs.mongo.activity_logs.find({"organization_id": org}).sort("created_at", 1))


def snapshot(dbs: Databases, org: str) -> list[dict[str, Any]]:
    """Everything the service could write, to prove a refusal wrote nothing."""
    return [
        list(dbs.mongo.tasks.find({"organization_id": org}).sort("_id", 1)),
        list(dbs.mongo.activity_logs.find({"organization_id": org})),
        list(dbs.mongo.task_counters.find({"organization_id": org})),
        list(dbs.mongo.dashboard_cache.find({"organization_id": org})),
    ]


def plan_text(dbs: Databases, command: dict[str, Any]) -> str:
    return str(dbs.mongo.command("explain", command, verbosity="queryPlanner"))


@pytest.fixture
def lab(world: World, dbs: Databases) -> BoardService:
    """The lab's owner."""
    return service(dbs, world.minjun, world.lab)


class Recorder(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.commands.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.commands if name in c]


@pytest.fixture
def recorded(
    settings: Settings, shard_key_monitor: ShardKeyMonitor
) -> Iterator[tuple[Databases, Recorder]]:
    """A Databases whose MongoDB commands are recorded (and still shard-key checked)."""
    recorder = Recorder()
    databases = Databases(
        settings, mongo_options={"event_listeners": [shard_key_monitor, recorder]}
    )
    yield databases, recorder
    databases.close()


# ---------------------------------------------------------------- reads
def test_board_columns_come_in_order_with_totals_and_a_limit(world, dbs, lab) -> None:
    ids = insert_tasks(
        dbs, world.lab,
        {"position": 3000.0, "description": "긴 설명"}, {"position": 1000.0},
        {"position": 2000.0}, {"position": 2000.0}, {"position": 500.0},
        {"status": "in_progress"}, {"status": "in_progress"}, {"status": "done"},
    )
    insert_tasks(dbs, world.acme, {"title": "다른 조직"}, {"status": "done"})
    board = lab.load_board(TaskFilter())
    assert [c.status for c in board] == list(TASK_STATUSES)
    assert [c.total for c in board] == [5, 2, 0, 1]
    todo = board[0]
    tied = sorted(["TASK-0003", "TASK-0004"], key=lambda key: ObjectId(ids[key]))
    assert [t.task_id for t in todo.tasks] == ["TASK-0005", "TASK-0002", *tied, "TASK-0001"]
    assert all(t.organization_id == world.lab for t in todo.tasks)
    assert todo.tasks[-1].description is None  # a card carries CARD_FIELDS only
    assert "description" not in CARD_FIELDS

    limited = lab.load_board(TaskFilter(), statuses=("done", "todo"), limit=2)
    assert [(c.status, c.total, len(c.tasks)) for c in limited] == [("done", 1, 1), ("todo", 5, 2)]
    assert [t.task_id for t in limited[1].tasks] == ["TASK-0005", "TASK-0002"]
    with pytest.raises(ValidationError):
        lab.load_board(TaskFilter(), statuses=("backlog",))
    with pytest.raises(ValidationError):
        lab.load_board(TaskFilter(), limit=0)


def test_every_filter_narrows_the_board(world, dbs, shard_key_monitor) -> None:
    now = utcnow()
    sprint = dbs.mongo.sprints.insert_one(
        {"organization_id": world.lab, "name": "Sprint 1", "status": "active",
         "start_date": now, "end_date": now, "created_at": now, "updated_at": now}
    ).inserted_id
    insert_tasks(
        dbs, world.lab,
        {"title": "사용자 대시보드 개선", "assignee_id": world.jiho, "tags": ["frontend"]},
        {"description": "대시보드 버그 수정", "status": "in_progress", "assignee_id": None},
        {"title": "로그인 오류", "priority": "high", "labels": ["customer-request"]},
        {"title": "배포 자동화", "status": "done", "assignee_id": world.jiho,
         "due_date": now - dt.timedelta(days=2), "completed_at": now},
        {"title": "백업 점검", "status": "review", "due_date": now - dt.timedelta(days=1),
         "sprint_id": str(sprint)},
        {"title": "문서 정리", "due_date": now + dt.timedelta(days=3), "tags": ["docs"]},
    )
    jiho = service(dbs, world.jiho, world.lab)

    def keys(task_filter: TaskFilter) -> set[str]:
        return {t.task_id for c in jiho.load_board(task_filter) for t in c.tasks}

    assert keys(TaskFilter(text="대시보드")) == {"TASK-0001", "TASK-0002"}  # title, description
    assert keys(TaskFilter(text="FRONT")) == {"TASK-0001"}  # a tag, case-insensitive
    assert keys(TaskFilter(text="task-0003")) == {"TASK-0003"}
    assert keys(TaskFilter(text=".*")) == set()  # literal, not a pattern
    assert keys(TaskFilter(assignee=ME)) == {"TASK-0001", "TASK-0004"}
    assert keys(TaskFilter(assignee=UNASSIGNED)) == {
        "TASK-0002", "TASK-0003", "TASK-0005", "TASK-0006"}  # null and missing alike
    assert keys(TaskFilter(assignee=world.jiho, open_only=True)) == {"TASK-0001"}
    assert keys(TaskFilter(tag="docs")) == {"TASK-0006"}
    assert keys(TaskFilter(label="customer-request")) == {"TASK-0003"}
    assert keys(TaskFilter(priority="high")) == {"TASK-0003"}
    assert keys(TaskFilter(due="overdue")) == {"TASK-0005"}  # the done one is not overdue
    assert keys(TaskFilter(due="this_week")) == {"TASK-0006"}
    assert keys(TaskFilter(sprint_id=str(sprint))) == {"TASK-0005"}
    assert keys(TaskFilter(sprint_id=NO_SPRINT, priority="high")) == {"TASK-0003"}

    board = jiho.load_board(TaskFilter(text="대시보드"))
    assert [c.total for c in board] == [1, 1, 0, 0]

    before = shard_key_monitor.checked
    [done] = jiho.load_board(TaskFilter(open_only=True), statuses=("done",))
    assert (done.tasks, done.total) == ([], 0)
    assert shard_key_monitor.checked == before  # answered without asking MongoDB


@pytest.mark.parametrize(
    "task_filter",
    [TaskFilter(), TaskFilter(text="대시보드"), TaskFilter(assignee=ME),
     TaskFilter(assignee=UNASSIGNED, priority="high"), TaskFilter(due="overdue", tag="x"),
     TaskFilter(open_only=True, sprint_id=NO_SPRINT, label="y")],
)
def test_board_and_search_queries_stay_on_an_index(world, dbs, task_filter) -> None:
    insert_tasks(dbs, world.lab, *({"title": f"작업 대시보드 {n}"} for n in range(30)))
    rest = board_filter(world.lab, task_filter, user_id=world.jiho, now=utcnow())
    pipeline = column_pipeline(world.lab, "todo", rest, 100)
    text = plan_text(dbs, {"aggregate": "tasks", "pipeline": pipeline, "cursor": {}})
    assert "IXSCAN" in text and "COLLSCAN" not in text
    assert "idx_tasks_org_status" in text  # the tenant-and-column prefix is the index bound
    # The rest of the filter is its own stage: no COLLSCAN, and the same result as one $match.
    merged = [{"$match": {"organization_id": world.lab, "status": "todo", **rest}},
              *pipeline[(2 if rest else 1):]]
    assert list(dbs.mongo.tasks.aggregate(pipeline)) == list(dbs.mongo.tasks.aggregate(merged))


def test_key_and_column_end_queries_stay_on_an_index(world, dbs) -> None:
    insert_tasks(dbs, world.lab, *({} for _ in range(10)))
    text = plan_text(
        dbs, {"aggregate": "tasks", "pipeline": highest_key_pipeline(world.lab), "cursor": {}}
    )
    assert "IXSCAN" in text and "COLLSCAN" not in text
    text = plan_text(dbs, {"find": "tasks", "filter": {"organization_id": world.lab,
                                                       "status": "todo"},
                           "sort": {"position": -1, "_id": -1}, "limit": 1})
    assert "IXSCAN" in text and "COLLSCAN" not in text


def test_get_task_is_the_whole_document_of_this_organization_only(world, dbs, lab) -> None:
    [ours] = insert_tasks(dbs, world.lab, {"description": "전체 문서"}).values()
    [theirs] = insert_tasks(dbs, world.acme, {}).values()
    task = lab.get_task(ours)
    assert task.description == "전체 문서" and task.task_id == "TASK-0001"
    for wrong in (theirs, "not-an-id", str(ObjectId())):
        with pytest.raises(ValidationError, match="not in this organization"):
            lab.get_task(wrong)


def test_assignable_members_are_active_people_by_name(world, dbs) -> None:
    yuna = service(dbs, world.yuna, world.lab)  # a viewer may see whom tasks can go to
    assert yuna.assignable_members() == [
        MemberChoice(world.minjun, "김민준", "minjun@example.com"),
        MemberChoice(world.jiho, "박지호", "jiho@example.com"),
        MemberChoice(world.seoyeon, "이서연", "seoyeon@example.com"),
        MemberChoice(world.yuna, "최유나", "yuna@example.com"),
    ]  # gone (a deactivated account) and bob (another organization) are not offered


# ---------------------------------------------------------------- moves
def test_a_status_change_writes_the_seeds_activity_shape(world, dbs) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    dbs.mongo.dashboard_cache.insert_many(
        [{"organization_id": world.lab, "key": "burndown"},
         {"organization_id": world.acme, "key": "burndown"}]
    )
    jiho = service(dbs, world.jiho, world.lab)
    held = jiho.get_task(task_id)
    moved, record = jiho.move(held, "in_progress", 500.0)

    doc = raw(dbs, world.lab, task_id)
    assert (doc["status"], doc["position"]) == ("in_progress", 500.0)
    assert doc["updated_at"] > held.updated_at and doc.get("completed_at") is None
    assert moved == jiho.get_task(task_id)  # built locally, equal to a re-read
    assert (record.from_status, record.from_position) == ("todo", 1000.0)
    assert (record.to_status, record.to_position, record.key) == ("in_progress", 500.0, "TASK-0001")

    [log] = activity(dbs, world.lab)
    assert set(log) == ACTIVITY_KEYS
    assert log["action"] == "task.status_changed"
    assert (log["resource_type"], log["resource_id"]) == ("Task", task_id)
    assert log["changes"] == {"status": {"from": "todo", "to": "in_progress"}}
    assert log["metadata"] == {"user_agent": CLIENT.user_agent, "ip_address": CLIENT.ip_address,
                               "api_version": "v1", "client_type": "tui"}
    assert (log["user_id"], log["organization_id"]) == (world.jiho, world.lab)
    assert log["timestamp"] == log["created_at"] == doc["updated_at"]
    # The organization's dashboards were invalidated, nobody else's.
    assert dbs.mongo.dashboard_cache.count_documents({"organization_id": world.lab}) == 0
    assert dbs.mongo.dashboard_cache.count_documents({"organization_id": world.acme}) == 1


def test_done_sets_completed_at_and_leaving_done_clears_it(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {"status": "review"}).values()
    done, _ = lab.move(lab.get_task(task_id), "done", 1000.0)
    assert done.completed_at is not None
    assert raw(dbs, world.lab, task_id)["completed_at"] == done.completed_at
    back, _ = lab.move(done, "in_progress", 1000.0)
    assert back.completed_at is None and raw(dbs, world.lab, task_id)["completed_at"] is None
    assert [a["changes"] for a in activity(dbs, world.lab)] == [
        {"status": {"from": "review", "to": "done"}},
        {"status": {"from": "done", "to": "in_progress"}},
    ]


def test_a_reorder_is_a_move_within_the_column(world, dbs, lab) -> None:
    ids = insert_tasks(dbs, world.lab, {}, {}, {})
    third = lab.get_task(ids["TASK-0003"])
    moved, record = lab.move(third, "todo", 1500.0)
    assert record.from_status == record.to_status == "todo"
    [column] = lab.load_board(TaskFilter(), statuses=("todo",))
    assert [t.task_id for t in column.tasks] == ["TASK-0001", "TASK-0003", "TASK-0002"]
    [log] = activity(dbs, world.lab)
    assert log["action"] == "task.moved"
    assert log["changes"] == {"position": {"from": 3000.0, "to": 1500.0}}
    # Moving nowhere writes nothing.
    same, _ = lab.move(moved, "todo", 1500.0)
    assert same is moved and len(activity(dbs, world.lab)) == 1


def test_undo_puts_the_card_back_and_is_logged(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {"status": "review", "position": 7000.0}).values()
    moved, record = lab.move(lab.get_task(task_id), "done", 100.0)
    restored = lab.undo(record, moved)
    doc = raw(dbs, world.lab, task_id)
    assert (doc["status"], doc["position"], doc["completed_at"]) == ("review", 7000.0, None)
    assert restored == lab.get_task(task_id)
    assert [a["changes"]["status"] for a in activity(dbs, world.lab)] == [
        {"from": "review", "to": "done"}, {"from": "done", "to": "review"}]
    with pytest.raises(TaskConflict):  # undo holds the moved version, which is gone now
        lab.undo(record, moved)
    [other] = insert_tasks(dbs, world.lab, {"task_id": "TASK-0100"}).values()
    with pytest.raises(ValidationError, match="belongs to TASK-0001"):
        lab.undo(record, lab.get_task(other))


def test_a_task_changed_meanwhile_is_a_conflict_and_nothing_is_written(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    later = utcnow() + dt.timedelta(seconds=5)
    dbs.mongo.tasks.update_one({"_id": ObjectId(task_id), "organization_id": world.lab},
                               {"$set": {"updated_at": later, "title": "다른 사람이 고침"}})
    before = snapshot(dbs, world.lab)
    calls = [
        lambda: lab.move(held, "in_progress", 1.0),
        lambda: lab.move(held, "todo", 1.0),
        lambda: lab.assign(held, world.jiho),
        lambda: lab.set_priority(held, "urgent"),
        lambda: lab.edit(held, TaskDraft(title="내 제목")),
        lambda: lab.log_time(held, 1.0, "작업"),
        lambda: lab.delete(held),
    ]
    for call in calls:
        with pytest.raises(TaskConflict, match="TASK-0001 was changed by someone else") as caught:
            call()
        assert caught.value.current is not None
        assert caught.value.current.title == "다른 사람이 고침"
        assert caught.value.current.updated_at == later
    assert snapshot(dbs, world.lab) == before


def test_a_task_deleted_meanwhile_is_a_conflict_without_a_current_task(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    dbs.mongo.tasks.delete_one({"_id": ObjectId(task_id), "organization_id": world.lab})
    for call in (lambda: lab.move(held, "review", 1.0), lambda: lab.delete(held),
                 lambda: lab.log_time(held, 2.0, "")):
        with pytest.raises(TaskConflict, match="TASK-0001 was deleted") as caught:
            call()
        assert caught.value.current is None
    assert activity(dbs, world.lab) == []


# ---------------------------------------------------------------- assign, priority, edit
def test_assign_sets_the_snapshot_and_unassign_clears_it(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    task = lab.assign(lab.get_task(task_id), world.seoyeon)  # no snapshot yet: from PostgreSQL
    snap = raw(dbs, world.lab, task_id)["assignee_snapshot"]
    assert set(snap) == {"user_id", "name", "email", "avatar_url", "synced_at"}
    assert (snap["user_id"], snap["name"], snap["email"]) == (
        world.seoyeon, "이서연", "seoyeon@example.com")
    assert task == lab.get_task(task_id)

    synced = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.timezone.utc)
    dbs.mongo.user_snapshots.insert_one(
        {"user_id": world.jiho, "name": "박지호 (QA)", "email": "jiho@example.com",
         "avatar_url": "https://example.com/j.png", "synced_at": synced})
    task = lab.assign(task, world.jiho)  # the synced snapshot wins
    assert raw(dbs, world.lab, task_id)["assignee_snapshot"] == {
        "user_id": world.jiho, "name": "박지호 (QA)", "email": "jiho@example.com",
        "avatar_url": "https://example.com/j.png", "synced_at": synced}
    assert raw(dbs, world.lab, task_id)["assignee_id"] == world.jiho

    task = lab.assign(task, None)
    doc = raw(dbs, world.lab, task_id)
    assert doc["assignee_id"] is None and doc["assignee_snapshot"] is None
    assert task.assignee_id is None and task.assignee_snapshot is None
    assert [(a["action"], a["changes"]) for a in activity(dbs, world.lab)] == [
        ("task.assigned", {"assignee_id": {"from": None, "to": world.seoyeon}}),
        ("task.assigned", {"assignee_id": {"from": world.seoyeon, "to": world.jiho}}),
        ("task.assigned", {"assignee_id": {"from": world.jiho, "to": None}}),
    ]


@pytest.mark.parametrize(
    ("who", "sentence"),
    [("bob", "Bob Stone is not an active member of this organization."),
     ("gone", "떠난 사람 is not an active member of this organization."),
     ("stranger", "is not an active member of this organization."),
     ("garbage", "'x' is not an active member of this organization.")],
)
def test_assign_refuses_who_is_not_an_active_member(world, dbs, lab, who, sentence) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    user_id = {"stranger": "00000000-0000-4000-8000-000000000000", "garbage": "x"}.get(
        who) or getattr(world, who)
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match=sentence.replace("(", r"\(").replace(")", r"\)")):
        lab.assign(held, user_id)
    assert snapshot(dbs, world.lab) == before


def test_set_priority_validates_and_logs(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match="Unknown priority 'critical'"):
        lab.set_priority(held, "critical")
    assert snapshot(dbs, world.lab) == before
    task = lab.set_priority(held, "high")
    assert raw(dbs, world.lab, task_id)["priority"] == "high" and task == lab.get_task(task_id)
    [log] = activity(dbs, world.lab)
    assert (log["action"], log["changes"]) == (
        "task.updated", {"priority": {"from": "medium", "to": "high"}})


def _draft(task: Task, **changes: Any) -> TaskDraft:
    fields = {name: getattr(task, name) for name in TaskDraft.__dataclass_fields__}
    return TaskDraft(**(fields | changes))


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"title": "   "}, "The title is empty"),
     ({"title": "가" * 501}, "longer than 500 characters"),
     ({"priority": "critical"}, "Unknown priority"),
     ({"status": "backlog"}, "Unknown status"),
     ({"estimated_hours": -1}, "cannot be negative"),
     ({"estimated_hours": float("nan")}, "must be a number"),
     ({"start_date": dt.datetime(2026, 12, 2, tzinfo=dt.timezone.utc),
       "due_date": dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)}, "due date is before"),
     ({"tags": ["가" * 51]}, "longer than 50 characters"),
     ({"tags": [f"t{n}" for n in range(21)]}, "at most 20 tags"),
     ({"labels": [f"l{n}" for n in range(21)]}, "at most 20 labels"),
     ({"sprint_id": str(ObjectId())}, "sprint is not in this organization")],
)
def test_edit_refusals_write_nothing(world, dbs, lab, changes, message) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match=message):
        lab.edit(held, _draft(held, **changes))
    assert snapshot(dbs, world.lab) == before


def test_edit_writes_only_the_changed_fields(world, recorded) -> None:
    dbs, recorder = recorded
    [task_id] = insert_tasks(
        dbs, world.lab, {"description": "설명", "tags": ["ui"], "estimated_hours": 8.0,
                         "actual_hours": 3.0, "remaining_hours": 5.0}).values()
    lab = service(dbs, world.minjun, world.lab)
    held = lab.get_task(task_id)
    due = dt.datetime(2026, 12, 24, 18, 0, 0, 123456, tzinfo=dt.timezone.utc)
    recorder.commands.clear()
    task = lab.edit(held, _draft(held, title="  사용자 대시보드 개선 ", tags=["ui", "dashboard"],
                                 estimated_hours=10, due_date=due))
    [update] = recorder.named("update")
    assert set(update["updates"][0]["u"]["$set"]) == {
        "title", "tags", "estimated_hours", "remaining_hours", "due_date", "updated_at"}
    assert task == lab.get_task(task_id)
    assert (task.title, task.remaining_hours) == ("사용자 대시보드 개선", 7.0)
    assert task.due_date == due.replace(microsecond=123000)  # as MongoDB keeps it
    [log] = activity(dbs, world.lab)
    assert log["action"] == "task.updated"
    assert log["changes"] == {
        "title": {"from": "작업 1", "to": "사용자 대시보드 개선"},
        "tags": {"from": ["ui"], "to": ["ui", "dashboard"]},
        "estimated_hours": {"from": 8.0, "to": 10.0},
        "due_date": {"from": None, "to": due.replace(microsecond=123000)},
    }
    recorder.commands.clear()
    assert lab.edit(task, _draft(task)) is task  # nothing changed, nothing written
    assert recorder.named("update") == [] and recorder.named("insert") == []

    moved = lab.edit(task, _draft(task, status="done"))  # a status edit lands at the column end
    assert moved.completed_at is not None and moved == lab.get_task(task_id)
    assert activity(dbs, world.lab)[-1]["changes"] == {"status": {"from": "todo", "to": "done"}}


# ---------------------------------------------------------------- create, delete
def test_create_allocates_keys_in_sequence_at_the_column_end(world, dbs, lab) -> None:
    first = lab.create(TaskDraft(title="첫 작업", tags=["ui"], estimated_hours=4))
    second = lab.create(TaskDraft(title="둘째 작업"))
    third = lab.create(TaskDraft(title="검토 작업", status="review"))
    done = lab.create(TaskDraft(title="끝난 작업", status="done"))
    assert [t.task_id for t in (first, second, third, done)] == [
        "TASK-0001", "TASK-0002", "TASK-0003", "TASK-0004"]
    assert (first.position, second.position, third.position) == (1000.0, 2000.0, 1000.0)
    assert first == lab.get_task(first.id) and done.completed_at is not None
    assert (first.remaining_hours, first.actual_hours) == (4.0, 0.0)
    doc = raw(dbs, world.lab, first.id)
    assert doc["created_by_id"] == world.minjun and doc["organization_id"] == world.lab
    log = activity(dbs, world.lab)[0]
    assert (log["action"], log["resource_id"], log["changes"]) == (
        "task.created", first.id, {"task_id": "TASK-0001", "title": "첫 작업"})
    assert dbs.mongo.task_counters.find_one({"organization_id": world.lab})["next"] == 5


@pytest.mark.parametrize(
    ("existing", "expected"),
    [(["TASK-0998", "TASK-0999"], ["TASK-1000", "TASK-1001"]),
     (["TASK-999", "TASK-0042"], ["TASK-1000", "TASK-1001"]),  # 999 sorts after 1000 as text
     (["TASK-9999", "TASK-10000"], ["TASK-10001", "TASK-10002"]),
     (["GH-77777", "TASK-0007"], ["TASK-0008", "TASK-0009"])],
)
def test_keys_continue_after_the_highest_number(world, dbs, lab, existing, expected) -> None:
    insert_tasks(dbs, world.lab, *({"task_id": key} for key in existing))
    assert [lab.create(TaskDraft(title="새 작업")).task_id for _ in expected] == expected


def test_a_key_taken_behind_the_counters_back_is_skipped(world, dbs, lab) -> None:
    assert lab.create(TaskDraft(title="하나")).task_id == "TASK-0001"
    insert_tasks(dbs, world.lab, {"task_id": "TASK-0002"}, {"task_id": "TASK-0003"})
    assert lab.create(TaskDraft(title="넷")).task_id == "TASK-0004"
    assert lab.create(TaskDraft(title="다섯")).task_id == "TASK-0005"


def test_concurrent_creates_do_not_collide(world, dbs) -> None:
    services = [service(dbs, world.minjun, world.lab), service(dbs, world.jiho, world.lab)]
    made: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def work(board: BoardService) -> None:
        try:
            start.wait()
            for n in range(6):
                made.append(board.create(TaskDraft(title=f"동시 작업 {n}")).task_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(made) == [f"TASK-{n:04d}" for n in range(1, 13)]
    assert dbs.mongo.tasks.count_documents({"organization_id": world.lab}) == 12


def test_create_validates_and_needs_a_real_sprint(world, dbs, lab) -> None:
    before = snapshot(dbs, world.lab)
    for draft in (TaskDraft(title=""), TaskDraft(title="x", priority="p0"),
                  TaskDraft(title="x", sprint_id="nope")):
        with pytest.raises(ValidationError):
            lab.create(draft)
    assert snapshot(dbs, world.lab) == before
    now = utcnow()
    sprint = dbs.mongo.sprints.insert_one(
        {"organization_id": world.lab, "name": "S", "status": "active", "start_date": now,
         "end_date": now, "created_at": now, "updated_at": now}).inserted_id
    assert lab.create(TaskDraft(title="스프린트 작업", sprint_id=str(sprint))).sprint_id == str(
        sprint)


def test_delete_removes_the_version_that_was_confirmed(world, dbs, lab) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {"title": "지울 작업"}).values()
    confirmed = lab.get_task(task_id)  # what the confirmation dialog showed
    changed = lab.set_priority(confirmed, "urgent")  # …and then it changed
    with pytest.raises(TaskConflict, match="was changed by someone else"):
        lab.delete(confirmed)
    assert dbs.mongo.tasks.count_documents({"organization_id": world.lab}) == 1
    lab.delete(changed)
    assert dbs.mongo.tasks.count_documents({"organization_id": world.lab}) == 0
    log = activity(dbs, world.lab)[-1]
    assert (log["action"], log["resource_id"], log["changes"]) == (
        "task.deleted", task_id, {"task_id": "TASK-0001", "title": "지울 작업"})
    with pytest.raises(ValidationError):
        lab.get_task(task_id)


# ---------------------------------------------------------------- time
@pytest.mark.parametrize("hours", [0, 24.5, -1, float("nan"), float("inf"), True, "2"])
def test_log_time_refuses_hours_out_of_bounds(world, dbs, lab, hours) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    held = lab.get_task(task_id)
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match="more than 0 and at most 24 hours"):
        lab.log_time(held, hours, "작업")
    with pytest.raises(ValidationError, match="longer than 500"):
        lab.log_time(held, 1, "가" * 501)
    assert snapshot(dbs, world.lab) == before


def test_log_time_adds_up_hours(world, dbs) -> None:
    ids = insert_tasks(dbs, world.lab, {"estimated_hours": 8.0, "actual_hours": 3.5,
                                        "remaining_hours": 4.5}, {})
    jiho = service(dbs, world.jiho, world.lab)
    task = jiho.log_time(jiho.get_task(ids["TASK-0001"]), 2, "초기 설계")
    assert (task.actual_hours, task.remaining_hours) == (5.5, 2.5)
    task = jiho.log_time(task, 24, "  ")
    assert (task.actual_hours, task.remaining_hours) == (29.5, 0.0)
    assert task == jiho.get_task(ids["TASK-0001"])
    entries = raw(dbs, world.lab, ids["TASK-0001"])["time_entries"]
    assert [(e["user_id"], e["hours"], e["description"]) for e in entries] == [
        (world.jiho, 2.0, "초기 설계"), (world.jiho, 24.0, None)]
    assert [a["changes"] for a in activity(dbs, world.lab)] == [
        {"actual_hours": {"from": 3.5, "to": 5.5}}, {"actual_hours": {"from": 5.5, "to": 29.5}}]
    assert {a["action"] for a in activity(dbs, world.lab)} == {"task.time_logged"}

    no_estimate = jiho.log_time(jiho.get_task(ids["TASK-0002"]), 0.25, "")
    assert (no_estimate.actual_hours, no_estimate.remaining_hours) == (0.25, None)


def test_log_time_from_a_card_counts_from_the_stored_hours(world, dbs, lab) -> None:
    insert_tasks(dbs, world.lab, {"estimated_hours": 8.0, "actual_hours": 3.0,
                                  "remaining_hours": 5.0})
    [card] = lab.load_board(TaskFilter(), statuses=("todo",))[0].tasks
    assert card.actual_hours is None  # a card does not carry the hours
    task = lab.log_time(card, 1.0, "")
    assert (task.actual_hours, task.remaining_hours) == (4.0, 4.0)
    assert raw(dbs, world.lab, card.id)["actual_hours"] == 4.0


# ---------------------------------------------------------------- who may
def test_a_viewer_reads_but_every_write_is_refused(world, dbs) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    yuna = service(dbs, world.yuna, world.lab)
    assert [c.total for c in yuna.load_board(TaskFilter())] == [1, 0, 0, 0]
    held = yuna.get_task(task_id)
    before = snapshot(dbs, world.lab)
    writes = [
        lambda: yuna.move(held, "done", 1.0),
        lambda: yuna.assign(held, world.yuna),
        lambda: yuna.set_priority(held, "high"),
        lambda: yuna.edit(held, _draft(held, title="바꿈")),
        lambda: yuna.create(TaskDraft(title="새 작업")),
        lambda: yuna.delete(held),
        lambda: yuna.log_time(held, 1, ""),
    ]
    for write in writes:
        with pytest.raises(PermissionDenied, match=r"permission tasks\.\w+ is not granted"):
            write()
    assert snapshot(dbs, world.lab) == before


def test_an_outsider_gets_nothing(world, dbs) -> None:
    [task_id] = insert_tasks(dbs, world.lab, {}).values()
    bob = service(dbs, world.bob, world.lab)
    for call in (lambda: bob.load_board(TaskFilter()), lambda: bob.get_task(task_id),
                 bob.assignable_members):
        with pytest.raises(PermissionDenied):
            call()


def test_a_deactivated_organization_is_refused(world, dbs) -> None:
    insert_tasks(dbs, world.dormant, {})
    bob = service(dbs, world.bob, world.dormant)
    before = snapshot(dbs, world.dormant)
    for call in (lambda: bob.load_board(TaskFilter()),
                 lambda: bob.create(TaskDraft(title="휴면 작업"))):
        with pytest.raises(PermissionDenied, match=DEACTIVATED):
            call()
    assert snapshot(dbs, world.dormant) == before


def test_a_failed_activity_write_rolls_the_change_back(
    world: World, settings: Settings, raw_mongo: Any, shard_key_monitor: ShardKeyMonitor
) -> None:
    """The task update and its activity document are one transaction: when the activity insert
    fails (the server's own fault injection), the move is not left behind."""
    from creatia_tui.errors import UserError

    app_name = "board-rollback-test"
    databases = Databases(
        settings, mongo_options={"appname": app_name, "event_listeners": [shard_key_monitor]}
    )
    try:
        [task_id] = insert_tasks(databases, world.lab, {}).values()
        jiho = service(databases, world.jiho, world.lab)
        held = jiho.get_task(task_id)
        raw_mongo.admin.command(
            "configureFailPoint", "failCommand", mode={"times": 1},
            data={"failCommands": ["insert"], "appName": app_name, "errorCode": 2},
        )
        try:
            with pytest.raises(UserError):
                jiho.move(held, "in_progress", 500.0)
        finally:
            raw_mongo.admin.command("configureFailPoint", "failCommand", mode="off")
        doc = raw(databases, world.lab, task_id)
        assert (doc["status"], doc["updated_at"]) == ("todo", held.updated_at)
        assert activity(databases, world.lab) == []
        # And the same move goes through once the server accepts writes again.
        jiho.move(held, "in_progress", 500.0)
        assert raw(databases, world.lab, task_id)["status"] == "in_progress"
        assert [log["action"] for log in activity(databases, world.lab)] == [
            "task.status_changed"
        ]
    finally:
        databases.close()
