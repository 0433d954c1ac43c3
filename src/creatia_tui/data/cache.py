"""A cache every creatia-tui process shares: the MongoDB collection ``dashboard_cache``.

The seed caches each user's dashboard for 10 minutes and drops every dashboard of an organization
when one of its tasks is written. Several TUI instances (and, later, the sync worker) write tasks,
so the cache cannot live in one process's memory: it is a collection, and an invalidation made by
one process is seen by all of them.

Decisions:

1. Shape: one document per (organization_id, key) (unique ``idx_dashboard_cache_org_key``),
   ``{organization_id, key, user_id, value, expires_at, created_at}`` plus a build ``token``.
   Reads look an entry up by organization_id + key.
2. Expiry is checked on read (``expires_at`` against the reader's clock, so hosts should keep
   their clocks in sync; a few seconds' drift only shifts a 10-minute expiry). There is no TTL
   index: SecantusDB's TTL sweeper reads the whole collection under the server's global lock and
   freezes the server meanwhile. :func:`purge_expired` is the housekeeping a worker may run
   instead (``idx_dashboard_cache_expires``). Expired entries are otherwise overwritten by the
   next build, and every task write deletes its organization's entries.
3. Invalidation deletes: :func:`invalidate_organization` every entry of the organization (what a
   task write calls), :func:`invalidate_user` one user's entries in one organization.
4. A build racing an invalidation stores nothing stale. A miss first stamps the entry with a new
   token (an upsert), builds, then stores the value with an update filtered on that token. When
   an invalidation deleted the entry meanwhile (or another process started a newer build), the
   update matches nothing, and the value is returned without being cached. That costs one round
   trip per miss; a hit is one round trip.
5. Values are BSON documents: string keys; datetimes come back timezone-aware (UTC) at
   millisecond precision; tuples come back as lists. A freshly built value is returned as it
   would be read back (encoded and decoded once), so a hit and a miss give equal values.
6. The cache is an optimisation: a failed store is logged and counted, never raised, and the
   caller gets its value. A failed read raises (the caller is about to use the same server).
7. Counters are per process (:func:`cache_stats`), for the workers screen.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import bson
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError, PyMongoError

from creatia_tui.errors import one_line

log = logging.getLogger(__name__)

COLLECTION = "dashboard_cache"


@dataclass(frozen=True)
class CacheStats:
    """What this process's cache calls found since it started (or since reset_cache_stats)."""

    hits: int = 0
    misses: int = 0
    discarded: int = 0  # values built but not stored: invalidated (or superseded) meanwhile
    store_errors: int = 0
    invalidations: int = 0

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


_stats_lock = threading.Lock()
_stats = CacheStats()


def _count(**increments: int) -> None:
    global _stats
    with _stats_lock:
        _stats = replace(
            _stats, **{name: getattr(_stats, name) + n for name, n in increments.items()}
        )


def cache_stats() -> CacheStats:
    with _stats_lock:
        return _stats


def reset_cache_stats() -> None:
    global _stats
    with _stats_lock:
        _stats = CacheStats()


def _utcnow() -> dt.datetime:
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _as_read_back(mongo_db: Database, value: dict[str, Any]) -> dict[str, Any]:
    """The value as a read of the cache would return it (decision 5)."""
    return bson.decode(bson.encode(value), codec_options=mongo_db.codec_options)


def get_or_build(
    mongo_db: Database,
    organization_id: str,
    key: str,
    ttl_seconds: float,
    build: Callable[[], dict[str, Any]],
    *,
    user_id: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], bool]:
    """The cached value of (organization_id, key) and True, or build() stored and False.

    ``user_id`` marks the entry as one user's, for :func:`invalidate_user`. ``now`` stands for
    the clock (tests)."""
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    collection = mongo_db[COLLECTION]
    at = now or _utcnow()
    entry = collection.find_one(
        {"organization_id": organization_id, "key": key},
        {"value": 1, "expires_at": 1},
    )
    if (
        entry is not None
        and isinstance(entry.get("value"), dict)
        and isinstance(entry.get("expires_at"), dt.datetime)
        and entry["expires_at"] > at
    ):
        _count(hits=1)
        return entry["value"], True
    _count(misses=1)

    token = uuid.uuid4().hex
    stamped = _stamp(collection, organization_id, key, user_id, token)
    value = _as_read_back(mongo_db, build())
    if stamped:
        _store(collection, organization_id, key, user_id, token, value, at, ttl_seconds)
    return value, False


def _stamp(
    collection: Collection, organization_id: str, key: str, user_id: str | None, token: str
) -> bool:
    """Mark the entry as being built by `token` (decision 4); False when the mark failed."""
    for attempt in (1, 2):
        try:
            collection.update_one(
                {"organization_id": organization_id, "key": key},
                {"$set": {"token": token, "user_id": user_id}},
                upsert=True,
            )
            return True
        except DuplicateKeyError:
            if attempt == 2:  # two concurrent upserts of a new key: the second one retries
                return False
        except PyMongoError as exc:
            log.warning("cache: could not mark %s for a build: %s", key, one_line(str(exc)))
            _count(store_errors=1)
            return False
    return False


def _store(
    collection: Collection,
    organization_id: str,
    key: str,
    user_id: str | None,
    token: str,
    value: dict[str, Any],
    at: dt.datetime,
    ttl_seconds: float,
) -> None:
    try:
        result = collection.update_one(
            {"organization_id": organization_id, "key": key, "token": token},
            {
                "$set": {
                    "user_id": user_id,
                    "value": value,
                    "created_at": at,
                    "expires_at": at + dt.timedelta(seconds=ttl_seconds),
                }
            },
        )
    except PyMongoError as exc:
        log.warning("cache: could not store %s: %s", key, one_line(str(exc)))
        _count(store_errors=1)
        return
    if result.matched_count == 0:
        _count(discarded=1)


def invalidate_organization(mongo_db: Database, organization_id: str) -> None:
    """Drop every cached entry of the organization (after any change to its tasks)."""
    mongo_db[COLLECTION].delete_many({"organization_id": organization_id})
    _count(invalidations=1)


def invalidate_organizations(mongo_db: Database, organization_ids: list[str]) -> None:
    """Drop every cached entry of these organizations in one delete per 1,000 (the snapshot
    sync: a batch of renamed users touches many organizations at once)."""
    for start in range(0, len(organization_ids), 1_000):
        chunk = organization_ids[start : start + 1_000]
        mongo_db[COLLECTION].delete_many({"organization_id": {"$in": chunk}})
        _count(invalidations=len(chunk))


def invalidate_user(mongo_db: Database, organization_id: str, user_id: str) -> None:
    """Drop one user's cached entries in one organization."""
    mongo_db[COLLECTION].delete_many({"organization_id": organization_id, "user_id": user_id})
    _count(invalidations=1)


def purge_expired(mongo_db: Database, now: dt.datetime | None = None) -> int:
    """Delete entries that expired (housekeeping instead of a TTL index); returns how many."""
    result = mongo_db[COLLECTION].delete_many({"expires_at": {"$lt": now or _utcnow()}})
    return result.deleted_count
