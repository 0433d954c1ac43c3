"""Burndown arithmetic against a hand-computed two-week sprint, and the worker's daily step.

The sprint (capacity 42 h) runs 14 days, day 1 to day 14; it was started on day 1 at 09:00.
Its tasks, with every hour logged at 12:00 of the day named:

    A  16 h estimate; logs 4 (day 1), 4 (day 2), 2 (day 3), 4 (day 5); done day 7 10:00
       (a task.status_changed in the activity log)
    B  12 h; logs 3 (day 2), 5 (day 6), 4 (day 9); done day 10 12:00 (completed_at only)
    C   8 h; logs 2 (day 3), 10 (day 8: more than was left); done day 12 09:00
    D   6 h; ADDED to the sprint on day 4 at 14:00 (task.updated sprint_id None -> sprint);
       logs 2 (day 5), 2 (day 6), 2 (day 11); done day 11 16:00
    E   4 h; in the sprint at its start, REMOVED on day 2 at 09:00 (sprint_id sprint -> None)
    F 100 h in another sprint of the organization, and G in another organization carrying the
       same sprint id: neither ever counts.

Day 6 is the missed day: the worker does not run the morning after it, and the next run fills
it from the time entries logged on day 6 (B 5 h, D 2 h).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId

from creatia_tui.data import burndown as bd
from creatia_tui.data.burndown import (
    BurndownPoint,
    Change,
    TaskHistory,
    fill_missing_days,
    ideal_line,
    live_point,
    record_burndown,
    remaining_by_day,
    run_once,
)
from creatia_tui.data.db import Databases
from tests.conftest import World

UTC = dt.timezone.utc

# ---------------------------------------------------------------- the hand-computed table
# remaining on day D = sum over the tasks in the sprint at the end of day D of
# max(estimate - hours logged before the end of day D, 0), 0 for a task done by then.
#
# day  A           B           C            D (from day 4)  E (to day 2) | remaining open
#  1   16-4=12     12          8            -               4            | 36        4
#  2   16-8=8      12-3=9      8            -               -            | 25        3
#  3   16-10=6     9           8-2=6        -               -            | 21        3
#  4   6           9           6            6               -            | 27        4
#  5   16-14=2     9           6            6-2=4           -            | 21        4
#  6   2           12-8=4      6            6-4=2           -            | 14        4  (missed)
#  7   done 0      4           6            2               -            | 12        3
#  8   0           4           max(8-12,0)=0 2              -            |  6        3
#  9   0           12-12=0     0            2               -            |  2        3
# 10   0           done 0      0            2               -            |  2        2
# 11   0           0           0            6-6=0, done     -            |  0        1
# 12   0           0           done 0       0               -            |  0        0
# 13, 14: 0 remaining, 0 open.
# scope (estimates of every task in the sprint, done ones too): day 1 16+12+8+4 = 40; days 2-3
# 36 (E left); day 4 on 42 (D's 6 h added, the one scope change).
# ideal (capacity 42 over 14 days): 42 * (14 - day) / 14 = 42 - 3 * day.
#
#  day, remaining_hours, remaining_tasks, scope_hours, scope_tasks, added_hours, ideal
TABLE = [
    (1, 36.0, 4, 40.0, 4, 0.0, 39.0),
    (2, 25.0, 3, 36.0, 3, 0.0, 36.0),
    (3, 21.0, 3, 36.0, 3, 0.0, 33.0),
    (4, 27.0, 4, 42.0, 4, 6.0, 30.0),
    (5, 21.0, 4, 42.0, 4, 0.0, 27.0),
    (6, 14.0, 4, 42.0, 4, 0.0, 24.0),
    (7, 12.0, 3, 42.0, 4, 0.0, 21.0),
    (8, 6.0, 3, 42.0, 4, 0.0, 18.0),
    (9, 2.0, 3, 42.0, 4, 0.0, 15.0),
    (10, 2.0, 2, 42.0, 4, 0.0, 12.0),
    (11, 0.0, 1, 42.0, 4, 0.0, 9.0),
    (12, 0.0, 0, 42.0, 4, 0.0, 6.0),
    (13, 0.0, 0, 42.0, 4, 0.0, 3.0),
    (14, 0.0, 0, 42.0, 4, 0.0, 0.0),
]
MISSED_DAY = 6
CAPACITY = 42.0


class Sprint:
    """The fourteen days, from a first day."""

    def __init__(self, first: dt.date) -> None:
        self.first = first

    def day(self, n: int) -> dt.date:
        return self.first + dt.timedelta(days=n - 1)

    def date(self, n: int) -> str:
        return self.day(n).isoformat()

    def at(self, n: int, hour: int = 12) -> dt.datetime:
        return dt.datetime.combine(self.day(n), dt.time(hour), tzinfo=UTC)

    @property
    def start(self) -> dt.datetime:
        return self.at(1, 0)

    @property
    def end(self) -> dt.datetime:
        return self.at(14, 23) + dt.timedelta(minutes=59, seconds=59)


def expected(sprint: Sprint, days: range | list[int] | None = None) -> list[BurndownPoint]:
    wanted = set(days) if days is not None else {row[0] for row in TABLE}
    return [
        BurndownPoint(sprint.date(day), hours, tasks, scope, scope_tasks, added,
                      1 if added else 0)
        for day, hours, tasks, scope, scope_tasks, added, _ in TABLE
        if day in wanted
    ]


def entries(sprint: Sprint, *logs: tuple[int, float]) -> list[tuple[dt.datetime, float]]:
    return [(sprint.at(day), hours) for day, hours in logs]


def histories(sprint: Sprint, sid: str) -> list[TaskHistory]:
    before = sprint.at(1, 0) - dt.timedelta(days=5)
    return [
        TaskHistory("A", sid, "done", 16.0, sprint.at(7, 10), before,
                    entries(sprint, (1, 4), (2, 4), (3, 2), (5, 4)),
                    [Change(sprint.at(7, 10), "status", "in_progress", "done")]),
        TaskHistory("B", sid, "done", 12.0, sprint.at(10, 12), before,
                    entries(sprint, (2, 3), (6, 5), (9, 4))),
        TaskHistory("C", sid, "done", 8.0, sprint.at(12, 9), before,
                    entries(sprint, (3, 2), (8, 10))),
        TaskHistory("D", sid, "done", 6.0, sprint.at(11, 16), before,
                    entries(sprint, (5, 2), (6, 2), (11, 2)),
                    [Change(sprint.at(4, 14), "sprint_id", None, sid)]),
        TaskHistory("E", None, "todo", 4.0, None, before, [],
                    [Change(sprint.at(2, 9), "sprint_id", sid, None)]),
        TaskHistory("F", "another-sprint", "todo", 100.0, None, before, []),
    ]


FIXED = Sprint(dt.date(2026, 3, 2))


# ---------------------------------------------------------------- pure arithmetic
def test_ideal_line_goes_from_the_capacity_to_zero_in_equal_steps() -> None:
    line = ideal_line(CAPACITY, FIXED.start, FIXED.end)
    assert line == [(FIXED.date(day), ideal) for day, *_, ideal in TABLE]
    # Dates alone mean the same days; an end at exactly 00:00 ends the day before.
    assert ideal_line(CAPACITY, FIXED.day(1), FIXED.day(14)) == line
    assert ideal_line(CAPACITY, FIXED.start, FIXED.at(15, 0)) == line
    assert ideal_line(0.0, FIXED.start, FIXED.end)[0] == (FIXED.date(1), 0.0)


def test_remaining_by_day_matches_the_hand_computed_table() -> None:
    points = remaining_by_day(
        "S", histories(FIXED, "S"), FIXED.start, FIXED.end,
        until=FIXED.at(15, 0) + dt.timedelta(days=30), started_at=FIXED.at(1, 9),
    )
    assert points == expected(FIXED)


def test_no_point_for_a_day_that_is_not_over() -> None:
    tasks = histories(FIXED, "S")
    # Day 6 at 10:00: days 1-5 are closed, day 6 is not, whatever the documents already hold.
    points = remaining_by_day("S", tasks, FIXED.start, FIXED.end, until=FIXED.at(6, 10))
    assert [p.date for p in points] == [FIXED.date(d) for d in range(1, 6)]
    # Today so far: B's 5 h and D's 2 h of day 6 are logged at 12:00, not yet at 10:00.
    live = live_point("S", tasks, FIXED.start, FIXED.end, FIXED.at(6, 10))
    assert live is not None
    assert (live.date, live.remaining_hours, live.remaining_tasks) == (FIXED.date(6), 21.0, 4)
    # Before the sprint or after its last day there is no "today".
    assert live_point("S", tasks, FIXED.start, FIXED.end, FIXED.at(15, 1)) is None
    assert remaining_by_day("S", tasks, FIXED.start, FIXED.end, until=FIXED.at(1, 23)) == []


def test_planning_before_the_start_is_not_a_scope_change() -> None:
    """A task added on day 1 before the sprint was started is committed scope, not added."""
    sid = "S"
    early = TaskHistory("P", sid, "todo", 3.0, None, FIXED.at(1, 0) - dt.timedelta(days=1), [],
                        [Change(FIXED.at(1, 8), "sprint_id", None, sid)])
    late = TaskHistory("L", sid, "todo", 2.0, None, FIXED.at(1, 0) - dt.timedelta(days=1), [],
                       [Change(FIXED.at(1, 10), "sprint_id", None, sid)])
    [day1] = remaining_by_day(sid, [early, late], FIXED.start, FIXED.end,
                              until=FIXED.at(2, 0), started_at=FIXED.at(1, 9))
    assert (day1.added_hours, day1.added_tasks, day1.scope_hours) == (2.0, 1, 5.0)


def test_fill_missing_days_keeps_recorded_points_and_adds_only_closed_days() -> None:
    computed = expected(FIXED, range(1, 9))
    # The worker recorded days 1-5 and 7 (day 5 with a value of its own); day 6 was missed.
    recorded = [*expected(FIXED, range(1, 5)), BurndownPoint(FIXED.date(5), 22.0),
                *expected(FIXED, [7])]
    merged = fill_missing_days(recorded, computed)
    assert [p.date for p in merged] == [FIXED.date(d) for d in range(1, 9)]
    assert merged[4] == BurndownPoint(FIXED.date(5), 22.0)  # recorded wins
    assert merged[5] == expected(FIXED, [MISSED_DAY])[0]  # filled: 14 h, from the time entries
    # `before` keeps anything dated that day or later out.
    assert [p.date for p in fill_missing_days(recorded, computed, before=FIXED.day(8))][-1] == (
        FIXED.date(7)
    )


def test_a_task_without_status_changes_is_done_from_its_completed_at() -> None:
    task = TaskHistory("X", "S", "done", 5.0, FIXED.at(3, 15), None, [])
    assert not task.done_at(FIXED.at(3, 15)) and task.done_at(FIXED.at(3, 16))
    assert task.remaining_at(FIXED.at(3, 0)) == 5.0 and task.remaining_at(FIXED.at(4, 0)) == 0.0
    # A reopened task (status changes in the log) follows them, not completed_at.
    reopened = TaskHistory("Y", "S", "in_progress", 5.0, None, None, [], [
        Change(FIXED.at(2, 9), "status", "todo", "done"),
        Change(FIXED.at(3, 9), "status", "done", "in_progress"),
    ])
    assert [reopened.done_at(FIXED.at(d, 0)) for d in (2, 3, 4)] == [False, True, False]


# ---------------------------------------------------------------- against the servers
def task_doc(org: str, key: str, sprint_id: str | None, status: str, estimate: float,
             logs: list[tuple[dt.datetime, float]], completed: dt.datetime | None,
             created: dt.datetime) -> dict[str, Any]:
    actual = sum(hours for _, hours in logs)
    return {
        "organization_id": org, "task_id": key, "title": f"작업 {key}", "status": status,
        "priority": "medium", "position": 1000.0, "sprint_id": sprint_id,
        "estimated_hours": estimate, "actual_hours": actual,
        "remaining_hours": max(estimate - actual, 0.0),
        "time_entries": [{"user_id": "u", "hours": h, "description": None, "logged_at": at}
                         for at, h in logs],
        "completed_at": completed, "tags": [], "labels": [], "created_at": created,
        "updated_at": completed or created,
    }


def activity_doc(org: str, task_id: str, at: dt.datetime, action: str,
                 changes: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization_id": org, "user_id": "u", "action": action, "resource_type": "Task",
        "resource_id": task_id, "changes": changes, "metadata": {"client_type": "tui"},
        "timestamp": at, "created_at": at,
    }


def insert_sprint_world(dbs: Databases, org: str, other_org: str, sprint: Sprint,
                        status: str = "active") -> str:
    """The module's sprint in `org`, in the database; returns its id."""
    sid = ObjectId()
    dbs.mongo.sprints.insert_one({
        "_id": sid, "organization_id": org, "name": "Sprint 2026-W10", "goal": "번다운",
        "status": status, "start_date": sprint.start, "end_date": sprint.end,
        "started_at": sprint.at(1, 9),
        "capacity": {"total_hours": CAPACITY, "allocated_hours": 42.0, "available_hours": 0.0},
        "metrics": {"burndown_data": []},
        "created_at": sprint.start - dt.timedelta(days=7),
        "updated_at": sprint.at(1, 9),
    })
    s = str(sid)
    docs = {
        h.task_id: task_doc(org, f"TASK-{h.task_id}-{s[-6:]}", h.sprint_id, h.status,
                            h.estimated_hours or 0.0, h.time_entries, h.completed_at,
                            h.created_at or sprint.start)
        for h in histories(sprint, s)
    }
    result = dbs.mongo.tasks.insert_many(list(docs.values()))
    ids = dict(zip(docs, (str(i) for i in result.inserted_ids), strict=True))
    # G: another organization's task that carries this sprint's id.
    dbs.mongo.tasks.insert_one(task_doc(other_org, f"TASK-G-{s[-6:]}", s, "todo", 50.0, [],
                                        None, sprint.start - dt.timedelta(days=5)))
    dbs.mongo.activity_logs.insert_many([
        activity_doc(org, ids["A"], sprint.at(7, 10), "task.status_changed",
                     {"status": {"from": "in_progress", "to": "done"}}),
        activity_doc(org, ids["D"], sprint.at(4, 14), "task.updated",
                     {"sprint_id": {"from": None, "to": s}}),
        activity_doc(org, ids["E"], sprint.at(2, 9), "task.updated",
                     {"sprint_id": {"from": s, "to": None}}),
        # Noise the reconstruction must not trip on.
        activity_doc(org, ids["B"], sprint.at(3, 9), "task.updated",
                     {"priority": {"from": "low", "to": "high"}}),
        activity_doc(org, ids["C"], sprint.at(3, 9), "task.commented", {"body": "좋아요"}),
    ])
    dbs.mongo.activity_logs.insert_one(
        activity_doc(other_org, "x", sprint.at(5, 9), "task.updated",
                     {"sprint_id": {"from": None, "to": s}})
    )
    return s


def recent_sprint() -> Sprint:
    """Fourteen days that ended a week ago (activity logs keep 30 days: their TTL must not
    sweep the test's history away)."""
    today = dt.datetime.now(UTC).date()
    return Sprint(today - dt.timedelta(days=21))


def stored(dbs: Databases, org: str, sid: str) -> dict[str, Any]:
    doc = dbs.mongo.sprints.find_one({"_id": ObjectId(sid), "organization_id": org})
    assert doc is not None
    return doc


def stored_points(dbs: Databases, org: str, sid: str) -> list[BurndownPoint]:
    return bd.stored_points(stored(dbs, org, sid))


def test_the_worker_records_closed_days_fills_a_missed_one_and_is_idempotent(
    world: World, dbs: Databases
) -> None:
    sprint = recent_sprint()
    sid = insert_sprint_world(dbs, world.lab, world.acme, sprint)
    # The run on the morning of day n records day n - 1. The run of day 7 (for day 6) is missed.
    for n in range(2, 16):
        if n == MISSED_DAY + 1:
            continue
        written = record_burndown(dbs, world.lab, sid, sprint.day(n))
        if n == MISSED_DAY + 2:
            assert written == [sprint.date(MISSED_DAY), sprint.date(MISSED_DAY + 1)]
        else:
            assert written == [sprint.date(n - 1)]
        # Never a day that is not over, although the tasks already hold later hours; day 6
        # stays missing until the run of day 8 fills it.
        dates = [p.date for p in stored_points(dbs, world.lab, sid)]
        assert dates == [sprint.date(d) for d in range(1, n)]
    assert stored_points(dbs, world.lab, sid) == expected(sprint)

    # Twice a day, or after the sprint's end: nothing changes.
    before = stored(dbs, world.lab, sid)
    for today in (sprint.day(15), sprint.day(15), sprint.day(20), dt.datetime.now(UTC).date()):
        assert record_burndown(dbs, world.lab, sid, today) == []
    assert stored(dbs, world.lab, sid) == before


def test_a_run_after_missed_days_fills_them_all_and_keeps_what_was_recorded(
    world: World, dbs: Databases
) -> None:
    sprint = recent_sprint()
    sid = insert_sprint_world(dbs, world.lab, world.acme, sprint)
    # Days 1-4 were recorded by an earlier worker, day 3 with its own value; then none ran.
    recorded = [*expected(sprint, [1, 2]), BurndownPoint(sprint.date(3), 20.5),
                *expected(sprint, [4])]
    dbs.mongo.sprints.update_one(
        {"_id": ObjectId(sid), "organization_id": world.lab},
        {"$set": {"metrics.burndown_data": [p.to_document() for p in recorded]}},
    )
    written = record_burndown(dbs, world.lab, sid, sprint.day(10))
    assert written == [sprint.date(d) for d in range(5, 10)]
    points = stored_points(dbs, world.lab, sid)
    assert points == [*recorded, *expected(sprint, range(5, 10))]
    assert points[2].remaining_hours == 20.5


def test_no_days_for_a_planned_sprint_and_a_completed_one_stops_at_its_completion(
    world: World, dbs: Databases
) -> None:
    sprint = recent_sprint()
    planned = insert_sprint_world(dbs, world.lab, world.acme, sprint, status="planned")
    assert record_burndown(dbs, world.lab, planned, sprint.day(10)) == []
    dbs.mongo.sprints.update_one(
        {"_id": ObjectId(planned), "organization_id": world.lab},
        {"$set": {"status": "completed", "completed_at": sprint.at(9, 17)}},
    )
    # Completed on day 9: the closed days before it are filled, day 9 itself is complete()'s.
    assert record_burndown(dbs, world.lab, planned, sprint.day(15)) == [
        sprint.date(d) for d in range(1, 9)
    ]


def test_record_burndown_refuses_another_organizations_sprint(
    world: World, dbs: Databases
) -> None:
    from creatia_tui.errors import ValidationError

    sid = insert_sprint_world(dbs, world.lab, world.acme, recent_sprint())
    with pytest.raises(ValidationError, match="not in this organization"):
        record_burndown(dbs, world.acme, sid, dt.datetime.now(UTC).date())
    with pytest.raises(ValidationError, match="not in this organization"):
        record_burndown(dbs, world.lab, "not-an-id", dt.datetime.now(UTC).date())


def test_run_once_covers_every_active_sprint_of_every_active_organization(
    world: World, dbs: Databases
) -> None:
    sprint = recent_sprint()
    lab = insert_sprint_world(dbs, world.lab, world.acme, sprint)
    acme = insert_sprint_world(dbs, world.acme, world.lab, sprint)
    dormant = insert_sprint_world(dbs, world.dormant, world.lab, sprint)  # inactive organization
    planned = insert_sprint_world(dbs, world.lab, world.acme, Sprint(sprint.day(15)), "planned")
    now = dt.datetime.combine(sprint.day(15), dt.time(0, 5), tzinfo=UTC)
    run = run_once(dbs, now)
    assert (run.organizations, run.sprints, run.points, run.errors) == (2, 2, 28, [])
    assert stored_points(dbs, world.lab, lab) == expected(sprint)
    assert len(stored_points(dbs, world.acme, acme)) == 14
    assert stored_points(dbs, world.dormant, dormant) == []
    assert stored_points(dbs, world.lab, planned) == []
    again = run_once(dbs, now)
    assert (again.sprints, again.points) == (2, 0)


def test_the_history_read_stays_on_an_index(world: World, dbs: Databases) -> None:
    insert_sprint_world(dbs, world.lab, world.acme, recent_sprint())
    pipeline = bd.history_pipeline(world.lab, recent_sprint().start)
    text = str(dbs.mongo.command("explain", {"aggregate": "activity_logs", "pipeline": pipeline,
                                             "cursor": {}}, verbosity="queryPlanner"))
    assert "IXSCAN" in text and "COLLSCAN" not in text
    assert "idx_activity_logs_org_created" in text
