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
   nothing). ``synced_at`` is when a sync last wrote it; freshness on screen
   (data/maintenance.refresh_shown_snapshots) checks old copies against PostgreSQL and rewrites
   only those that show the person differently, so a correct copy keeps its ``synced_at``.
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
8. The batch sync remembers what it wrote in PostgreSQL's ``user_snapshot_digests`` (schema
   0007): per user, the state hash (content hash plus organizations) of the snapshot MongoDB
   acknowledged. A re-sync lets PostgreSQL compare every user with it and reads from MongoDB
   only the snapshots of users that differ, instead of every snapshot's state (3-4 s for
   100,000 on SecantusDB, the largest cost of a re-sync). A row is written only after MongoDB
   acknowledged the write (tasks, then snapshot): it may lag MongoDB, which costs an extra read
   and an idempotent comparison (e.g. after the listener synced a rename), never a missed
   change. Only the batch sync writes it. It is not trusted, and a full read of the snapshots
   is made and the digest started again, when it is empty, when its epoch differs from the one
   stored in MongoDB's ``sync_state`` (another or a new MongoDB database), or when one of a
   random sample of its rows has no snapshot in MongoDB (a collection emptied). Drift made
   directly in MongoDB (a snapshot edited or deleted by hand, a MongoDB restored alone from an
   older backup) is not seen by the digest: that is the consistency check's job
   (``sync --check``), and its repair runs the batch sync with ``full=True``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import bson
import psycopg
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from psycopg.rows import dict_row, tuple_row
from pymongo import InsertOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from creatia_tui.data.cache import invalidate_organizations
from creatia_tui.data.db import Databases
from creatia_tui.errors import UserError, one_line

log = logging.getLogger(__name__)
T = TypeVar("T")

CHANNEL = "user_snapshot_changes"
STATE_COLLECTION = "sync_state"
WATERMARK_ID = "user_snapshots"
DEFAULT_BATCH_SIZE = 1_000
# Bulk writes a batch sync keeps in flight: while the server applies one, the next is already
# waiting on its connection, so it never idles between batches.
WRITES_IN_FLIGHT = 2
# Users a batch sync reads ahead from PostgreSQL while the snapshots' states are being read.
PREFETCH_ROWS = 100_000
FRESH_SECONDS = 300  # the seed's fresh?: synced within 5 minutes
OVERLAP = dt.timedelta(seconds=60)
SHOWN_FIELDS = ("name", "email", "avatar_url", "department", "position")
FORMER_MEMBER = "(former member)"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
NIL_UUID = "00000000-0000-0000-0000-000000000000"

# The content hash is computed by PostgreSQL, so a re-sync compares strings and builds nothing
# for an unchanged user (a Python hash of 100,000 users cost half a second). The state hash adds
# the organizations: what user_snapshot_digests holds (decision 8).
USER_SELECT = """
SELECT u.id::text AS id, u.email, u.name, u.avatar_url, u.department, u.position, u.active,
       u.updated_at, o.organization_ids, h.content_hash,
       md5(h.content_hash || ':' || array_to_string(o.organization_ids, ',')) AS state_hash
FROM users u
CROSS JOIN LATERAL (
  SELECT ARRAY(SELECT m.organization_id::text FROM organization_memberships m
               WHERE m.user_id = u.id ORDER BY 1) AS organization_ids) o
CROSS JOIN LATERAL (
  SELECT md5(json_build_array(u.name, u.email, u.avatar_url, u.department, u.position,
                              u.active)::text) AS content_hash) h
"""
USERS_BY_ID = USER_SELECT + "WHERE u.id = ANY(%s::uuid[])"
# Keyset over idx_users_updated_at_id.
USERS_SINCE = (
    USER_SELECT + "WHERE (u.updated_at, u.id) > (%s, %s::uuid) ORDER BY u.updated_at, u.id LIMIT %s"
)
ALL_USERS = USER_SELECT + "ORDER BY u.id"
# The users whose state differs from what the last batch sync wrote (decision 8): PostgreSQL
# compares, MongoDB is asked about these only.
USERS_NOT_AS_DIGESTED = USER_SELECT + """
LEFT JOIN user_snapshot_digests d ON d.user_id = u.id
WHERE d.state_hash IS DISTINCT FROM
      md5(h.content_hash || ':' || array_to_string(o.organization_ids, ','))
ORDER BY u.id
"""
DELETIONS_SINCE = """
SELECT user_id::text AS user_id, deleted_at FROM user_deletions
WHERE deleted_at >= %s ORDER BY deleted_at, user_id
"""
EXISTING_IDS = "SELECT id::text FROM users WHERE id = ANY(%s::uuid[])"
DIGEST_DELETED = "deleted"
# Users gone from PostgreSQL whose snapshot the digest does not know as deleted: the digest's
# own rows, and tombstones (a user created and deleted between two batch syncs).
DIGEST_DELETIONS = """
SELECT d.user_id::text AS user_id FROM user_snapshot_digests d
WHERE d.state_hash <> 'deleted' AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = d.user_id)
UNION
SELECT t.user_id::text FROM user_deletions t
WHERE NOT EXISTS (SELECT 1 FROM users u WHERE u.id = t.user_id)
  AND NOT EXISTS (SELECT 1 FROM user_snapshot_digests d
                  WHERE d.user_id = t.user_id AND d.state_hash = 'deleted')
"""
RECORD_DIGESTS = """
INSERT INTO user_snapshot_digests (user_id, state_hash)
SELECT * FROM unnest(%s::uuid[], %s::text[])
ON CONFLICT (user_id) DO UPDATE SET state_hash = EXCLUDED.state_hash, written_at = now()
"""


def content_hash(
    name: str | None,
    email: str,
    avatar_url: str | None,
    department: str | None,
    position: str | None,
    active: bool,
) -> str:
    """The content hash USER_SELECT has PostgreSQL compute, computed here: for a writer that
    builds snapshots without reading its users back (the seed writes both databases at once).
    ``json_build_array(...)::text`` separates elements with ", " and escapes strings as
    json.dumps does without ensure_ascii (tested against PostgreSQL)."""
    values = (name, email, avatar_url, department, position, active)
    text = "[" + ", ".join(json.dumps(value, ensure_ascii=False) for value in values) + "]"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


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
    content_hash: str = ""  # of the shown fields and active, by PostgreSQL (USER_SELECT)
    state_hash: str = ""  # of content_hash and organization_ids (user_snapshot_digests)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SourceUser:
        return cls(**{**row, "organization_ids": tuple(row.get("organization_ids") or ())})


def deleted_hash(previous: str | None) -> str:
    """The content hash of a deleted user's snapshot: unlike any live user's."""
    return f"deleted:{previous or ''}"


def shows_differently(stored: dict[str, Any], user: SourceUser) -> bool:
    """Whether a stored snapshot's fields differ from the user's (whatever its hash says)."""
    return (
        any(stored.get(name) != getattr(user, name) for name in SHOWN_FIELDS)
        or bool(stored.get("active", True)) != user.active
        or bool(stored.get("deleted"))
    )


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


@dataclass(frozen=True)
class TaskRewrite:
    """One user's new embedded snapshot, and the organizations whose tasks get it."""

    user_id: str
    snap: dict[str, Any]
    organizations: frozenset[str]


ROLES = ("assignee", "reviewer")  # a task's people: <role>_id and <role>_snapshot


def tasks_query(role: str, rewrites: Sequence[TaskRewrite]) -> dict[str, Any]:
    """The tasks in which these users hold `role`, in their organizations: one find a batch.

    Led by ``<role>_id``: SecantusDB's rule-based planner picks its index from the filter's
    first field (``idx_tasks_assignee_status``, ``idx_tasks_reviewer_org``; measured: 2.4 ms
    for 10 users' tasks among 100,000; an ``organization_id``-first filter with a field the
    index lacks scans, 50-100 ms). ``organization_id`` is named, so a sharded cluster sends it
    to those organizations' shards only."""
    organizations = sorted(set().union(*(r.organizations for r in rewrites)))
    return {
        f"{role}_id": {"$in": [r.user_id for r in rewrites]},
        "organization_id": {"$in": organizations},
    }


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
    mongo_db: Database, rewrites: Sequence[TaskRewrite], result: SyncResult
) -> None:
    """For each role (assignee, reviewer): one find per 500 users (tasks_query), then one
    guarded UpdateOne per task that holds another snapshot, in unordered bulk writes of up to
    1,000 statements, every statement naming ``organization_id`` (the shard key) and
    idempotent (the content hash is in the filter). Finding first means no write is sent for
    a user who reviews nothing: an UpdateMany that matched nothing cost SecantusDB ~0.9 ms, and
    about half of a re-sync's per-user reviewer updates were such."""
    if not rewrites:
        return
    by_user = {rewrite.user_id: rewrite for rewrite in rewrites}
    for role in ROLES:
        operations: list[Any] = []
        for chunk in _chunks(list(rewrites), 500):
            for doc in mongo_db.tasks.find(
                tasks_query(role, chunk),
                {"organization_id": 1, f"{role}_id": 1, f"{role}_snapshot.content_hash": 1},
            ):
                rewrite = by_user[doc[f"{role}_id"]]
                held = (doc.get(f"{role}_snapshot") or {}).get("content_hash")
                digest = rewrite.snap["content_hash"]
                if doc["organization_id"] not in rewrite.organizations or held == digest:
                    continue
                operations.append(
                    UpdateOne(
                        {
                            "_id": doc["_id"],
                            "organization_id": doc["organization_id"],
                            f"{role}_snapshot.content_hash": {"$ne": digest},
                        },
                        {"$set": {f"{role}_snapshot": rewrite.snap}},
                    )
                )
        # Each role in its own commands: a bench's command timing then tells them apart.
        for chunk in _chunks(operations, 1_000):
            outcome = mongo_db.tasks.bulk_write(chunk, ordered=False)
            result.tasks_modified += outcome.modified_count


def rewrite_task_snapshots(mongo_db: Database, rewrites: Sequence[TaskRewrite]) -> SyncResult:
    """Rewrite these users' embedded snapshots in the organizations named (idempotent: an
    assignee copy holding the same content hash is not touched), then drop those
    organizations' caches. What a freshness refresh uses for copies the sync's hash missed."""
    result = SyncResult()
    _rewrite_tasks(mongo_db, rewrites, result)
    _invalidate(mongo_db, set().union(*(r.organizations for r in rewrites)), result)
    return result


def _invalidate(mongo_db: Database, organizations: Iterable[str], result: SyncResult) -> None:
    touched = sorted(set(organizations))
    if touched:
        invalidate_organizations(mongo_db, touched)
        result.organizations.update(touched)


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


@dataclass
class WritePlan:
    """What a batch of users needs written (plan_users), executed by execute_plan."""

    snapshot_ops: list[Any] = field(default_factory=list)
    rewrites: list[TaskRewrite] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    users: int = 0
    unchanged: int = 0
    newest_change: dt.datetime | None = None
    # (user id, state hash) to record in user_snapshot_digests once MongoDB acknowledged the
    # plan's writes (batch sync only; decision 8).
    digests: list[tuple[str, str]] = field(default_factory=list)

    def statements(self) -> int:
        """Roughly how many write statements executing this plan sends."""
        return len(self.snapshot_ops) + 2 * len(self.rewrites)

    def merge(self, other: WritePlan) -> None:
        self.snapshot_ops += other.snapshot_ops
        self.rewrites += other.rewrites
        self.touched |= other.touched
        self.users += other.users
        self.unchanged += other.unchanged
        self.digests += other.digests
        if other.newest_change is not None and (
            self.newest_change is None or other.newest_change > self.newest_change
        ):
            self.newest_change = other.newest_change


def plan_users(
    users: Sequence[SourceUser],
    existing: dict[str, dict[str, Any]],
    now: dt.datetime,
    *,
    rewrite_tasks_of_new: bool = True,
) -> WritePlan:
    """What to write for these users: snapshot operations, task rewrites, organizations whose
    caches to drop, and how many were unchanged.

    ``rewrite_tasks_of_new=False`` (a first sync into an empty collection) leaves the tasks of
    users who had no snapshot alone: their embedded snapshots were copied from PostgreSQL when
    they were assigned, and rewriting every task of every user would make the first sync a
    rewrite of the whole tasks collection. The consistency check finds any that are stale.
    New snapshots are encoded here (RawBSONDocument), so the writer thread only sends bytes."""
    plan = WritePlan(users=len(users))
    for user in users:
        stored = existing.get(user.id)
        if stored is not None and not stored.get("deleted"):
            same_orgs = tuple(stored.get("organization_ids") or ()) == user.organization_ids
            if stored.get("content_hash") == user.content_hash and same_orgs:
                plan.unchanged += 1
                continue
        document = snapshot_document(user, now)
        if stored is None:
            raw = bson.encode({"_id": ObjectId(), **document, "created_at": now})
            plan.snapshot_ops.append(InsertOne(RawBSONDocument(raw)))
            shown_changed = rewrite_tasks_of_new
        else:
            shown_changed = stored.get("content_hash") != user.content_hash or bool(
                stored.get("deleted")
            )
            plan.snapshot_ops.append(
                UpdateOne(
                    {"user_id": user.id},
                    {"$set": document, "$setOnInsert": {"created_at": now}},
                    upsert=True,
                )
            )
        if plan.newest_change is None or user.updated_at > plan.newest_change:
            plan.newest_change = user.updated_at
        if not shown_changed:
            continue
        organizations = frozenset(user.organization_ids) | frozenset(
            (stored or {}).get("organization_ids") or ()
        )
        plan.rewrites.append(TaskRewrite(user.id, task_snapshot(document), organizations))
        plan.touched |= organizations
    return plan


def execute_plan(mongo_db: Database, plan: WritePlan) -> SyncResult:
    """Tasks first, then snapshots, then caches (decision 3)."""
    result = SyncResult(users=plan.users, unchanged=plan.unchanged)
    result.newest_change = plan.newest_change
    _rewrite_tasks(mongo_db, plan.rewrites, result)
    written = _write_snapshots(mongo_db, plan.snapshot_ops)
    result.snapshots_written = written
    _invalidate(mongo_db, plan.touched, result)
    return result


def record_digests(dbs: Databases, digests: Sequence[tuple[str, str]]) -> None:
    """Remember what MongoDB acknowledged (decision 8): call only after the writes returned."""
    for chunk in _chunks(list(digests), 5_000):
        with dbs.pg() as conn:
            conn.execute(RECORD_DIGESTS, ([d[0] for d in chunk], [d[1] for d in chunk]))


def execute_and_record(dbs: Databases, plan: WritePlan) -> SyncResult:
    """execute_plan, then the plan's digests: not recorded when a write failed."""
    result = execute_plan(dbs.mongo, plan)
    if plan.digests:
        record_digests(dbs, plan.digests)
    return result


def apply_users(
    mongo_db: Database,
    users: Sequence[SourceUser],
    existing: dict[str, dict[str, Any]],
    now: dt.datetime | None = None,
    *,
    rewrite_tasks_of_new: bool = True,
) -> SyncResult:
    """Write what changed for these users (tasks first, then snapshots, then caches)."""
    plan = plan_users(
        users,
        existing,
        now or utcnow(),
        rewrite_tasks_of_new=rewrite_tasks_of_new,
    )
    return execute_plan(mongo_db, plan)


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
    rewrites: list[TaskRewrite] = []
    snapshot_ops: list[Any] = []
    touched: set[str] = set()
    for user_id in user_ids:
        result.users += 1
        stored = existing.get(user_id)
        if stored is None or stored.get("deleted"):
            result.unchanged += 1
            continue
        document = {
            "deleted": True,
            "deleted_at": at,
            "active": False,
            "content_hash": deleted_hash(stored.get("content_hash")),
            "synced_at": at,
            "updated_at": at,
        }
        snap = task_snapshot({**stored, **document, "user_id": user_id})
        organizations = frozenset(stored.get("organization_ids") or ())
        rewrites.append(TaskRewrite(user_id, snap, organizations))
        touched |= organizations
        snapshot_ops.append(UpdateOne({"user_id": user_id}, {"$set": document}))
        result.deleted += 1
    _rewrite_tasks(mongo_db, rewrites, result)
    if snapshot_ops:
        mongo_db.user_snapshots.bulk_write(snapshot_ops, ordered=False)
    _invalidate(mongo_db, touched, result)
    return result


# ---------------------------------------------------------------- reads from PostgreSQL
def read_users(conn: psycopg.Connection, user_ids: Sequence[str]) -> list[SourceUser]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(USERS_BY_ID, (list(user_ids),)).fetchall()
    return [SourceUser.from_row(row) for row in rows]


def sync_user_ids(dbs: Databases, user_ids: Iterable[str]) -> SyncResult:
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
    result.add(apply_users(dbs.mongo, users, existing, now))
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
    # The next batch is read from PostgreSQL (and its snapshots from MongoDB) while a thread
    # writes the last one: a user is in one batch only, so the batches are independent.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-catch-up") as writer:
        pending: Future[SyncResult] | None = None
        while not should_stop():
            with dbs.pg() as conn, conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(USERS_SINCE, (cursor[0], cursor[1], batch_size)).fetchall()
            if not rows:
                break
            users = [SourceUser.from_row(row) for row in rows]
            existing = existing_snapshots(dbs.mongo, [user.id for user in users])
            if pending is not None:
                result.add(pending.result())
            pending = writer.submit(
                apply_users,
                dbs.mongo,
                users,
                existing,
                rewrite_tasks_of_new=mark.updated_at > EPOCH,
            )
            cursor = (users[-1].updated_at, users[-1].id)
            newest = max(newest, cursor)
            if len(rows) < batch_size:
                break
        if pending is not None:
            result.add(pending.result())
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


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------- batch sync
DIGEST_EPOCH_FIELD = "digest_epoch"
DIGEST_SAMPLE = 32  # digest rows whose snapshot must exist for the digest to be trusted


def digest_usable(dbs: Databases) -> bool:
    """Whether user_snapshot_digests may stand in for reading every snapshot (decision 8): it
    has rows, its epoch is the one in MongoDB's sync_state, and a random sample of its live rows
    all have their snapshot in MongoDB (an emptied or replaced collection fails it; counting
    the collection cost SecantusDB 0.6-0.7 s, this costs a few milliseconds)."""
    with dbs.pg() as conn, conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("SELECT epoch FROM user_snapshot_digest_epoch").fetchone()
        epoch = row[0] if row else None
        sample = [
            r[0]
            for r in cur.execute(
                "SELECT user_id::text FROM user_snapshot_digests WHERE state_hash <> 'deleted' "
                "ORDER BY random() LIMIT %s",
                (DIGEST_SAMPLE,),
            ).fetchall()
        ] if epoch else []
    if not epoch or not sample:
        return False
    state = dbs.mongo[STATE_COLLECTION].find_one({"_id": WATERMARK_ID}, {DIGEST_EPOCH_FIELD: 1})
    if (state or {}).get(DIGEST_EPOCH_FIELD) != epoch:
        return False
    found = dbs.mongo.user_snapshots.find(
        {"user_id": {"$in": sample}}, {"_id": 0, "user_id": 1}
    )
    return len({doc["user_id"] for doc in found}) == len(set(sample))


def forget_digest(conn: psycopg.Connection) -> None:
    """After a restore: the backup dumped PostgreSQL and MongoDB one after the other, so the
    digest may say a snapshot was written that the restored MongoDB does not hold. Without an
    epoch the digest is not trusted (:func:`digest_usable`): the next batch sync reads every
    snapshot and starts a new one. A database restored from before schema 0007 has no digest."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT to_regclass('user_snapshot_digest_epoch') IS NOT NULL"
        ).fetchone()
        if row and row[0]:
            cur.execute("DELETE FROM user_snapshot_digest_epoch")


def restart_digest(dbs: Databases) -> None:
    """Empty the digest under a new epoch, stored in PostgreSQL first, then in MongoDB: a crash
    between leaves them different, and the next batch sync reads everything again."""
    epoch = str(ObjectId())
    with dbs.pg() as conn:
        conn.execute("TRUNCATE user_snapshot_digests")
        conn.execute(
            "INSERT INTO user_snapshot_digest_epoch (epoch) VALUES (%s) "
            "ON CONFLICT (id) DO UPDATE SET epoch = EXCLUDED.epoch",
            (epoch,),
        )
    dbs.mongo[STATE_COLLECTION].update_one(
        {"_id": WATERMARK_ID}, {"$set": {DIGEST_EPOCH_FIELD: epoch}}, upsert=True
    )


def batch_sync(
    dbs: Databases,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    include_deletions: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[SyncResult], None] | None = None,
    writes_in_flight: int = WRITES_IN_FLIGHT,
    full: bool = False,
) -> SyncResult:
    """Compare every user with its snapshot and write what differs, in unordered bulk writes of
    `batch_size`; snapshots whose user is gone are marked deleted.

    Two ways to compare (decision 8). With a usable digest, PostgreSQL compares every user with
    user_snapshot_digests and returns only those that differ; their snapshots are read from
    MongoDB by id, a batch at a time. Otherwise (`full`, the consistency repair's way, or the
    digest is not usable) every snapshot's state is read from MongoDB in one find on a thread
    while PostgreSQL streams the first users (a server-side cursor, read ahead up to
    PREFETCH_ROWS), and the digest is started again from what is found and written.

    Each batch is compared and planned (new snapshots encoded) on this thread while writer
    threads send the previous ones, up to `writes_in_flight` at a time (batches hold different
    users, and each keeps its own order: tasks, then snapshots, then caches, then the digest).
    An unchanged user costs a string comparison: PostgreSQL computes the hash. The plans of
    batches with few changes are gathered until they hold about a quarter batch of statements:
    a re-sync after a few changes sends a few large bulk writes rather than many small ones."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if writes_in_flight < 1:
        raise ValueError("writes_in_flight must be at least 1")
    started = time.monotonic()
    use_digest = not full and digest_usable(dbs)
    if not use_digest:
        restart_digest(dbs)
    result = SyncResult()
    seen: set[str] = set()
    newest = (EPOCH, NIL_UUID)
    in_flight: deque[Future[SyncResult]] = deque()
    gathered = WritePlan()
    send_at = max(1, batch_size // 4)  # statements
    now = utcnow()
    gone: list[str] = []

    def finish_one() -> None:
        result.add(in_flight.popleft().result())
        if progress:
            progress(result)

    def send(threads: ThreadPoolExecutor) -> None:
        nonlocal gathered
        while len(in_flight) >= writes_in_flight:
            finish_one()
        in_flight.append(threads.submit(execute_and_record, dbs, gathered))
        gathered = WritePlan()

    def compare(rows: list[dict[str, Any]], states: dict[str, dict[str, Any]]) -> WritePlan:
        changed = []
        digests = []
        for row in rows:
            user_id = row["id"]
            stored = states.get(user_id)
            digests.append((user_id, row["state_hash"]))
            if (
                stored is not None
                and stored.get("content_hash") == row["content_hash"]
                and not stored.get("deleted")
                and list(stored.get("organization_ids") or ())
                == list(row["organization_ids"] or ())
            ):
                continue
            changed.append(SourceUser.from_row(row))
        plan = plan_users(
            changed,
            {u.id: states[u.id] for u in changed if u.id in states},
            now,
            rewrite_tasks_of_new=False,
        )
        plan.unchanged += len(rows) - len(changed)
        plan.users = len(rows)
        plan.digests = digests
        return plan

    def add(threads: ThreadPoolExecutor, plan: WritePlan) -> None:
        gathered.merge(plan)
        if gathered.statements() >= send_at:
            send(threads)
        elif progress and not in_flight:
            # Nothing is being written: report the comparison's progress as it goes.
            progress(_counted(result, gathered))

    with ThreadPoolExecutor(
        max_workers=1 + writes_in_flight, thread_name_prefix="snapshot-sync"
    ) as threads:
        with dbs.connect_pg() as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            with conn.transaction():
                if use_digest:
                    # One snapshot of the database for the comparison, the count and the mark.
                    with conn.cursor(row_factory=dict_row) as cur:
                        total = cur.execute("SELECT count(*) AS n FROM users").fetchone()["n"]
                        mark = cur.execute(
                            "SELECT updated_at, id::text AS id FROM users "
                            "ORDER BY updated_at DESC, id DESC LIMIT 1"
                        ).fetchone()
                        if include_deletions:
                            gone = [r["user_id"] for r in cur.execute(DIGEST_DELETIONS)]
                    if mark is not None:
                        newest = (mark["updated_at"], mark["id"])
                    result.users += total
                    compared = 0
                    with conn.cursor(name="creatia_batch_sync", row_factory=dict_row) as cur:
                        cur.execute(USERS_NOT_AS_DIGESTED)
                        while not should_stop():
                            rows = cur.fetchmany(batch_size)
                            if not rows:
                                break
                            compared += len(rows)
                            states = existing_snapshots(dbs.mongo, [row["id"] for row in rows])
                            add(threads, compare(rows, states))
                    # The users PostgreSQL found as digested: unchanged, compared there.
                    result.unchanged += total - compared
                    result.users -= compared  # counted again as their plans finish
                else:
                    reading = threads.submit(all_snapshot_states, dbs.mongo)
                    with conn.cursor(name="creatia_batch_sync", row_factory=dict_row) as cur:
                        cur.execute(ALL_USERS)
                        # While MongoDB sends the states, PostgreSQL computes the first users (a
                        # server-side cursor computes rows only when fetched): up to
                        # PREFETCH_ROWS of them are held.
                        prefetched: deque[list[dict[str, Any]]] = deque()
                        exhausted = False
                        while not reading.done() and len(prefetched) * batch_size < PREFETCH_ROWS:
                            rows = cur.fetchmany(batch_size)
                            if not rows:
                                exhausted = True
                                break
                            prefetched.append(rows)
                        all_states: dict[str, dict[str, Any]] | None = None
                        while not should_stop():
                            if prefetched:
                                rows = prefetched.popleft()
                            else:
                                rows = [] if exhausted else cur.fetchmany(batch_size)
                            if not rows:
                                break
                            if all_states is None:
                                all_states = reading.result()
                            for row in rows:
                                seen.add(row["id"])
                                if (row["updated_at"], row["id"]) > newest:
                                    newest = (row["updated_at"], row["id"])
                            add(threads, compare(rows, all_states))
                    if all_states is None:
                        all_states = reading.result()
                    gone = [
                        user_id
                        for user_id, state in all_states.items()
                        if user_id not in seen and not state.get("deleted")
                    ]
        if gathered.users:
            send(threads)
        while in_flight:
            finish_one()
    if include_deletions and gone and not should_stop():
        with dbs.pg() as pg_conn:
            present = {row["id"] for row in pg_conn.execute(EXISTING_IDS, (gone,)).fetchall()}
        gone = [user_id for user_id in gone if user_id not in present]  # created meanwhile
        for chunk in _chunks(gone, batch_size):
            result.add(apply_deletions(dbs.mongo, chunk, existing_snapshots(dbs.mongo, chunk)))
            record_digests(dbs, [(user_id, DIGEST_DELETED) for user_id in chunk])
    if not should_stop() and newest[0] > EPOCH:
        current = load_watermark(dbs.mongo)
        store_watermark(dbs.mongo, Watermark(newest[0], newest[1], current.deletions_at))
    result.seconds = time.monotonic() - started
    return result


def _counted(result: SyncResult, gathered: WritePlan) -> SyncResult:
    """The result so far plus the users compared but not yet written (for progress)."""
    shown = SyncResult()
    shown.add(result)
    shown.users += gathered.users
    shown.unchanged += gathered.unchanged
    return shown


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
