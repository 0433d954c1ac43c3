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
import logging
from collections.abc import Iterable
from typing import Any

import psycopg
from pymongo.errors import PyMongoError

from creatia_tui.data.access import Actor, require
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.data.db import Databases
from creatia_tui.data.models import Task
from creatia_tui.errors import PermissionDenied, UserError, one_line
from creatia_tui.ops import consistency, sync

log = logging.getLogger(__name__)

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


SHOWN_ON_TASKS = ("name", "email", "avatar_url")  # what a card or the detail shows of a person


def _shows_otherwise(copy: dict[str, Any], user: sync.SourceUser | None) -> bool:
    """Whether an embedded copy shows a person otherwise than PostgreSQL (None: deleted). A
    live user's copy holds their fields as they are (sync.task_snapshot)."""
    if user is None:
        return not copy.get("former_member")
    return bool(copy.get("former_member")) or any(
        copy.get(key) != getattr(user, key) for key in SHOWN_ON_TASKS
    )


def refresh_shown_snapshots(
    dbs: Databases,
    actor: Actor,
    tasks: Iterable[Task],
    *,
    max_age_seconds: float = sync.FRESH_SECONDS,
) -> sync.SyncResult:
    """Freshness (the seed's ``fresh?``): the people these tasks show through an embedded
    snapshot older than 5 minutes (or without one) are read from PostgreSQL (``tasks.read``),
    and those shown differently from PostgreSQL are synced: their user_snapshots document, their
    tasks everywhere (ops/sync.py), and the actor's organization's tasks that still hold another
    copy (a copy the sync's hash did not know about). What a screen calls, in a background
    worker, with the tasks it shows; a rewrite reaches an open board through its change stream
    and drops the organization's cached dashboards and statistics.

    A stale copy that still shows what PostgreSQL holds is left as it is, ``synced_at``
    included: rewriting it would be a task write (and a change event waking every open board
    of the organization) that shows nothing new. So its age keeps telling when the copy was
    made, and the next load checks it again: one permission check and one read by primary key
    in PostgreSQL, nothing in MongoDB. Nothing at all when every copy is fresh."""
    horizon = sync.utcnow() - dt.timedelta(seconds=max_age_seconds)
    shown: dict[str, list[dict[str, Any]]] = {}  # user id -> the stale copies on screen
    for task in tasks:
        for user_id, snap in (
            (task.assignee_id, task.assignee_snapshot),
            (task.reviewer_id, task.reviewer_snapshot),
        ):
            synced = (snap or {}).get("synced_at")
            if user_id and not (isinstance(synced, dt.datetime) and synced > horizon):
                shown.setdefault(user_id, []).append(snap or {})
    if not shown:
        return sync.SyncResult()
    with dbs.pg() as conn:
        # The screen that calls this has just read these tasks: its grant (access decision 3)
        # spares the same permission read again after every load.
        if not dbs.read_grants.held(actor, "tasks.read"):
            require(conn, actor, "tasks.read")
        users = {user.id: user for user in sync.read_users(conn, sorted(shown))}
    differing = [
        user_id
        for user_id, copies in shown.items()
        if any(_shows_otherwise(copy, users.get(user_id)) for copy in copies)
    ]
    if not differing:
        return sync.SyncResult()
    result = sync.sync_user_ids(dbs, differing)
    stored = sync.existing_snapshots(dbs.mongo, differing)
    rewrites = []
    for user_id in differing:
        document = stored.get(user_id)
        if document is None:
            # A deleted user nobody had synced: shown from the copy the task holds.
            copy = shown[user_id][0]
            document = {**copy, "user_id": user_id, "deleted": True,
                        "content_hash": sync.deleted_hash(copy.get("content_hash"))}
        rewrites.append(sync.TaskRewrite(
            user_id, sync.task_snapshot(document), frozenset([actor.organization_id])
        ))
    result.add(sync.rewrite_task_snapshots(dbs.mongo, rewrites))
    return result


def refresh_quietly(dbs: Databases, actor: Actor, tasks: Iterable[Task]) -> sync.SyncResult | None:
    """refresh_shown_snapshots for a screen's background worker: a failure (a database away, a
    permission gone) is one log line and None, never a message or a traceback: the screen shows
    what it loaded, and the next load tries again."""
    try:
        return refresh_shown_snapshots(dbs, actor, tasks)
    except (UserError, psycopg.Error, PyMongoError) as exc:
        log.warning("snapshot freshness skipped: %s", one_line(str(exc)))
        return None
