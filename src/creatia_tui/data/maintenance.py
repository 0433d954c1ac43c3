"""Background maintenance from the TUI: the consistency report, its repair, worker control.

The consistency check and its repair span every organization (ops/consistency.py), so they are
a platform operator's: the actor must be a platform admin (read from the database on every call,
as ``access.require`` does) and hold ``monitoring.read`` (the report) or ``monitoring.manage``
(repair, starting and stopping workers) in the organization they act in, which a platform admin
always does. A repair writes a ``consistency.repaired`` row to permission_audit_logs in the
actor's organization, in the transaction of the permission check, with the report's counts
before and after and what was written. The CLI (``creatia-tui sync --repair``) is the ops host's
own account and calls ops/consistency.py directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import psycopg

from creatia_tui.data.access import Actor, require
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.data.db import Databases
from creatia_tui.data.models import Task
from creatia_tui.errors import PermissionDenied
from creatia_tui.ops import consistency, sync

PLATFORM_ADMIN = "SELECT role = 'admin' AND active FROM users WHERE id = %s"
NOT_OPERATOR = (
    "Only a platform admin may {what}: it covers every organization."
)


def _require_operator(conn: psycopg.Connection, actor: Actor, permission: str, what: str) -> None:
    require(conn, actor, permission)
    row = conn.execute(PLATFORM_ADMIN, (actor.user_id,)).fetchone()
    value = next(iter(row.values())) if isinstance(row, dict) else (row[0] if row else None)
    if not value:
        raise PermissionDenied(NOT_OPERATOR.format(what=what))


def consistency_report(
    dbs: Databases, actor: Actor, *, run: bool = False
) -> consistency.ConsistencyReport | None:
    """The last stored report (None when there is none yet), or a new one when `run`."""
    with dbs.pg() as conn:
        _require_operator(conn, actor, "monitoring.read", "see the consistency report")
    if run:
        return consistency.check_consistency(dbs)
    return consistency.last_report(dbs.mongo)


def repair_consistency(
    dbs: Databases, actor: Actor, client: ClientContext | None = None
) -> consistency.RepairResult:
    """Repair what the check finds (snapshots, quarantine), audited in the actor's
    organization together with the permission check."""
    with dbs.pg() as conn:
        _require_operator(conn, actor, "monitoring.manage", "repair the databases")
        result = consistency.repair(dbs)
        before = result.before.to_document() if result.before else None
        after = result.after.to_document() if result.after else None
        for doc in (before, after):
            if doc is not None:
                doc["checked_at"] = doc["checked_at"].isoformat()
        if after is not None:
            after["written"] = {
                "user_snapshots": result.sync.snapshots_written,
                "marked_deleted": result.sync.deleted,
                "task_snapshots": result.tasks_fixed + result.sync.tasks_modified,
                "quarantined_tasks": result.tasks_quarantined,
            }
        write_audit(
            conn,
            organization_id=actor.organization_id,
            user_id=actor.user_id,
            action="consistency.repaired",
            resource_type="Consistency",
            resource_id=None,
            before=before,
            after=after,
            client=client,
        )
    return result


def authorize_worker_control(dbs: Databases, actor: Actor) -> None:
    """Starting, stopping and running workers from the TUI: a platform operator's."""
    with dbs.pg() as conn:
        _require_operator(conn, actor, "monitoring.manage", "start or stop workers")


def refresh_shown_snapshots(
    dbs: Databases,
    actor: Actor,
    tasks: Iterable[Task],
    *,
    max_age_seconds: float = sync.FRESH_SECONDS,
) -> sync.SyncResult:
    """Freshness (the seed's ``fresh?``): the people these tasks show whose embedded snapshot
    is missing or older than 5 minutes are checked against PostgreSQL and re-synced when they
    changed (``tasks.read``; what a screen calls in a background worker with the tasks it
    shows). A rewrite reaches an open board through its change stream, and drops the
    organization's cached dashboards and statistics. Cheap when nothing is stale: no query."""
    horizon = sync.utcnow() - dt.timedelta(seconds=max_age_seconds)
    people: set[str] = set()
    for task in tasks:
        for user_id, snap in (
            (task.assignee_id, task.assignee_snapshot),
            (task.reviewer_id, task.reviewer_snapshot),
        ):
            synced = (snap or {}).get("synced_at")
            if user_id and not (isinstance(synced, dt.datetime) and synced > horizon):
                people.add(user_id)
    if not people:
        return sync.SyncResult()
    with dbs.pg() as conn:
        require(conn, actor, "tasks.read")
    return sync.refresh_stale(dbs, people, max_age_seconds=max_age_seconds)
