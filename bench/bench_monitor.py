"""The Monitor screen's polls against the 1,000,000-task data set.

Three targets (issue 6):

1. PostgreSQL part of a poll (pooled connection, SELECT 1, permission check, every statement of
   ops/monitor.py) under 50 ms of wall time: median and p95 of --repeat polls, fast polls
   (every 2 s) and full ones (sizes and statistics, every 10 s) measured apart.
2. MongoDB part of a poll within 1.2x the bare commands it sends: the same commands (ping,
   serverStatus, currentOp, profile, system.profile; and for a full poll dbStats,
   listCollections, collStats and $indexStats per collection) replayed with the bare pymongo
   client, interleaved with the monitor's own calls in the same run; ratio of the medians.
3. Client CPU at the default 2 s interval under 5 % of one core: the real app, headless, signed
   in and left on the Monitor screen for --seconds; process CPU time (all threads: Textual,
   workers, pymongo's monitors, the status line) over wall time.

Use --reuse DB with --pg-dsn/--mongo-uri to measure a data set a ``seed`` run kept (the fresh
databases the runner makes are then unused); without it a smaller set is seeded here (--tasks).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pymongo
from psycopg import conninfo

from bench.run import BenchTarget
from creatia_tui.config import Locations, Settings
from creatia_tui.data import monitor as service
from creatia_tui.data.access import Actor
from creatia_tui.data.db import Databases
from creatia_tui.data.passwords import hash_password
from creatia_tui.data.users import get_user
from creatia_tui.ops.monitor import (
    CURRENT_OP,
    METADATA_SIZED,
    SERVER_STATUS,
    SLOW_STATEMENT_MS,
)

PG_TARGET_MS = 50.0
MONGO_TARGET_RATIO = 1.2
CPU_TARGET = 0.05
BENCH_EMAIL = "bench-monitor@example.com"
BENCH_PASSWORD = "bench monitor 9"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reuse", metavar="DB", help="measure this kept database instead")
    parser.add_argument("--tasks", type=int, default=50_000,
                        help="tasks to seed when not --reuse (default 50,000)")
    parser.add_argument("--repeat", type=int, default=60, help="polls per measurement")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="how long the app runs for the CPU measurement (default 60)")
    parser.add_argument("--measure-sizes", action="store_true",
                        help="also time one on-request sizes read (dbStats and collStats: "
                             "minutes on SecantusDB at a million tasks, holding the server)")


def _with_dbname(dsn: str, name: str) -> str:
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = name
    return conninfo.make_conninfo("", **params)


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"median {statistics.median(ordered):6.1f} ms  p95 {p95:6.1f} ms  "
            f"max {ordered[-1]:6.1f} ms")


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def bench_user(pg_dsn: str) -> tuple[str, str]:
    """(user id, organization id) of an owner made for the bench in the biggest organization."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        org = conn.execute(
            "SELECT organization_id::text FROM organization_memberships "
            "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1").fetchone()
        assert org, "the database has no organization: seed it first"
        row = conn.execute("SELECT id::text FROM users WHERE email = %s", (BENCH_EMAIL,)).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO users (email, encrypted_password, name) VALUES (%s, %s, '벤치') "
                "RETURNING id::text", (BENCH_EMAIL, hash_password(BENCH_PASSWORD))).fetchone()
            assert row
            conn.execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role) "
                "VALUES (%s, %s, 'owner') ON CONFLICT DO NOTHING", (row[0], org[0]))
        return row[0], org[0]


def bare_mongo_commands(client: pymongo.MongoClient, probe: pymongo.MongoClient, name: str,
                        full: bool, sizes: bool) -> None:
    """What sample_mongo sends, with nothing of ours around it (``sizes``: whether it sends
    dbStats and collStats, i.e. whether the server is a real mongod/mongos)."""
    db = client[name]
    probe.admin.command("ping")
    client.admin.command(SERVER_STATUS)
    client.admin.command(CURRENT_OP)
    db.command("profile", -1)
    list(db["system.profile"].find({"millis": {"$gte": SLOW_STATEMENT_MS}},
                                   {"ts": 1, "op": 1, "ns": 1, "millis": 1, "command": 1})
         .sort("ts", -1).limit(10))
    if full:
        if sizes:
            db.command("dbStats")
        for collection in sorted(n for n in db.list_collection_names()
                                 if not n.startswith("system.")):
            if sizes:
                db.command("collStats", collection)
            list(db[collection].aggregate([{"$indexStats": {}}]))


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    pg_dsn, mongo_db = target.pg_dsn, target.mongo_db
    if args.reuse:
        pg_dsn, mongo_db = _with_dbname(target.pg_dsn, args.reuse), args.reuse
    else:
        from creatia_tui.ops.seed import SeedOptions, seed

        client: pymongo.MongoClient = target.mongo_client()
        with psycopg.connect(pg_dsn) as conn:
            seed(conn, client[mongo_db], SeedOptions(orgs=20, users=400, tasks=args.tasks,
                                                     activity=args.tasks // 5))
        client.close()
    user_id, org_id = bench_user(pg_dsn)
    settings = Settings(pg_dsn=pg_dsn, mongo_uri=target.mongo_uri, mongo_db=mongo_db,
                        locations=Locations.from_env({}))
    ok = True
    with Databases(settings) as dbs:
        with dbs.pg() as conn:
            user = get_user(conn, user_id)
        assert user is not None
        actor = Actor(user, org_id)
        with dbs.pg() as conn:
            tasks = dbs.mongo["tasks"].estimated_document_count()
            size = conn.execute("SELECT pg_size_pretty(pg_database_size(current_database()))"
                                " AS s").fetchone()
        print(f"data: {tasks:,} tasks in MongoDB {mongo_db}; PostgreSQL database "
              f"{size['s'] if size else '?'}", flush=True)

        # 1. PostgreSQL part: what poll_databases does before MongoDB.
        def pg_part(full: bool) -> None:
            with dbs.pg() as conn:
                conn.execute("SELECT 1")
                service.read_postgres(conn, actor, full=full)

        for full in (False, True):
            pg_part(full)  # warm the pool and the plans
            samples = [timed(lambda full=full: pg_part(full)) for _ in range(args.repeat)]
            median = statistics.median(samples)
            verdict = "meets" if median < PG_TARGET_MS else "MISSES"
            ok &= median < PG_TARGET_MS
            print(f"PostgreSQL part, {'full' if full else 'fast'} poll: {summary(samples)}  "
                  f"({verdict} < {PG_TARGET_MS:.0f} ms)", flush=True)

        # 2. MongoDB part against the bare commands, interleaved.
        bare_client: pymongo.MongoClient = pymongo.MongoClient(target.mongo_uri, tz_aware=True)
        bare_probe: pymongo.MongoClient = pymongo.MongoClient(target.mongo_uri, maxPoolSize=1)

        def mongo_part(full: bool) -> None:
            dbs.check_mongo()
            service.read_mongo(dbs.mongo, full=full)

        process = str(bare_client.admin.command("serverStatus").get("process", ""))
        sizes = os.path.basename(process).removesuffix(".exe") in METADATA_SIZED
        print(f"server process {process!r}: sizes {'in' if sizes else 'not in'} polls", flush=True)

        try:
            for full in (False, True):
                mongo_part(full)
                bare_mongo_commands(bare_client, bare_probe, mongo_db, full, sizes)
                ours: list[float] = []
                bare: list[float] = []
                for _ in range(args.repeat if not full else max(5, args.repeat // 4)):
                    ours.append(timed(lambda full=full: mongo_part(full)))
                    bare.append(timed(lambda full=full: bare_mongo_commands(
                        bare_client, bare_probe, mongo_db, full, sizes)))
                ratio = statistics.median(ours) / statistics.median(bare)
                verdict = "meets" if ratio <= MONGO_TARGET_RATIO else "MISSES"
                ok &= ratio <= MONGO_TARGET_RATIO
                kind = "full" if full else "fast"
                print(f"MongoDB part, {kind} poll: ours {summary(ours)}", flush=True)
                print(f"  bare commands, {kind}:   {summary(bare)}", flush=True)
                print(f"  ratio of medians {ratio:.2f} ({verdict} <= {MONGO_TARGET_RATIO})",
                      flush=True)
        finally:
            bare_client.close()
            bare_probe.close()

        if args.measure_sizes:
            elapsed = timed(lambda: service.read_mongo(dbs.mongo, full=True, sizes=True))
            print(f"on-request sizes read (dbStats, collStats of every collection): "
                  f"{elapsed / 1000:.1f} s", flush=True)

        # 3. Client CPU of the whole app at the default interval.
        cpu_share = asyncio.run(app_cpu(dbs, org_id, args.seconds))
        verdict = "meets" if cpu_share < CPU_TARGET else "MISSES"
        ok &= cpu_share < CPU_TARGET
        print(f"client CPU on the Monitor screen at the default 2 s interval: "
              f"{cpu_share * 100:.1f} % of one core over {args.seconds:.0f} s "
              f"({verdict} < {CPU_TARGET * 100:.0f} %)", flush=True)
    return 0 if ok else 1


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def app_cpu(dbs: Databases, org_id: str, seconds: float) -> float:
    from creatia_tui.app import CreatiaApp
    from creatia_tui.screens.monitor import MonitorScreen

    app = CreatiaApp(dbs, email=BENCH_EMAIL, password=BENCH_PASSWORD, organization_id=org_id)
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if app.session is not None and app.session.current is not None:
                break
        await pilot.press("9")
        for _ in range(100):
            await pilot.pause(0.1)
            screen = app.screen
            if isinstance(screen, MonitorScreen) and screen.polls:
                break
        screen = app.screen
        assert isinstance(screen, MonitorScreen), "the Monitor screen did not open"
        await pilot.pause(3)  # past the sign-in and the first full poll
        cpu, wall, polls = _cpu_seconds(), time.perf_counter(), screen.polls
        await pilot.pause(seconds)
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
        print(f"  {screen.polls - polls} polls, {screen.skipped} ticks skipped, last poll "
              f"{screen.last.wall_ms if screen.last else 0:.0f} ms wall, "
              f"{screen.last.cpu_ms if screen.last else 0:.0f} ms CPU", flush=True)
    return cpu / wall
