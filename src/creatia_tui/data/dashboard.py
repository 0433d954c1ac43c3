"""The seed's user dashboard: one user's work in one organization, cached 10 minutes.

What it holds (decisions where the seed is silent):

- The user's open tasks (todo, in progress, review: ``OPEN_TASK_STATUSES``) by status: how many,
  and the first few of each in board order (position).
- Due this week and overdue are among the user's open tasks too: due this week is due in
  [now, now + 7 days) as the board's "this_week" filter reads it, overdue is due before now and
  not done. Each has its count and its first few, soonest (most overdue) first.
- The organization's active sprint (the newest by start date when several are active) and its
  progress counted from its tasks now, not from the sprint document's ``metrics`` (written by the
  seed or a worker, possibly stale): total, completed (done), in progress, review, todo, and the
  completion rate in percent with one decimal, as the seed's 53.3.
- The organization's 10 newest activity entries, with the actor's name.

Reads, on a miss: the user's open tasks are one aggregate (``$match`` on organization_id,
assignee_id and the open statuses, which is what lets mongod use the partial index
``idx_tasks_org_assignee_active``; then ``$facet`` for the counts and first few by status, due
this week and overdue); the active sprint is one ``find_one`` (``idx_sprints_org_status_start``);
its progress one aggregate grouping its tasks by status (``idx_tasks_org_sprint_status``); the
recent activity one read of activity_logs (data/activity.py) and one of user_snapshots (plus one
PostgreSQL query for actors without a snapshot). SecantusDB does not use a partial index unless
hinted, and a hint there costs more than its collection scan (~650 ms against ~130 ms at 40,000
tasks), so the open-tasks query is not hinted: on SecantusDB it scans, on mongod it uses the
partial index.

Caching (data/cache.py): per user and organization (key ``dashboard:<user id>``, 10 minutes,
the seed's ``user_dashboard``), shared by every process; every task write of the organization
drops it (the board service calls ``invalidate_organization``). The permission check
(``tasks.read``) runs on every call, cached or not. A hit is two round trips (the permission
query and the cache read); a miss adds the reads above and two cache writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pymongo.database import Database

from creatia_tui.data import cache
from creatia_tui.data.access import Actor, require
from creatia_tui.data.activity import (
    ActivityEntry,
    ActivityFilter,
    actor_names,
    entry_from_document,
    fetch_page,
)
from creatia_tui.data.db import Databases
from creatia_tui.data.models import OPEN_TASK_STATUSES, Task
from creatia_tui.data.tasks import utcnow

DASHBOARD_TTL_SECONDS = 600
FIRST_FEW = 5
RECENT_ACTIVITY = 10

# What a dashboard shows of a task (the board's card fields, data/board.py).
TASK_FIELDS = (
    "organization_id", "task_id", "title", "status", "priority", "position", "assignee_id",
    "assignee_snapshot", "due_date", "tags", "labels", "sprint_id", "completed_at",
    "updated_at", "created_at",
)


@dataclass
class TaskGroup:
    count: int = 0
    tasks: list[Task] = field(default_factory=list)  # the first few (FIRST_FEW)


@dataclass
class SprintProgress:
    sprint_id: str
    name: str
    goal: str | None
    start_date: dt.datetime
    end_date: dt.datetime
    total: int
    completed: int
    in_progress: int
    review: int
    todo: int
    completion_rate: float  # percent, one decimal; 0.0 for a sprint without tasks


@dataclass
class Dashboard:
    organization_id: str
    user_id: str
    generated_at: dt.datetime  # when it was built (a cached one can be 10 minutes old)
    open_by_status: dict[str, TaskGroup]  # every open status, in board order
    due_this_week: TaskGroup
    overdue: TaskGroup
    sprint: SprintProgress | None
    recent_activity: list[ActivityEntry]

    @property
    def open_count(self) -> int:
        return sum(group.count for group in self.open_by_status.values())


def dashboard_key(user_id: str) -> str:
    return f"dashboard:{user_id}"


def _first_few(match: dict[str, Any] | None, sort: dict[str, int]) -> list[dict[str, Any]]:
    stages: list[dict[str, Any]] = [{"$match": match}] if match else []
    return [
        *stages,
        {"$sort": sort},
        {"$group": {"_id": None, "count": {"$sum": 1}, "tasks": {"$push": "$$ROOT"}}},
        {"$project": {"count": 1, "tasks": {"$slice": ["$tasks", FIRST_FEW]}}},
    ]


def open_tasks_pipeline(
    organization_id: str, user_id: str, now: dt.datetime
) -> list[dict[str, Any]]:
    """The user's open tasks, grouped for the dashboard, in one aggregate."""
    by_due = {"due_date": 1, "_id": 1}
    return [
        {
            "$match": {
                "organization_id": organization_id,
                "assignee_id": user_id,
                "status": {"$in": list(OPEN_TASK_STATUSES)},
            }
        },
        {"$project": dict.fromkeys(TASK_FIELDS, 1)},
        {
            "$facet": {
                "by_status": [
                    {"$sort": {"position": 1, "_id": 1}},
                    {"$group": {"_id": "$status", "count": {"$sum": 1},
                                "tasks": {"$push": "$$ROOT"}}},
                    {"$project": {"count": 1, "tasks": {"$slice": ["$tasks", FIRST_FEW]}}},
                ],
                "due_this_week": _first_few(
                    {"due_date": {"$gte": now, "$lt": now + dt.timedelta(days=7)}}, by_due
                ),
                "overdue": _first_few({"due_date": {"$lt": now}}, by_due),
            }
        },
    ]


def _sprint_progress(mongo_db: Database, organization_id: str) -> dict[str, Any] | None:
    sprint = mongo_db.sprints.find_one(
        {"organization_id": organization_id, "status": "active"},
        {"name": 1, "goal": 1, "start_date": 1, "end_date": 1},
        sort=[("start_date", -1)],
    )
    if sprint is None:
        return None
    counts = {
        row["_id"]: int(row["count"])
        for row in mongo_db.tasks.aggregate(
            [
                {"$match": {"organization_id": organization_id, "sprint_id": str(sprint["_id"])}},
                {"$group": {"_id": "$status", "count": {"$sum": 1}}},
            ]
        )
    }
    total = sum(counts.values())
    completed = counts.get("done", 0)
    return {
        "sprint_id": str(sprint["_id"]),
        "name": sprint["name"],
        "goal": sprint.get("goal"),
        "start_date": sprint["start_date"],
        "end_date": sprint["end_date"],
        "total": total,
        "completed": completed,
        "in_progress": counts.get("in_progress", 0),
        "review": counts.get("review", 0),
        "todo": counts.get("todo", 0),
        "completion_rate": round(completed * 100 / total, 1) if total else 0.0,
    }


def build_dashboard_value(
    conn: psycopg.Connection, mongo_db: Database, actor: Actor, now: dt.datetime
) -> dict[str, Any]:
    """The dashboard as a BSON document (what the cache stores)."""
    org, user = actor.organization_id, actor.user_id
    [facets] = mongo_db.tasks.aggregate(open_tasks_pipeline(org, user, now))
    groups = {row["_id"]: {"count": row["count"], "tasks": row["tasks"]}
              for row in facets["by_status"]}
    empty = {"count": 0, "tasks": []}

    def single(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {"count": rows[0]["count"], "tasks": rows[0]["tasks"]} if rows else empty

    docs, _ = fetch_page(mongo_db, org, ActivityFilter(), None, RECENT_ACTIVITY, now=now)
    names = actor_names(conn, mongo_db, (doc["user_id"] for doc in docs))
    return {
        "organization_id": org,
        "user_id": user,
        "generated_at": now,
        "open_by_status": {status: groups.get(status, empty) for status in OPEN_TASK_STATUSES},
        "due_this_week": single(facets["due_this_week"]),
        "overdue": single(facets["overdue"]),
        "sprint": _sprint_progress(mongo_db, org),
        "activity": [{"doc": doc, "actor_name": names.get(doc["user_id"])} for doc in docs],
    }


def _group(value: dict[str, Any]) -> TaskGroup:
    return TaskGroup(value["count"], [Task.from_document(doc) for doc in value["tasks"]])


def dashboard_from_value(value: dict[str, Any]) -> Dashboard:
    sprint = value.get("sprint")
    return Dashboard(
        organization_id=value["organization_id"],
        user_id=value["user_id"],
        generated_at=value["generated_at"],
        open_by_status={status: _group(group) for status, group in value["open_by_status"].items()},
        due_this_week=_group(value["due_this_week"]),
        overdue=_group(value["overdue"]),
        sprint=SprintProgress(**sprint) if sprint else None,
        recent_activity=[
            entry_from_document(item["doc"], item.get("actor_name")) for item in value["activity"]
        ],
    )


def load_dashboard(
    dbs: Databases, actor: Actor, now: dt.datetime | None = None
) -> tuple[Dashboard, bool]:
    """The actor's dashboard in their organization (``tasks.read``) and whether it came from
    the cache."""
    at = now or utcnow()
    with dbs.pg() as conn:
        require(conn, actor, "tasks.read")
        value, cached = cache.get_or_build(
            dbs.mongo,
            actor.organization_id,
            dashboard_key(actor.user_id),
            DASHBOARD_TTL_SECONDS,
            lambda: build_dashboard_value(conn, dbs.mongo, actor, at),
            user_id=actor.user_id,
            now=at,
        )
    return dashboard_from_value(value), cached
