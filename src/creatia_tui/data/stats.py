"""The seed's task statistics per organization (``CacheService.task_stats``), cached 5 minutes.

Stored beside the dashboards in the shared ``dashboard_cache`` collection (data/cache.py) under
the key ``task_stats`` of the organization, so every process shares it and every invalidation of
the organization drops it with the dashboards: the board's writes (``invalidate_organization``
after each committed write), the snapshot sync and the consistency repair (ops/sync.py,
ops/consistency.py). The value is the seed's aggregation: per status, how many tasks and the sum
of their estimated hours; plus remaining hours, which the board's cards show.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pymongo.database import Database

from creatia_tui.data import cache
from creatia_tui.data.access import Actor, require
from creatia_tui.data.db import Databases
from creatia_tui.data.models import TASK_STATUSES
from creatia_tui.data.tasks import utcnow

TASK_STATS_KEY = "task_stats"
TASK_STATS_TTL_SECONDS = 300


@dataclass(frozen=True)
class StatusStats:
    count: int = 0
    estimated_hours: float = 0.0
    remaining_hours: float = 0.0


@dataclass(frozen=True)
class TaskStats:
    organization_id: str
    generated_at: dt.datetime
    by_status: dict[str, StatusStats] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.by_status.values())


def build_task_stats(mongo_db: Database, organization_id: str, now: dt.datetime) -> dict[str, Any]:
    """The seed's calculate_task_stats: one $group over the organization's tasks."""
    rows = mongo_db.tasks.aggregate(
        [
            {"$match": {"organization_id": organization_id}},
            {
                "$group": {
                    "_id": "$status",
                    "count": {"$sum": 1},
                    "total_hours": {"$sum": {"$ifNull": ["$estimated_hours", 0]}},
                    "remaining_hours": {"$sum": {"$ifNull": ["$remaining_hours", 0]}},
                }
            },
        ]
    )
    return {
        "organization_id": organization_id,
        "generated_at": now,
        "by_status": {
            str(row["_id"]): {
                "count": int(row["count"]),
                "estimated_hours": float(row["total_hours"]),
                "remaining_hours": float(row["remaining_hours"]),
            }
            for row in rows
        },
    }


def stats_from_value(value: dict[str, Any]) -> TaskStats:
    by_status = {status: StatusStats() for status in TASK_STATUSES}
    by_status.update(
        {status: StatusStats(**figures) for status, figures in value["by_status"].items()}
    )
    return TaskStats(value["organization_id"], value["generated_at"], by_status)


def task_stats(
    dbs: Databases, actor: Actor, now: dt.datetime | None = None
) -> tuple[TaskStats, bool]:
    """The actor's organization's task statistics (``tasks.read``) and whether they came from
    the cache."""
    at = now or utcnow()
    with dbs.pg() as conn:
        require(conn, actor, "tasks.read")
    value, cached = cache.get_or_build(
        dbs.mongo,
        actor.organization_id,
        TASK_STATS_KEY,
        TASK_STATS_TTL_SECONDS,
        lambda: build_task_stats(dbs.mongo, actor.organization_id, at),
        now=at,
    )
    return stats_from_value(value), cached


def invalidate_task_stats(mongo_db: Database, organization_id: str) -> None:
    """Drop only the statistics (``cache.invalidate_organization`` drops them with the rest)."""
    mongo_db[cache.COLLECTION].delete_one(
        {"organization_id": organization_id, "key": TASK_STATS_KEY}
    )
