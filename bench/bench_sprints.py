"""The Sprints screen with a 2,000-task active sprint: the list, then its burndown, from key to
redrawn screen, less the bare database calls they made.

Loads one organization with --org-tasks tasks (default 20,000), --sprint-tasks of them
(default 2,000) in its active sprint (day --day of 14, a point stored for every closed day, one
day with scope added), besides --completed completed sprints and one planned one. Then the real
app runs headless at each --sizes, signed in as a plain member, and times:

- list: the Sprints screen's digit key (pressed on the Sprints screen: a fresh one, as the app
  opens it) until its table is drawn with every sprint and, under it, the active sprint's
  burndown chart (the plot rendered after the data arrived): the screen the issue's target is
  about;
- burndown: b on the active sprint until the burndown screen of its own (the bigger chart with
  the task-count switch) is drawn with its chart, for comparison.

The recording (pymongo command monitoring, a recording psycopg pool), the replay of the calls
alone on fresh connections in the same run, the drawn-screen detection (the first screen update
after the result, turned into terminal output as a terminal would cost it) and the key injection
come from bench/bench_board.py. Own share = whole - bare, per repetition; the target (issue 5) is
the list screen's own share (list + burndown drawn together) under 150 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bson import ObjectId

from bench.bench_board import (
    GC,
    RECORDER,
    BenchApp,
    BenchDatabases,
    Call,
    MongoRecorder,
    Replayer,
    _arm,
    _key,
    _until_drawn,
    code_state,
)
from bench.run import BenchTarget
from creatia_tui.config import Locations, Settings
from creatia_tui.data.passwords import hash_password
from creatia_tui.screens.sprint_views import SprintBurndownScreen
from creatia_tui.screens.sprints import SprintsScreen
from creatia_tui.widgets.charts import BurndownPlot

TARGET_MS = 150.0
GROUPS = {"list": ("sprints",), "burndown": ("burndown",)}  # the screens' worker groups
PASSWORD = "bench sprints 42"
EMAIL = "sprint.member@example.com"
UTC = dt.timezone.utc
SPRINT_DAYS = 14


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org-tasks", type=int, default=20_000,
                        help="tasks of the organization (default 20,000)")
    parser.add_argument("--sprint-tasks", type=int, default=2_000,
                        help="tasks of its active sprint (default 2,000)")
    parser.add_argument("--completed", type=int, default=8, help="completed sprints (default 8)")
    parser.add_argument("--day", type=int, default=8,
                        help="the active sprint's day today, 1-14 (default 8)")
    parser.add_argument("--repeat", type=int, default=10, help="measured repetitions an action")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    parser.add_argument("--sizes", default="160x50,80x24", help="terminal sizes, comma-separated")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more repetition of each action with pyinstrument "
                             "(UI thread) and print it")


# ---------------------------------------------------------------- loading
@dataclass
class Loaded:
    organization_id: str
    active_sprint: str
    sprints: int


def load(target: BenchTarget, args: argparse.Namespace) -> Loaded:
    if not 1 <= args.day <= SPRINT_DAYS:
        raise SystemExit(f"--day must be 1-{SPRINT_DAYS}")
    if args.sprint_tasks > args.org_tasks:
        raise SystemExit("--sprint-tasks cannot exceed --org-tasks")
    with target.pg_connect() as conn:
        row = conn.execute(
            "INSERT INTO organizations (name, subdomain, plan) VALUES "
            "('스프린트 벤치 조직', 'sprint-bench', 'pro') RETURNING id::text").fetchone()
        assert row is not None
        org = row[0]
        user = conn.execute(
            "INSERT INTO users (email, encrypted_password, name) VALUES (%s, %s, %s) "
            "RETURNING id::text", (EMAIL, hash_password(PASSWORD), "박지호")).fetchone()
        assert user is not None
        conn.execute(
            "INSERT INTO organization_memberships (user_id, organization_id, role) "
            "VALUES (%s, %s, 'member')", (user[0], org))
    client = target.mongo_client()
    started = time.perf_counter()
    try:
        db = client[target.mongo_db]
        today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        first = today - dt.timedelta(days=args.day - 1)
        sprints: list[dict[str, Any]] = []

        def sprint(n: int, status: str, start: dt.datetime, **fields: Any) -> dict[str, Any]:
            doc = {
                "_id": ObjectId(), "organization_id": org, "milestone_id": None,
                "name": f"스프린트 {n} · 벤치", "goal": "사용자 경험 개선", "status": status,
                "start_date": start,
                "end_date": start + dt.timedelta(days=SPRINT_DAYS - 1, hours=23, minutes=59,
                                                 seconds=59),
                "capacity": {"total_hours": 8000.0, "allocated_hours": 0.0,
                             "available_hours": 8000.0},
                "metrics": {"total_tasks": 0, "completed_tasks": 0, "in_progress_tasks": 0,
                            "todo_tasks": 0, "completion_rate": 0.0, "burndown_data": []},
                "retrospective": {"what_went_well": [], "what_to_improve": [],
                                  "action_items": []},
                "created_at": start, "updated_at": start,
            }
            doc.update(fields)
            sprints.append(doc)
            return doc

        for n in range(1, args.completed + 1):
            start = first - dt.timedelta(days=SPRINT_DAYS * (args.completed + 1 - n))
            sprint(n, "completed", start, completed_at=start + dt.timedelta(days=13),
                   metrics={"total_tasks": 200, "completed_tasks": 180, "completion_rate": 90.0,
                            "completed_hours": 700.0 + 10 * n, "estimated_hours": 800.0,
                            "burndown_data": []})
        # The closed days' points, as the daily worker stores them (scope added on day 3).
        per_task = 4.0
        total = args.sprint_tasks * per_task
        points = []
        for i in range(args.day - 1):
            added = 100 if i == 2 else 0
            remaining = total - i * total / SPRINT_DAYS * 0.9
            points.append({"date": (first + dt.timedelta(days=i)).date().isoformat(),
                           "remaining_hours": round(remaining, 2),
                           "remaining_tasks": int(remaining / per_task),
                           "scope_hours": total, "scope_tasks": args.sprint_tasks,
                           "added_hours": added * per_task, "added_tasks": added})
        active = sprint(args.completed + 1, "active", first, started_at=first,
                        metrics={"total_tasks": 0, "burndown_data": points})
        sprint(args.completed + 2, "planned", first + dt.timedelta(days=SPRINT_DAYS))
        db.sprints.insert_many(sprints)
        active_id = str(active["_id"])
        statuses = ("todo", "in_progress", "review", "done")
        batch: list[dict[str, Any]] = []
        for i in range(args.org_tasks):
            in_sprint = i < args.sprint_tasks
            status = statuses[i % 4]
            batch.append({
                "organization_id": org, "task_id": f"TASK-{i + 1:05d}",
                "title": f"작업 {i + 1} 화면 개선", "description": None, "task_type": "feature",
                "status": status, "priority": "medium", "position": float(i * 1000),
                "assignee_id": None, "assignee_snapshot": None, "estimated_hours": per_task,
                "actual_hours": 1.0 if status == "in_progress" else 0.0,
                "remaining_hours": 3.0 if status == "in_progress" else per_task,
                "time_entries": [], "due_date": None,
                "completed_at": first if status == "done" else None, "tags": [], "labels": [],
                "sprint_id": active_id if in_sprint else None,
                "created_at": first - dt.timedelta(days=1),
                "updated_at": first - dt.timedelta(days=1),
            })
            if len(batch) == 5000:
                db.tasks.insert_many(batch, ordered=False)
                batch = []
        if batch:
            db.tasks.insert_many(batch, ordered=False)
        from creatia_tui.data.sprints import recompute_metrics

        recompute_metrics(db, org, active_id)
    finally:
        client.close()
    print(f"loaded {args.org_tasks:,} tasks ({args.sprint_tasks:,} in the active sprint, day "
          f"{args.day} of {SPRINT_DAYS}) and {len(sprints)} sprints in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    return Loaded(org, active_id, len(sprints))


# ---------------------------------------------------------------- measuring
@dataclass
class Sample:
    whole: float
    bare: float
    mongo_trips: int
    pg_trips: int

    @property
    def own(self) -> float:
        return self.whole - self.bare


RENDERS = {"burndown": 0}


def _install_probe() -> None:
    original = BurndownPlot.render

    def render(self: BurndownPlot) -> Any:
        result = original(self)
        if self.days:
            RENDERS["burndown"] += 1
        return result

    BurndownPlot.render = render  # type: ignore[method-assign]


def _list_drawn(app: BenchApp, sprints: int, renders: int) -> bool:
    screen = app.screen
    if not isinstance(screen, SprintsScreen) or not screen._loaded_once:
        return False
    table = screen.table
    return (table.row_count == sprints and table in screen._compositor.visible_widgets
            and screen.chart is not None and RENDERS["burndown"] > renders)


def _burndown_drawn(app: BenchApp, renders: int) -> bool:
    screen = app.screen
    return (isinstance(screen, SprintBurndownScreen) and screen.chart is not None
            and RENDERS["burndown"] > renders)


def mine(calls: list[Call], action: str) -> list[Call]:
    return [c for c in calls if c.group.startswith(GROUPS[action])]


async def measure_size(target: BenchTarget, loaded: Loaded, size: tuple[int, int],
                       args: argparse.Namespace, home: Path) -> dict[str, list[Sample]]:
    settings = Settings(pg_dsn=target.pg_dsn, mongo_uri=target.mongo_uri,
                        mongo_db=target.mongo_db,
                        locations=Locations.from_env({"CREATIA_HOME": str(home)}))
    dbs = BenchDatabases(settings, mongo_options={"event_listeners": [MongoRecorder()]})
    replayer = Replayer(target)
    app = BenchApp(dbs, email=EMAIL, password=PASSWORD,
                   organization_id=loaded.organization_id, show_latency=False)
    results: dict[str, list[Sample]] = {"list": [], "burndown": []}
    try:
        async with app.run_test(size=size) as pilot:

            async def settle() -> None:
                for _ in range(3):
                    await pilot.pause()
                    busy = [w for w in app.workers if not w.is_finished]
                    if busy:
                        await app.workers.wait_for_complete(busy)
                await pilot.pause()

            deadline = time.perf_counter() + 120
            while app.session is None or app.session.current is None:
                if time.perf_counter() > deadline:
                    raise TimeoutError("sign-in did not finish")
                await pilot.pause(0.05)
            await settle()
            key = app.destination("sprints").key

            async def open_list() -> tuple[float, list[Call], float]:
                renders = RENDERS["burndown"]
                _arm(app, lambda: _list_drawn(app, loaded.sprints, renders))
                RECORDER.start()
                started = time.perf_counter()
                _key(app, key)
                whole = await _until_drawn(app, started)
                await settle()
                return whole, RECORDER.stop(), started

            async def open_burndown() -> tuple[float, list[Call], float]:
                screen = app.screen
                if not isinstance(screen, SprintsScreen):
                    await open_list()
                    screen = app.screen
                assert isinstance(screen, SprintsScreen)
                table = screen.table
                table.move_cursor(row=table.get_row_index(loaded.active_sprint))
                await settle()
                renders = RENDERS["burndown"]
                _arm(app, lambda: _burndown_drawn(app, renders))
                RECORDER.start()
                started = time.perf_counter()
                _key(app, "b")
                whole = await _until_drawn(app, started)
                await settle()
                calls = RECORDER.stop()
                await open_list()  # back to the list, unmeasured
                return whole, calls, started

            for name, action in (("list", open_list), ("burndown", open_burndown)):
                for _ in range(args.warmup):
                    await action()
                if args.profile:
                    from pyinstrument import Profiler

                    profiler = Profiler(async_mode="disabled")
                    profiler.start()
                    await action()
                    profiler.stop()
                    print(profiler.output_text(color=False, unicode=True), flush=True)
                for i in range(args.repeat):
                    whole, calls, _ = await action()
                    own_calls = mine(calls, name)
                    bare = replayer.replay(own_calls)
                    sample = Sample(whole, bare,
                                    sum(1 for c in own_calls if c.kind == "mongo"),
                                    sum(1 for c in own_calls if c.kind == "pg"))
                    results[name].append(sample)
                    print(f"  {size[0]}x{size[1]} {name} {i + 1}/{args.repeat}: whole "
                          f"{whole:.1f} ms, bare {bare:.1f} ms, own {sample.own:.1f} ms, "
                          f"trips mongo {sample.mongo_trips} pg {sample.pg_trips}", flush=True)
    finally:
        replayer.close()
        dbs.close()
    return results


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    print(f"code: {code_state()}", flush=True)
    sizes = []
    for text in args.sizes.split(","):
        width, _, height = text.strip().partition("x")
        sizes.append((int(width), int(height)))
    loaded = load(target, args)
    _install_probe()
    gc.callbacks.append(GC)
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    report = []
    missed = False
    with tempfile.TemporaryDirectory(prefix="creatia-bench-sprints-") as home:
        for size in sizes:
            print(f"measuring at {size[0]}x{size[1]} (load average "
                  f"{os.getloadavg()[0]:.2f})", flush=True)
            results = asyncio.run(measure_size(target, loaded, size, args, Path(home)))
            for name, samples in results.items():
                own = [s.own for s in samples]
                verdict = ""
                if name == "list":
                    verdict = "met" if statistics.median(own) < TARGET_MS else "MISSED"
                    missed |= verdict == "MISSED"
                    verdict = f"< {TARGET_MS:.0f}: {verdict}"
                report.append(
                    f"| {size[0]}x{size[1]} | {name} | "
                    f"{statistics.median(s.whole for s in samples):.1f} | "
                    f"{statistics.median(s.bare for s in samples):.1f} | "
                    f"{statistics.median(own):.1f} | {_p95(own):.1f} | {verdict} | "
                    f"{samples[0].mongo_trips} + {samples[0].pg_trips} |")
    print("\n| size | action | whole ms (median) | bare ms | own ms (median) | own p95 | "
          "target | round trips mongo + pg |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- |")
    print("\n".join(report))
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if missed else 0
