"""The seed at scale, against the server's bare write rate for the same documents.

One run seeds the target, then replays a sample of the seed's own documents (its generators, the
same options) into a scratch database through a bare ``insert_many(ordered=False)`` under the
conditions the seed's load had: the same validator, and for bulk-loaded collections no secondary
indexes and the validator bypassed (the seed checks it on the first batch only). The ratio seed
rate / bare rate says what the seed's generation and batching cost on top of the server; target
>= 80 %. The target for the whole 1,000,000-task set is under 10 minutes.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import bson
import pymongo
from bson.raw_bson import RawBSONDocument
from pymongo.database import Database

from bench.run import BenchTarget
from creatia_tui.data.mongo_schema import load_collection_specs
from creatia_tui.ops.seed import (
    BATCH_SIZES,
    BULK_THRESHOLDS,
    SeedOptions,
    SeedPlan,
    SeedReport,
    bulk_collections,
    seed,
)

RATIO_TARGET = 0.8
WALL_TARGET_SECONDS = 600
PROJECTED_ACTIVITY = 5_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SeedOptions()
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--activity", type=int, default=100_000)
    parser.add_argument("--sprints-per-org", type=int, default=defaults.sprints_per_org)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--sample", type=int, default=50_000,
                        help="documents per collection for the bare insert (default 50,000)")


class Progress:
    """Counting lines at most every few seconds; every other line as it comes."""

    def __init__(self, every: float = 10.0) -> None:
        self.started = time.perf_counter()
        self.every = every
        self.last = 0.0

    def __call__(self, line: str) -> None:
        now = time.perf_counter()
        counting = "/" in line and line.split(" ")[0] in (
            "user_snapshots", "tasks", "activity_logs")
        if counting and now - self.last < self.every and not _finished(line):
            return
        self.last = now
        print(f"  [{now - self.started:7.1f} s] {line}", flush=True)


def _finished(line: str) -> bool:
    done, _, total = line.rpartition(" ")[2].partition("/")
    return done == total


def _scratch_collection(db: Database, name: str, bulk: bool) -> pymongo.collection.Collection:
    """A collection like the seed's during its load: validator, and indexes unless bulk."""
    spec = next(s for s in load_collection_specs() if s.name == name)
    db.drop_collection(name)
    db.create_collection(name, validator=spec.validator, validationLevel="strict",
                         validationAction="error")
    if not bulk:
        for index in spec.indexes:
            if not index.optional:
                db[name].create_index(index.key, name=index.name, **index.options)
    return db[name]


def _bare_rate(db: Database, name: str, docs: list[dict[str, Any]], bulk: bool,
               validate: bool | None = None) -> float:
    """The bare driver call on the documents, in one insert_many (the driver splits it)."""
    collection = _scratch_collection(db, name, bulk)
    bypass = bulk if validate is None else not validate
    started = time.perf_counter()
    collection.insert_many(docs, ordered=False, bypass_document_validation=bypass)
    seconds = time.perf_counter() - started
    db.drop_collection(name)
    return len(docs) / seconds


def _floor_rate(db: Database, name: str, docs: list[dict[str, Any]], bulk: bool) -> float:
    """The server alone: documents encoded beforehand, sent in the seed's batches and mode.

    The bare driver call above encodes while the server waits; the seed encodes on another
    thread, so it can beat that call. This rate has no client cost at all: the seed's ceiling.
    """
    collection = _scratch_collection(db, name, bulk)
    raw = [RawBSONDocument(bson.encode(doc)) for doc in docs]
    size = BATCH_SIZES[name]
    started = time.perf_counter()
    for start in range(0, len(raw), size):
        collection.insert_many(raw[start:start + size], ordered=False,
                               bypass_document_validation=bulk and start > 0)
    seconds = time.perf_counter() - started
    db.drop_collection(name)
    return len(docs) / seconds


def _sample(documents: Callable[[], Iterator[dict[str, Any]]], size: int
            ) -> tuple[list[dict[str, Any]], float]:
    started = time.perf_counter()
    docs = list(itertools.islice(documents(), size))
    seconds = time.perf_counter() - started
    return docs, (seconds / len(docs) * 1e6 if docs else 0.0)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _index_cost_per_document(report: SeedReport) -> float:
    """Seconds per (document x secondary index) of the rebuild after a bulk load."""
    seconds = report.timings.get("indexes", 0.0)
    specs = {s.name: s for s in load_collection_specs()}
    counts = {"user_snapshots": report.snapshots, "tasks": report.tasks,
              "activity_logs": report.activity_logs}
    units = sum(
        counts[name] * sum(1 for ix in specs[name].indexes if not ix.optional)
        for name in report.bulk_collections
    )
    return seconds / units if units else 0.0


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    options = SeedOptions(orgs=args.orgs, users=args.users, tasks=args.tasks,
                          activity=args.activity, sprints_per_org=args.sprints_per_org,
                          seed=args.seed)
    print(f"seed: {options.orgs} orgs, {options.users} users, {options.tasks} tasks, "
          f"{options.activity} activity logs, seed {options.seed}", flush=True)
    client = target.mongo_client()
    try:
        # Bare rates first, on the fresh server: after a large seed, SecantusDB's TTL sweeper
        # reads the whole activity_logs collection every minute and would slow them down.
        print("measuring bare insert rates on a scratch database", flush=True)
        bare = measure_bare(client, target.mongo_db, options, bulk_collections(options),
                            args.sample)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"seeding (peak RSS {peak_rss_mb:.0f} MB so far, with the bare samples)",
              flush=True)
        with target.pg_connect() as conn:
            report = seed(conn, client[target.mongo_db], options, Progress())
        peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    finally:
        client.close()
    print_report(options, report, bare, peak_rss_mb)
    return 0


def measure_bare(client: pymongo.MongoClient, db_name: str, options: SeedOptions,
                 bulk_names: list[str], sample: int) -> dict[str, dict[str, float]]:
    scratch = client[f"{db_name}_scratch"]
    plan = SeedPlan(options)
    results: dict[str, dict[str, float]] = {}
    try:
        generators: list[tuple[str, Callable[[], Iterator[dict[str, Any]]]]] = [
            ("user_snapshots", plan.snapshot_documents),
            ("tasks", plan.task_documents),  # also fills the task index the activity pass reads
            ("activity_logs", plan.activity_documents),
        ]
        for name, documents in generators:
            docs, generate_us = _sample(documents, sample)
            if not docs:
                continue
            bulk = name in bulk_names
            entry = {"sample": float(len(docs)), "generate_us": generate_us,
                     "bare": _bare_rate(scratch, name, docs, bulk),
                     "floor": _floor_rate(scratch, name, docs, bulk)}
            if bulk:
                # What the load would get with the validator checked on every document.
                entry["bare_validated"] = _bare_rate(scratch, name, docs, bulk, validate=True)
            elif name == "activity_logs":
                # The ceiling a 5,000,000-log load would see (it is over the bulk threshold).
                entry["floor_bulk"] = _floor_rate(scratch, name, docs, True)
            results[name] = entry
            print(f"  bare {name}: {len(docs)} documents, driver call {entry['bare']:.0f} docs/s,"
                  f" server alone {entry['floor']:.0f} docs/s", flush=True)
    finally:
        client.drop_database(scratch.name)
    return results


def print_report(options: SeedOptions, report: SeedReport, bare: dict[str, dict[str, float]],
                 peak_rss_mb: float) -> None:
    rows = [
        ("user_snapshots", report.snapshots),
        ("tasks", report.tasks),
        ("sprints", report.sprints),
        ("activity_logs", report.activity_logs),
    ]
    print()
    print(f"{'phase':<16}{'documents':>11}{'seconds':>9}{'docs/s':>9}{'bare docs/s':>13}"
          f"{'ratio':>7}{'server docs/s':>15}{'ratio':>7}  mode")
    for name, count in rows:
        seconds = report.timings.get(name, 0.0)
        rate = _rate(count, seconds)
        entry = bare.get(name)
        mode = "bulk" if name in report.bulk_collections else "indexed"
        if entry:
            ratio, floor_ratio = rate / entry["bare"], rate / entry["floor"]
            flag = "" if min(ratio, floor_ratio) >= RATIO_TARGET else "  < 80 %"
            print(f"{name:<16}{count:>11,}{seconds:>9.1f}{rate:>9.0f}{entry['bare']:>13.0f}"
                  f"{ratio:>7.0%}{entry['floor']:>15.0f}{floor_ratio:>7.0%}  {mode}{flag}")
        else:
            print(f"{name:<16}{count:>11,}{seconds:>9.1f}{rate:>9.0f}{'':>42}  {mode}")
    if "indexes" in report.timings:
        print(f"{'index rebuild':<16}{'':>11}{report.timings['indexes']:>9.1f}"
              f"{'':>51}  {', '.join(report.bulk_collections)}")
    pg_rows = sum(report.pg_rows.values())
    pg_seconds = report.timings.get("postgres", 0.0)
    pg_rate = _rate(pg_rows, pg_seconds)
    print(f"{'postgres COPY':<16}{pg_rows:>11,}{pg_seconds:>9.1f}{pg_rate:>9.0f}"
          f"{'':>42}  rows/s, beside the MongoDB load")
    verdict = "under" if report.seconds < WALL_TARGET_SECONDS else "OVER"
    print(f"{'total wall':<16}{'':>11}{report.seconds:>9.1f}   "
          f"({verdict} the {WALL_TARGET_SECONDS // 60}-minute target); "
          f"peak RSS {peak_rss_mb:.0f} MB")
    print()
    print("PostgreSQL rows: " + ", ".join(f"{t} {n:,}" for t, n in report.pg_rows.items()))
    print("phase seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items()))
    for name, entry in bare.items():
        extra = ""
        if "bare_validated" in entry:
            extra = f", bare with the validator on every document {entry['bare_validated']:.0f}/s"
        print(f"{name}: generate+sample {entry['generate_us']:.1f} us/doc in Python{extra}")
    project_activity(report, bare)


def project_activity(report: SeedReport, bare: dict[str, dict[str, float]]) -> None:
    """What PROJECTED_ACTIVITY logs would take, from this run's measured rates."""
    entry = bare.get("activity_logs")
    if not entry:
        return
    if "activity_logs" in report.bulk_collections:
        load_rate = _rate(report.activity_logs, report.timings["activity_logs"])
        basis = "this run's bulk activity rate"
    else:
        # The bulk ceiling, times what this run's own loads achieved of their ceilings.
        achieved = [
            _rate(count, report.timings[name]) / bare[name]["floor"]
            for name, count in (("tasks", report.tasks), ("activity_logs", report.activity_logs))
            if name in bare
        ]
        ratio = min(1.0, min(achieved))
        load_rate = entry["floor_bulk"] * ratio
        basis = f"bulk ceiling {entry['floor_bulk']:.0f}/s x {ratio:.0%} achieved"
    per_index = _index_cost_per_document(report) or 0.035e-3
    specs = {s.name: s for s in load_collection_specs()}
    indexes = sum(1 for ix in specs["activity_logs"].indexes if not ix.optional)
    load = PROJECTED_ACTIVITY / load_rate
    rebuild = PROJECTED_ACTIVITY * indexes * per_index
    print(f"projected {PROJECTED_ACTIVITY:,} activity logs: load {load:.0f} s ({basis}) + "
          f"{indexes} index rebuilds {rebuild:.0f} s ({per_index * 1e6:.1f} us per document "
          f"and index) = {(load + rebuild) / 60:.1f} min; bulk threshold "
          f"{BULK_THRESHOLDS['activity_logs']:,}")
