"""User snapshot sync at scale: first sync against the bare write rate, re-syncs, real time.

One run seeds organizations, users (with memberships) and tasks and measures, on the same
server:

0. informative: the first sync into the seeded database's ``user_snapshots`` after its seeded
   documents were moved out (a rename): the re-syncs below need it. Beside it, the bare
   inserts into that same emptied collection, before and after (each moved out in turn, the
   synced snapshots moved back). SecantusDB writes into a collection emptied a while before
   more slowly than into a new one, bare inserts as much as the sync;
1. **bare**: the same snapshot documents the sync writes (built from the same users), sent with
   ``insert_many(ordered=False)`` in the sync's batch size into ``user_snapshots`` of a new
   database (same validator and indexes): the server's write rate for these documents;
2. **first sync**: ``batch_sync`` into ``user_snapshots`` of a new, migrated database, as on a
   new deployment (target: >= 80 % of bare, measured before and after it); the new databases
   are dropped after the second bare measurement, and the seeded database is compared in full
   once (informative) to take back the digest the new database's sync started;
3. **re-sync, nothing changed** (target: under 5 s);
4. **re-sync after 1 % of users changed** (a rename in PostgreSQL; target: under 10 s), which
   also rewrites their tasks' embedded snapshots;
5. **real time**: renames one at a time with the LISTEN loop running, from the UPDATE's commit
   until the user's snapshot and one of their tasks show the new name (target: under 1 s);
6. the consistency check over the whole set (informative), and the query plan of the task
   rewrite (it must use an index).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pymongo import monitoring
from pymongo.database import Database
from pymongo.errors import PyMongoError

from bench.run import BenchTarget
from creatia_tui.config import Locations, Settings
from creatia_tui.data.db import Databases
from creatia_tui.data.mongo_schema import load_collection_specs, migrate_mongo
from creatia_tui.ops import consistency, sync
from creatia_tui.ops.seed import SeedOptions, seed

RATIO_TARGET = 0.8
NOTHING_CHANGED_TARGET = 5.0
ONE_PERCENT_TARGET = 10.0
REAL_TIME_TARGET = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--orgs", type=int, default=1_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=sync.DEFAULT_BATCH_SIZE)
    parser.add_argument("--changed", type=float, default=0.01,
                        help="share of users renamed before the last re-sync (default 0.01)")
    parser.add_argument("--renames", type=int, default=20, help="real-time renames timed")
    parser.add_argument("--seed", type=int, default=42)


class CommandTimes(monitoring.CommandListener):
    """Server time of MongoDB commands by kind (command and collection), while `on`: where a
    sync's time goes. Durations are the driver's, from send to reply."""

    def __init__(self) -> None:
        self.on = False
        self.seconds: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self._kinds: dict[int, str] = {}
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.on:
            collection = event.command.get(event.command_name)
            kind = event.command_name
            if isinstance(collection, str):
                kind += f" {collection}"
            self._kinds[event.request_id] = kind

    def _done(self, event: Any) -> None:
        kind = self._kinds.pop(event.request_id, None)
        if kind is not None:
            with self._lock:
                self.seconds[kind] = self.seconds.get(kind, 0.0) + event.duration_micros / 1e6
                self.counts[kind] = self.counts.get(kind, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._done(event)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._done(event)

    def measure(self) -> CommandTimes:
        self.seconds.clear()
        self.counts.clear()
        self.on = True
        return self

    def report(self) -> str:
        self.on = False
        kinds = sorted(self.seconds, key=self.seconds.get, reverse=True)
        return ", ".join(
            f"{kind} {self.counts[kind]}x {self.seconds[kind]:.2f} s" for kind in kinds
        )


def _databases(target: BenchTarget, home: Path, times: CommandTimes) -> Databases:
    settings = Settings(
        pg_dsn=target.pg_dsn, mongo_uri=target.mongo_uri, mongo_db=target.mongo_db,
        locations=Locations.from_env({"CREATIA_HOME": str(home)}),
    )
    return Databases(settings, pool_max=4, mongo_options={"event_listeners": [times]})


def _move_out(dbs: Databases, moved_to: str) -> None:
    """user_snapshots renamed to `moved_to`, and a new one as migrate makes it, empty.

    Moved rather than dropped, so that the synced snapshots can be moved back after the bare
    insert that follows them."""
    spec = next(s for s in load_collection_specs() if s.name == "user_snapshots")
    dbs.mongo.user_snapshots.rename(moved_to)
    dbs.mongo.create_collection("user_snapshots", validator=spec.validator)
    for index in spec.indexes:
        dbs.mongo.user_snapshots.create_index(index.key, name=index.name, **index.options)


SECANTUS_TABLES = 16


def secantus_table(database: str, collection: str) -> int:
    """Which of SecantusDB's 16 document tables holds a collection: FNV-1a (64-bit) of
    ``database NUL collection``, modulo 16 (secantus/storage.py ``_doc_shard_hash``, rewritten
    here: the server is GPL and never imported). Every collection whose hash lands in a table
    shares it, and an insert into a table already holding another collection's 100,000 tasks
    or snapshots is markedly slower than into an empty one."""
    value = 0xCBF29CE484222325
    for byte in database.encode() + b"\x00" + collection.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value % SECANTUS_TABLES


def scratch_names(dbs: Databases, count: int) -> list[str]:
    """Names of `count` new databases whose ``user_snapshots`` lands in a SecantusDB document
    table of its own: none of the run's collections and none of the others in it. The bare
    inserts and the first sync then each write into an empty table, and no side of the
    comparison shares one with the seeded tasks by the luck of the database's random name (one
    reason the old comparison varied from run to run). With another server these are just
    names."""
    base = dbs.settings.mongo_db
    taken = {secantus_table(base, name) for name in dbs.mongo.list_collection_names()}
    names: list[str] = []
    for n in range(1, 1000):
        name = f"{base}_s{n}"
        table = secantus_table(name, "user_snapshots")
        if table not in taken:
            names.append(name)
            taken.add(table)
            if len(names) == count:
                return names
    raise RuntimeError(f"no {count} free SecantusDB tables for the scratch databases")


def _new_database(target: BenchTarget, home: Path, times: CommandTimes, name: str) -> Databases:
    """Databases whose MongoDB side is a new, migrated database (PostgreSQL is the run's)."""
    new_target = dataclasses.replace(target, mongo_db=name)
    dbs = _databases(new_target, home, times)
    migrate_mongo(dbs.mongo)
    return dbs


def _bare_rate(dbs: Databases, batch_size: int, into: Database) -> tuple[float, int]:
    """The sync's documents, written bare in its batch size into ``into.user_snapshots`` (made
    like the sync's own when missing).

    The scratch databases are dropped after the second bare measurement, not each here: the
    drop's work would slow the first sync."""
    with dbs.pg() as conn:
        rows = conn.execute(sync.ALL_USERS).fetchall()
    now = sync.utcnow()
    docs = [
        {**sync.snapshot_document(sync.SourceUser.from_row(row), now), "created_at": now}
        for row in rows
    ]
    if "user_snapshots" not in into.list_collection_names():
        spec = next(s for s in load_collection_specs() if s.name == "user_snapshots")
        into.create_collection("user_snapshots", validator=spec.validator)
        for index in spec.indexes:
            into.user_snapshots.create_index(index.key, name=index.name, **index.options)
    started = time.perf_counter()
    for start in range(0, len(docs), batch_size):
        into.user_snapshots.insert_many(docs[start:start + batch_size], ordered=False)
    seconds = time.perf_counter() - started
    return len(docs) / seconds, len(docs)


def _explain_task_rewrite(dbs: Databases) -> str:
    task = dbs.mongo.tasks.find_one(
        {"organization_id": {"$exists": True}, "assignee_id": {"$type": "string"}},
        {"organization_id": 1, "assignee_id": 1},
    )
    if task is None:
        return "no assigned task"
    rewrite = sync.TaskRewrite(
        task["assignee_id"], {"user_id": task["assignee_id"]},
        frozenset([task["organization_id"]]),
    )
    queries = {
        f"{role} (one find per batch)": sync.tasks_query(role, [rewrite])
        for role in sync.ROLES
    }
    timings = []
    for what, query in queries.items():
        plan = dbs.mongo.command("explain", {"find": "tasks", "filter": query},
                                 verbosity="queryPlanner")
        started = time.perf_counter()
        found = len(list(dbs.mongo.tasks.find(query, {"_id": 1})))
        ms = (time.perf_counter() - started) * 1000
        winning = _plan_text(plan.get("queryPlanner", {}).get("winningPlan", {}))
        timings.append(f"{what}: explain says {winning}, find {ms:.1f} ms ({found})")
    return "; ".join(timings)


def _plan_text(stage: dict[str, Any]) -> str:
    parts = []
    while stage:
        name = stage.get("stage", "?")
        if stage.get("indexName"):
            name += f" {stage['indexName']}"
        parts.append(name)
        stage = stage.get("inputStage") or {}
    return " <- ".join(parts)


def _real_time(dbs: Databases, renames: int, rng: random.Random) -> list[float]:
    """Seconds from each rename's commit to its snapshot and a task of theirs in MongoDB."""
    listener = sync.SnapshotListener(dbs)
    listener.ensure_connected()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            listener.run(stop.is_set, max_seconds=1.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    delays = []
    try:
        assigned = list(dbs.mongo.tasks.aggregate([
            {"$match": {"organization_id": {"$exists": True}, "assignee_id": {"$type": "string"},
                        "status": {"$in": ["todo", "in_progress", "review"]}}},
            {"$group": {"_id": "$assignee_id", "org": {"$first": "$organization_id"},
                        "task": {"$first": "$_id"}}},
            {"$limit": 2000},
        ]))
        with dbs.connect_pg(autocommit=True) as conn:
            for n in range(renames):
                pick = rng.choice(assigned)
                name = f"실시간 {n} {rng.random():.6f}"
                conn.execute("UPDATE users SET name = %s WHERE id = %s", (name, pick["_id"]))
                committed = time.perf_counter()
                while True:
                    snap = dbs.mongo.user_snapshots.find_one({"user_id": pick["_id"]},
                                                             {"name": 1})
                    task = dbs.mongo.tasks.find_one(
                        {"_id": pick["task"], "organization_id": pick["org"]},
                        {"assignee_snapshot.name": 1})
                    if (snap or {}).get("name") == name and (
                        (task or {}).get("assignee_snapshot") or {}
                    ).get("name") == name:
                        break
                    if time.perf_counter() - committed > 10:
                        raise RuntimeError("a rename did not arrive within 10 s")
                    time.sleep(0.005)
                delays.append(time.perf_counter() - committed)
                time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    return delays


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    rng = random.Random(args.seed)
    options = SeedOptions(orgs=args.orgs, users=args.users, tasks=args.tasks, activity=0,
                          sprints_per_org=1, seed=args.seed)
    print(f"sync: {options.users} users, {options.orgs} orgs, {options.tasks} tasks, "
          f"batch size {args.batch_size}", flush=True)
    home = Path(tempfile.mkdtemp(prefix="creatia-bench-sync-"))
    times = CommandTimes()
    dbs = _databases(target, home, times)
    scratch: list[str] = []
    try:
        started = time.perf_counter()
        with target.pg_connect() as conn:
            seed(conn, dbs.mongo, options)
        print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
        # The seeded database, its snapshots moved out: what the re-syncs start from. Compared
        # (informative) with bare inserts into the same emptied collection, before and after.
        _move_out(dbs, "user_snapshots_seeded")
        dbs.mongo[sync.STATE_COLLECTION].delete_many({})
        in_place_before, _ = _bare_rate(dbs, args.batch_size, dbs.mongo)
        _move_out(dbs, "user_snapshots_bare_before")
        times.measure()
        emptied = sync.batch_sync(dbs, batch_size=args.batch_size)
        emptied_rate = emptied.snapshots_written / emptied.seconds
        _move_out(dbs, "user_snapshots_synced")
        in_place_after, _ = _bare_rate(dbs, args.batch_size, dbs.mongo)
        dbs.mongo.user_snapshots_synced.rename("user_snapshots", dropTarget=True)
        print(f"  first sync (seeded database, snapshots moved out): {emptied.summary()}; "
              f"{emptied_rate:.0f} docs/s; bare into the same collection {in_place_before:.0f} "
              f"before, {in_place_after:.0f} after", flush=True)

        scratch[:] = scratch_names(dbs, 3)  # bare before, first sync, bare after
        print(f"  scratch databases {', '.join(scratch)}: SecantusDB tables "
              f"{', '.join(str(secantus_table(name, 'user_snapshots')) for name in scratch)} "
              f"(the seeded snapshots' {secantus_table(target.mongo_db, 'user_snapshots')})",
              flush=True)
        # Bare before and after the first sync, the ratio against their mean: the server's
        # speed drifts during a run (and other work on this machine comes and goes). All three
        # write into new databases, each into an empty table of the server's (scratch_names).
        bare_before, documents = _bare_rate(dbs, args.batch_size, dbs.mongo_client[scratch[0]])
        print(f"  bare insert_many: {documents} documents, {bare_before:.0f} docs/s", flush=True)

        first_dbs = _new_database(target, home, times, scratch[1])
        try:
            times.measure()
            first = sync.batch_sync(first_dbs, batch_size=args.batch_size)
        finally:
            first_dbs.close()
        first_rate = first.snapshots_written / first.seconds
        print(f"  first sync (new database): {first.summary()}; {first_rate:.0f} docs/s",
              flush=True)
        print(f"    MongoDB commands: {times.report()}", flush=True)

        bare_after, _ = _bare_rate(dbs, args.batch_size, dbs.mongo_client[scratch[2]])
        print(f"  bare insert_many again: {bare_after:.0f} docs/s", flush=True)
        bare = (bare_before + bare_after) / 2
        # Dropped before the re-syncs: 300,000 more documents would slow the server at
        # everything (one cache for all databases).
        dropping = time.perf_counter()
        for name in scratch:
            dbs.mongo_client.drop_database(name)
        scratch.clear()
        print(f"  scratch databases dropped in {time.perf_counter() - dropping:.1f} s", flush=True)

        # The new database's sync started the digest again under its own epoch: the seeded
        # database's sync reads every snapshot once more (writing nothing) and takes it back.
        times.measure()
        reread = sync.batch_sync(dbs, batch_size=args.batch_size)
        print(f"  re-sync without a usable digest: {reread.summary()}", flush=True)
        print(f"    MongoDB commands: {times.report()}", flush=True)

        times.measure()
        unchanged = sync.batch_sync(dbs, batch_size=args.batch_size)
        print(f"  re-sync, nothing changed: {unchanged.summary()}", flush=True)
        print(f"    MongoDB commands: {times.report()}", flush=True)

        with dbs.pg() as conn:
            ids = [row["id"] for row in conn.execute("SELECT id::text AS id FROM users")]
        changed_ids = rng.sample(ids, max(1, int(len(ids) * args.changed)))
        with dbs.connect_pg(autocommit=True) as conn:
            conn.execute("UPDATE users SET name = name || ' (renamed)' WHERE id = ANY(%s::uuid[])",
                         (changed_ids,))
        times.measure()
        some = sync.batch_sync(dbs, batch_size=args.batch_size)
        print(f"  re-sync, {len(changed_ids)} changed: {some.summary()}", flush=True)
        print(f"    MongoDB commands (driver time, overlapping threads add up): "
              f"{times.report()}", flush=True)

        delays = _real_time(dbs, args.renames, rng)
        print(f"  real time: {len(delays)} renames, median {statistics.median(delays):.3f} s, "
              f"max {max(delays):.3f} s", flush=True)

        report = consistency.check_consistency(dbs)
        print(f"  consistency check: {report.seconds:.1f} s, {report.problems} problems",
              flush=True)
        plan = _explain_task_rewrite(dbs)
        print(f"  task rewrite plan: {plan}", flush=True)
    finally:
        for name in scratch:  # after a failure
            with contextlib.suppress(PyMongoError):
                dbs.mongo_client.drop_database(name)
        dbs.close()

    ratio = first_rate / bare
    rows = [
        ("first sync, new database", f"{first.seconds:.1f} s", f"{first_rate:,.0f} docs/s",
         f"bare {bare_before:,.0f} before, {bare_after:,.0f} after: ratio {ratio:.0%} "
         f"(target >= {RATIO_TARGET:.0%})",
         ratio >= RATIO_TARGET),
        ("first sync, seeded database emptied by a rename", f"{emptied.seconds:.1f} s",
         f"{emptied_rate:,.0f} docs/s",
         f"informative: bare into the same collection {in_place_before:,.0f} docs/s before "
         f"it, {in_place_after:,.0f} after it",
         True),
        ("re-sync without a usable digest", f"{reread.seconds:.1f} s",
         f"{reread.snapshots_written} written", "informative (reads every snapshot)", True),
        ("re-sync, nothing changed", f"{unchanged.seconds:.1f} s",
         f"{unchanged.snapshots_written} written", f"target < {NOTHING_CHANGED_TARGET:.0f} s",
         unchanged.seconds < NOTHING_CHANGED_TARGET),
        (f"re-sync, {len(changed_ids)} changed", f"{some.seconds:.1f} s",
         f"{some.snapshots_written} written, {some.tasks_modified} tasks",
         f"target < {ONE_PERCENT_TARGET:.0f} s", some.seconds < ONE_PERCENT_TARGET),
        ("real-time rename", f"median {statistics.median(delays):.3f} s",
         f"max {max(delays):.3f} s", f"target < {REAL_TIME_TARGET:.0f} s",
         max(delays) < REAL_TIME_TARGET),
        ("consistency check", f"{report.seconds:.1f} s",
         f"{report.users} users, {report.tasks} tasks", "informative", True),
    ]
    print("\n| step | time | written | against | met |\n| --- | ---: | ---: | --- | --- |")
    for step, seconds, written, against, met in rows:
        print(f"| {step} | {seconds} | {written} | {against} | {'yes' if met else 'NO'} |")
    print(f"\ntask rewrite plan: {plan}")
    return 0 if all(row[-1] for row in rows) else 1
