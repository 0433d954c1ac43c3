"""The batch sync's digest (ops/sync.py decision 8, schema 0007): a re-sync compares users in
PostgreSQL and asks MongoDB only about those that differ; the digest says "written" only after
MongoDB acknowledged; a digest MongoDB does not back (emptied collection, another epoch) is not
trusted; drift made directly in MongoDB is the consistency check's to find.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pymongo import monitoring
from pymongo.errors import PyMongoError

from creatia_tui.config import Settings
from creatia_tui.data.db import Databases
from creatia_tui.ops import consistency, sync
from tests.conftest import World


class SnapshotReads(monitoring.CommandListener):
    """The filters of the finds sent to user_snapshots."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find" and event.command.get("find") == "user_snapshots":
            self.filters.append(dict(event.command.get("filter") or {}))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
def watched(settings: Settings) -> Iterator[tuple[Databases, SnapshotReads]]:
    reads = SnapshotReads()
    databases = Databases(settings, mongo_options={"event_listeners": [reads]})
    yield databases, reads
    databases.close()


def digests(pg_dsn: str) -> dict[str, str]:
    with psycopg.connect(pg_dsn) as conn:
        rows = conn.execute("SELECT user_id::text, state_hash FROM user_snapshot_digests")
        return dict(rows.fetchall())


def rename(pg_dsn: str, user_id: str, name: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = %s WHERE id = %s", (name, user_id))


def test_a_resync_reads_only_the_snapshots_that_differ(
    watched: tuple[Databases, SnapshotReads], world: World, pg_dsn: str
) -> None:
    dbs, reads = watched
    first = sync.batch_sync(dbs)
    assert first.snapshots_written == 7
    assert len(digests(pg_dsn)) == 7 and sync.digest_usable(dbs)
    rename(pg_dsn, world.jiho, "박지호 책임")
    reads.filters.clear()
    again = sync.batch_sync(dbs)
    assert (again.users, again.snapshots_written, again.unchanged) == (7, 1, 6)
    assert {} not in reads.filters  # no read of every snapshot
    named = [f["user_id"]["$in"] for f in reads.filters if "user_id" in f]
    # The digest's sampled existence check names the digested users; the states read names
    # only the renamed one.
    assert [world.jiho] in named
    assert dbs.mongo.user_snapshots.find_one({"user_id": world.jiho})["name"] == "박지호 책임"  # type: ignore[index]
    before = digests(pg_dsn)
    assert sync.batch_sync(dbs).snapshots_written == 0
    assert digests(pg_dsn) == before


def test_a_failed_write_leaves_the_digest_as_it_was(
    dbs: Databases, world: World, pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync.batch_sync(dbs)
    before = digests(pg_dsn)
    rename(pg_dsn, world.jiho, "박지호 책임")

    def refused(*args: Any, **kwargs: Any) -> int:
        raise PyMongoError("the server went away mid-write")

    monkeypatch.setattr(sync, "_write_snapshots", refused)
    with pytest.raises(PyMongoError):
        sync.batch_sync(dbs)
    assert digests(pg_dsn) == before  # not "written": the next sync does it again
    monkeypatch.undo()
    assert sync.batch_sync(dbs).snapshots_written == 1
    assert digests(pg_dsn)[world.jiho] != before[world.jiho]


def test_a_digest_mongodb_does_not_back_is_not_trusted(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    sync.batch_sync(dbs)
    # The collection emptied behind the sync's back: everything is written again.
    dbs.mongo.user_snapshots.delete_many({})
    assert not sync.digest_usable(dbs)
    assert sync.batch_sync(dbs).snapshots_written == 7
    # Another MongoDB (here: its sync state gone, so no epoch): one full read, nothing to write.
    dbs.mongo[sync.STATE_COLLECTION].delete_many({})
    assert not sync.digest_usable(dbs)
    assert sync.batch_sync(dbs).snapshots_written == 0
    assert sync.digest_usable(dbs) and len(digests(pg_dsn)) == 7


def test_drift_made_in_mongodb_is_the_consistency_checks_to_find(
    dbs: Databases, world: World
) -> None:
    sync.batch_sync(dbs)
    dbs.mongo.user_snapshots.update_one(
        {"user_id": world.bob}, {"$set": {"name": "Robert", "content_hash": "edited"}}
    )
    assert sync.batch_sync(dbs).snapshots_written == 0  # the digest cannot see it
    report = consistency.check_consistency(dbs, store=False)
    assert report.findings["stale_user_snapshots"].count == 1
    repaired = consistency.repair(dbs, report)  # reads every snapshot (full=True)
    assert repaired.sync.snapshots_written >= 1
    assert dbs.mongo.user_snapshots.find_one({"user_id": world.bob})["name"] == "Bob Stone"  # type: ignore[index]


def test_a_restore_makes_the_digest_untrusted(world: World, dbs: Databases, pg_dsn: str) -> None:
    sync.batch_sync(dbs)
    assert sync.digest_usable(dbs)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        sync.forget_digest(conn)  # what ops/restore.py does once both databases are back
    assert not sync.digest_usable(dbs)
    sync.batch_sync(dbs)  # reads every snapshot, and starts a new digest
    assert sync.digest_usable(dbs)
