"""User snapshot sync: what PostgreSQL knows about a user, in MongoDB (seed: UserSnapshot,
MongodbSnapshotSyncJob, BatchSyncJob).

Three ways in, one way out. Real time: ``users`` triggers NOTIFY ``user_snapshot_changes``
(schema/postgres/0006) and :class:`SnapshotListener` syncs the named users. Catch-up:
:func:`catch_up` reads users changed since the watermark, and tombstones of deleted users, so a
worker that was down or missed a notification loses nothing. Batch: :func:`batch_sync` compares
every user. All three end in :func:`apply_users` / :func:`apply_deletions`.

Decisions:

1. A ``user_snapshots`` document holds the seed's fields (user_id, name, email, avatar_url,
   department, position, synced_at) plus ``active``, ``deleted``/``deleted_at``,
   ``organization_ids`` (the user's memberships, any state, at the last sync: where their tasks
   may be), ``content_hash`` (of the shown fields, active and deleted) and
   ``source_updated_at`` (users.updated_at).
2. Unchanged users are skipped cheaply: a user whose content hash and organizations equal the
   stored snapshot's is not written at all (a re-sync of 100,000 unchanged users writes
   nothing). ``synced_at`` is when a sync last wrote or (freshness refresh) confirmed it.
3. Tasks first, snapshot last. For a changed user the snapshots embedded in tasks
   (``assignee_snapshot``, ``reviewer_snapshot``) are rewritten organization by organization,
   each write naming ``organization_id`` (the shard key), with ``content_hash`` in the filter
   (``$ne``) so a repeated or duplicate sync modifies nothing. The user_snapshots document is
   written after the tasks: if the process dies between, the old hash is still there and the
   next sync does the tasks again.
4. Tasks' ``updated_at`` is not touched: a snapshot is derived data, and bumping it would make
   every open edit of those tasks conflict. An open board sees the rewrite through its change
   stream (data/task_feed.py); a board that fell back to polling sees it on its next load.
5. A deleted user's snapshot is kept, marked ``deleted``; in their tasks the embedded snapshot
   keeps their id and email, its name becomes "<name> (former member)" and it carries
   ``former_member: true``, so every screen shows who it was without a dangling id.
6. Caches: every organization whose tasks or whose members' snapshot changed gets its cached
   dashboards and task statistics dropped (data/cache.py), so a rename shows at once.
7. The watermark is (users.updated_at, id) plus the newest tombstone seen, in the MongoDB
   document ``sync_state`` ``{_id: "user_snapshots"}``. A catch-up re-reads from
   ``OVERLAP`` before it: a transaction that committed late with an earlier stamp is still
   read, and re-reading costs only the hash comparison.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pymongo import InsertOne, UpdateMany, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from creatia_tui.data.cache import invalidate_organization
from creatia_tui.data.db import Databases
from creatia_tui.errors import UserError, one_line

log = logging.getLogger(__name__)

CHANNEL = "user_snapshot_changes"
STATE_COLLECTION = "sync_state"
WATERMARK_ID = "user_snapshots"
DEFAULT_BATCH_SIZE = 1_000
FRESH_SECONDS = 300  # the seed's fresh?: synced within 5 minutes
OVERLAP = dt.timedelta(seconds=60)
SHOWN_FIELDS = ("name", "email", "avatar_url", "department", "position")
FORMER_MEMBER = "(former member)"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
NIL_UUID = "00000000-0000-0000-0000-000000000000"

USER_SELECT = """
SELECT u.id::text AS id, u.email, u.name, u.avatar_url, u.department, u.position, u.active,
       u.updated_at,
       ARRAY(SELECT m.organization_id::text FROM organization_memberships m
             WHERE m.user_id = u.id ORDER BY 1) AS organization_ids
FROM users u
"""
USERS_BY_ID = USER_SELECT + "WHERE u.id = ANY(%s::uuid[])"
# Keyset over idx_users_updated_at_id.
USERS_SINCE = (
    USER_SELECT + "WHERE (u.updated_at, u.id) > (%s, %s::uuid) ORDER BY u.updated_at, u.id LIMIT %s"
)
ALL_USERS = USER_SELECT + "ORDER BY u.id"
DELETIONS_SINCE = """
SELECT user_id::text AS user_id, deleted_at FROM user_deletions
WHERE deleted_at >= %s ORDER BY deleted_at, user_id
"""
EXISTING_IDS = "SELECT id::text FROM users WHERE id = ANY(%s::uuid[])"


def utcnow() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(frozen=True)
class SourceUser:
    """A users row as the sync reads it."""

    id: str
    email: str
    name: str | None
    avatar_url: str | None
    department: str | None
    position: str | None
    active: bool
    updated_at: dt.datetime
    organization_ids: tuple[str, ...] = ()

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SourceUser:
        return cls(**{**row, "organization_ids": tuple(row.get("organization_ids") or ())})

    @property
    def content_hash(self) -> str:
        return content_hash(
            {name: getattr(self, name) for name in SHOWN_FIELDS}, self.active, False
        )


def content_hash(shown: dict[str, Any], active: bool, deleted: bool) -> str:
    """A short digest of what a snapshot shows: equal digests mean nothing to write."""
    text = json.dumps(
        [shown.get(name) for name in SHOWN_FIELDS] + [bool(active), bool(deleted)],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def snapshot_document(user: SourceUser, now: dt.datetime) -> dict[str, Any]:
    """The user_snapshots document of a user (decision 1)."""
    return {
        "user_id": user.id,
        **{name: getattr(user, name) for name in SHOWN_FIELDS},
        "active": user.active,
        "deleted": False,
        "deleted_at": None,
        "organization_ids": list(user.organization_ids),
        "content_hash": user.content_hash,
        "source_updated_at": user.updated_at,
        "synced_at": now,
        "updated_at": now,
    }


def task_snapshot(document: dict[str, Any]) -> dict[str, Any]:
    """The snapshot embedded in tasks (the seed's assignee_snapshot fields, plus the hash)."""
    snap = {
        "user_id": document["user_id"],
        **{name: document.get(name) for name in SHOWN_FIELDS},
        "synced_at": document.get("synced_at"),
        "content_hash": document.get("content_hash"),
    }
    if document.get("deleted"):
        who = document.get("name") or document.get("email") or "someone"
        snap["name"] = f"{who} {FORMER_MEMBER}"
        snap["former_member"] = True
    return snap


def task_snapshot_writes(organization_id: str, snap: dict[str, Any]) -> list[UpdateMany]:
    """Rewrite one user's embedded snapshots in one organization; idempotent (decision 3).

    The filters are shaped for SecantusDB's rule-based planner, which picks its index from the
    filter's first field and scans when a field follows that the index lacks (measured on
    20,000 tasks: 3 ms against 50-100 ms). The assignee filter leads with ``assignee_id``
    (``idx_tasks_assignee_status``) and keeps the hash guard; the reviewer filter is exactly
    ``idx_tasks_org_reviewer``'s keys, without the guard: setting an equal snapshot again
    modifies nothing anyway. mongod plans both on an index whatever the order, and both name
    ``organization_id``, so on a sharded cluster each goes to one organization's shards."""
    user_id, digest = snap["user_id"], snap["content_hash"]
    return [
        UpdateMany(
            {
                "assignee_id": user_id,
                "organization_id": organization_id,
                "assignee_snapshot.content_hash": {"$ne": digest},
            },
            {"$set": {"assignee_snapshot": snap}},
        ),
        UpdateMany(
            {"organization_id": organization_id, "reviewer_id": user_id},
            {"$set": {"reviewer_snapshot": snap}},
        ),
    ]


# ---------------------------------------------------------------- results
@dataclass
class SyncResult:
    users: int = 0  # users compared
    snapshots_written: int = 0
    unchanged: int = 0
    deleted: int = 0  # snapshots newly marked deleted
    tasks_modified: int = 0
    organizations: set[str] = field(default_factory=set)  # caches dropped
    # The newest users.updated_at among the users written: now minus it is the sync's lag.
    newest_change: dt.datetime | None = None
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def add(self, other: SyncResult) -> None:
        self.users += other.users
        self.snapshots_written += other.snapshots_written
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.tasks_modified += other.tasks_modified
        self.organizations |= other.organizations
        self.errors += other.errors
        if other.newest_change is not None and (
            self.newest_change is None or other.newest_change > self.newest_change
        ):
            self.newest_change = other.newest_change

    def summary(self) -> str:
        return (
            f"{self.users} users compared, {self.snapshots_written} snapshots written, "
            f"{self.deleted} marked deleted, {self.tasks_modified} tasks updated, "
            f"{self.unchanged} unchanged, {self.seconds:.1f} s"
        )


EXISTING_PROJECTION = {
    "_id": 0,
    "user_id": 1,
    "content_hash": 1,
    "organization_ids": 1,
    "active": 1,
    "deleted": 1,
    "name": 1,
    "email": 1,
    "avatar_url": 1,
    "department": 1,
    "position": 1,
    "synced_at": 1,
}


def existing_snapshots(mongo_db: Database, user_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    ids = list(user_ids)
    if not ids:
        return {}
    return {
        doc["user_id"]: doc
        for doc in mongo_db.user_snapshots.find({"user_id": {"$in": ids}}, EXISTING_PROJECTION)
    }


def all_snapshot_states(mongo_db: Database) -> dict[str, dict[str, Any]]:
    """Every snapshot's id, hash, organizations and deleted flag: one read (batch sync)."""
    return {
        doc["user_id"]: doc
        for doc in mongo_db.user_snapshots.find(
            {}, {"_id": 0, "user_id": 1, "content_hash": 1, "organization_ids": 1, "deleted": 1}
        ).batch_size(10_000)
    }


def _rewrite_tasks(
    mongo_db: Database, by_org: dict[str, list[UpdateMany]], result: SyncResult
) -> None:
    """One unordered bulk_write per organization (each names its shard key)."""
    for operations in by_org.values():
        outcome = mongo_db.tasks.bulk_write(operations, ordered=False)
        result.tasks_modified += outcome.modified_count


def _invalidate(mongo_db: Database, organizations: Iterable[str], result: SyncResult) -> None:
    for organization_id in organizations:
        invalidate_organization(mongo_db, organization_id)
        result.organizations.add(organization_id)


def _write_snapshots(mongo_db: Database, operations: list[Any]) -> int:
    """Unordered; an insert that lost a race with another writer is retried as an upsert."""
    if not operations:
        return 0
    try:
        outcome = mongo_db.user_snapshots.bulk_write(operations, ordered=False)
        return outcome.inserted_count + outcome.upserted_count + outcome.modified_count
    except BulkWriteError as exc:
        details = exc.details
        written = details.get("nInserted", 0) + details.get("nUpserted", 0)
        written += details.get("nModified", 0)
        retry = []
        for error in details.get("writeErrors", []):
            operation = operations[error["index"]]
            if error.get("code") != 11000 or not isinstance(operation, InsertOne):
                raise
            document = dict(operation._doc)  # the document we built
            document.pop("_id", None)
            retry.append(
                UpdateOne({"user_id": document["user_id"]}, {"$set": document}, upsert=True)
            )
        if retry:
            outcome = mongo_db.user_snapshots.bulk_write(retry, ordered=False)
            written += outcome.upserted_count + outcome.modified_count
        return written


def plan_users(
    users: Sequence[SourceUser],
    existing: dict[str, dict[str, Any]],
    now: dt.datetime,
    *,
    confirm_unchanged: bool = False,
    rewrite_tasks_of_new: bool = True,
) -> tuple[list[Any], dict[str, list[UpdateMany]], set[str], int]:
    """What to write for these users: snapshot operations, task operations by organization,
    organizations whose caches to drop, and how many were unchanged.

    ``rewrite_tasks_of_new=False`` (a first sync into an empty collection) leaves the tasks of
    users who had no snapshot alone: their embedded snapshots were copied from PostgreSQL when
    they were assigned, and rewriting every task of every user would make the first sync a
    rewrite of the whole tasks collection. The consistency check finds any that are stale."""
    snapshot_ops: list[Any] = []
    task_ops: dict[str, list[UpdateMany]] = {}
    touched: set[str] = set()
    unchanged = 0
    for user in users:
        stored = existing.get(user.id)
        document = snapshot_document(user, now)
        if stored is None:
            snapshot_ops.append(InsertOne({**document, "created_at": now}))
            shown_changed = rewrite_tasks_of_new
        else:
            shown_changed = stored.get("content_hash") != document["content_hash"] or bool(
                stored.get("deleted")
            )
            orgs_changed = (
                list(stored.get("organization_ids") or []) != document["organization_ids"]
            )
            if not shown_changed and not orgs_changed:
                unchanged += 1
                if confirm_unchanged:
                    snapshot_ops.append(
                        UpdateOne({"user_id": user.id}, {"$set": {"synced_at": now}})
                    )
                continue
            snapshot_ops.append(
                UpdateOne(
                    {"user_id": user.id},
                    {"$set": document, "$setOnInsert": {"created_at": now}},
                    upsert=True,
                )
            )
        if not shown_changed:
            continue
        organizations = set(user.organization_ids) | set(
            (stored or {}).get("organization_ids") or []
        )
        snap = task_snapshot(document)
        for organization_id in organizations:
            task_ops.setdefault(organization_id, []).extend(
                task_snapshot_writes(organization_id, snap)
            )
        touched |= organizations
    return snapshot_ops, task_ops, touched, unchanged


def apply_users(
    mongo_db: Database,
    users: Sequence[SourceUser],
    existing: dict[str, dict[str, Any]],
    now: dt.datetime | None = None,
    *,
    confirm_unchanged: bool = False,
    rewrite_tasks_of_new: bool = True,
) -> SyncResult:
    """Write what changed for these users (tasks first, then snapshots, then caches)."""
    at = now or utcnow()
    result = SyncResult(users=len(users))
    snapshot_ops, task_ops, touched, result.unchanged = plan_users(
        users,
        existing,
        at,
        confirm_unchanged=confirm_unchanged,
        rewrite_tasks_of_new=rewrite_tasks_of_new,
    )
    _rewrite_tasks(mongo_db, task_ops, result)
    written = _write_snapshots(mongo_db, snapshot_ops)
    if len(users) > result.unchanged:
        result.newest_change = max(user.updated_at for user in users)
    result.snapshots_written = (
        written
        if not confirm_unchanged
        else len([op for op in snapshot_ops if not _is_confirmation(op)])
    )
    _invalidate(mongo_db, touched, result)
    return result


def _is_confirmation(operation: Any) -> bool:
    return isinstance(operation, UpdateOne) and set(operation._doc["$set"]) == {"synced_at"}


def apply_deletions(
    mongo_db: Database,
    user_ids: Iterable[str],
    existing: dict[str, dict[str, Any]],
    now: dt.datetime | None = None,
) -> SyncResult:
    """Mark the snapshots of deleted users deleted and show them as former members in their
    tasks (decision 5). Users without a snapshot are left alone: nothing shows them."""
    at = now or utcnow()
    result = SyncResult()
    task_ops: dict[str, list[UpdateMany]] = {}
    snapshot_ops: list[Any] = []
    touched: set[str] = set()
    for user_id in user_ids:
        result.users += 1
        stored = existing.get(user_id)
        if stored is None or stored.get("deleted"):
            result.unchanged += 1
            continue
        shown = {name: stored.get(name) for name in SHOWN_FIELDS}
        document = {
            "deleted": True,
            "deleted_at": at,
            "active": False,
            "content_hash": content_hash(shown, False, True),
            "synced_at": at,
            "updated_at": at,
        }
        snap = task_snapshot({**stored, **document, "user_id": user_id})
        organizations = set(stored.get("organization_ids") or [])
        for organization_id in organizations:
            task_ops.setdefault(organization_id, []).extend(
                task_snapshot_writes(organization_id, snap)
            )
        touched |= organizations
        snapshot_ops.append(UpdateOne({"user_id": user_id}, {"$set": document}))
        result.deleted += 1
    _rewrite_tasks(mongo_db, task_ops, result)
    if snapshot_ops:
        mongo_db.user_snapshots.bulk_write(snapshot_ops, ordered=False)
    _invalidate(mongo_db, touched, result)
    return result


# ---------------------------------------------------------------- reads from PostgreSQL
def read_users(conn: psycopg.Connection, user_ids: Sequence[str]) -> list[SourceUser]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(USERS_BY_ID, (list(user_ids),)).fetchall()
    return [SourceUser.from_row(row) for row in rows]


def sync_user_ids(
    dbs: Databases, user_ids: Iterable[str], *, confirm_unchanged: bool = False
) -> SyncResult:
    """Sync these users now (a notification, a refresh); ids no longer in users are deletions."""
    started = time.monotonic()
    ids = sorted(set(user_ids))
    result = SyncResult()
    if not ids:
        return result
    with dbs.pg() as conn:
        users = read_users(conn, ids)
    existing = existing_snapshots(dbs.mongo, ids)
    found = {user.id for user in users}
    now = utcnow()
    result.add(apply_users(dbs.mongo, users, existing, now, confirm_unchanged=confirm_unchanged))
    gone = [user_id for user_id in ids if user_id not in found]
    if gone:
        result.add(apply_deletions(dbs.mongo, gone, existing, now))
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------- watermark and catch-up
@dataclass(frozen=True)
class Watermark:
    updated_at: dt.datetime = EPOCH
    user_id: str = NIL_UUID
    deletions_at: dt.datetime = EPOCH

    def lag_seconds(self, now: dt.datetime | None = None) -> float:
        return max(0.0, ((now or utcnow()) - self.updated_at).total_seconds())


def load_watermark(mongo_db: Database) -> Watermark:
    doc = mongo_db[STATE_COLLECTION].find_one({"_id": WATERMARK_ID})
    if not doc:
        return Watermark()
    return Watermark(
        doc.get("users_updated_at") or EPOCH,
        doc.get("users_id") or NIL_UUID,
        doc.get("deletions_at") or EPOCH,
    )


def store_watermark(mongo_db: Database, mark: Watermark) -> None:
    """Only forward: two workers catching up at once never move it back."""
    state = mongo_db[STATE_COLLECTION]
    now = utcnow()
    state.update_one(
        {"_id": WATERMARK_ID},
        {
            "$max": {"users_updated_at": mark.updated_at, "deletions_at": mark.deletions_at},
            "$set": {"saved_at": now},
        },
        upsert=True,
    )
    state.update_one(
        {"_id": WATERMARK_ID, "users_updated_at": mark.updated_at},
        {"$set": {"users_id": mark.user_id}},
    )


def catch_up(
    dbs: Databases,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    overlap: dt.timedelta = OVERLAP,
    should_stop: Callable[[], bool] = lambda: False,
) -> SyncResult:
    """Users changed and deleted since the watermark (minus the overlap), then the new mark."""
    started = time.monotonic()
    mark = load_watermark(dbs.mongo)
    result = SyncResult()
    start = mark.updated_at - overlap if mark.updated_at > EPOCH else EPOCH
    cursor: tuple[dt.datetime, str] = (start, NIL_UUID)
    newest = (mark.updated_at, mark.user_id)
    while not should_stop():
        with dbs.pg() as conn, conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(USERS_SINCE, (cursor[0], cursor[1], batch_size)).fetchall()
        if not rows:
            break
        users = [SourceUser.from_row(row) for row in rows]
        existing = existing_snapshots(dbs.mongo, [user.id for user in users])
        result.add(
            apply_users(dbs.mongo, users, existing, rewrite_tasks_of_new=mark.updated_at > EPOCH)
        )
        cursor = (users[-1].updated_at, users[-1].id)
        newest = max(newest, cursor)
        if len(rows) < batch_size:
            break
    deletions_since = mark.deletions_at - overlap if mark.deletions_at > EPOCH else EPOCH
    with dbs.pg() as conn, conn.cursor(row_factory=dict_row) as cur:
        tombstones = cur.execute(DELETIONS_SINCE, (deletions_since,)).fetchall()
        # A tombstone may be older than a re-insert with the same id: only absent users count.
        present = (
            {
                row["id"]
                for row in cur.execute(
                    EXISTING_IDS, ([row["user_id"] for row in tombstones],)
                ).fetchall()
            }
            if tombstones
            else set()
        )
    newest_deletion = mark.deletions_at
    gone = [row["user_id"] for row in tombstones if row["user_id"] not in present]
    for chunk in _chunks(gone, batch_size):
        result.add(apply_deletions(dbs.mongo, chunk, existing_snapshots(dbs.mongo, chunk)))
    if tombstones:
        newest_deletion = max(newest_deletion, tombstones[-1]["deleted_at"])
    if not should_stop():
        store_watermark(dbs.mongo, Watermark(newest[0], newest[1], newest_deletion))
    result.seconds = time.monotonic() - started
    return result


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- batch sync
def batch_sync(
    dbs: Databases,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    include_deletions: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[SyncResult], None] | None = None,
) -> SyncResult:
    """Compare every user with its snapshot and write what differs, in unordered bulk writes of
    `batch_size`; snapshots whose user is gone are marked deleted.

    The stored hashes are read once (one find over user_snapshots), the users stream from a
    server-side cursor, and one batch is written while the next is read and planned."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.monotonic()
    result = SyncResult()
    states = all_snapshot_states(dbs.mongo)
    seen: set[str] = set()
    newest = (EPOCH, NIL_UUID)
    pending: Future[SyncResult] | None = None
    lock = threading.Lock()

    def finish(future: Future[SyncResult] | None) -> None:
        if future is not None:
            outcome = future.result()
            with lock:
                result.add(outcome)
            if progress:
                progress(result)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer") as writer:
        with (
            dbs.connect_pg() as conn,
            conn.transaction(),
            conn.cursor(name="creatia_batch_sync", row_factory=dict_row) as cur,
        ):
            cur.itersize = batch_size
            cur.execute(ALL_USERS)
            while not should_stop():
                rows = cur.fetchmany(batch_size)
                if not rows:
                    break
                users = [SourceUser.from_row(row) for row in rows]
                for user in users:
                    seen.add(user.id)
                    newest = max(newest, (user.updated_at, user.id))
                existing = {u.id: states[u.id] for u in users if u.id in states}
                finish(pending)
                pending = writer.submit(
                    apply_users, dbs.mongo, users, existing, rewrite_tasks_of_new=False
                )
        finish(pending)
    if include_deletions and not should_stop():
        gone = [
            user_id
            for user_id, state in states.items()
            if user_id not in seen and not state.get("deleted")
        ]
        if gone:
            with dbs.pg() as conn:
                present = {row["id"] for row in conn.execute(EXISTING_IDS, (gone,)).fetchall()}
            gone = [user_id for user_id in gone if user_id not in present]  # created meanwhile
        for chunk in _chunks(gone, batch_size):
            result.add(apply_deletions(dbs.mongo, chunk, existing_snapshots(dbs.mongo, chunk)))
    if not should_stop() and newest[0] > EPOCH:
        current = load_watermark(dbs.mongo)
        store_watermark(dbs.mongo, Watermark(newest[0], newest[1], current.deletions_at))
    result.seconds = time.monotonic() - started
    return result


# ---------------------------------------------------------------- freshness
def refresh_stale(
    dbs: Databases,
    user_ids: Iterable[str],
    *,
    max_age_seconds: float = FRESH_SECONDS,
    now: dt.datetime | None = None,
) -> SyncResult:
    """Re-sync the users among `user_ids` whose snapshot is missing or older than
    `max_age_seconds` (the seed's ``fresh?``); what a screen calls, in a background worker,
    with the people it shows. Unchanged ones get a new synced_at (one write for all)."""
    ids = sorted({user_id for user_id in user_ids if user_id})
    if not ids:
        return SyncResult()
    horizon = (now or utcnow()) - dt.timedelta(seconds=max_age_seconds)
    fresh = {
        doc["user_id"]
        for doc in dbs.mongo.user_snapshots.find(
            {"user_id": {"$in": ids}, "synced_at": {"$gt": horizon}}, {"_id": 0, "user_id": 1}
        )
    }
    stale = [user_id for user_id in ids if user_id not in fresh]
    if not stale:
        return SyncResult()
    return sync_user_ids(dbs, stale, confirm_unchanged=True)


# ---------------------------------------------------------------- real time
@dataclass
class ListenerStats:
    notifications: int = 0
    duplicates: int = 0  # ids named again in the same burst
    bulk_signals: int = 0
    reconnects: int = 0
    last_event_at: dt.datetime | None = None


class SnapshotListener:
    """LISTEN on a dedicated connection (not the pool: a pooled connection goes back to others,
    and a LISTEN must stay open) and sync the users named.

    :meth:`run` blocks until `should_stop()` or `max_seconds` (the worker calls it again), and
    keeps its connection between calls. On (re)connect it LISTENs first and then catches up, so
    nothing falls between. Notifications arriving within ``debounce`` of each other are synced
    together (a burst of edits costs one read of each database)."""

    def __init__(
        self,
        dbs: Databases,
        *,
        debounce: float = 0.02,
        on_result: Callable[[SyncResult], None] | None = None,
    ) -> None:
        self.dbs = dbs
        self.debounce = debounce
        self.on_result = on_result
        self.stats = ListenerStats()
        self._conn: psycopg.Connection | None = None
        self._needs_catch_up = True
        self._backoff = 0.5

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _connect(self) -> psycopg.Connection:
        conn = self.dbs.connect_pg(autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        return conn

    def ensure_connected(self) -> bool:
        """Open the connection and LISTEN, then catch up; True when this call connected."""
        if self._conn is not None and not self._conn.closed:
            return False
        self._conn = self._connect()
        self._needs_catch_up = True  # whatever happened while we were not listening
        self._catch_up_if_needed()
        self._backoff = 0.5
        return True

    def _catch_up_if_needed(
        self, should_stop: Callable[[], bool] = lambda: False
    ) -> SyncResult | None:
        if not self._needs_catch_up:
            return None
        result = catch_up(self.dbs, should_stop=should_stop)
        self._needs_catch_up = False
        self._report(result)
        return result

    def _report(self, result: SyncResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def run(self, should_stop: Callable[[], bool], max_seconds: float = 30.0) -> SyncResult:
        """Sync what is notified until `should_stop()` or `max_seconds`. A failed sync (a
        database away) is retried by a catch-up once the databases answer again: the
        notifications it consumed are not lost, the watermark still has them."""
        total = SyncResult()
        deadline = time.monotonic() + max_seconds
        while not should_stop() and time.monotonic() < deadline:
            try:
                if self.ensure_connected():
                    self.stats.reconnects += 1
                caught_up = self._catch_up_if_needed(should_stop)
                if caught_up is not None:
                    total.add(caught_up)
                ids, bulk = self._gather(min(0.5, max(0.0, deadline - time.monotonic())))
                if bulk:
                    result = catch_up(self.dbs, should_stop=should_stop)
                elif ids:
                    result = sync_user_ids(self.dbs, ids)
                else:
                    continue
                total.add(result)
                self._report(result)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                log.warning(
                    "snapshot listener: PostgreSQL connection lost (%s); retrying in %.1f s",
                    one_line(str(exc)), self._backoff,
                )
                total.errors.append(one_line(str(exc)))
                self.close()
                self._sleep(self._backoff, should_stop)
                self._backoff = min(self._backoff * 2, 15.0)
            except (PyMongoError, UserError) as exc:
                log.warning(
                    "snapshot listener: %s; catching up in %.1f s",
                    one_line(str(exc)), self._backoff,
                )
                total.errors.append(one_line(str(exc)))
                self._needs_catch_up = True
                self._sleep(self._backoff, should_stop)
                self._backoff = min(self._backoff * 2, 15.0)
        return total

    @staticmethod
    def _sleep(seconds: float, should_stop: Callable[[], bool]) -> None:
        end = time.monotonic() + seconds
        while not should_stop() and time.monotonic() < end:
            time.sleep(min(0.1, end - time.monotonic()))

    def _gather(self, timeout: float) -> tuple[list[str], bool]:
        """Ids named by the next burst of notifications (none after `timeout`)."""
        assert self._conn is not None
        ids: list[str] = []
        seen: set[str] = set()
        bulk = False
        wait = timeout
        while True:
            got = False
            for notify in self._conn.notifies(timeout=wait, stop_after=1000):
                got = True
                self.stats.notifications += 1
                self.stats.last_event_at = utcnow()
                try:
                    payload = json.loads(notify.payload)
                except ValueError:
                    log.warning("snapshot listener: ignored a notification that is not JSON")
                    continue
                if payload.get("op") == "bulk":
                    self.stats.bulk_signals += 1
                    bulk = True
                elif isinstance(payload.get("id"), str):
                    if payload["id"] in seen:
                        self.stats.duplicates += 1
                    else:
                        seen.add(payload["id"])
                        ids.append(payload["id"])
            if not got:
                return ids, bulk
            wait = self.debounce  # more of the same burst?
