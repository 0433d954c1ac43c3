"""Sprints (MongoDB ``sprints``): the list, create and edit, tasks in and out, start and
complete, metrics, burndown, velocity and the retrospective, permission-checked against
PostgreSQL.

- ``SprintService(dbs, actor, client=None)``, shaped as the board's service (data/board.py):
  every call first checks the actor's permissions in PostgreSQL (one query, however many
  permissions the call needs): sprints.read for the reads; sprints.create; sprints.update for
  edit, start, complete and the retrospective; sprints.delete; tasks.update to add or remove
  tasks and to carry unfinished ones over (complete and delete need it too); tasks.create for an
  action item that becomes a task. A viewer reads and changes nothing; an organization the user
  does not belong to gives nothing. Every MongoDB query names ``organization_id``.
- Writes of a sprint's own fields are optimistic on the ``updated_at`` of the ``SprintRecord``
  the caller holds: when someone changed the sprint meanwhile, nothing is written and
  ``SprintConflict`` (with the current sprint, or None when it was deleted) is raised. Derived
  data (metrics, capacity.allocated/available, burndown points, the action items' task links)
  is written without touching ``updated_at``, so a held sprint stays editable while its tasks
  move.
- Every write records activity documents and commits with them in one transaction where the
  deployment has them (as the board does), then drops the organization's cached dashboards (they
  show the active sprint). Tasks moved between sprints get one ``task.updated`` document each,
  ``changes.sprint_id.from/to`` (per task, not a summary: the burndown reconstructs each task's
  membership from them, data/burndown.py) and a new ``updated_at`` (so the board's held cards
  see the change). The sprint's own changes are ``sprint.created``, ``sprint.updated``,
  ``sprint.started``, ``sprint.completed``, ``sprint.deleted`` and
  ``sprint.retro_edited`` (resource_type "Sprint").

Decisions where the seed and the issue are silent:

- Status: planned -> active (``start``) -> completed (``complete``). New sprints are planned.
  At most one active sprint per organization, enforced by the unique partial index
  ``idx_sprints_one_active_per_org`` (a race between two starts cannot make two); a refused
  start says which sprint is active. A sprint whose last day is over cannot be started.
- Dates: a ``date`` starts at 00:00:00 and ends at 23:59:59 UTC (the seed's shape); a datetime
  is kept (UTC, whole milliseconds). The start must be before the end, a sprint lasts at most
  366 days, and a completed sprint's dates are history (not editable).
- Capacity: ``total_hours`` is what the team can do (>= 0, entered); ``allocated_hours`` is the
  sum of the estimates of the sprint's tasks and ``available_hours`` their difference (negative
  when over-committed), both computed with the metrics.
- Metrics, as the project's seed writes them: total_tasks, completed_tasks (done),
  in_progress_tasks (in progress + review, so the three counts add up to the total as in the
  seed's 15 = 8 + 5 + 2), todo_tasks, completion_rate (completed / total in percent, one
  decimal; 0.0 without tasks); plus review_tasks (the review share of in_progress_tasks),
  estimated_hours, completed_hours (estimates of the done tasks), remaining_hours
  (max(estimate - actual, 0) over the unfinished tasks) and computed_at. ``burndown_data`` is
  never touched by them.
- Completing freezes the metrics as they were at that moment (carried-over tasks count as not
  completed, ``carried_over_tasks``/``carried_over_hours`` say how many left), stores the missing
  burndown days and the completion day's point, then moves the unfinished tasks (todo, in
  progress, review) to the chosen planned sprint or to the backlog (sprint_id None), all in one
  transaction. ``recompute_metrics`` leaves a completed sprint's metrics alone.
- Velocity: completed hours per completed sprint (the estimates of its done tasks, frozen at
  completion; computed from the tasks for sprints completed without it, as the seed's), against
  the committed hours (``capacity.allocated_hours``).
- Deleting a sprint moves its tasks to the backlog; an active sprint cannot be deleted.
- Retrospective items are trimmed, blank lines dropped, at most 50 per list of at most 500
  characters each. An action item that became a task is linked in
  ``retrospective.action_item_tasks`` ({item, task_id, key}) and cannot become a second one.

Round trips (measured on SecantusDB 0.7 with 40,000 tasks, 4,000 per organization: the
metrics aggregate and its update take ~10 ms for a 200-task sprint, ~80 ms for 2,000, ~2 ms for
an empty one):

- reads: one PostgreSQL query plus one MongoDB query (list, get, sprint_tasks, backlog_tasks;
  velocity adds one aggregate for sprints completed without ``completed_hours``, as the
  seed's); ``burndown``: the sprint, the metrics aggregate (today's live point) and, only when
  a closed day has no stored point, the reconstruction's 2-3 reads (data/burndown.py), whose
  result is shown but not written (the worker stores it).
- create: PG + insert + activity (+ commit). edit, start, set_retrospective: PG + update +
  activity (+ commit) + cache invalidation, then the re-read of the sprint they return; a
  refused start adds the read of the active sprint.
- add_tasks/remove_tasks: PG + the sprint + the tasks' read + one update_many + one insert_many
  of activity + metrics (aggregate + update) of each sprint involved (+ commit) + cache.
- complete: PG + the target + the reconstruction's reads when a day up to today lacks a point;
  in the transaction the sprint, the metrics aggregate, the unfinished tasks, one update_many,
  one insert_many, the sprint's update, the target's metrics, the activity; then the commit,
  the cache and the re-read.
- action_item_to_task: PG + the sprint (+ the target) + the board's create (its own PG check
  and writes) + the link update + the target's metrics.
- ``recompute_metrics(db, organization_id, sprint_id)`` (module function, for the board): one
  aggregate + one update_one, no PostgreSQL, no transaction needed. The board calls it after
  each committed write that changes what the metrics count (status, estimate, time logged, a
  task created in a sprint or deleted from one, a task moved between sprints: then for the
  sprint before and after; ``BoardService._sprints_changed``), so the metrics follow every
  task change as soon as it is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import DESCENDING
from pymongo.client_session import ClientSession
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from creatia_tui.data import burndown as bd
from creatia_tui.data.access import Actor, require
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.board import CARD_FIELDS, BoardService, TaskDraft, _has_transactions
from creatia_tui.data.cache import invalidate_organization
from creatia_tui.data.db import Databases
from creatia_tui.data.models import OPEN_TASK_STATUSES, SPRINT_STATUSES, Sprint, Task
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied, UserError, ValidationError, one_line

NAME_MAX = 255
GOAL_MAX = 2000
CAPACITY_MAX = 1_000_000.0
SPRINT_DAYS_MAX = 366
RETRO_ITEM_MAX = 500
RETRO_ITEMS_MAX = 50
RETRO_LISTS = ("what_went_well", "what_to_improve", "action_items")
TASKS_PER_CALL_MAX = 5000
SPRINT_TASKS_MAX = 5000
NOT_HERE = "That sprint is not in this organization."
RESOURCE_TYPE = "Sprint"
TASK_RESOURCE_TYPE = "Task"
UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
TASK_LIST_FIELDS = (*CARD_FIELDS, "estimated_hours", "actual_hours", "remaining_hours")


class SprintConflict(UserError):
    """Someone else changed (or deleted) the sprint since it was read; nothing was written."""

    def __init__(self, message: str, current: SprintRecord | None) -> None:
        super().__init__(message)
        self.current = current


# ---------------------------------------------------------------- shapes
@dataclass
class SprintDraft:
    """A new sprint, or the editable fields of one (``edit``)."""

    name: str
    start_date: dt.date | dt.datetime
    end_date: dt.date | dt.datetime
    goal: str | None = None
    capacity_hours: float = 0.0
    milestone_id: str | None = None


@dataclass
class SprintRecord(Sprint):
    """The whole sprint document (``Sprint`` plus the fields the model leaves out)."""

    milestone_id: str | None = None
    created_by_id: str | None = None
    started_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> SprintRecord:
        base = Sprint.from_document(doc)
        return cls(
            **{name: getattr(base, name) for name in Sprint.__dataclass_fields__},
            milestone_id=doc.get("milestone_id"),
            created_by_id=doc.get("created_by_id"),
            started_at=doc.get("started_at"),
            completed_at=doc.get("completed_at"),
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )

    @property
    def total_hours(self) -> float:
        return float(self.capacity.get("total_hours") or 0.0)

    @property
    def allocated_hours(self) -> float:
        return float(self.capacity.get("allocated_hours") or 0.0)

    @property
    def available_hours(self) -> float:
        value = self.capacity.get("available_hours")
        return float(value) if value is not None else self.total_hours - self.allocated_hours

    @property
    def completion_rate(self) -> float:
        return float(self.metrics.get("completion_rate") or 0.0)

    @property
    def days(self) -> list[dt.date]:
        return bd.sprint_days(self.start_date, self.end_date)

    @property
    def burndown_points(self) -> list[bd.BurndownPoint]:
        return bd.stored_points({"metrics": self.metrics})

    def retro(self, name: str) -> list[str]:
        """One of the retrospective's lists (RETRO_LISTS)."""
        return [str(item) for item in self.retrospective.get(name) or []]

    @property
    def action_item_tasks(self) -> dict[str, str]:
        """Action item text -> the key (TASK-0042) of the task it became."""
        return {
            link["item"]: link.get("key") or link.get("task_id", "")
            for link in self.retrospective.get("action_item_tasks") or []
            if isinstance(link, dict) and "item" in link
        }

    def to_draft(self) -> SprintDraft:
        """The edit form's starting values."""
        return SprintDraft(
            name=self.name, start_date=self.start_date, end_date=self.end_date, goal=self.goal,
            capacity_hours=self.total_hours, milestone_id=self.milestone_id,
        )


@dataclass(frozen=True)
class SprintMetrics:
    total_tasks: int = 0
    completed_tasks: int = 0
    in_progress_tasks: int = 0  # in progress + review, as the seed counts them
    review_tasks: int = 0
    todo_tasks: int = 0
    completion_rate: float = 0.0  # percent, one decimal
    estimated_hours: float = 0.0  # every task's estimate (the capacity's allocated hours)
    completed_hours: float = 0.0  # the done tasks' estimates
    remaining_hours: float = 0.0  # max(estimate - actual, 0) over the unfinished tasks

    @property
    def open_tasks(self) -> int:
        return self.total_tasks - self.completed_tasks

    @classmethod
    def from_groups(cls, rows: Sequence[dict[str, Any]]) -> SprintMetrics:
        """From ``metrics_pipeline``'s rows (one per status)."""
        by_status = {row["_id"]: row for row in rows}

        def count(status: str) -> int:
            return int(by_status.get(status, {}).get("tasks", 0))

        def hours(status: str, name: str) -> float:
            return float(by_status.get(status, {}).get(name) or 0.0)

        total = sum(int(row.get("tasks", 0)) for row in rows)
        done = count("done")
        remaining = sum(hours(s, "remaining") for s in by_status if s != "done")
        return cls(
            total_tasks=total,
            completed_tasks=done,
            in_progress_tasks=count("in_progress") + count("review"),
            review_tasks=count("review"),
            todo_tasks=count("todo"),
            completion_rate=round(done * 100 / total, 1) if total else 0.0,
            estimated_hours=round(sum(hours(s, "estimated") for s in by_status), 2),
            completed_hours=round(hours("done", "estimated"), 2),
            remaining_hours=round(remaining, 2),
        )

    def to_document(self) -> dict[str, Any]:
        return {
            "total_tasks": self.total_tasks,
            "completed_tasks": self.completed_tasks,
            "in_progress_tasks": self.in_progress_tasks,
            "review_tasks": self.review_tasks,
            "todo_tasks": self.todo_tasks,
            "completion_rate": self.completion_rate,
            "estimated_hours": self.estimated_hours,
            "completed_hours": self.completed_hours,
            "remaining_hours": self.remaining_hours,
        }


@dataclass
class CompletionResult:
    sprint: SprintRecord  # as completed
    metrics: SprintMetrics  # frozen at completion (carried-over tasks count as not completed)
    carried_over: int  # unfinished tasks moved
    carried_over_to: str | None  # the planned sprint they went to; None: the backlog


@dataclass
class VelocityPoint:
    sprint_id: str
    name: str
    start_date: dt.datetime
    end_date: dt.datetime
    committed_hours: float  # capacity.allocated_hours: the estimates the sprint held
    completed_hours: float  # the estimates of its done tasks
    completed_tasks: int


@dataclass
class BurndownChart:
    """Everything the burndown screen draws, for one sprint."""

    sprint_id: str
    name: str
    status: str
    days: list[str]  # every day of the sprint, YYYY-MM-DD
    capacity_hours: float
    ideal_hours: list[tuple[str, float]]  # end of each day: capacity -> 0
    ideal_tasks: list[tuple[str, float]]  # end of each day: committed task count -> 0
    points: list[bd.BurndownPoint]  # closed days: stored, or reconstructed (see filled)
    filled: list[str]  # dates reconstructed for this read (the worker stores them later)
    today: str | None  # today's date when it is a day of the sprint
    live: bd.BurndownPoint | None  # today so far (active sprints), from the tasks now
    metrics: SprintMetrics  # now (or as frozen, for a completed sprint)

    @property
    def scope_changes(self) -> list[bd.BurndownPoint]:
        """The days on which tasks were added after the start."""
        shown = [*self.points, *([self.live] if self.live else [])]
        return [p for p in shown if p.added_tasks]


# ---------------------------------------------------------------- pipelines
def metrics_pipeline(organization_id: str, sprint_id: str) -> list[dict[str, Any]]:
    """The sprint's tasks by status. The leading $match is idx_tasks_org_sprint_status's
    prefix alone; the group sums plain fields (expressions cost SecantusDB more than the
    fetch): the estimates, and max(estimate - actual, 0) (a task without estimate gives 0)."""
    return [
        {"$match": {"organization_id": organization_id, "sprint_id": sprint_id}},
        {
            "$group": {
                "_id": "$status",
                "tasks": {"$sum": 1},
                "estimated": {"$sum": "$estimated_hours"},
                "remaining": {
                    "$sum": {
                        "$max": [
                            {"$subtract": ["$estimated_hours", {"$ifNull": ["$actual_hours", 0]}]},
                            0,
                        ]
                    }
                },
            }
        },
    ]


def _literal_set(values: dict[str, Any]) -> dict[str, Any]:
    """A pipeline $set of constants ($literal: text starting with $ stays text)."""
    return {"$set": {name: {"$literal": value} for name, value in values.items()}}


AVAILABLE_FROM_TOTAL = {
    "$set": {
        "capacity.available_hours": {
            "$subtract": [
                {"$ifNull": ["$capacity.total_hours", 0]},
                {"$ifNull": ["$capacity.allocated_hours", 0]},
            ]
        }
    }
}


def _metrics_values(metrics: SprintMetrics, now: dt.datetime) -> dict[str, Any]:
    values = {f"metrics.{name}": value for name, value in metrics.to_document().items()}
    values["metrics.computed_at"] = now
    values["capacity.allocated_hours"] = metrics.estimated_hours
    return values


def compute_metrics(
    db: Database, organization_id: str, sprint_id: str, *, session: ClientSession | None = None
) -> SprintMetrics:
    """The metrics from the tasks now (one aggregate), without storing them."""
    rows = list(
        db.tasks.aggregate(metrics_pipeline(organization_id, sprint_id), session=session)
    )
    return SprintMetrics.from_groups(rows)


def recompute_metrics(
    db: Database,
    organization_id: str,
    sprint_id: str | None,
    *,
    session: ClientSession | None = None,
) -> SprintMetrics | None:
    """Recompute and store a planned or active sprint's metrics (and its capacity's allocated
    and available hours): one aggregate and one update_one of ``metrics.*`` fields
    (``burndown_data`` is kept, ``updated_at`` untouched). No permission check: callers are
    services that checked theirs (the board after a task write). A completed sprint keeps its
    frozen metrics; the computed ones are returned all the same. None for no sprint or an id
    that is not one (nothing is read or written)."""
    if not sprint_id:
        return None
    try:
        oid = ObjectId(sprint_id)
    except (InvalidId, TypeError):
        return None
    metrics = compute_metrics(db, organization_id, sprint_id, session=session)
    db.sprints.update_one(
        {"_id": oid, "organization_id": organization_id, "status": {"$in": ["planned", "active"]}},
        [_literal_set(_metrics_values(metrics, utcnow())), AVAILABLE_FROM_TOTAL],
        session=session,
    )
    return metrics


# ---------------------------------------------------------------- validation
def _sprint_oid(sprint_id: Any) -> ObjectId:
    try:
        return ObjectId(sprint_id)
    except (InvalidId, TypeError):
        raise ValidationError(NOT_HERE) from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _moment(value: Any, what: str, *, end_of_day: bool) -> dt.datetime:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        start = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
        return start + dt.timedelta(hours=23, minutes=59, seconds=59) if end_of_day else start
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"The {what} is not a date.")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def clean_sprint_draft(draft: SprintDraft) -> dict[str, Any]:
    """The draft's fields as they would be stored, or a ValidationError (one sentence)."""
    name = draft.name.strip() if isinstance(draft.name, str) else ""
    if not name:
        raise ValidationError("The sprint's name is empty.")
    if len(name) > NAME_MAX:
        raise ValidationError(f"The sprint's name is longer than {NAME_MAX} characters.")
    goal = draft.goal
    if goal is not None:
        if not isinstance(goal, str):
            raise ValidationError("The goal must be text.")
        goal = goal.strip() or None
        if goal is not None and len(goal) > GOAL_MAX:
            raise ValidationError(f"The goal is longer than {GOAL_MAX} characters.")
    start = _moment(draft.start_date, "start date", end_of_day=False)
    end = _moment(draft.end_date, "end date", end_of_day=True)
    if not start < end:
        raise ValidationError("The sprint must start before it ends.")
    if len(bd.sprint_days(start, end)) > SPRINT_DAYS_MAX:
        raise ValidationError(f"A sprint lasts at most {SPRINT_DAYS_MAX} days.")
    hours = _number(draft.capacity_hours)
    if hours is None:
        raise ValidationError("The capacity must be a number of hours.")
    if hours < 0:
        raise ValidationError("The capacity cannot be negative.")
    if hours > CAPACITY_MAX:
        raise ValidationError(f"The capacity is more than {CAPACITY_MAX:,.0f} hours.")
    milestone = draft.milestone_id
    if milestone is not None:
        if not isinstance(milestone, str):
            raise ValidationError("The milestone must be a milestone id.")
        milestone = milestone.strip() or None
        if milestone is not None and not UUID_PATTERN.match(milestone):
            raise ValidationError(f"{milestone[:40]!r} is not a milestone id.")
    return {
        "name": name,
        "goal": goal,
        "start_date": start,
        "end_date": end,
        "total_hours": hours,
        "milestone_id": milestone,
    }


def clean_retro_items(items: Any, what: str) -> list[str]:
    """One retrospective list: trimmed, blank lines dropped, bounded."""
    if items is None:
        return []
    if isinstance(items, str) or not all(isinstance(item, str) for item in items):
        raise ValidationError(f"{what} must be a list of sentences.")
    cleaned = [item.strip() for item in items if item.strip()]
    for item in cleaned:
        if len(item) > RETRO_ITEM_MAX:
            raise ValidationError(
                f"{what}: {item[:20]!r}… is longer than {RETRO_ITEM_MAX} characters."
            )
    if len(cleaned) > RETRO_ITEMS_MAX:
        raise ValidationError(f"{what} can hold at most {RETRO_ITEMS_MAX} items.")
    return cleaned


def _task_oids(task_ids: Sequence[str]) -> list[ObjectId]:
    if isinstance(task_ids, str):
        raise ValidationError("Pass a list of tasks.")
    unique = list(dict.fromkeys(task_ids))
    if len(unique) > TASKS_PER_CALL_MAX:
        raise ValidationError(f"Move at most {TASKS_PER_CALL_MAX} tasks at a time.")
    oids = []
    for task_id in unique:
        try:
            oids.append(ObjectId(task_id))
        except (InvalidId, TypeError):
            raise ValidationError("That task is not in this organization.") from None
    return oids


def _id_of(sprint: SprintRecord | str) -> str:
    return sprint.id if isinstance(sprint, SprintRecord) else sprint


# ---------------------------------------------------------------- the service
class SprintService:
    def __init__(
        self, dbs: Databases, actor: Actor, client: ClientContext | None = None
    ) -> None:
        self.dbs = dbs
        self.actor = actor
        self.client = client or ClientContext.current()
        self._session: ClientSession | None = None  # the open write transaction, if any

    # ------------------------------------------------------------ plumbing
    @property
    def _org(self) -> str:
        return self.actor.organization_id

    @property
    def _db(self) -> Database:
        return self.dbs.mongo

    def _require(self, *permissions: str) -> None:
        """Every permission, from one PostgreSQL query."""
        with self.dbs.pg() as conn:
            held = require(conn, self.actor, permissions[0])
        for permission in permissions[1:]:
            if permission not in held:
                resource, _, action = permission.partition(".")
                raise PermissionDenied(
                    f"You may not {action} {resource} in this organization "
                    f"(permission {permission} is not granted to you)."
                )

    @contextlib.contextmanager
    def _mongo(self) -> Iterator[None]:
        """Driver errors as one sentence: an unreachable server, or a refused command."""
        try:
            yield
        except ConnectionFailure as exc:
            raise self.dbs.mongo_error(exc) from exc
        except PyMongoError as exc:
            raise UserError(f"MongoDB refused the request: {one_line(str(exc))}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One multi-document transaction where the deployment has them (data/board.py);
        the organization's cached dashboards are dropped once it committed."""
        if _has_transactions(self.dbs):
            with self.dbs.mongo_client.start_session() as session, session.start_transaction():
                self._session = session
                try:
                    yield
                finally:
                    self._session = None
        else:
            yield
        invalidate_organization(self._db, self._org)

    @staticmethod
    def _stamp(held: dt.datetime | None = None) -> dt.datetime:
        """The new updated_at, always later than the held one."""
        now = utcnow()
        if held is not None and now <= held:
            now = held + dt.timedelta(milliseconds=1)
        return now

    def _find(self, sprint_id: str) -> SprintRecord | None:
        doc = self._db.sprints.find_one(
            {"_id": _sprint_oid(sprint_id), "organization_id": self._org}, session=self._session
        )
        return SprintRecord.from_document(doc) if doc else None

    def _get(self, sprint_id: str) -> SprintRecord:
        sprint = self._find(sprint_id)
        if sprint is None:
            raise ValidationError(NOT_HERE)
        return sprint

    def _conflict(self, sprint: SprintRecord) -> SprintConflict:
        current = self._find(sprint.id)
        if current is None:
            return SprintConflict(f"{sprint.name} was deleted by someone else.", None)
        return SprintConflict(
            f"{sprint.name} was changed by someone else; it was reloaded.", current
        )

    def _activity(
        self,
        action: str,
        resource_type: str,
        resource_id: str,
        changes: dict[str, Any] | None,
        now: dt.datetime,
    ) -> dict[str, Any]:
        """An activity_logs document shaped as the seed's (as ActivityRepository.record)."""
        return {
            "organization_id": self._org,
            "user_id": self.actor.user_id,
            "action": action,
            "resource_type": resource_type,
            "resource_id": resource_id,
            "changes": changes,
            "metadata": {
                "user_agent": self.client.user_agent,
                "ip_address": self.client.ip_address,
                "api_version": "v1",
                "client_type": "tui",
            },
            "timestamp": now,
            "created_at": now,
        }

    def _record(
        self, action: str, sprint_id: str, changes: dict[str, Any] | None, now: dt.datetime
    ) -> None:
        self._db.activity_logs.insert_one(
            self._activity(action, RESOURCE_TYPE, sprint_id, changes, now), session=self._session
        )

    def _update(
        self,
        sprint: SprintRecord,
        update: dict[str, Any] | list[dict[str, Any]],
        *,
        status: str | None = None,
    ) -> None:
        """One optimistic update_one of the held version; SprintConflict when it is not the
        current one (or no longer has ``status``)."""
        query: dict[str, Any] = {
            "_id": _sprint_oid(sprint.id),
            "organization_id": self._org,
            "updated_at": sprint.updated_at,
        }
        if status is not None:
            query["status"] = status
        result = self._db.sprints.update_one(query, update, session=self._session)
        if result.matched_count == 0:
            raise self._conflict(sprint)

    def _tasks(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        return list(
            self._db.tasks.find(query, {"sprint_id": 1, "updated_at": 1}, session=self._session)
        )

    def _move_tasks(
        self, docs: list[dict[str, Any]], target: str | None, now: dt.datetime
    ) -> tuple[int, set[str]]:
        """Set sprint_id to ``target`` on these tasks (read in the same transaction): one
        update_many, one activity document per task. Returns how many moved and the sprints
        they left."""
        docs = [d for d in docs if d.get("sprint_id") != target]
        if not docs:
            return 0, set()
        held = max((d["updated_at"] for d in docs if d.get("updated_at")), default=None)
        # Later than every moved task's updated_at (the board's held cards become stale), and
        # the write's own moment when it already is.
        stamp = now if held is None or now > held else held + dt.timedelta(milliseconds=1)
        self._db.tasks.update_many(
            {"_id": {"$in": [d["_id"] for d in docs]}, "organization_id": self._org},
            {"$set": {"sprint_id": target, "updated_at": stamp}},
            session=self._session,
        )
        self._db.activity_logs.insert_many(
            [
                self._activity(
                    "task.updated", TASK_RESOURCE_TYPE, str(d["_id"]),
                    {"sprint_id": {"from": d.get("sprint_id"), "to": target}}, stamp,
                )
                for d in docs
            ],
            session=self._session,
        )
        left = {d["sprint_id"] for d in docs if d.get("sprint_id")}
        return len(docs), left

    def _recompute(self, *sprint_ids: str | None) -> None:
        for sprint_id in dict.fromkeys(s for s in sprint_ids if s):
            recompute_metrics(self._db, self._org, sprint_id, session=self._session)

    # ------------------------------------------------------------ reads (sprints.read)
    def list_sprints(self, status: str | None = None) -> list[SprintRecord]:
        """The organization's sprints, newest start first (optionally one status)."""
        self._require("sprints.read")
        if status is not None and status not in SPRINT_STATUSES:
            raise ValidationError(
                f"Unknown sprint status {status!r}; choose one of {', '.join(SPRINT_STATUSES)}."
            )
        query: dict[str, Any] = {"organization_id": self._org}
        if status is not None:
            query["status"] = status
        with self._mongo():
            cursor = self._db.sprints.find(query).sort(
                [("start_date", DESCENDING), ("_id", DESCENDING)]
            )
            return [SprintRecord.from_document(doc) for doc in cursor]

    def get_sprint(self, sprint_id: str) -> SprintRecord:
        """ValidationError when it is not in this organization."""
        self._require("sprints.read")
        with self._mongo():
            return self._get(sprint_id)

    def sprint_tasks(self, sprint: SprintRecord | str, limit: int = SPRINT_TASKS_MAX) -> list[Task]:
        """The sprint's tasks (card fields and hours), by status then position (tasks.read)."""
        self._require("sprints.read", "tasks.read")
        with self._mongo():
            cursor = self._db.tasks.find(
                {"organization_id": self._org, "sprint_id": _id_of(sprint)},
                dict.fromkeys(TASK_LIST_FIELDS, 1),
            ).limit(limit)
            tasks = [Task.from_document(doc) for doc in cursor]
        order = {"todo": 0, "in_progress": 1, "review": 2, "done": 3}
        return sorted(tasks, key=lambda t: (order.get(t.status, 9), t.position, t.id))

    def backlog_tasks(self, limit: int = 500) -> list[Task]:
        """Unfinished tasks in no sprint, by status then position: what can be added."""
        self._require("sprints.read", "tasks.read")
        with self._mongo():
            cursor = (
                self._db.tasks.find(
                    {"organization_id": self._org, "sprint_id": None,
                     "status": {"$in": list(OPEN_TASK_STATUSES)}},
                    dict.fromkeys(TASK_LIST_FIELDS, 1),
                )
                .sort([("status", 1), ("position", 1), ("_id", 1)])
                .limit(limit)
            )
            return [Task.from_document(doc) for doc in cursor]

    def velocity(self, last_n: int = 6) -> list[VelocityPoint]:
        """Completed hours of the last ``last_n`` completed sprints, oldest first."""
        self._require("sprints.read")
        if isinstance(last_n, bool) or not isinstance(last_n, int) or not 1 <= last_n <= 100:
            raise ValidationError("Show between 1 and 100 sprints.")
        with self._mongo():
            docs = list(
                self._db.sprints.find(
                    {"organization_id": self._org, "status": "completed"},
                    {"name": 1, "start_date": 1, "end_date": 1, "capacity": 1,
                     "metrics.completed_hours": 1, "metrics.completed_tasks": 1},
                )
                .sort([("start_date", DESCENDING), ("_id", DESCENDING)])
                .limit(last_n)
            )
            unknown = [str(d["_id"]) for d in docs
                       if (d.get("metrics") or {}).get("completed_hours") is None]
            counted: dict[str, dict[str, Any]] = {}
            if unknown:
                counted = {
                    row["_id"]: row
                    for row in self._db.tasks.aggregate([
                        {"$match": {"organization_id": self._org, "sprint_id": {"$in": unknown},
                                    "status": "done"}},
                        {"$group": {"_id": "$sprint_id", "hours": {"$sum": "$estimated_hours"},
                                    "tasks": {"$sum": 1}}},
                    ])
                }
        points = []
        for doc in reversed(docs):
            metrics = doc.get("metrics") or {}
            row = counted.get(str(doc["_id"]))
            if row is not None or metrics.get("completed_hours") is None:
                hours = float((row or {}).get("hours") or 0.0)
                tasks = int((row or {}).get("tasks") or 0)
            else:
                hours = float(metrics["completed_hours"])
                tasks = int(metrics.get("completed_tasks") or 0)
            points.append(
                VelocityPoint(
                    sprint_id=str(doc["_id"]),
                    name=doc["name"],
                    start_date=doc["start_date"],
                    end_date=doc["end_date"],
                    committed_hours=float((doc.get("capacity") or {}).get("allocated_hours")
                                          or 0.0),
                    completed_hours=round(hours, 2),
                    completed_tasks=tasks,
                )
            )
        return points

    def burndown(self, sprint_id: str, now: dt.datetime | None = None) -> BurndownChart:
        """The sprint's burndown: stored points, closed days without one reconstructed (not
        written: the worker does), today's live point for an active sprint, the ideal lines."""
        self._require("sprints.read")
        at = now or utcnow()
        with self._mongo():
            sprint = self._get(sprint_id)
            doc = {
                "_id": ObjectId(sprint.id), "start_date": sprint.start_date,
                "end_date": sprint.end_date, "started_at": sprint.started_at,
                "metrics": sprint.metrics,
            }
            until = bd.day_start(at.astimezone(dt.timezone.utc).date())
            if sprint.completed_at is not None:
                until = min(until, bd.day_start(sprint.completed_at.astimezone(
                    dt.timezone.utc).date()))
            if sprint.status == "planned":
                until = bd.day_start(sprint.days[0]) if sprint.days else until
            filled = bd.missing_points(self._db, self._org, doc, until)
            if sprint.status == "completed":
                metrics = _stored_metrics(sprint)
            else:
                metrics = compute_metrics(self._db, self._org, sprint.id)
        points = bd.fill_missing_days(sprint.burndown_points, filled)
        today = at.astimezone(dt.timezone.utc).date()
        days = sprint.days
        in_sprint = bool(days) and days[0] <= today <= days[-1]
        live = None
        if sprint.status == "active" and in_sprint:
            previous = points[-1] if points else None
            live = bd.BurndownPoint(
                date=today.isoformat(),
                remaining_hours=metrics.remaining_hours,
                remaining_tasks=metrics.open_tasks,
                scope_hours=metrics.estimated_hours,
                scope_tasks=metrics.total_tasks,
                added_hours=None,
                added_tasks=None,
            )
            if previous is not None and previous.date == live.date:
                live = None  # a seeded point for today stands
        committed = next((p.scope_tasks for p in points if p.scope_tasks is not None),
                         metrics.total_tasks)
        return BurndownChart(
            sprint_id=sprint.id,
            name=sprint.name,
            status=sprint.status,
            days=[day.isoformat() for day in days],
            capacity_hours=sprint.total_hours,
            ideal_hours=bd.ideal_line(sprint.total_hours, sprint.start_date, sprint.end_date),
            ideal_tasks=bd.ideal_line(committed, sprint.start_date, sprint.end_date),
            points=points,
            filled=[p.date for p in filled],
            today=today.isoformat() if in_sprint else None,
            live=live,
            metrics=metrics,
        )

    # ------------------------------------------------------------ writes
    def create(self, draft: SprintDraft) -> SprintRecord:
        """sprints.create; a new sprint is planned."""
        self._require("sprints.create")
        wanted = clean_sprint_draft(draft)
        now = self._stamp()
        doc: dict[str, Any] = {
            "organization_id": self._org,
            "milestone_id": wanted["milestone_id"],
            "name": wanted["name"],
            "goal": wanted["goal"],
            "status": "planned",
            "start_date": wanted["start_date"],
            "end_date": wanted["end_date"],
            "capacity": {
                "total_hours": wanted["total_hours"],
                "allocated_hours": 0.0,
                "available_hours": wanted["total_hours"],
            },
            "metrics": {**SprintMetrics().to_document(), "burndown_data": []},
            "retrospective": {name: [] for name in RETRO_LISTS},
            "created_by_id": self.actor.user_id,
            "created_at": now,
            "updated_at": now,
        }
        with self._mongo(), self._writing():
            self._db.sprints.insert_one(doc, session=self._session)
            self._record("sprint.created", str(doc["_id"]), {"name": wanted["name"]}, now)
        return SprintRecord.from_document(doc)

    def edit(self, sprint: SprintRecord, draft: SprintDraft) -> SprintRecord:
        """sprints.update; writes only the fields that changed."""
        self._require("sprints.update")
        wanted = clean_sprint_draft(draft)
        held = {
            "name": sprint.name, "goal": sprint.goal, "start_date": sprint.start_date,
            "end_date": sprint.end_date, "total_hours": sprint.total_hours,
            "milestone_id": sprint.milestone_id,
        }
        changed = {name: value for name, value in wanted.items() if held[name] != value}
        if not changed:
            return sprint
        if sprint.status == "completed" and ({"start_date", "end_date"} & changed.keys()):
            raise ValidationError("A completed sprint's dates are history; they cannot change.")
        now = self._stamp(sprint.updated_at)
        values = {("capacity.total_hours" if name == "total_hours" else name): value
                  for name, value in changed.items()}
        update: list[dict[str, Any]] = [_literal_set({**values, "updated_at": now})]
        if "total_hours" in changed:
            update.append(AVAILABLE_FROM_TOTAL)
        with self._mongo():
            with self._writing():
                self._update(sprint, update)
                diff = {name: {"from": held[name], "to": value} for name, value in changed.items()}
                self._record("sprint.updated", sprint.id, diff, now)
            return self._get(sprint.id)

    def delete(self, sprint: SprintRecord) -> int:
        """sprints.delete (and tasks.update: its tasks go to the backlog); not an active one.
        Returns how many tasks went to the backlog."""
        self._require("sprints.delete", "tasks.update")
        if sprint.status == "active":
            raise ValidationError(f"{sprint.name} is active; complete it before deleting it.")
        now = self._stamp(sprint.updated_at)
        with self._mongo(), self._writing():
            moved, _ = self._move_tasks(
                self._tasks({"organization_id": self._org, "sprint_id": sprint.id}), None, now
            )
            result = self._db.sprints.delete_one(
                {"_id": _sprint_oid(sprint.id), "organization_id": self._org,
                 "updated_at": sprint.updated_at, "status": {"$ne": "active"}},
                session=self._session,
            )
            if result.deleted_count == 0:
                raise self._conflict(sprint)
            self._record("sprint.deleted", sprint.id,
                         {"name": sprint.name, "tasks_to_backlog": moved}, now)
        return moved

    def add_tasks(self, sprint: SprintRecord | str, task_ids: Sequence[str]) -> int:
        """tasks.update; moves the tasks into the sprint (from the backlog or another sprint).
        Refuses a completed sprint and ids that are not tasks of this organization, writing
        nothing. Returns how many moved (tasks already in the sprint are left alone)."""
        return self._set_sprint(sprint, task_ids, add=True)

    def remove_tasks(self, sprint: SprintRecord | str, task_ids: Sequence[str]) -> int:
        """tasks.update; moves those of the tasks that are in the sprint to the backlog."""
        return self._set_sprint(sprint, task_ids, add=False)

    def _set_sprint(self, sprint: SprintRecord | str, task_ids: Sequence[str], *, add: bool) -> int:
        self._require("tasks.update")
        sprint_id = _id_of(sprint)
        oids = _task_oids(task_ids)
        if not oids:
            return 0
        with self._mongo(), self._writing():
            current = self._get(sprint_id)
            if current.status == "completed":
                raise ValidationError(
                    f"{current.name} is completed; its tasks can no longer change."
                )
            docs = self._tasks({"_id": {"$in": oids}, "organization_id": self._org})
            if len(docs) != len(oids):
                missing = len(oids) - len(docs)
                raise ValidationError(
                    "That task is not in this organization." if missing == 1
                    else f"{missing} of those tasks are not in this organization."
                )
            if not add:
                docs = [d for d in docs if d.get("sprint_id") == sprint_id]
            moved, left = self._move_tasks(docs, sprint_id if add else None, self._stamp())
            if moved:
                self._recompute(sprint_id, *left)
        return moved

    def start(self, sprint: SprintRecord) -> SprintRecord:
        """sprints.update; planned -> active, refused while another sprint is active."""
        self._require("sprints.update")
        if sprint.status != "planned":
            raise ValidationError(f"{sprint.name} is {sprint.status}; only a planned sprint "
                                  "can start.")
        days = sprint.days
        if days and days[-1] < utcnow().date():
            raise ValidationError(
                f"{sprint.name} ended on {days[-1].isoformat()}; move its dates before starting it."
            )
        now = self._stamp(sprint.updated_at)
        with self._mongo():
            try:
                with self._writing():
                    self._update(
                        sprint,
                        {"$set": {"status": "active", "started_at": now, "updated_at": now}},
                        status="planned",
                    )
                    self._record("sprint.started", sprint.id,
                                 {"status": {"from": "planned", "to": "active"}}, now)
            except DuplicateKeyError:
                active = self._db.sprints.find_one(
                    {"organization_id": self._org, "status": "active"}, {"name": 1}
                )
                name = active["name"] if active else "another sprint"
                raise ValidationError(
                    f"{name} is already active; complete it before starting {sprint.name}."
                ) from None
            return self._get(sprint.id)

    def complete(
        self, sprint: SprintRecord, carry_over_to: str | None = None
    ) -> CompletionResult:
        """sprints.update and tasks.update; active -> completed, its unfinished tasks moved to
        the planned sprint ``carry_over_to`` or to the backlog (None), in one transaction."""
        self._require("sprints.update", "tasks.update")
        if sprint.status != "active":
            raise ValidationError(
                f"{sprint.name} is {sprint.status}; only an active sprint can be completed."
            )
        now = self._stamp(sprint.updated_at)
        with self._mongo():
            if carry_over_to is not None:
                if carry_over_to == sprint.id:
                    raise ValidationError("Unfinished tasks cannot carry over to the same sprint.")
                target = self._find(carry_over_to)
                if target is None:
                    raise ValidationError(NOT_HERE)
                if target.status != "planned":
                    raise ValidationError(
                        f"Unfinished tasks can carry over only to a planned sprint; "
                        f"{target.name} is {target.status}."
                    )
            # The burndown's missing closed days and the completion day's point, from the tasks
            # as they are before the move (reads only, so outside the transaction).
            today = now.date()
            days = sprint.days
            have = {p.date for p in sprint.burndown_points}
            histories = None
            if any(day <= today and day.isoformat() not in have for day in days):
                histories = bd.read_histories(
                    self._db, self._org, sprint.id, bd.day_start(days[0])
                )
            with self._writing():
                current = self._find(sprint.id)
                if current is None or current.updated_at != sprint.updated_at:
                    raise self._conflict(sprint)
                points: list[bd.BurndownPoint] = []
                if histories is not None:
                    doc = {
                        "_id": ObjectId(sprint.id), "start_date": current.start_date,
                        "end_date": current.end_date, "started_at": current.started_at,
                        "metrics": current.metrics,
                    }
                    points = bd.missing_points(
                        self._db, self._org, doc, bd.day_start(today), histories=histories
                    )
                    final = bd.live_point(sprint.id, histories, current.start_date,
                                          current.end_date, now, started_at=current.started_at)
                    have = {p.date for p in current.burndown_points}
                    if final is not None and final.date not in have:
                        points.append(final)
                metrics = compute_metrics(self._db, self._org, sprint.id, session=self._session)
                unfinished = self._tasks({
                    "organization_id": self._org, "sprint_id": sprint.id,
                    "status": {"$in": list(OPEN_TASK_STATUSES)},
                })
                moved, _ = self._move_tasks(unfinished, carry_over_to, now)
                values = {
                    "status": "completed", "completed_at": now, "updated_at": now,
                    **_metrics_values(metrics, now),
                    "capacity.available_hours": round(
                        current.total_hours - metrics.estimated_hours, 2
                    ),
                    "metrics.carried_over_tasks": moved,
                    "metrics.carried_over_hours": metrics.remaining_hours,
                    "metrics.carried_over_to": carry_over_to,
                }
                update: dict[str, Any] = {"$set": values}
                if points:
                    update["$push"] = bd.push_points_update(points)[1]["$push"]
                self._update(sprint, update, status="active")
                if carry_over_to is not None and moved:
                    self._recompute(carry_over_to)
                self._record(
                    "sprint.completed", sprint.id,
                    {"status": {"from": "active", "to": "completed"},
                     "carried_over": {"tasks": moved, "to": carry_over_to}},
                    now,
                )
            completed = self._get(sprint.id)
        return CompletionResult(completed, metrics, moved, carry_over_to)

    def recompute_metrics(self, sprint: SprintRecord | str) -> SprintMetrics:
        """Recompute and store the sprint's metrics now (sprints.read: derived numbers, rebuilt
        by any reader as the dashboards are; a completed sprint keeps its frozen ones)."""
        self._require("sprints.read")
        with self._mongo():
            current = self._get(_id_of(sprint))
            metrics = recompute_metrics(self._db, self._org, current.id)
        assert metrics is not None
        return metrics

    def set_retrospective(
        self,
        sprint: SprintRecord,
        what_went_well: Sequence[str],
        what_to_improve: Sequence[str],
        action_items: Sequence[str],
    ) -> SprintRecord:
        """sprints.update; the seed's three lists (trimmed, blank lines dropped, at most 50
        items of at most 500 characters each)."""
        self._require("sprints.update")
        lists = {
            "what_went_well": clean_retro_items(what_went_well, "What went well"),
            "what_to_improve": clean_retro_items(what_to_improve, "What to improve"),
            "action_items": clean_retro_items(action_items, "Action items"),
        }
        changed = {name: items for name, items in lists.items() if sprint.retro(name) != items}
        if not changed:
            return sprint
        now = self._stamp(sprint.updated_at)
        with self._mongo():
            with self._writing():
                self._update(sprint, {"$set": {
                    **{f"retrospective.{name}": items for name, items in changed.items()},
                    "updated_at": now,
                }})
                self._record(
                    "sprint.retro_edited", sprint.id,
                    {name: {"from": len(sprint.retro(name)), "to": len(items)}
                     for name, items in changed.items()},
                    now,
                )
            return self._get(sprint.id)

    def action_item_to_task(
        self, sprint: SprintRecord | str, index: int, next_sprint_id: str | None
    ) -> Task:
        """sprints.update and tasks.create; the action item at ``index`` (0-based, of the
        sprint as stored now) becomes a todo task in ``next_sprint_id`` (a planned or active
        sprint; None: the backlog), created by the board service (``task.created``), and is
        linked to it."""
        self._require("sprints.update", "tasks.create")
        with self._mongo():
            current = self._get(_id_of(sprint))
            items = current.retro("action_items")
            if isinstance(index, bool) or not isinstance(index, int) or not (
                0 <= index < len(items)
            ):
                raise ValidationError("There is no such action item.")
            item = items[index]
            done = current.action_item_tasks.get(item)
            if done:
                raise ValidationError(f"That action item already became {done}.")
            if next_sprint_id is not None:
                target = self._get(next_sprint_id)
                if target.status == "completed":
                    raise ValidationError(
                        f"{target.name} is completed; choose a planned or active sprint."
                    )
        board = BoardService(self.dbs, self.actor, self.client)
        task = board.create(
            TaskDraft(
                title=item,
                description=f"Action item from the retrospective of {current.name}.",
                labels=["retrospective"],
                sprint_id=next_sprint_id,
            )
        )
        with self._mongo():
            self._db.sprints.update_one(
                {"_id": _sprint_oid(current.id), "organization_id": self._org,
                 "retrospective.action_item_tasks.item": {"$ne": item}},
                {"$push": {"retrospective.action_item_tasks":
                           {"item": item, "task_id": task.id, "key": task.task_id}}},
            )
        return task  # the board's create recomputed the target sprint's metrics


def _stored_metrics(sprint: SprintRecord) -> SprintMetrics:
    names = SprintMetrics.__dataclass_fields__
    values = {name: sprint.metrics.get(name) for name in names if name in sprint.metrics}
    metrics = SprintMetrics(**{k: v for k, v in values.items() if v is not None})
    if "estimated_hours" not in values:
        metrics = replace(metrics, estimated_hours=sprint.allocated_hours)
    return metrics
