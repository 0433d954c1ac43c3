"""Backup: an encrypted backup of the 1,000,000-task data set against bare pg_dump + raw dumps.

Target (issue 8): ``take_backup`` (pg_dump --format=custom in an exported snapshot with per-table
counts, MongoDB through raw batches with a count and digest per collection, SHA-256 of every
part, tar.gz, gpg AES256, rename, retention) within 1.5x the time of the bare work: the same
pg_dump alone plus every collection's raw batches written to files, run one after the other.
The bare pass runs before and after the backup; the faster of the two is the baseline.

    python bench/run.py --root DIR --keep backup --tasks 1000000     # seed, then measure
    python bench/run.py --pg-dsn ... --mongo-uri ... backup --reuse DB  # a kept data set
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pymongo

from bench.run import BenchTarget, _with_dbname
from creatia_tui.config import Locations, Settings
from creatia_tui.ops.backup import (
    Progress,
    _without_password,
    dump_collections_list,
    find_pg_tool,
    format_size,
    organization_ids,
    pg_child_env,
    pg_server_major,
    raw_batches,
    take_backup,
)
from creatia_tui.secret_store import SecretStore

PASSPHRASE = "bench passphrase 8"
TARGET_RATIO = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reuse", metavar="DB",
                        help="measure the databases an earlier --keep run left (no seed)")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks to seed")
    parser.add_argument("--orgs", type=int, default=200)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--activity", type=int, default=10_000)
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the dumps and the backup are written (removed afterwards)")


def _seed(target: BenchTarget, args: argparse.Namespace) -> None:
    from creatia_tui.ops.seed import SeedOptions, seed

    options = SeedOptions(orgs=args.orgs, users=args.users, tasks=args.tasks,
                          activity=args.activity)
    client = target.mongo_client()
    started = time.perf_counter()
    try:
        with target.pg_connect(autocommit=False) as conn:
            seed(conn, client[target.mongo_db], options,
                 progress=lambda line: print(f"  seed: {line}", flush=True))
    finally:
        client.close()
    print(f"seeded {args.tasks:,} tasks in {time.perf_counter() - started:.0f} s", flush=True)


def bare_pg_dump(settings: Settings, into: Path) -> tuple[float, int]:
    assert settings.pg_dsn
    with psycopg.connect(settings.pg_dsn) as conn:
        major, _ = pg_server_major(conn)
    tool = find_pg_tool("pg_dump", major)
    info, secret = _without_password(settings.pg_dsn, None)
    path = into / "bare.dump"
    started = time.perf_counter()
    with pg_child_env(secret) as env:
        subprocess.run([str(tool.path), "--format=custom", f"--file={path}", f"--dbname={info}"],
                       env=env, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, path.stat().st_size


def bare_raw_dump(target: BenchTarget, into: Path) -> tuple[float, int, int]:
    """Every collection's raw batches written to a file each: no hashing, no counting, no
    compression. The same queries the backup sends (a collection led by organization_id read
    organization by organization: one find over 1M tasks had SecantusDB killed by the OOM
    killer at 22 GB), so the difference is the backup's own work."""
    client = pymongo.MongoClient(target.mongo_uri, tz_aware=True, connectTimeoutMS=60_000)
    size = documents = 0
    started = time.perf_counter()
    try:
        with target.pg_connect() as conn:
            organizations = organization_ids(conn)
        db = client[target.mongo_db]
        for info in dump_collections_list(db):
            name = info["name"]
            indexes = list(db[name].list_indexes())
            with (into / f"{name}.bson").open("wb") as out:
                for batch in raw_batches(db[name], indexes, organizations):
                    out.write(batch)
                    size += len(batch)
            documents += db[name].estimated_document_count()
    finally:
        client.close()
    return time.perf_counter() - started, size, documents


def _bare(settings: Settings, target: BenchTarget, base: Path, label: str) -> dict[str, Any]:
    folder = base / f"bare-{label}"
    folder.mkdir()
    try:
        pg_seconds, pg_size = bare_pg_dump(settings, folder)
        raw_seconds, raw_size, documents = bare_raw_dump(target, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = pg_seconds + raw_seconds
    print(f"bare ({label}): pg_dump {pg_seconds:.1f} s ({format_size(pg_size)}), raw dump of "
          f"{documents:,} documents {raw_seconds:.1f} s ({format_size(raw_size)}, "
          f"{raw_size / raw_seconds / 1e6:.1f} MB/s): {total:.1f} s", flush=True)
    return {"seconds": total, "pg": pg_seconds, "raw": raw_seconds, "raw_size": raw_size,
            "pg_size": pg_size}


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    if args.reuse:
        target = BenchTarget(_with_dbname(target.pg_dsn, args.reuse), target.mongo_uri,
                             args.reuse, f"{target.description}, databases {args.reuse} reused")
    else:
        _seed(target, args)
    base = Path(tempfile.mkdtemp(prefix="creatia-bench-backup-", dir=args.dir))
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    try:
        settings = Settings(pg_dsn=target.pg_dsn, mongo_uri=target.mongo_uri,
                            mongo_db=target.mongo_db,
                            locations=Locations.from_env({"CREATIA_HOME": str(base / "home")}))
        SecretStore(settings.locations.secrets_file).set("backup-passphrase", PASSPHRASE)
        load = os.getloadavg()
        print(f"load average {load[0]:.2f} {load[1]:.2f}; writing under {base}", flush=True)
        before = _bare(settings, target, base, "before")

        phases: dict[str, float] = {}
        started = time.perf_counter()

        def progress(p: Progress) -> None:
            phases.setdefault(p.phase, time.perf_counter() - started)

        result = take_backup(settings, folder=base / "backups", progress=progress)
        seconds = time.perf_counter() - started
        after = _bare(settings, target, base, "after")
        baseline = min(before["seconds"], after["seconds"])
        manifest = result.manifest
        documents = sum(int(c["count"]) for c in manifest["mongo"]["collections"].values())
        parts = sum(int(p["size"]) for p in manifest["parts"].values())
        marks = ", ".join(f"{phase} from {at:.1f} s" for phase, at in phases.items())
        print(f"backup: {seconds:.1f} s ({marks}); {documents:,} documents, "
              f"{format_size(parts)} of parts -> {format_size(result.size)} encrypted archive",
              flush=True)
        print(f"throughput: {parts / seconds / 1e6:.1f} MB/s of dumped data, "
              f"{result.size / seconds / 1e6:.1f} MB/s of archive, "
              f"{documents / seconds:,.0f} documents/s", flush=True)
        ratio = seconds / baseline
        met = ratio <= TARGET_RATIO
        print(f"backup / bare = {seconds:.1f} / {baseline:.1f} s = {ratio:.2f}x "
              f"(target <= {TARGET_RATIO}x): {'met' if met else 'MISSED'}", flush=True)
        return 0 if met else 1
    finally:
        with contextlib.suppress(Exception):
            shutil.rmtree(base, ignore_errors=True)
