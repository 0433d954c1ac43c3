"""The sprint service against the real servers: what it reads, writes, logs and refuses.

Driven in the world's lab organization (크리에이티아 연구소) as its owner (minjun), member
(jiho), viewer (yuna) and an outsider (bob, who belongs to Acme only).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId

from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.board import BoardService, TaskDraft
from creatia_tui.data.burndown import BurndownPoint
from creatia_tui.data.db import Databases
from creatia_tui.data.sprints import (
    SprintConflict,
    SprintDraft,
    SprintMetrics,
    SprintRecord,
    SprintService,
    metrics_pipeline,
    recompute_metrics,
)
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied, ValidationError
from tests.conftest import World

CLIENT = ClientContext(ip_address="192.0.2.45", user_agent="creatia-tui/test (sprints)")
UTC = dt.timezone.utc
TODAY = dt.datetime.now(UTC).date()


# ---------------------------------------------------------------- helpers
def service(dbs: Databases, user_id: str, org_id: str) -> SprintService:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return SprintService(dbs, Actor(user, org_id), CLIENT)


def board(dbs: Databases, user_id: str, org_id: str) -> BoardService:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return BoardService(dbs, Actor(user, org_id), CLIENT)


def draft(name: str = "Sprint 1", **changes: Any) -> SprintDraft:
    values: dict[str, Any] = {
        "name": name, "start_date": TODAY - dt.timedelta(days=2),
        "end_date": TODAY + dt.timedelta(days=11), "goal": "사용자 경험 개선",
        "capacity_hours": 120.0,
    }
    values.update(changes)
    return SprintDraft(**values)


_keys = iter(range(1, 1_000_000))


def insert_tasks(dbs: Databases, org: str, *specs: dict[str, Any]) -> list[str]:
    """Insert tasks; their document ids in order."""
    base = utcnow() - dt.timedelta(hours=1)
    docs = []
    for spec in specs:
        n = next(_keys)
        doc = {
            "organization_id": org, "task_id": f"TASK-{n:04d}", "title": f"작업 {n}",
            "status": "todo", "priority": "medium", "position": n * 1000.0, "tags": [],
            "labels": [], "time_entries": [], "sprint_id": None, "created_at": base,
            "updated_at": base,
        }
        doc.update(spec)
        if doc.get("actual_hours") and "time_entries" not in spec:
            # As the board keeps them: actual_hours is the sum of the time entries.
            doc["time_entries"] = [{"user_id": "u", "hours": doc["actual_hours"],
                                    "description": None, "logged_at": base}]
        docs.append(doc)
    result = dbs.mongo.tasks.insert_many(docs)
    return [str(oid) for oid in result.inserted_ids]


def task(dbs: Databases, org: str, task_id: str) -> dict[str, Any]:
    doc = dbs.mongo.tasks.find_one({"_id": ObjectId(task_id), "organization_id": org})
    assert doc is not None
    return doc


def sprint_doc(dbs: Databases, org: str, sprint_id: str) -> dict[str, Any]:
    doc = dbs.mongo.sprints.find_one({"_id": ObjectId(sprint_id), "organization_id": org})
    assert doc is not None
    return doc


def activity(dbs: Databases, org: str) -> list[dict[str, Any]]:
    return list(dbs.mongo.activity_logs.find({"organization_id": org}).sort(
        [("created_at", 1), ("_id", 1)]))


def snapshot(dbs: Databases, org: str) -> list[list[dict[str, Any]]]:
    """Everything the service could write, to prove a refusal wrote nothing."""
    return [
        list(dbs.mongo.sprints.find({"organization_id": org}).sort("_id", 1)),
        list(dbs.mongo.tasks.find({"organization_id": org}).sort("_id", 1)),
        list(dbs.mongo.activity_logs.find({"organization_id": org}).sort("_id", 1)),
    ]


def plan_text(dbs: Databases, command: dict[str, Any]) -> str:
    return str(dbs.mongo.command("explain", command, verbosity="queryPlanner"))


@pytest.fixture
def owner(world: World, dbs: Databases) -> SprintService:
    return service(dbs, world.minjun, world.lab)


@pytest.fixture
def member(world: World, dbs: Databases) -> SprintService:
    return service(dbs, world.jiho, world.lab)


# ---------------------------------------------------------------- create, list, edit
def test_create_stores_the_seeds_shape_and_lists_newest_first(world, dbs, member) -> None:
    older = member.create(draft("Sprint 0", start_date=TODAY - dt.timedelta(days=30),
                                end_date=TODAY - dt.timedelta(days=17)))
    milestone = "7f3c1b0e-3a51-4c5e-9a7e-0d1c2b3a4f5e"
    newer = member.create(draft("  Sprint 1  ", milestone_id=milestone))
    doc = sprint_doc(dbs, world.lab, newer.id)
    assert doc["name"] == "Sprint 1" and doc["status"] == "planned"
    assert doc["start_date"] == dt.datetime.combine(TODAY - dt.timedelta(days=2), dt.time(0),
                                                    tzinfo=UTC)
    assert doc["end_date"] == dt.datetime.combine(TODAY + dt.timedelta(days=11),
                                                  dt.time(23, 59, 59), tzinfo=UTC)
    assert doc["capacity"] == {"total_hours": 120.0, "allocated_hours": 0.0,
                               "available_hours": 120.0}
    assert doc["metrics"]["total_tasks"] == 0 and doc["metrics"]["burndown_data"] == []
    assert doc["retrospective"] == {"what_went_well": [], "what_to_improve": [],
                                    "action_items": []}
    assert doc["milestone_id"] == milestone
    assert len(newer.days) == 14
    assert [s.name for s in member.list_sprints()] == ["Sprint 1", "Sprint 0"]
    assert [s.id for s in member.list_sprints("planned")] == [newer.id, older.id]
    assert member.list_sprints("active") == []
    assert member.get_sprint(newer.id) == newer
    [_, log_newer] = activity(dbs, world.lab)
    assert (log_newer["action"], log_newer["resource_type"], log_newer["resource_id"]) == (
        "sprint.created", "Sprint", newer.id)
    assert log_newer["metadata"]["client_type"] == "tui"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "   "}, "name is empty"),
        ({"name": "x" * 256}, "longer than 255"),
        ({"goal": "g" * 2001}, "goal is longer"),
        ({"start_date": TODAY, "end_date": TODAY - dt.timedelta(days=1)}, "start before it ends"),
        ({"start_date": dt.datetime(2026, 3, 2, 9, tzinfo=UTC),
          "end_date": dt.datetime(2026, 3, 2, 9, tzinfo=UTC)}, "start before it ends"),
        ({"end_date": TODAY + dt.timedelta(days=400)}, "at most 366 days"),
        ({"start_date": "2026-03-02"}, "start date is not a date"),
        ({"capacity_hours": -1}, "cannot be negative"),
        ({"capacity_hours": float("nan")}, "must be a number"),
        ({"capacity_hours": "40"}, "must be a number"),
        ({"milestone_id": "milestone-7"}, "not a milestone id"),
    ],
)
def test_create_and_edit_refusals_write_nothing(world, dbs, member, changes, message) -> None:
    held = member.create(draft())
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match=message):
        member.create(draft(**changes))
    with pytest.raises(ValidationError, match=message):
        member.edit(held, draft(**changes))
    assert snapshot(dbs, world.lab) == before


def test_edit_writes_only_what_changed_and_keeps_derived_data(world, dbs, member) -> None:
    held = member.create(draft())
    [t1, t2] = insert_tasks(dbs, world.lab, {"estimated_hours": 30.0}, {"estimated_hours": 10.0})
    member.add_tasks(held, [t1, t2])
    assert sprint_doc(dbs, world.lab, held.id)["capacity"]["allocated_hours"] == 40.0
    # Adding tasks is not an edit of the sprint: the held copy is still current.
    edited = member.edit(held, draft("$100 sprint", goal=None, capacity_hours=50))
    doc = sprint_doc(dbs, world.lab, held.id)
    assert (doc["name"], doc["goal"]) == ("$100 sprint", None)
    assert doc["capacity"] == {"total_hours": 50.0, "allocated_hours": 40.0,
                               "available_hours": 10.0}
    assert doc["metrics"]["total_tasks"] == 2
    assert edited.updated_at == doc["updated_at"] and edited.updated_at > held.updated_at
    assert edited.available_hours == 10.0
    log = activity(dbs, world.lab)[-1]
    assert log["action"] == "sprint.updated"
    assert log["changes"] == {
        "name": {"from": "Sprint 1", "to": "$100 sprint"},
        "goal": {"from": "사용자 경험 개선", "to": None},
        "total_hours": {"from": 120.0, "to": 50.0},
    }
    assert member.edit(edited, edited.to_draft()) == edited  # nothing changed: nothing written
    # The stale copy is a conflict and writes nothing.
    before = snapshot(dbs, world.lab)
    with pytest.raises(SprintConflict, match="changed by someone else") as caught:
        member.edit(held, draft("Stale"))
    assert caught.value.current == edited
    assert snapshot(dbs, world.lab) == before


# ---------------------------------------------------------------- tasks in and out
def test_add_and_remove_tasks_move_sprint_id_log_each_task_and_follow_metrics(
    world, dbs, member
) -> None:
    one = member.create(draft("One"))
    two = member.create(draft("Two"))
    [a, b, c] = insert_tasks(
        dbs, world.lab,
        {"estimated_hours": 8.0, "actual_hours": 3.0},
        {"estimated_hours": 5.0, "status": "done"},
        {"estimated_hours": 2.0},
    )
    held_b = task(dbs, world.lab, b)["updated_at"]
    assert member.add_tasks(one, [a, b, c]) == 3
    assert member.add_tasks(one, [a, b]) == 0  # already there
    assert {task(dbs, world.lab, t)["sprint_id"] for t in (a, b, c)} == {one.id}
    assert task(dbs, world.lab, b)["updated_at"] > held_b  # the board's held card is stale now
    metrics = sprint_doc(dbs, world.lab, one.id)["metrics"]
    assert (metrics["total_tasks"], metrics["completed_tasks"], metrics["todo_tasks"]) == (3, 1, 2)
    logs = [log for log in activity(dbs, world.lab) if log["action"] == "task.updated"]
    assert sorted((log["resource_id"], log["changes"]["sprint_id"]["from"],
                   log["changes"]["sprint_id"]["to"]) for log in logs) == sorted(
        [(a, None, one.id), (b, None, one.id), (c, None, one.id)])

    # From one sprint to another: both sprints' metrics follow.
    assert member.add_tasks(two, [c]) == 1
    assert sprint_doc(dbs, world.lab, one.id)["metrics"]["total_tasks"] == 2
    assert sprint_doc(dbs, world.lab, two.id)["metrics"]["total_tasks"] == 1
    assert activity(dbs, world.lab)[-1]["changes"] == {"sprint_id": {"from": one.id,
                                                                      "to": two.id}}
    # Remove: only the tasks that are in the sprint go to the backlog.
    assert member.remove_tasks(one, [a, c]) == 1
    assert task(dbs, world.lab, a)["sprint_id"] is None
    assert task(dbs, world.lab, c)["sprint_id"] == two.id
    doc = sprint_doc(dbs, world.lab, one.id)
    assert doc["metrics"]["total_tasks"] == 1 and doc["capacity"]["allocated_hours"] == 5.0
    assert [t.id for t in member.sprint_tasks(one)] == [b]
    assert a in {t.id for t in member.backlog_tasks()}


def test_adding_refuses_foreign_tasks_and_completed_sprints_writing_nothing(
    world, dbs, member, owner
) -> None:
    sprint = member.create(draft())
    [ours] = insert_tasks(dbs, world.lab, {})
    [theirs] = insert_tasks(dbs, world.acme, {})
    before = snapshot(dbs, world.lab)
    for ids in ([ours, theirs], ["not-an-id"], [str(ObjectId())]):
        with pytest.raises(ValidationError, match="not in this organization"):
            member.add_tasks(sprint, ids)
    with pytest.raises(ValidationError, match="not in this organization"):
        member.add_tasks(str(ObjectId()), [ours])
    assert snapshot(dbs, world.lab) == before
    assert task(dbs, world.acme, theirs)["sprint_id"] is None
    dbs.mongo.sprints.update_one({"_id": ObjectId(sprint.id), "organization_id": world.lab},
                                 {"$set": {"status": "completed"}})
    with pytest.raises(ValidationError, match="is completed"):
        member.add_tasks(sprint, [ours])


# ---------------------------------------------------------------- start
def test_only_one_sprint_is_active_at_a_time(world, dbs, member) -> None:
    first = member.create(draft("첫 스프린트"))
    second = member.create(draft("둘째 스프린트"))
    started = member.start(first)
    doc = sprint_doc(dbs, world.lab, first.id)
    assert doc["status"] == "active" and started.started_at == doc["started_at"]
    assert activity(dbs, world.lab)[-1]["changes"] == {"status": {"from": "planned",
                                                                   "to": "active"}}
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match="첫 스프린트 is already active; complete it "
                                              "before starting 둘째 스프린트"):
        member.start(second)
    with pytest.raises(ValidationError, match="only a planned sprint can start"):
        member.start(started)
    with pytest.raises(SprintConflict):
        member.start(first)  # a stale planned copy of the active sprint
    assert snapshot(dbs, world.lab) == before
    # Another organization has its own active sprint.
    acme = service(dbs, world.bob, world.acme)
    assert acme.start(acme.create(draft("Acme sprint"))).status == "active"


def test_a_sprint_whose_days_are_over_cannot_start(world, dbs, member) -> None:
    old = member.create(draft(start_date=TODAY - dt.timedelta(days=20),
                              end_date=TODAY - dt.timedelta(days=7)))
    with pytest.raises(ValidationError, match="ended on"):
        member.start(old)


# ---------------------------------------------------------------- complete
def _sprint_with_work(dbs: Databases, org: str, svc: SprintService) -> tuple[
        SprintRecord, SprintRecord, dict[str, str]]:
    current = svc.create(draft("현재"))
    following = svc.create(draft("다음", start_date=TODAY + dt.timedelta(days=12),
                                 end_date=TODAY + dt.timedelta(days=25)))
    ids = insert_tasks(
        dbs, org,
        {"status": "done", "estimated_hours": 8.0, "actual_hours": 9.0},
        {"status": "done", "estimated_hours": 4.0, "actual_hours": 4.0},
        {"status": "in_progress", "estimated_hours": 6.0, "actual_hours": 2.0},
        {"status": "review", "estimated_hours": 3.0, "actual_hours": 3.0},
        {"status": "todo", "estimated_hours": 5.0},
    )
    names = dict(zip(("done1", "done2", "doing", "review", "todo"), ids, strict=True))
    svc.add_tasks(current, ids)
    return svc.start(svc.get_sprint(current.id)), following, names


def test_complete_carries_unfinished_tasks_over_to_a_planned_sprint(world, dbs, member) -> None:
    sprint, following, ids = _sprint_with_work(dbs, world.lab, member)
    before = len(activity(dbs, world.lab))
    result = member.complete(sprint, carry_over_to=following.id)
    assert (result.carried_over, result.carried_over_to) == (3, following.id)
    for name in ("done1", "done2"):
        assert task(dbs, world.lab, ids[name])["sprint_id"] == sprint.id
    for name in ("doing", "review", "todo"):
        assert task(dbs, world.lab, ids[name])["sprint_id"] == following.id
    doc = sprint_doc(dbs, world.lab, sprint.id)
    assert doc["status"] == "completed" and doc["completed_at"] == result.sprint.completed_at
    # Frozen as the sprint closed: 2 of 5 completed, the other three carried over.
    metrics = doc["metrics"]
    assert (metrics["total_tasks"], metrics["completed_tasks"], metrics["in_progress_tasks"],
            metrics["review_tasks"], metrics["todo_tasks"], metrics["completion_rate"]) == (
        5, 2, 2, 1, 1, 40.0)
    assert (metrics["completed_hours"], metrics["remaining_hours"],
            metrics["carried_over_tasks"], metrics["carried_over_hours"]) == (12.0, 9.0, 3, 9.0)
    assert doc["capacity"]["allocated_hours"] == 26.0
    # The completion day's point: the state at completion (the carried-over work remains), and
    # the closed days before it.
    points = [BurndownPoint.from_document(p) for p in metrics["burndown_data"]]
    assert [p.date for p in points] == [(TODAY - dt.timedelta(days=d)).isoformat()
                                        for d in (2, 1, 0)]
    assert (points[-1].remaining_hours, points[-1].remaining_tasks) == (9.0, 3)
    target = sprint_doc(dbs, world.lab, following.id)["metrics"]
    assert (target["total_tasks"], target["in_progress_tasks"], target["todo_tasks"]) == (3, 2, 1)
    logs = activity(dbs, world.lab)[before:]
    moved = [log for log in logs if log["action"] == "task.updated"]
    assert sorted(log["resource_id"] for log in moved) == sorted(
        ids[n] for n in ("doing", "review", "todo"))
    assert all(log["changes"] == {"sprint_id": {"from": sprint.id, "to": following.id}}
               for log in moved)
    assert logs[-1]["action"] == "sprint.completed"
    # Recomputing later keeps the frozen metrics.
    assert member.recompute_metrics(sprint).total_tasks == 2
    assert sprint_doc(dbs, world.lab, sprint.id)["metrics"]["total_tasks"] == 5
    # And now another sprint may start.
    assert member.start(member.get_sprint(following.id)).status == "active"


def test_complete_to_the_backlog(world, dbs, member) -> None:
    sprint, _, ids = _sprint_with_work(dbs, world.lab, member)
    result = member.complete(sprint, carry_over_to=None)
    assert (result.carried_over, result.carried_over_to) == (3, None)
    assert [task(dbs, world.lab, ids[n])["sprint_id"] for n in ("doing", "review", "todo")] == [
        None, None, None]
    assert result.metrics.completed_tasks == 2 and result.sprint.status == "completed"
    assert sprint_doc(dbs, world.lab, sprint.id)["metrics"]["carried_over_to"] is None


def test_complete_refusals_write_nothing(world, dbs, member) -> None:
    sprint, following, _ = _sprint_with_work(dbs, world.lab, member)
    done = member.create(draft("끝난"))
    dbs.mongo.sprints.update_one({"_id": ObjectId(done.id), "organization_id": world.lab},
                                 {"$set": {"status": "completed"}})
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match="only an active sprint can be completed"):
        member.complete(following, None)
    with pytest.raises(ValidationError, match="same sprint"):
        member.complete(sprint, sprint.id)
    with pytest.raises(ValidationError, match="only to a planned sprint; 끝난 is completed"):
        member.complete(sprint, done.id)
    with pytest.raises(ValidationError, match="not in this organization"):
        member.complete(sprint, str(ObjectId()))
    stale = member.edit(sprint, draft("현재", goal="바뀐 목표"))
    before = snapshot(dbs, world.lab)
    with pytest.raises(SprintConflict):
        member.complete(sprint, None)  # the copy before the edit
    assert snapshot(dbs, world.lab) == before
    assert member.complete(stale, None).carried_over == 3


# ---------------------------------------------------------------- metrics
def test_recompute_metrics_against_hand_inserted_tasks(world, dbs, owner) -> None:
    sprint = owner.create(draft(capacity_hours=40))
    sid = sprint.id
    dbs.mongo.sprints.update_one(
        {"_id": ObjectId(sid), "organization_id": world.lab},
        {"$set": {"metrics.burndown_data": [{"date": "2026-03-02", "remaining_hours": 9.0}]}},
    )
    insert_tasks(
        dbs, world.lab,
        {"sprint_id": sid, "status": "todo", "estimated_hours": 5.0, "actual_hours": 0.0},
        {"sprint_id": sid, "status": "in_progress", "estimated_hours": 8.0, "actual_hours": 3.0},
        {"sprint_id": sid, "status": "review", "estimated_hours": 4.0, "actual_hours": 5.0},
        {"sprint_id": sid, "status": "done", "estimated_hours": 6.0, "actual_hours": 7.0},
        {"sprint_id": sid, "status": "done"},  # no estimate
        {"sprint_id": sid, "status": "todo"},  # no estimate, no hours
        {"sprint_id": "another", "status": "todo", "estimated_hours": 50.0},
    )
    insert_tasks(dbs, world.acme, {"sprint_id": sid, "status": "todo", "estimated_hours": 70.0})
    # total 6; done 2 -> 2/6 = 33.3 %; in progress 1 + review 1 = 2; todo 2;
    # estimates 5 + 8 + 4 + 6 = 23, of the done ones 6; remaining (unfinished only):
    # max(5-0,0) + max(8-3,0) + max(4-5,0) + 0 (no estimate) = 5 + 5 + 0 + 0 = 10.
    metrics = recompute_metrics(dbs.mongo, world.lab, sid)
    assert metrics == SprintMetrics(
        total_tasks=6, completed_tasks=2, in_progress_tasks=2, review_tasks=1, todo_tasks=2,
        completion_rate=33.3, estimated_hours=23.0, completed_hours=6.0, remaining_hours=10.0,
    )
    doc = sprint_doc(dbs, world.lab, sid)
    assert {k: doc["metrics"][k] for k in metrics.to_document()} == metrics.to_document()
    assert doc["metrics"]["burndown_data"] == [{"date": "2026-03-02", "remaining_hours": 9.0}]
    assert doc["capacity"] == {"total_hours": 40.0, "allocated_hours": 23.0,
                               "available_hours": 17.0}
    assert doc["updated_at"] == sprint.updated_at  # derived data: the held copy stays current
    assert owner.recompute_metrics(sid) == metrics
    # Nothing to do for no sprint or a malformed id.
    assert recompute_metrics(dbs.mongo, world.lab, None) is None
    assert recompute_metrics(dbs.mongo, world.lab, "none") is None


def test_an_empty_sprint_has_zero_metrics() -> None:
    assert SprintMetrics.from_groups([]) == SprintMetrics()


def test_the_metrics_aggregation_stays_on_the_sprint_index(world, dbs, owner) -> None:
    sprint = owner.create(draft())
    insert_tasks(dbs, world.lab, *({"sprint_id": sprint.id, "estimated_hours": 1.0}
                                   for _ in range(20)), *({} for _ in range(20)))
    text = plan_text(dbs, {"aggregate": "tasks",
                           "pipeline": metrics_pipeline(world.lab, sprint.id), "cursor": {}})
    assert "IXSCAN" in text and "COLLSCAN" not in text
    assert "idx_tasks_org_sprint_status" in text


def test_board_writes_recompute_the_metrics_of_the_sprints_involved(world, dbs, member) -> None:
    """The board recomputes after each committed write: a move, an edit of the estimate or of
    the sprint (both sprints), logged time, a task created in a sprint, a deletion."""
    first, second = member.create(draft()), member.create(draft("Sprint 2"))
    [t] = insert_tasks(dbs, world.lab, {"estimated_hours": 4.0})
    member.add_tasks(first, [t])
    jiho = board(dbs, world.jiho, world.lab)

    def metrics(sprint: SprintRecord) -> dict[str, Any]:
        return sprint_doc(dbs, world.lab, sprint.id)["metrics"]

    moved, _ = jiho.move(jiho.get_task(t), "done", 1.0)
    assert (metrics(first)["completed_tasks"], metrics(first)["completion_rate"]) == (1, 100.0)
    moved, _ = jiho.move(moved, "in_progress", 1.0)
    logged = jiho.log_time(jiho.get_task(t), 1.5, "시작")
    assert (metrics(first)["completed_tasks"], metrics(first)["remaining_hours"]) == (0, 2.5)
    edited = jiho.edit(logged, TaskDraft(title=logged.title, status="in_progress",
                                         estimated_hours=6.0, sprint_id=second.id))
    assert metrics(first)["total_tasks"] == 0
    assert (metrics(second)["total_tasks"], metrics(second)["remaining_hours"]) == (1, 4.5)
    assert sprint_doc(dbs, world.lab, second.id)["capacity"]["allocated_hours"] == 6.0
    created = jiho.create(TaskDraft(title="새 작업", estimated_hours=2.0, sprint_id=second.id))
    assert metrics(second)["total_tasks"] == 2
    jiho.delete(jiho.get_task(created.id))
    jiho.delete(jiho.get_task(edited.id))
    assert (metrics(second)["total_tasks"], metrics(second)["estimated_hours"]) == (0, 0.0)


# ---------------------------------------------------------------- burndown and velocity
def test_burndown_shows_closed_days_the_ideal_line_and_today_without_writing(
    world, dbs, member
) -> None:
    sprint, _, _ = _sprint_with_work(dbs, world.lab, member)
    before = snapshot(dbs, world.lab)
    chart = member.burndown(sprint.id)
    assert snapshot(dbs, world.lab) == before  # reconstructed days are not stored by a read
    assert len(chart.days) == 14 and chart.today == TODAY.isoformat()
    assert chart.ideal_hours[0] == (chart.days[0], round(120 * 13 / 14, 2))
    assert chart.ideal_hours[-1] == (chart.days[-1], 0.0)
    assert chart.ideal_tasks[-1][1] == 0.0
    assert [p.date for p in chart.points] == chart.filled == chart.days[:2]
    assert chart.live is not None
    assert (chart.live.remaining_hours, chart.live.remaining_tasks) == (9.0, 3)
    assert chart.metrics.total_tasks == 5


def test_velocity_is_completed_hours_per_completed_sprint(world, dbs, owner) -> None:
    made = []
    for n in range(4):
        start = TODAY - dt.timedelta(days=14 * (5 - n))
        made.append(owner.create(draft(f"S{n}", start_date=start,
                                       end_date=start + dt.timedelta(days=13))))
    for n, sprint in enumerate(made[:3]):
        values: dict[str, Any] = {"status": "completed",
                                  "capacity.allocated_hours": 20.0 + n}
        update: dict[str, Any] = {"$set": values}
        if n != 1:
            values["metrics.completed_hours"] = 10.0 + n
            values["metrics.completed_tasks"] = n
        else:  # S1 was completed by the seed: no completed_hours stored
            update["$unset"] = {"metrics.completed_hours": "", "metrics.completed_tasks": ""}
        dbs.mongo.sprints.update_one({"_id": ObjectId(sprint.id), "organization_id": world.lab},
                                     update)
    insert_tasks(dbs, world.lab,
                 {"sprint_id": made[1].id, "status": "done", "estimated_hours": 7.5},
                 {"sprint_id": made[1].id, "status": "done", "estimated_hours": 1.5},
                 {"sprint_id": made[1].id, "status": "todo", "estimated_hours": 100.0})
    points = owner.velocity()
    assert [(p.name, p.committed_hours, p.completed_hours, p.completed_tasks)
            for p in points] == [("S0", 20.0, 10.0, 0), ("S1", 21.0, 9.0, 2),
                                 ("S2", 22.0, 12.0, 2)]
    assert [p.name for p in owner.velocity(last_n=2)] == ["S1", "S2"]
    with pytest.raises(ValidationError):
        owner.velocity(last_n=0)


# ---------------------------------------------------------------- retrospective
def test_retrospective_lists_are_cleaned_and_bounded(world, dbs, member) -> None:
    sprint = member.create(draft())
    saved = member.set_retrospective(sprint, ["좋은 팀워크", "  빠른 배포  ", ""],
                                     ["코드 리뷰 시간"], ["코드 리뷰 체크리스트 도입", "   "])
    doc = sprint_doc(dbs, world.lab, sprint.id)["retrospective"]
    assert doc == {"what_went_well": ["좋은 팀워크", "빠른 배포"],
                   "what_to_improve": ["코드 리뷰 시간"],
                   "action_items": ["코드 리뷰 체크리스트 도입"]}
    assert saved.retro("what_went_well") == ["좋은 팀워크", "빠른 배포"]
    log = activity(dbs, world.lab)[-1]
    assert log["action"] == "sprint.retro_edited"
    assert log["changes"]["what_went_well"] == {"from": 0, "to": 2}
    before = snapshot(dbs, world.lab)
    for lists, message in (
        ((["x" * 501], [], []), "longer than 500"),
        ((["항목"] * 51, [], []), "at most 50"),
        (("not a list", [], []), "list of sentences"),
        (([], [3], []), "list of sentences"),
    ):
        with pytest.raises(ValidationError, match=message):
            member.set_retrospective(saved, *lists)
    with pytest.raises(SprintConflict):
        member.set_retrospective(sprint, ["stale"], [], [])
    assert snapshot(dbs, world.lab) == before


def test_an_action_item_becomes_a_task_in_the_next_sprint_once(world, dbs, member) -> None:
    sprint, following, _ = _sprint_with_work(dbs, world.lab, member)
    sprint = member.set_retrospective(sprint, [], [], ["테스트 커버리지 올리기", "CI 캐시"])
    made = member.action_item_to_task(sprint, 1, following.id)
    assert (made.title, made.sprint_id, made.status, made.labels) == (
        "CI 캐시", following.id, "todo", ["retrospective"])
    assert task(dbs, world.lab, made.id)["task_id"] == made.task_id
    assert member.get_sprint(sprint.id).action_item_tasks == {"CI 캐시": made.task_id}
    assert sprint_doc(dbs, world.lab, following.id)["metrics"]["total_tasks"] == 1
    assert any(log["action"] == "task.created" and log["resource_id"] == made.id
               for log in activity(dbs, world.lab))
    before = snapshot(dbs, world.lab)
    with pytest.raises(ValidationError, match=f"already became {made.task_id}"):
        member.action_item_to_task(sprint, 1, following.id)
    with pytest.raises(ValidationError, match="no such action item"):
        member.action_item_to_task(sprint, 2, following.id)
    assert snapshot(dbs, world.lab) == before
    # To the backlog.
    backlog = member.action_item_to_task(sprint, 0, None)
    assert backlog.sprint_id is None


# ---------------------------------------------------------------- delete
def test_delete_sends_the_tasks_to_the_backlog_and_refuses_an_active_sprint(
    world, dbs, owner, member
) -> None:
    sprint, following, _ = _sprint_with_work(dbs, world.lab, owner)
    [t] = insert_tasks(dbs, world.lab, {})
    owner.add_tasks(following, [t])
    with pytest.raises(PermissionDenied, match=r"sprints\.delete"):
        member.delete(following)  # members may not delete sprints
    with pytest.raises(ValidationError, match="is active"):
        owner.delete(sprint)
    assert owner.delete(following) == 1
    assert task(dbs, world.lab, t)["sprint_id"] is None
    assert dbs.mongo.sprints.find_one({"_id": ObjectId(following.id),
                                       "organization_id": world.lab}) is None
    assert activity(dbs, world.lab)[-1]["action"] == "sprint.deleted"


# ---------------------------------------------------------------- who may
def test_a_viewer_reads_but_every_change_is_refused(world, dbs, member) -> None:
    sprint, following, ids = _sprint_with_work(dbs, world.lab, member)
    yuna = service(dbs, world.yuna, world.lab)
    assert [s.id for s in yuna.list_sprints()] == [following.id, sprint.id]
    assert yuna.get_sprint(sprint.id).name == "현재"
    assert yuna.burndown(sprint.id).metrics.total_tasks == 5
    assert yuna.velocity() == []
    assert len(yuna.sprint_tasks(sprint)) == 5
    before = snapshot(dbs, world.lab)
    writes = [
        (lambda: yuna.create(draft()), "sprints.create"),
        (lambda: yuna.edit(following, draft("바꿈")), "sprints.update"),
        (lambda: yuna.start(following), "sprints.update"),
        (lambda: yuna.complete(sprint, None), "sprints.update"),
        (lambda: yuna.add_tasks(following, [ids["todo"]]), "tasks.update"),
        (lambda: yuna.remove_tasks(sprint, [ids["todo"]]), "tasks.update"),
        (lambda: yuna.set_retrospective(sprint, ["좋음"], [], []), "sprints.update"),
        (lambda: yuna.action_item_to_task(sprint, 0, None), "sprints.update"),
        (lambda: yuna.delete(following), "sprints.delete"),
    ]
    for write, permission in writes:
        with pytest.raises(PermissionDenied, match=rf"permission {permission} is not granted"):
            write()
    assert snapshot(dbs, world.lab) == before


def test_an_outsider_gets_nothing(world, dbs, member) -> None:
    sprint = member.create(draft())
    bob = service(dbs, world.bob, world.lab)
    before = snapshot(dbs, world.lab)
    for call in (bob.list_sprints, lambda: bob.get_sprint(sprint.id),
                 lambda: bob.burndown(sprint.id), bob.velocity,
                 lambda: bob.create(draft()), lambda: bob.start(sprint)):
        with pytest.raises(PermissionDenied):
            call()
    assert snapshot(dbs, world.lab) == before
    # Acme's own view does not see the lab's sprint.
    acme = service(dbs, world.bob, world.acme)
    assert acme.list_sprints() == []
    with pytest.raises(ValidationError, match="not in this organization"):
        acme.get_sprint(sprint.id)
