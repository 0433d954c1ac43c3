"""Tasks, sprints, activity logs and user snapshots (MongoDB).

Every query on tasks, sprints and activity_logs names ``organization_id`` first: it is the shard
key's prefix, so on a sharded cluster each query is routed to the shards of one organization,
and it is the first field of every index those queries use. The test session proves it with
command monitoring (tests/shard_key_monitor.py).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING, DESCENDING, UpdateOne
from pymongo.client_session import ClientSession
from pymongo.database import Database

from creatia_tui.data.models import (
    TASK_STATUSES,
    ActivityLog,
    Sprint,
    Task,
    User,
    UserSnapshot,
)
from creatia_tui.errors import ValidationError


def _object_id(value: str, what: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise ValidationError(f"{value!r} is not a valid {what} id.") from None


def utcnow() -> dt.datetime:
    # Mongo stores milliseconds; rounding here keeps what we write equal to what we read back.
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


# ---------------------------------------------------------------- tasks
@dataclass
class TaskRepository:
    db: Database

    def get(self, organization_id: str, task_id: str) -> Task | None:
        doc = self.db.tasks.find_one(
            {"organization_id": organization_id, "_id": _object_id(task_id, "task")}
        )
        return Task.from_document(doc) if doc else None

    def get_by_key(self, organization_id: str, key: str) -> Task | None:
        """By the human key (TASK-0042), unique within an organization."""
        doc = self.db.tasks.find_one({"organization_id": organization_id, "task_id": key})
        return Task.from_document(doc) if doc else None

    def column(self, organization_id: str, status: str, limit: int = 500) -> list[Task]:
        """One kanban column in board order (idx_tasks_org_status_position)."""
        if status not in TASK_STATUSES:
            raise ValidationError(f"Unknown status {status!r}.")
        cursor = (
            self.db.tasks.find({"organization_id": organization_id, "status": status})
            .sort([("position", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [Task.from_document(doc) for doc in cursor]

    def count_by_status(self, organization_id: str) -> dict[str, int]:
        rows = self.db.tasks.aggregate(
            [
                {"$match": {"organization_id": organization_id}},
                {"$group": {"_id": "$status", "count": {"$sum": 1}}},
            ]
        )
        counts = dict.fromkeys(TASK_STATUSES, 0)
        counts.update({row["_id"]: int(row["count"]) for row in rows})
        return counts

    def search(self, organization_id: str, text: str, limit: int = 50) -> list[Task]:
        """Substring search over task_id, title, description and tags.

        A regular expression, not a text index: MongoDB's text search does not tokenise Korean
        and SecantusDB has no text indexes, while a substring match finds "대시보드" inside
        "사용자 대시보드 개선". The organization_id prefix keeps the scan to one tenant.
        """
        needle = text.strip()
        if not needle:
            return []
        pattern = {"$regex": re.escape(needle), "$options": "i"}
        cursor = (
            self.db.tasks.find(
                {
                    "organization_id": organization_id,
                    "$or": [
                        {"task_id": pattern},
                        {"title": pattern},
                        {"description": pattern},
                        {"tags": pattern},
                    ],
                }
            )
            .sort([("updated_at", DESCENDING)])
            .limit(limit)
        )
        return [Task.from_document(doc) for doc in cursor]


# ---------------------------------------------------------------- sprints
@dataclass
class SprintRepository:
    db: Database

    def list(self, organization_id: str, status: str | None = None) -> list[Sprint]:
        query: dict[str, Any] = {"organization_id": organization_id}
        if status:
            query["status"] = status
        cursor = self.db.sprints.find(query).sort([("start_date", DESCENDING)])
        return [Sprint.from_document(doc) for doc in cursor]

    def get(self, organization_id: str, sprint_id: str) -> Sprint | None:
        doc = self.db.sprints.find_one(
            {"organization_id": organization_id, "_id": _object_id(sprint_id, "sprint")}
        )
        return Sprint.from_document(doc) if doc else None


# ---------------------------------------------------------------- activity
@dataclass
class ActivityRepository:
    db: Database

    def record(
        self,
        *,
        organization_id: str,
        user_id: str,
        action: str,
        resource_type: str,
        resource_id: str,
        changes: dict[str, Any] | None,
        user_agent: str | None = None,
        ip_address: str | None = None,
        at: dt.datetime | None = None,
        session: ClientSession | None = None,
    ) -> str:
        """One activity_logs document shaped as the seed's example, from the TUI client
        (inside the caller's transaction when ``session`` is given)."""
        when = at or utcnow()
        result = self.db.activity_logs.insert_one(
            {
                "organization_id": organization_id,
                "user_id": user_id,
                "action": action,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "changes": changes,
                "metadata": {
                    "user_agent": user_agent,
                    "ip_address": ip_address,
                    "api_version": "v1",
                    "client_type": "tui",
                },
                "timestamp": when,
                "created_at": when,
            },
            session=session,
        )
        return str(result.inserted_id)

    def page(
        self,
        organization_id: str,
        *,
        after: tuple[dt.datetime, str] | None = None,
        limit: int = 50,
    ) -> list[ActivityLog]:
        """Newest first, by keyset on (created_at, _id) (idx_activity_logs_org_created)."""
        query: dict[str, Any] = {"organization_id": organization_id}
        if after is not None:
            at, last_id = after
            oid = _object_id(last_id, "activity")
            query["$or"] = [
                {"created_at": {"$lt": at}},
                {"created_at": at, "_id": {"$lt": oid}},
            ]
        cursor = (
            self.db.activity_logs.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
        )
        return [ActivityLog.from_document(doc) for doc in cursor]


# ---------------------------------------------------------------- snapshots
@dataclass
class SnapshotRepository:
    db: Database

    def get(self, user_id: str) -> UserSnapshot | None:
        doc = self.db.user_snapshots.find_one({"user_id": user_id}, {"_id": 0})
        if not doc:
            return None
        return UserSnapshot(**{k: doc.get(k) for k in UserSnapshot.__dataclass_fields__})

    def upsert(self, users: list[User], synced_at: dt.datetime | None = None) -> int:
        """Bulk-upsert the snapshots of these users; returns how many were written."""
        if not users:
            return 0
        when = synced_at or utcnow()
        operations = [
            UpdateOne(
                {"user_id": user.id},
                {"$set": UserSnapshot.from_user(user, when).to_document()},
                upsert=True,
            )
            for user in users
        ]
        result = self.db.user_snapshots.bulk_write(operations, ordered=False)
        return result.upserted_count + result.modified_count
