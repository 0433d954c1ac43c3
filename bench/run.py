"""Benchmark runner: ``python bench/run.py NAME [options]``.

Each benchmark runs against fresh, migrated databases: on the servers given with --pg-dsn and
--mongo-uri (the PostgreSQL role needs CREATEDB), or on embedded servers this runner starts in a
temporary folder and stops afterwards. The databases are dropped at the end unless --keep.

A benchmark is a module with ``add_arguments(parser)`` and ``run(args, target) -> int``; add it to
BENCHMARKS to make it a subcommand.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymongo
from psycopg import conninfo

from creatia_tui.data.migrations import migrate_postgres
from creatia_tui.data.mongo_schema import migrate_mongo
from creatia_tui.ops.local_servers import LocalServers

# `python bench/run.py` puts bench/ on sys.path, not the repository root that holds the package.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# name -> module (imported on use, so one benchmark's imports cannot break another)
BENCHMARKS: dict[str, str] = {
    "seed": "bench.bench_seed",
    "audit": "bench.bench_audit",
    "board": "bench.bench_board",
    "sprints": "bench.bench_sprints",
    "backup": "bench.bench_backup",
    "monitor": "bench.bench_monitor",
    "sync": "bench.bench_sync",
}


@dataclass
class BenchTarget:
    """Fresh databases for one benchmark run."""

    pg_dsn: str
    mongo_uri: str
    mongo_db: str
    description: str  # where the servers are, for the report

    def pg_connect(self, autocommit: bool = True) -> psycopg.Connection:
        return psycopg.connect(self.pg_dsn, autocommit=autocommit)

    def mongo_client(self) -> pymongo.MongoClient:
        return pymongo.MongoClient(self.mongo_uri, tz_aware=True)


def _with_dbname(dsn: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


@contextlib.contextmanager
def bench_target(
    pg_dsn: str | None, mongo_uri: str | None, root: str | None, keep: bool,
    mongo_cache_size: str | None = None,
) -> Iterator[BenchTarget]:
    if bool(pg_dsn) != bool(mongo_uri):
        raise SystemExit("Give both --pg-dsn and --mongo-uri, or neither (embedded servers).")
    servers = None
    made_root = None
    if not pg_dsn:
        made_root = None if root else tempfile.mkdtemp(prefix="creatia-bench-")
        folder = Path(root or made_root or ".") / "local"
        print(f"starting embedded servers in {folder}", flush=True)
        servers = LocalServers(folder)
        if mongo_cache_size:
            # secantusd-py reads ./secantusd.toml, and LocalServers starts it in its mongo folder.
            servers.mongo_dir.mkdir(parents=True, exist_ok=True)
            (servers.mongo_dir / "secantusd.toml").write_text(
                f'[storage]\ncache_size = "{mongo_cache_size}"\n', encoding="utf-8")
        state = servers.start()
        pg_dsn, mongo_uri = state.pg_dsn, state.mongo_uri
        cache = mongo_cache_size or "1G (default)"
        description = f"embedded PostgreSQL 18 and SecantusDB (cache {cache}) in {folder}"
    else:
        description = "given servers"
    assert pg_dsn and mongo_uri
    name = f"creatia_bench_{uuid.uuid4().hex[:10]}"
    client: pymongo.MongoClient = pymongo.MongoClient(mongo_uri, tz_aware=True)
    try:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        target = BenchTarget(_with_dbname(pg_dsn, name), mongo_uri, name, description)
        with psycopg.connect(target.pg_dsn, autocommit=True) as conn:
            migrate_postgres(conn)
        migrate_mongo(client[name])
        yield target
    finally:
        try:
            if keep:
                print(f"kept databases: PostgreSQL {name}, MongoDB {name}", flush=True)
            elif servers is None:
                # Given servers: drop what we made. Embedded ones go whole, with their folder
                # (SecantusDB drops a big database row by row: minutes at a million tasks).
                with contextlib.suppress(Exception):
                    client.drop_database(name)
                with contextlib.suppress(Exception), psycopg.connect(
                    pg_dsn, autocommit=True
                ) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            client.close()
        finally:
            if servers is not None and not keep:
                servers.stop()
                if made_root:
                    shutil.rmtree(made_root, ignore_errors=True)
            elif servers is not None:
                print(f"servers left running under {servers.root}", flush=True)

def machine() -> str:
    return (f"{platform.node()}: {os.cpu_count()} cores, {platform.machine()}, "
            f"Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-dsn", default=os.environ.get("CREATIA_BENCH_PG_DSN"))
    parser.add_argument("--mongo-uri", default=os.environ.get("CREATIA_BENCH_MONGO_URI"))
    parser.add_argument("--root", help="folder for the embedded servers (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep databases and servers")
    parser.add_argument("--mongo-cache-size", metavar="SIZE",
                        help="WiredTiger cache of the embedded SecantusDB, e.g. 4G "
                             "(its default, 1G, stalls writes once the data outgrows it)")
    sub = parser.add_subparsers(dest="benchmark", required=True)
    modules = {}
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=(module.__doc__ or "").split("\n")[0]))
    args = parser.parse_args(argv)
    # A plain `kill` should still stop the embedded servers and drop the databases: turn it into
    # SystemExit, which runs the cleanup in bench_target's finally.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))
    started = time.perf_counter()
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')} on {machine()}", flush=True)
    with bench_target(args.pg_dsn, args.mongo_uri, args.root, args.keep,
                      args.mongo_cache_size) as target:
        print(f"target: {target.description}; databases {target.mongo_db}", flush=True)
        code = int(modules[args.benchmark].run(args, target))
    print(f"bench wall time {time.perf_counter() - started:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
