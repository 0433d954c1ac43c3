"""The organization's activity log (MongoDB ``activity_logs``) for the activity screen and the
dashboard, permission-checked against PostgreSQL (``tasks.read``: "See tasks and activity").

Pages are newest first, by keyset on (created_at, _id), never skip/offset: a page's
``next_cursor`` is its last entry, and the next page starts strictly after it (entries with the
same created_at are ordered by _id).

How a page is read (measured on SecantusDB 0.7 with 40,000 entries in one organization):

- Each read is an aggregate whose leading ``$match`` holds only fields of the index it should use
  (organization_id and a created_at range for ``idx_activity_logs_org_created``; with a resource,
  organization_id, resource_type, resource_id and the range for ``idx_activity_logs_org_resource``);
  the other filters (user, action, the cursor's tie-break on _id) are a second ``$match``, then
  ``$sort`` and ``$limit``. MongoDB merges adjacent ``$match`` stages before planning, so for
  mongod it is one filter on the same index. SecantusDB plans only the leading one, and gives up
  on an index (a collection scan) when a filter names a field the index lacks or holds ``$or``;
  a ``hint`` brings the index back but costs more than the scan (~1 s a page).
- SecantusDB reads every index entry in the bounds and sorts them before the limit applies, so
  an unbounded page costs what the organization's whole log does (~1 s for 40,000 entries),
  however small the page. Reads are therefore bounded in time: a page reads one time span back
  from its cursor (a day for the first page; afterwards 1.5 times the span the previous page
  covered, carried in the cursor), and when that span held too few entries, the next span back,
  four times as long, until a page is full; past 32 days the last read has no lower bound. A
  page is then ~20-40 ms at any depth, mostly in one round trip (a quiet organization or a rare
  filter takes up to five short ones). With mongod, each read is an index range read that stops
  at the limit.
- The actors' names come from ``user_snapshots`` (one ``$in`` query), and from PostgreSQL for
  users without a snapshot (one query, only when needed).

The action menu is a fixed vocabulary (:data:`ACTIVITY_ACTIONS`: the seed's actions and the board
service's), not a ``distinct`` over the log: that would read the organization's whole log.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from bson import ObjectId
from bson.errors import InvalidId
from psycopg.rows import tuple_row
from pymongo.database import Database

from creatia_tui.data.access import Actor, require
from creatia_tui.data.db import Databases
from creatia_tui.data.models import ActivityLog
from creatia_tui.errors import ValidationError

# The seed's actions, then the ones the board service adds (data/board.py).
ACTIVITY_ACTIONS: tuple[str, ...] = (
    "task.created",
    "task.assigned",
    "task.status_changed",
    "task.updated",
    "task.time_logged",
    "task.commented",
    "task.moved",
    "task.deleted",
    # The sprint service's (data/sprints.py), resource_type "Sprint".
    "sprint.created",
    "sprint.updated",
    "sprint.started",
    "sprint.completed",
    "sprint.deleted",
    "sprint.retro_edited",
)

MAX_PAGE = 200
FIRST_SPAN = dt.timedelta(days=1)
MIN_SPAN = dt.timedelta(minutes=1)
WIDEST_SPAN = dt.timedelta(days=32)  # a read reaching further back has no lower bound
SPAN_GROWTH = 4
NEWEST_FIRST = {"created_at": -1, "_id": -1}


@dataclass(frozen=True)
class ActivityFilter:
    """What the activity screen narrows to; None means any. A resource needs its type."""

    user_id: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class ActivityCursor:
    """The last entry of a page; ``span_seconds`` is how far back the next page reads first."""

    created_at: dt.datetime
    id: str
    span_seconds: float = FIRST_SPAN.total_seconds()


@dataclass
class ActivityEntry(ActivityLog):
    """An activity log entry with who did it (None when the user is unknown)."""

    actor_name: str | None = None


@dataclass(frozen=True)
class ActivityPage:
    entries: list[ActivityEntry]
    next_cursor: ActivityCursor | None  # None on the last page


def _object_id(value: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise ValidationError(f"{value!r} is not a valid activity cursor.") from None


def check_filter(filters: ActivityFilter) -> ActivityFilter:
    if filters.resource_id and not filters.resource_type:
        raise ValidationError("Choose the resource type along with the resource.")
    return filters


def span_pipeline(
    organization_id: str,
    filters: ActivityFilter,
    *,
    lower: dt.datetime | None,
    upper: dt.datetime | None,
    upper_inclusive: bool,
    after_id: ObjectId | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One read: entries in [lower, upper] (or [lower, upper)), newest first, at most `limit`.

    With ``after_id``, entries at exactly ``upper`` count only when their _id is smaller (the
    cursor's tie-break). Public for the tests' and the bench's explain."""
    leading: dict[str, Any] = {"organization_id": organization_id}
    rest: dict[str, Any] = {}
    if filters.resource_id:
        leading["resource_type"] = filters.resource_type
        leading["resource_id"] = filters.resource_id
    elif filters.resource_type:
        rest["resource_type"] = filters.resource_type
    span: dict[str, Any] = {}
    if lower is not None:
        span["$gte"] = lower
    if upper is not None:
        span["$lte" if upper_inclusive else "$lt"] = upper
    if span:
        leading["created_at"] = span
    if filters.user_id:
        rest["user_id"] = filters.user_id
    if filters.action:
        rest["action"] = filters.action
    if after_id is not None and upper is not None and upper_inclusive:
        rest["$or"] = [{"created_at": {"$lt": upper}}, {"_id": {"$lt": after_id}}]
    pipeline: list[dict[str, Any]] = [{"$match": leading}]
    if rest:
        pipeline.append({"$match": rest})
    pipeline += [{"$sort": dict(NEWEST_FIRST)}, {"$limit": limit}]
    return pipeline


def fetch_page(
    mongo_db: Database,
    organization_id: str,
    filters: ActivityFilter,
    after: ActivityCursor | None,
    limit: int,
    now: dt.datetime | None = None,
) -> tuple[list[dict[str, Any]], ActivityCursor | None]:
    """Up to `limit` documents after the cursor, newest first, and the next page's cursor.

    No permission check: for callers that made one (read_activity, the dashboard)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"An activity page holds 1 to {MAX_PAGE} entries, not {limit}.")
    check_filter(filters)
    if after is not None and after.created_at.tzinfo is None:
        raise ValueError("an activity cursor's created_at must be timezone-aware")
    need = limit + 1  # one more tells whether another page follows
    span = dt.timedelta(seconds=after.span_seconds) if after else FIRST_SPAN
    span = max(MIN_SPAN, span)
    upper = after.created_at if after else None
    upper_inclusive = True
    after_id = _object_id(after.id) if after else None
    anchor = now or dt.datetime.now(dt.timezone.utc)
    docs: list[dict[str, Any]] = []
    while True:
        lower = None if span >= WIDEST_SPAN else (upper or anchor) - span
        pipeline = span_pipeline(
            organization_id,
            filters,
            lower=lower,
            upper=upper,
            upper_inclusive=upper_inclusive,
            after_id=after_id if upper_inclusive else None,
            limit=need - len(docs),
        )
        docs += mongo_db.activity_logs.aggregate(pipeline)
        if len(docs) >= need or lower is None:
            break
        upper, upper_inclusive = lower, False  # the next span starts where this one ended
        span *= SPAN_GROWTH
    if len(docs) <= limit:
        return docs, None
    page = docs[:limit]
    covered = page[0]["created_at"] - page[-1]["created_at"]
    next_span = min(max(MIN_SPAN, covered * 1.5), WIDEST_SPAN)
    last = page[-1]
    return page, ActivityCursor(last["created_at"], str(last["_id"]), next_span.total_seconds())


def _uuids(values: Iterable[str]) -> list[str]:
    found = []
    for value in values:
        try:
            found.append(str(uuid.UUID(value)))
        except (ValueError, TypeError, AttributeError):
            continue
    return found


def actor_names(
    conn: psycopg.Connection, mongo_db: Database, user_ids: Iterable[str]
) -> dict[str, str]:
    """Display names (name, else email) by user id: user_snapshots first, then PostgreSQL for
    the users that have no snapshot. Unknown ids are left out."""
    wanted = sorted({uid for uid in user_ids if uid})
    if not wanted:
        return {}
    names: dict[str, str] = {}
    for snap in mongo_db.user_snapshots.find(
        {"user_id": {"$in": wanted}}, {"_id": 0, "user_id": 1, "name": 1, "email": 1}
    ):
        label = snap.get("name") or snap.get("email")
        if label:
            names[snap["user_id"]] = label
    missing = _uuids(uid for uid in wanted if uid not in names)
    if missing:
        with conn.cursor(row_factory=tuple_row) as cur:
            rows = cur.execute(
                "SELECT id::text, coalesce(name, email) FROM users WHERE id = ANY(%s::uuid[])",
                (missing,),
            ).fetchall()
        names.update({row[0]: row[1] for row in rows})
    return names


def entry_from_document(doc: dict[str, Any], actor_name: str | None) -> ActivityEntry:
    return ActivityEntry(**vars(ActivityLog.from_document(doc)), actor_name=actor_name)


def entries_with_names(
    conn: psycopg.Connection, mongo_db: Database, docs: list[dict[str, Any]]
) -> list[ActivityEntry]:
    names = actor_names(conn, mongo_db, (doc["user_id"] for doc in docs))
    return [entry_from_document(doc, names.get(doc["user_id"])) for doc in docs]


def read_activity(
    dbs: Databases,
    actor: Actor,
    filters: ActivityFilter | None = None,
    after: ActivityCursor | None = None,
    limit: int = 50,
) -> ActivityPage:
    """One page of the actor's organization's activity, newest first (``tasks.read``).

    Pass the page's ``next_cursor`` as `after` for the next one, with the same filters."""
    filters = check_filter(filters or ActivityFilter())
    with dbs.pg() as conn:
        require(conn, actor, "tasks.read")
        docs, cursor = fetch_page(dbs.mongo, actor.organization_id, filters, after, limit)
        entries = entries_with_names(conn, dbs.mongo, docs)
    return ActivityPage(entries, cursor)


def activity_actions(dbs: Databases, actor: Actor) -> list[str]:
    """The action filter's menu (``tasks.read``): the fixed vocabulary, in the seed's order."""
    with dbs.pg() as conn:
        require(conn, actor, "tasks.read")
    return list(ACTIVITY_ACTIONS)
