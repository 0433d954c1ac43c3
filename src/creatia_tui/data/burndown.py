"""Burndown arithmetic (pure functions) and the worker's once-a-day recording step.

Definitions (all days are UTC calendar days):

- The days of a sprint run from the day of its ``start_date`` to the day of its ``end_date``
  (the seed's sprints start at 00:00:00 and end at 23:59:59 thirteen days later: 14 days). An
  ``end_date`` of exactly 00:00 ends the day before.
- The end of day D is the instant D+1 00:00:00 UTC; "at the end of day D" means after
  everything stamped strictly before that instant.
- Remaining hours on day D: the sum, over the tasks that belong to the sprint at the end of day
  D, of ``max(estimate - hours logged before the end of day D, 0)``, where a task that is done
  at that moment counts 0 and a task without an estimate counts 0. Hours logged before the
  sprint started count too: remaining is what is left, whenever it was worked.
- Remaining tasks on day D: how many of those tasks are not done at the end of day D.
- Scope on day D: the estimates (``scope_hours``) and number (``scope_tasks``) of all the
  tasks in the sprint at the end of day D, done ones included.
- Scope added on day D (``added_hours``/``added_tasks``): tasks in the sprint at the end of day
  D that were not in it at the end of day D-1; for the first day, not in it at the baseline
  (the moment the sprint was started when that fell on its first day, else 00:00 of the first
  day), so planning before the start is not a scope change.
- The ideal line goes from the capacity at the sprint's start to 0 at the end of its last day:
  on day i (1-based) of n it is ``capacity * (n - i) / n``.

Where the past comes from (``TaskHistory``): a task's current document (sprint_id, status,
estimated_hours, completed_at, created_at, time_entries), and the activity log's changes of
sprint_id, status and estimated_hours (``task.updated`` and ``task.status_changed``, each
``changes.<field>.from/to`` with its ``created_at``). A field's value at a moment is the ``to``
of its last change before that moment; before its first change, that change's ``from``; with no
change, the current value. A task does not exist before its ``created_at``. Without status
changes, a task that is done now is done from its ``completed_at`` on. Hours logged come from
``time_entries`` (``logged_at``, ``hours``). Limits: deleted tasks are gone from the
reconstruction, and activity_logs keep 30 days (their TTL index), so days reconstructed more than
30 days after the fact see the tasks' current sprint, status and estimate.

Recording (``record_burndown``): the worker records closed days only, so a day's point is
final when written and means what the definition says. A run on day T writes a point for every
day of the sprint before T that has none (normally yesterday; after missed runs, every missed
day, reconstructed the same way); never today or a later day. The write is one ``update_one``
whose filter requires that none of the new dates is present yet (``$nin``) and that
``$push``es them (``$each``, ``$sort`` by date): running twice a day, or two workers at once,
changes nothing the second time. Points already stored are never rewritten (a seeded or
recorded value wins over a reconstruction). Today's value is shown live by the sprint service
(``SprintService.burndown``), not stored. Completing a sprint stores its closed days and the
completion day's point (the state at completion) the same way.

Round trips of ``record_burndown``: one ``find_one`` of the sprint; when a day is missing, the
sprint's tasks (one find on idx_tasks_org_sprint_status), the organization's task changes since
the sprint's start (one aggregate whose leading ``$match`` is organization_id and a created_at
range alone, on idx_activity_logs_org_created; the action filter is a second stage), the tasks
that left the sprint (one find, only when some did), and the update. ``run_once`` adds one
PostgreSQL query (the active organizations) and one sprints query per organization.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import PyMongoError

from creatia_tui.data.db import Databases
from creatia_tui.errors import UserError, ValidationError, one_line

log = logging.getLogger(__name__)

UTC = dt.timezone.utc
DAY = dt.timedelta(days=1)
HISTORY_ACTIONS = ("task.updated", "task.status_changed")
TRACKED_FIELDS = ("sprint_id", "status", "estimated_hours")
HISTORY_PROJECTION = {
    "sprint_id": 1, "status": 1, "estimated_hours": 1, "completed_at": 1, "created_at": 1,
    "time_entries": 1,
}
NOT_HERE = "That sprint is not in this organization."


# ---------------------------------------------------------------- days
def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def day_start(day: dt.date) -> dt.datetime:
    """00:00:00 UTC of the day."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=UTC)


def day_end(day: dt.date) -> dt.datetime:
    """The end of the day: the next day's 00:00:00 UTC (exclusive)."""
    return day_start(day) + DAY


def _first_day(start: dt.date | dt.datetime) -> dt.date:
    return _utc(start).date() if isinstance(start, dt.datetime) else start


def _last_day(end: dt.date | dt.datetime) -> dt.date:
    if not isinstance(end, dt.datetime):
        return end
    moment = _utc(end)
    if moment.time() == dt.time(0):
        return (moment - dt.timedelta(milliseconds=1)).date()
    return moment.date()


def sprint_days(start: dt.date | dt.datetime, end: dt.date | dt.datetime) -> list[dt.date]:
    """Every UTC day of the sprint, first to last (see the module's definitions)."""
    first, last = _first_day(start), _last_day(end)
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def ideal_line(
    capacity_hours: float, start: dt.date | dt.datetime, end: dt.date | dt.datetime
) -> list[tuple[str, float]]:
    """(date, hours) at the end of each day: from the capacity at the start to 0 at the end of
    the last day, in equal steps (day i of n: capacity * (n - i) / n)."""
    days = sprint_days(start, end)
    n = len(days)
    return [
        (day.isoformat(), round(capacity_hours * (n - i) / n, 2))
        for i, day in enumerate(days, start=1)
    ]


# ---------------------------------------------------------------- points
@dataclass(frozen=True)
class BurndownPoint:
    """One day of ``metrics.burndown_data``. The seed's points carry only date and
    remaining_hours; the other fields are None for them."""

    date: str  # YYYY-MM-DD (UTC)
    remaining_hours: float
    remaining_tasks: int | None = None
    scope_hours: float | None = None
    scope_tasks: int | None = None
    added_hours: float | None = None
    added_tasks: int | None = None

    def to_document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"date": self.date, "remaining_hours": self.remaining_hours}
        for name in ("remaining_tasks", "scope_hours", "scope_tasks", "added_hours",
                     "added_tasks"):
            value = getattr(self, name)
            if value is not None:
                doc[name] = value
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> BurndownPoint:
        return cls(
            date=str(doc["date"]),
            remaining_hours=float(doc.get("remaining_hours") or 0.0),
            remaining_tasks=doc.get("remaining_tasks"),
            scope_hours=doc.get("scope_hours"),
            scope_tasks=doc.get("scope_tasks"),
            added_hours=doc.get("added_hours"),
            added_tasks=doc.get("added_tasks"),
        )


@dataclass(frozen=True)
class Change:
    at: dt.datetime
    field: str
    before: Any
    after: Any


@dataclass
class TaskHistory:
    """What the reconstruction knows of one task (see the module's notes)."""

    task_id: str
    sprint_id: str | None
    status: str
    estimated_hours: float | None = None
    completed_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    time_entries: list[tuple[dt.datetime, float]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # any order

    def __post_init__(self) -> None:
        self.changes = sorted(self.changes, key=lambda c: c.at)

    def _changes(self, name: str) -> list[Change]:
        return [c for c in self.changes if c.field == name]

    def value_at(self, name: str, moment: dt.datetime) -> Any:
        """The field's value after everything stamped strictly before ``moment``."""
        changes = self._changes(name)
        if not changes:
            return getattr(self, name)
        earlier = [c for c in changes if c.at < moment]
        return earlier[-1].after if earlier else changes[0].before

    def exists_at(self, moment: dt.datetime) -> bool:
        return self.created_at is None or self.created_at < moment

    def in_sprint(self, sprint_id: str, moment: dt.datetime) -> bool:
        return self.exists_at(moment) and self.value_at("sprint_id", moment) == sprint_id

    def done_at(self, moment: dt.datetime) -> bool:
        if self._changes("status"):
            return self.value_at("status", moment) == "done"
        if self.status != "done":
            return False
        return self.completed_at is None or self.completed_at < moment

    def estimate_at(self, moment: dt.datetime) -> float:
        value = self.value_at("estimated_hours", moment)
        return float(value) if isinstance(value, (int, float)) and value > 0 else 0.0

    def logged_before(self, moment: dt.datetime) -> float:
        return sum(hours for at, hours in self.time_entries if at < moment)

    def remaining_at(self, moment: dt.datetime) -> float:
        if self.done_at(moment):
            return 0.0
        return max(self.estimate_at(moment) - self.logged_before(moment), 0.0)


def point_at(
    sprint_id: str,
    tasks: Iterable[TaskHistory],
    moment: dt.datetime,
    *,
    date: str,
    previous: dt.datetime | None = None,
) -> BurndownPoint:
    """The sprint's state at ``moment``, labelled ``date``; scope added since ``previous``."""
    remaining = scope = added = 0.0
    remaining_tasks = scope_tasks = added_tasks = 0
    for task in tasks:
        if not task.in_sprint(sprint_id, moment):
            continue
        estimate = task.estimate_at(moment)
        scope += estimate
        scope_tasks += 1
        if previous is not None and not task.in_sprint(sprint_id, previous):
            added += estimate
            added_tasks += 1
        if not task.done_at(moment):
            remaining_tasks += 1
            remaining += max(estimate - task.logged_before(moment), 0.0)
    return BurndownPoint(
        date=date,
        remaining_hours=round(remaining, 2),
        remaining_tasks=remaining_tasks,
        scope_hours=round(scope, 2),
        scope_tasks=scope_tasks,
        added_hours=round(added, 2),
        added_tasks=added_tasks,
    )


def baseline_of(
    start: dt.date | dt.datetime, started_at: dt.datetime | None = None
) -> dt.datetime:
    """What scope added on the first day is measured against: the start, when it happened on
    the first day, else 00:00 of the first day."""
    first = _first_day(start)
    base = day_start(first)
    if started_at is None:
        return base
    return min(max(_utc(started_at), base), day_end(first))


def remaining_by_day(
    sprint_id: str,
    tasks: Sequence[TaskHistory],
    start: dt.date | dt.datetime,
    end: dt.date | dt.datetime,
    *,
    until: dt.datetime,
    started_at: dt.datetime | None = None,
) -> list[BurndownPoint]:
    """One point per day of the sprint whose end is at or before ``until`` (closed days only:
    never a day that is not over), reconstructed as the module's definitions say."""
    previous = baseline_of(start, started_at)
    points = []
    for day in sprint_days(start, end):
        moment = day_end(day)
        if moment > until:
            break
        points.append(point_at(sprint_id, tasks, moment, date=day.isoformat(), previous=previous))
        previous = moment
    return points


def live_point(
    sprint_id: str,
    tasks: Sequence[TaskHistory],
    start: dt.date | dt.datetime,
    end: dt.date | dt.datetime,
    now: dt.datetime,
    *,
    started_at: dt.datetime | None = None,
) -> BurndownPoint | None:
    """Today so far (the state at ``now``), when today is a day of the sprint."""
    today = _utc(now).date()
    days = sprint_days(start, end)
    if not days or not days[0] <= today <= days[-1]:
        return None
    previous = baseline_of(start, started_at) if today == days[0] else day_start(today)
    return point_at(sprint_id, tasks, _utc(now), date=today.isoformat(), previous=previous)


def fill_missing_days(
    existing: Iterable[BurndownPoint],
    computed: Iterable[BurndownPoint],
    *,
    before: dt.date | None = None,
) -> list[BurndownPoint]:
    """The existing points, plus a computed point for every date they lack, by date.

    Existing points are kept as they are (a recorded value wins over a reconstruction). Only
    dates of ``computed`` are added, and ``computed`` holds closed days only
    (``remaining_by_day``), so no value is made up for a day that is not over; ``before``
    additionally drops computed points dated on or after that day."""
    merged = {point.date: point for point in existing}
    for point in computed:
        if point.date in merged:
            continue
        if before is not None and point.date >= before.isoformat():
            continue
        merged[point.date] = point
    return [merged[date] for date in sorted(merged)]


# ---------------------------------------------------------------- reading the past
def _hours(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def history_from_document(doc: dict[str, Any], changes: Iterable[Change] = ()) -> TaskHistory:
    entries = []
    for entry in doc.get("time_entries") or []:
        hours = _hours(entry.get("hours"))
        at = entry.get("logged_at")
        if hours is not None and isinstance(at, dt.datetime):
            entries.append((_utc(at), hours))
    completed = doc.get("completed_at")
    created = doc.get("created_at")
    return TaskHistory(
        task_id=str(doc["_id"]),
        sprint_id=doc.get("sprint_id"),
        status=doc.get("status", "todo"),
        estimated_hours=_hours(doc.get("estimated_hours")),
        completed_at=_utc(completed) if isinstance(completed, dt.datetime) else None,
        created_at=_utc(created) if isinstance(created, dt.datetime) else None,
        time_entries=entries,
        changes=list(changes),
    )


def changes_from_activity(doc: dict[str, Any]) -> list[Change]:
    """The tracked field changes of one activity document."""
    changes = doc.get("changes")
    at = doc.get("created_at")
    if not isinstance(changes, dict) or not isinstance(at, dt.datetime):
        return []
    found = []
    for name in TRACKED_FIELDS:
        change = changes.get(name)
        if isinstance(change, dict) and "from" in change and "to" in change:
            found.append(Change(_utc(at), name, change["from"], change["to"]))
    return found


def history_pipeline(organization_id: str, since: dt.datetime) -> list[dict[str, Any]]:
    """The organization's task changes since ``since``: the leading $match holds the index's
    fields alone (idx_activity_logs_org_created), the action filter is its own stage."""
    return [
        {"$match": {"organization_id": organization_id, "created_at": {"$gte": since}}},
        {"$match": {"resource_type": "Task", "action": {"$in": list(HISTORY_ACTIONS)}}},
        {
            "$project": {
                "_id": 0, "resource_id": 1, "created_at": 1,
                **{f"changes.{name}": 1 for name in TRACKED_FIELDS},
            }
        },
    ]


def read_histories(
    db: Database,
    organization_id: str,
    sprint_id: str,
    since: dt.datetime,
    *,
    session: ClientSession | None = None,
) -> list[TaskHistory]:
    """Every task that is in the sprint now or was in it since ``since`` (the sprint's start),
    with its tracked changes since then."""
    current = list(
        db.tasks.find(
            {"organization_id": organization_id, "sprint_id": sprint_id},
            HISTORY_PROJECTION,
            session=session,
        )
    )
    by_task: dict[str, list[Change]] = {}
    for doc in db.activity_logs.aggregate(
        history_pipeline(organization_id, since), session=session
    ):
        found = changes_from_activity(doc)
        if found and isinstance(doc.get("resource_id"), str):
            by_task.setdefault(doc["resource_id"], []).extend(found)
    known = {str(doc["_id"]) for doc in current}
    departed = []
    for task_id, changes in by_task.items():
        if task_id in known:
            continue
        if any(
            c.field == "sprint_id" and sprint_id in (c.before, c.after) for c in changes
        ):
            try:
                departed.append(ObjectId(task_id))
            except (InvalidId, TypeError):
                continue
    if departed:
        current += db.tasks.find(
            {"_id": {"$in": departed}, "organization_id": organization_id},
            HISTORY_PROJECTION,
            session=session,
        )
    return [history_from_document(doc, by_task.get(str(doc["_id"]), ())) for doc in current]


# ---------------------------------------------------------------- recording
SPRINT_PROJECTION = {
    "status": 1, "start_date": 1, "end_date": 1, "started_at": 1, "completed_at": 1,
    "metrics.burndown_data": 1,
}


def stored_points(sprint_doc: dict[str, Any]) -> list[BurndownPoint]:
    metrics = sprint_doc.get("metrics") or {}
    return [
        BurndownPoint.from_document(doc)
        for doc in metrics.get("burndown_data") or []
        if isinstance(doc, dict) and "date" in doc
    ]


def missing_points(
    db: Database,
    organization_id: str,
    sprint_doc: dict[str, Any],
    until: dt.datetime,
    *,
    histories: Sequence[TaskHistory] | None = None,
    session: ClientSession | None = None,
) -> list[BurndownPoint]:
    """Reconstructed points for the closed days (ending at or before ``until``) that the sprint
    document lacks; reads the tasks' past only when a day is missing."""
    have = {point.date for point in stored_points(sprint_doc)}
    start, end = sprint_doc["start_date"], sprint_doc["end_date"]
    wanted = [
        day.isoformat() for day in sprint_days(start, end)
        if day_end(day) <= until and day.isoformat() not in have
    ]
    if not wanted:
        return []
    if histories is None:
        histories = read_histories(
            db, organization_id, str(sprint_doc["_id"]), day_start(_first_day(start)),
            session=session,
        )
    computed = remaining_by_day(
        str(sprint_doc["_id"]), histories, start, end, until=until,
        started_at=sprint_doc.get("started_at"),
    )
    return [point for point in computed if point.date in wanted]


def push_points_update(points: Sequence[BurndownPoint]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter clause and update that add these points unless any of their dates is there."""
    guard = {"metrics.burndown_data.date": {"$nin": [p.date for p in points]}}
    update = {
        "$push": {
            "metrics.burndown_data": {
                "$each": [p.to_document() for p in points], "$sort": {"date": 1},
            }
        }
    }
    return guard, update


def record_burndown(
    dbs: Databases, organization_id: str, sprint_id: str, today: dt.date
) -> list[str]:
    """The worker's daily step for one sprint: store a point for every closed day before
    ``today`` that has none (never ``today`` or later, never past the sprint's last day or its
    completion). Returns the dates written; a second run the same day writes nothing."""
    db = dbs.mongo
    try:
        oid = ObjectId(sprint_id)
    except (InvalidId, TypeError):
        raise ValidationError(NOT_HERE) from None
    doc = db.sprints.find_one({"_id": oid, "organization_id": organization_id}, SPRINT_PROJECTION)
    if doc is None:
        raise ValidationError(NOT_HERE)
    if doc.get("status") == "planned":
        return []
    real_today = dt.datetime.now(UTC).date()
    until = day_start(min(today, real_today))
    completed = doc.get("completed_at")
    if isinstance(completed, dt.datetime):
        # complete() stored the completion day itself (the state at completion).
        until = min(until, day_start(_utc(completed).date()))
    points = missing_points(db, organization_id, doc, until)
    if not points:
        return []
    guard, update = push_points_update(points)
    result = db.sprints.update_one(
        {"_id": oid, "organization_id": organization_id, **guard}, update
    )
    if result.matched_count == 0:
        # Another run stored one of these days meanwhile: its points stand; the next run fills
        # whatever is still missing.
        return []
    return [p.date for p in points]


@dataclass
class BurndownRun:
    organizations: int = 0
    sprints: int = 0
    points: int = 0
    errors: list[str] = field(default_factory=list)  # one sentence each, the run goes on


ACTIVE_ORGANIZATIONS = "SELECT id::text AS id FROM organizations WHERE active ORDER BY id"


def run_once(dbs: Databases, now: dt.datetime | None = None) -> BurndownRun:
    """Record the closed days of every active sprint of every active organization (organizations
    from PostgreSQL, then one sprints query per organization, each scoped to it)."""
    today = _utc(now or dt.datetime.now(UTC)).date()
    run = BurndownRun()
    with dbs.pg() as conn:
        organizations = [row["id"] for row in conn.execute(ACTIVE_ORGANIZATIONS).fetchall()]
    for organization_id in organizations:
        run.organizations += 1
        try:
            sprint_ids = [
                str(doc["_id"])
                for doc in dbs.mongo.sprints.find(
                    {"organization_id": organization_id, "status": "active"}, {"_id": 1}
                )
            ]
        except PyMongoError as exc:
            run.errors.append(f"Organization {organization_id}: {one_line(str(exc))}")
            continue
        for sprint_id in sprint_ids:
            run.sprints += 1
            try:
                run.points += len(record_burndown(dbs, organization_id, sprint_id, today))
            except (PyMongoError, UserError) as exc:
                log.warning("burndown of sprint %s failed: %s", sprint_id, exc)
                run.errors.append(f"Sprint {sprint_id}: {one_line(str(exc))}")
    return run
