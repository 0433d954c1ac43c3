"""Command monitoring that proves every query on a sharded collection names its shard key prefix.

On a sharded cluster, tasks and activity_logs are sharded on organization_id first (sprints are
kept per organization as well): a query without organization_id is broadcast to every shard.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pymongo import monitoring

TENANT_COLLECTIONS = {"tasks", "sprints", "activity_logs"}
# Commands whose filters reach documents; admin commands (createIndexes, collMod, drop,
# listIndexes, collStats) address the collection as a whole.
FILTERED = {
    "find": ("filter",),
    "count": ("query",),
    "distinct": ("query",),
    "findAndModify": ("query",),
    "update": ("updates", "q"),
    "delete": ("deletes", "q"),
}
# Stages that describe the collection as a whole (like collStats), not its documents.
ADMIN_STAGES = {"$indexStats", "$collStats"}


def _names_org(filter_doc: Any) -> bool:
    if not isinstance(filter_doc, dict):
        return False
    if "organization_id" in filter_doc:
        return True
    # {$and: [...]} where one branch pins the organization
    return any(_names_org(branch) for branch in filter_doc.get("$and", []))


@dataclass
class ShardKeyMonitor(monitoring.CommandListener):
    violations: list[str] = field(default_factory=list)
    checked: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        command = event.command
        collection = command.get(name)
        if not isinstance(collection, str) or collection not in TENANT_COLLECTIONS:
            return
        problems = []
        if name in FILTERED:
            path = FILTERED[name]
            if len(path) == 1:
                filters = [command.get(path[0])]
            else:
                filters = [stmt.get(path[1]) for stmt in command.get(path[0], [])]
            problems = [f for f in filters if not _names_org(f)]
        elif name == "aggregate":
            pipeline = command.get("pipeline", [])
            first = pipeline[0] if pipeline else {}
            if first.keys() & ADMIN_STAGES:
                return
            if "$match" not in first or not _names_org(first["$match"]):
                problems = [first]
        elif name == "insert":
            problems = [d for d in command.get("documents", []) if "organization_id" not in d]
        else:
            return
        with self._lock:
            self.checked += 1
            if problems:
                self.violations.append(f"{name} on {collection}: {problems[0]!r}"[:300])

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass
