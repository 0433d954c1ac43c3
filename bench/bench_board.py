"""The kanban board at scale: open, move a card, search, from key to redrawn screen.

Loads --tasks tasks (default 1,000,000) with the seed in bulk mode; the seed's first organization
is given enough tasks that exactly --org-open of them (default 10,000) are open (todo,
in_progress, review) and the rest done: the seed spreads the other tasks over the other
organizations, then a few statuses in the big organization are flipped to hit the number.

Then the real app runs headless (``App.run_test``) at each --sizes, signed in as a plain member
of that organization, and times from the key to the redrawn screen:

- open: the board's digit key (pressed on the board: a fresh BoardScreen, as the app opens it)
  until the loaded columns are drawn;
- move: ``>`` on the first todo card until the card is drawn in In progress;
- search: enter in the search line (``/``) until the matching cards are drawn, cycling through
  the --search texts (a Korean substring among them).

"Drawn" is the first screen update (Screen._compositor_refresh -> App._display) after the
board applied the result in which the new cards are in the compositor's visible widgets; the
headless driver skips turning that update into terminal escapes, so the bench does that step
too (CompositorUpdate.render_segments), as a terminal would cost it.

Every MongoDB command (pymongo command monitoring) and PostgreSQL round trip (a recording
psycopg connection in the pool: statements, BEGIN, COMMIT) the action's board workers made is
recorded, then replayed alone on fresh connections to the same servers, in the same run: that is
the "bare" time. A move is replayed on the state it found (the task's status, position,
updated_at and completed_at are put back first, untimed), so its optimistic update matches and
writes again; the activity document gets a new _id. Own share = whole - bare, per repetition.
The live feed (a change stream the board opens once its first load is drawn), the saved
filters and the status line run in their own workers, off the path from key to screen: their
calls are counted apart.

Targets (issue 4): own share under 100 ms to open, 30 ms to move, 100 ms to search; round
trips to open no more than one per visible column; every board and search query on the tasks
collection on an index (explain shows no COLLSCAN).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import datetime as dt
import gc
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymongo
from bson import ObjectId
from pymongo import monitoring
from textual import events
from textual._compositor import CompositorUpdate
from textual.widgets import Input
from textual.worker import WorkerCancelled, active_worker

import creatia_tui.ops.seed as seed_module
from bench.bench_seed import Progress
from bench.run import BenchTarget, _with_dbname
from creatia_tui.app import CreatiaApp
from creatia_tui.config import Locations, Settings
from creatia_tui.data.board import BoardService
from creatia_tui.data.db import Databases, pg_conninfo_for
from creatia_tui.data.models import OPEN_TASK_STATUSES, TASK_STATUSES
from creatia_tui.ops.seed import SeedOptions, SeedPlan, seed
from creatia_tui.screens.board import BoardScreen
from creatia_tui.widgets.task_card import CARD_ROWS, TaskColumn

TARGETS_MS = {"open": 100.0, "move": 30.0, "search": 100.0}
# Workers of the board that stand between a key and the redrawn screen. Not among them, so
# counted beside ("side") like the live feed: "board-freshness", the snapshot freshness check
# each load starts once its cards are drawn (issue 7), and "board-feed".
BOARD_GROUPS = ("board-load", "board-write", "board-more-")
OPEN_SHARE = 0.62  # the seed's share of open tasks (30 % todo, 20 % in progress, 12 % review)
TIMEOUT = 120.0
NO_MATCH = "zz-no-such-task-zz"
READS = ("aggregate", "find", "count", "distinct")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", type=int, default=1_000_000, help="tasks in all (default 1M)")
    parser.add_argument("--org-open", type=int, default=10_000,
                        help="open tasks of the measured organization (default 10,000)")
    parser.add_argument("--orgs", type=int, default=200, help="organizations (default 200)")
    parser.add_argument("--users", type=int, default=20_000, help="people (default 20,000)")
    parser.add_argument("--activity", type=int, default=10_000,
                        help="activity logs (default 10,000: SecantusDB's TTL sweeper reads the "
                             "whole collection under its global lock every few minutes)")
    parser.add_argument("--seed", type=int, default=SeedOptions().seed)
    parser.add_argument("--repeat", type=int, default=15, help="measured repetitions an action")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    parser.add_argument("--sizes", default="160x50,80x24", help="terminal sizes, comma-separated")
    parser.add_argument("--search", default="대시보드,webhook,TASK-0042",
                        help="search texts, comma-separated (cycled)")
    parser.add_argument("--search-from", choices=("board", "empty"), default="board",
                        help="board: each search replaces the last one's cards; empty: each "
                             "follows a search that found nothing (unmeasured)")
    parser.add_argument("--reuse", metavar="DB",
                        help="measure the databases an earlier --keep run left on the servers "
                             "given with --pg-dsn/--mongo-uri (no load; the runner's own fresh "
                             "databases stay empty)")
    parser.add_argument("--profile", action="store_true",
                        help="profile one more repetition of each action with pyinstrument "
                             "(UI thread) and print it")


# ---------------------------------------------------------------- loading
class _BoardPlan(SeedPlan):
    """The seed's plan with its first organization holding `big_tasks` tasks."""

    big_tasks = 0

    def _plan_orgs(self, rng: Any) -> None:
        super()._plan_orgs(rng)
        others = self.orgs[1:]
        rest = self.options.tasks - self.big_tasks
        weights = [max(org.task_count, 1) for org in others]
        scale = rest / sum(weights) if others else 0.0
        counts = [int(w * scale) for w in weights]
        for i in range(rest - sum(counts)):
            counts[i % len(counts)] += 1
        self.orgs[0].task_count = self.big_tasks
        for org, count in zip(others, counts, strict=True):
            org.task_count = count


@contextlib.contextmanager
def _big_first_org(tasks: int) -> Iterator[None]:
    """seed() builds its SeedPlan by name: give it the plan above for the call."""
    _BoardPlan.big_tasks = tasks
    original = seed_module.SeedPlan
    seed_module.SeedPlan = _BoardPlan  # type: ignore[misc]
    try:
        yield
    finally:
        seed_module.SeedPlan = original  # type: ignore[misc]


@dataclass
class Member:
    organization_id: str
    organization_name: str
    user_id: str
    email: str
    name: str
    counts: dict[str, int]


def load(target: BenchTarget, args: argparse.Namespace) -> Member:
    """Seed the target (or, with --reuse, find what an earlier run left) and pick a member."""
    client = target.mongo_client()
    try:
        db = client[target.mongo_db]
        if not args.reuse:
            _seed(target, db, args)
        with target.pg_connect() as conn:
            # The seed plans its first organization first; FIRST_ORGS[0] names it.
            org_id, org_name = conn.execute(
                "SELECT id::text, name FROM organizations WHERE subdomain = %s",
                (seed_module.FIRST_ORGS[0][1],),
            ).fetchone() or ("", "")
            row = conn.execute(
                "SELECT u.id::text, u.email, coalesce(u.name, u.email) "
                "FROM organization_memberships m JOIN users u ON u.id = m.user_id "
                "WHERE m.organization_id = %s AND m.active AND u.active AND m.role = 'member' "
                "ORDER BY u.email LIMIT 1",
                (org_id,),
            ).fetchone()
        if row is None:
            raise SystemExit("the measured organization has no active plain member")
        if args.reuse:
            counts = {s: db.tasks.count_documents({"organization_id": org_id, "status": s})
                      for s in TASK_STATUSES}
        else:
            counts = _exact_open(db, org_id, args.org_open)
        total = db.tasks.estimated_document_count()
    finally:
        client.close()
    member = Member(org_id, org_name, row[0], row[1], row[2], counts)
    print(f"measured organization {org_name} ({org_id}) of {total:,} tasks: "
          + ", ".join(f"{s} {n:,}" for s, n in counts.items())
          + f"; signed in as {member.name} <{member.email}> (role member)", flush=True)
    return member


def _seed(target: BenchTarget, db: Any, args: argparse.Namespace) -> None:
    big = round((args.org_open - 3) / OPEN_SHARE) + 4  # the first 4 tasks: one per column
    if args.orgs < 2 or big >= args.tasks:
        raise SystemExit(f"--tasks {args.tasks} cannot hold an organization with "
                         f"{args.org_open} open tasks ({big} tasks) and others beside it")
    options = SeedOptions(orgs=args.orgs, users=args.users, tasks=args.tasks,
                          activity=args.activity, seed=args.seed)
    print(f"seed: {options.tasks:,} tasks over {options.orgs} organizations (the first: {big:,}"
          f" tasks), {options.users:,} users, {options.activity:,} activity logs", flush=True)
    started = time.perf_counter()
    with _big_first_org(big), target.pg_connect() as conn:
        report = seed(conn, db, options, Progress())
    print(f"seeded in {time.perf_counter() - started:.1f} s "
          f"(phases: {', '.join(f'{k} {v:.1f}' for k, v in report.timings.items())})",
          flush=True)


def _exact_open(db: Any, org_id: str, wanted: int) -> dict[str, int]:
    """Flip todo <-> done tasks until exactly `wanted` are open; returns the counts by status."""
    counts = {s: db.tasks.count_documents({"organization_id": org_id, "status": s})
              for s in TASK_STATUSES}
    gap = wanted - sum(counts[s] for s in OPEN_TASK_STATUSES)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    source, to = ("done", "todo") if gap > 0 else ("todo", "done")
    if gap:
        end = db.tasks.find_one({"organization_id": org_id, "status": to}, {"position": 1},
                                sort=[("position", -1)])
        base = float(end["position"]) if end else 0.0
        ids = [d["_id"] for d in db.tasks.find(
            {"organization_id": org_id, "status": source}, {"_id": 1},
            sort=[("position", -1)], limit=abs(gap))]
        db.tasks.bulk_write([
            pymongo.UpdateOne(
                {"_id": oid, "organization_id": org_id},
                {"$set": {"status": to, "position": base + 1000.0 * (i + 1),
                          "completed_at": now if to == "done" else None}},
            )
            for i, oid in enumerate(ids)
        ], ordered=False)
        counts[source] -= len(ids)
        counts[to] += len(ids)
        print(f"  flipped {len(ids)} {source} tasks to {to}", flush=True)
    return counts


# ---------------------------------------------------------------- recording the calls
@dataclass
class Call:
    kind: str  # "mongo" or "pg"
    group: str  # the Textual worker group that made it ("" outside a worker)
    name: str  # command name, or BEGIN/COMMIT/SELECT...
    payload: Any  # the command document, or (query, params), or the command text
    ms: float | None = None  # mongo: the driver's duration
    at: float = field(default_factory=time.perf_counter)  # when it was sent
    end: float | None = None  # when its answer was in (mongo, pg statements)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.active = False
        self.lock = threading.Lock()
        self.pending: dict[int, Call] = {}

    def start(self) -> None:
        with self.lock:
            self.calls, self.pending, self.active = [], {}, True

    def stop(self) -> list[Call]:
        with self.lock:
            self.active = False
            return list(self.calls)

    def add(self, call: Call, request_id: int | None = None) -> None:
        with self.lock:
            if self.active:
                self.calls.append(call)
                if request_id is not None:
                    self.pending[request_id] = call


RECORDER = Recorder()


class GcPauses:
    """Garbage-collector pauses (they stop every thread) while an action is measured."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float]] = []  # (generation, at, ms)
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            now = time.perf_counter()
            self.pauses.append((int(info.get("generation", -1)), self._started,
                                (now - self._started) * 1000))
            self._started = None

    def between(self, start: float, end: float) -> list[tuple[int, float, float]]:
        return [p for p in self.pauses if start <= p[1] <= end]


GC = GcPauses()


def _group() -> str:
    worker = active_worker.get(None)
    return str(worker.group) if worker is not None else ""


class MongoRecorder(monitoring.CommandListener):
    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if not RECORDER.active:
            return
        command = {k: v for k, v in event.command.items()
                   if k not in ("lsid", "txnNumber") and not k.startswith("$")}
        RECORDER.add(Call("mongo", _group(), event.command_name, copy.deepcopy(command)),
                     event.request_id)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        call = RECORDER.pending.pop(event.request_id, None)
        if call is not None:
            call.ms = event.duration_micros / 1000
            call.end = time.perf_counter()

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        RECORDER.pending.pop(event.request_id, None)


class RecordingCursor(psycopg.Cursor):  # type: ignore[type-arg]
    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if not RECORDER.active:
            return super().execute(query, params, **kwargs)
        started = time.perf_counter()
        try:
            return super().execute(query, params, **kwargs)
        finally:
            # Added after the call, so the BEGIN psycopg sends first is listed first.
            word = str(query).lstrip().split(None, 1)[0].upper() if str(query).strip() else "?"
            RECORDER.add(Call("pg", _group(), word, (query, params), at=started,
                              end=time.perf_counter()))


class RecordingConnection(psycopg.Connection):  # type: ignore[type-arg]
    """Records BEGIN/COMMIT/ROLLBACK, which psycopg sends as round trips of their own."""

    def _exec_command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        if RECORDER.active:
            text = command.decode() if isinstance(command, bytes) else str(command)
            RECORDER.add(Call("pg", _group(), text.split(None, 1)[0].upper(), text))
        return super()._exec_command(command, *args, **kwargs)


class BenchDatabases(Databases):
    """The app's Databases with the recording connection in its pool."""

    @property
    def pool(self) -> Any:
        if self._pool is None:
            from psycopg.rows import dict_row
            from psycopg_pool import ConnectionPool

            self._pool = ConnectionPool(
                pg_conninfo_for(self.pg_dsn, self.pg_password),
                connection_class=RecordingConnection,
                min_size=self.pool_min,
                max_size=self.pool_max,
                kwargs={"row_factory": dict_row, "cursor_factory": RecordingCursor},
                name="creatia-pg",
                open=False,
                timeout=5,
            )
            self._pool.open(wait=True)
        return self._pool


def board_calls(calls: list[Call], started: float | None = None,
                whole: float | None = None) -> list[Call]:
    """The board's own calls; given the key's time and the whole time, only those sent
    between the key and the drawn screen (a column fetching its next cards after the draw is
    not part of the action)."""
    mine = [c for c in calls if c.group.startswith(BOARD_GROUPS)]
    if started is not None and whole is not None:
        drawn = started + whole / 1000
        mine = [c for c in mine if c.at <= drawn]
    return mine


def side_calls(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.group.startswith(BOARD_GROUPS)]


# ---------------------------------------------------------------- replay (the bare calls)
class Replayer:
    def __init__(self, target: BenchTarget) -> None:
        self.client = pymongo.MongoClient(target.mongo_uri, tz_aware=True)
        self.db = self.client[target.mongo_db]
        from psycopg.rows import dict_row

        self.pg = psycopg.connect(target.pg_dsn, autocommit=True, row_factory=dict_row)
        self.db.command("ping")

    def close(self) -> None:
        self.client.close()
        self.pg.close()

    def replay(self, calls: list[Call]) -> float:
        """The calls in order, alone; milliseconds. A MongoDB transaction is replayed as one,
        in a session of its own (startTransaction ... commitTransaction)."""
        prepared = [self._prepare(c) for c in calls]
        session = None
        started = time.perf_counter()
        for kind, payload in prepared:
            if kind == "mongo":
                name = next(iter(payload))
                if name in ("commitTransaction", "abortTransaction"):
                    if session is not None:
                        if name == "commitTransaction":
                            session.commit_transaction()
                        else:
                            session.abort_transaction()
                        session.end_session()
                        session = None
                    continue
                if payload.pop("startTransaction", None):
                    session = self.client.start_session()
                    session.start_transaction()
                in_transaction = payload.pop("autocommit", None) is not None
                if in_transaction:
                    payload.pop("readConcern", None)
                    payload.pop("writeConcern", None)
                self.db.command(payload, session=session if in_transaction else None)
            elif kind == "pg-sql":
                query, params = payload
                cur = self.pg.execute(query, params)
                if cur.description is not None:
                    cur.fetchall()
            elif kind == "pg-cmd":
                self.pg.execute(payload)
        elapsed = (time.perf_counter() - started) * 1000
        if session is not None:
            session.end_session()
        return elapsed

    @staticmethod
    def _prepare(call: Call) -> tuple[str, Any]:
        if call.kind == "pg":
            return ("pg-sql", call.payload) if isinstance(call.payload, tuple) \
                else ("pg-cmd", call.payload)
        command = copy.deepcopy(call.payload)
        if call.name == "insert":
            for doc in command.get("documents", []):
                doc["_id"] = ObjectId()  # the app's document is there already
        return "mongo", command


# ---------------------------------------------------------------- the app under measurement
class BenchApp(CreatiaApp):
    """CreatiaApp that notes every screen update and pays for the terminal output."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drawn_check: Callable[[], bool] | None = None
        self.drawn_at: float | None = None
        self.drawn = asyncio.Event()
        self.displays = 0

    def _display(self, screen: Any, renderable: Any) -> None:
        shown = renderable is not None and not self._batch_count
        super()._display(screen, renderable)
        if not shown:
            return
        if self.is_headless and isinstance(renderable, CompositorUpdate):
            renderable.render_segments(self.console)  # what the terminal driver would write
        now = time.perf_counter()
        self.displays += 1
        check = self.drawn_check
        if check is not None and self.drawn_at is None and check():
            self.drawn_at = now
            self.drawn.set()


@dataclass
class BoardProbe:
    """What the board applied, noted by wrapping BoardScreen methods (class-wide)."""

    loads: int = 0
    loaded_at: float = 0.0
    messages: list[tuple[float, str]] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)


PROBE = BoardProbe()


def _install_probe() -> None:
    original_loaded = BoardScreen._loaded
    original_say = BoardScreen.say

    def _loaded(self: BoardScreen, columns: Any, note: Any) -> None:
        original_loaded(self, columns, note)
        PROBE.loads += 1
        PROBE.loaded_at = time.perf_counter()
        PROBE.limits = [len(c.tasks) for c in columns]

    def say(self: BoardScreen, text: str, *, error: bool = False) -> None:
        original_say(self, text, error=error)
        PROBE.messages.append((time.perf_counter(), text))

    BoardScreen._loaded = _loaded  # type: ignore[method-assign]
    BoardScreen.say = say  # type: ignore[method-assign]


def _drawn(screen: BoardScreen, widget: TaskColumn) -> bool:
    """The column is on screen and has drawn its latest change (its lines are in this
    update)."""
    return (widget in screen._compositor.visible_widgets
            and widget.drawn_version == widget.version)


def _columns_drawn(app: BenchApp) -> bool:
    """Every loaded column handed its cards and drawn with them."""
    screen = app.screen
    if not isinstance(screen, BoardScreen):
        return False
    for status, column in screen.columns.items():
        widget = screen._column(status)
        folded = status == "done" and screen.fold_done
        wanted = [] if folded else [t.id for t in column.tasks]
        if [t.id for t in widget.tasks] != wanted or not _drawn(screen, widget):
            return False
    return True


def _card_drawn_in(app: BenchApp, task_id: str, status: str) -> bool:
    screen = app.screen
    if not isinstance(screen, BoardScreen):
        return False
    widget = screen._column(status)
    return _drawn(screen, widget) and any(
        widget.tasks[row].id == task_id for row in widget.visible_rows())


async def _settle(app: BenchApp, pilot: Any) -> None:
    """Board workers done (not the endless live feed), their results applied."""
    for _ in range(3):
        await pilot.pause()
        busy = [w for w in app.workers
                if not w.is_finished and not str(w.group).startswith("board-feed")]
        if busy:
            # A newer load of the same group (a column's next cards) cancels an older one.
            with contextlib.suppress(WorkerCancelled):
                await app.workers.wait_for_complete(busy)
    await pilot.pause()


async def _until_drawn(app: BenchApp, started: float) -> float:
    """Wait (without polling: nothing of the bench runs meanwhile) for the drawn screen."""
    check = app.drawn_check
    try:
        await asyncio.wait_for(app.drawn.wait(), TIMEOUT)
    except asyncio.TimeoutError:
        raise TimeoutError(
            f"the screen was not redrawn within {TIMEOUT:.0f} s: screen "
            f"{type(app.screen).__name__}, {PROBE.loads} loads, {app.displays} updates, "
            f"check {check() if check else None}, "
            f"messages {[m for _, m in PROBE.messages[-3:]]}") from None
    assert app.drawn_at is not None
    app.drawn_check = None
    return (app.drawn_at - started) * 1000


def _arm(app: BenchApp, check: Callable[[], bool]) -> None:
    app.drawn_at = None
    app.drawn.clear()
    app.drawn_check = check


# key -> (Key event key, character) for the measured keys
KEY_EVENTS = {">": ("greater_than_sign", ">"), "enter": ("enter", "\r")}


def _key(app: BenchApp, key: str) -> None:
    """The key as the terminal driver posts it; no Pilot.press, whose waits for idle would
    run inside the measured time (a terminal has none)."""
    name, char = KEY_EVENTS.get(key, (key, key if len(key) == 1 else None))
    event = events.Key(name, char)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)


@dataclass
class Sample:
    whole: float
    bare: float
    mongo_trips: int
    pg_trips: int
    side_mongo: int
    side_pg: int
    calls: list[Call]
    note: str = ""
    # ms: key -> first board call sent; -> last answer in (as the app saw its calls);
    # -> the board applied the result (its message line); -> the screen drawn with it
    phases: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    started: float = 0.0
    gc_ms: float = 0.0  # garbage-collector pauses between the key and the drawn screen
    gc_full_ms: float = 0.0  # of which full (generation 2) collections
    service: float | None = None  # reads: BoardService.load_board alone, same arguments
    everything: list[Call] = field(default_factory=list)  # the side calls too

    @property
    def own(self) -> float:
        return self.whole - self.bare


@dataclass
class SizeResult:
    size: tuple[int, int]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    shape: dict[str, Any] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)
    pipelines: list[dict[str, Any]] = field(default_factory=list)


def _sample(calls: list[Call], started: float, whole: float, bare: float,
            note: str = "") -> Sample:
    mine, side = board_calls(calls, started, whole), side_calls(calls)
    drawn = started + whole / 1000
    phases = (0.0, 0.0, 0.0, whole)
    if mine:
        first = min(c.at for c in mine)
        last = max(c.end or c.at for c in mine)
        applied = next((t for t, _ in PROBE.messages if last <= t <= drawn), drawn)
        phases = ((first - started) * 1000, (last - first) * 1000, (applied - last) * 1000,
                  (drawn - applied) * 1000)
    pauses = GC.between(started, drawn)
    gc_ms = sum(ms for _, _, ms in pauses)
    gc_full_ms = sum(ms for generation, _, ms in pauses if generation == 2)
    return Sample(
        whole, bare,
        sum(1 for c in mine if c.kind == "mongo"), sum(1 for c in mine if c.kind == "pg"),
        sum(1 for c in side if c.kind == "mongo" and c.name != "getMore"),
        sum(1 for c in side if c.kind == "pg"), mine, note, phases, started, gc_ms, gc_full_ms,
        everything=calls,
    )


async def measure_size(target: BenchTarget, member: Member, size: tuple[int, int],
                       args: argparse.Namespace, home: Path) -> SizeResult:
    result = SizeResult(size)
    settings = Settings(pg_dsn=target.pg_dsn, mongo_uri=target.mongo_uri,
                        mongo_db=target.mongo_db,
                        locations=Locations.from_env({"CREATIA_HOME": str(home)}))
    dbs = BenchDatabases(settings, mongo_options={"event_listeners": [MongoRecorder()]})
    replayer = Replayer(target)
    app = BenchApp(dbs, email=member.email, password=SeedOptions().demo_password,
                   organization_id=member.organization_id, show_latency=False)
    texts = [t.strip() for t in args.search.split(",") if t.strip()]
    profiler_cls = None
    if args.profile:
        from pyinstrument import Profiler
        profiler_cls = Profiler
    try:
        async with app.run_test(size=size) as pilot:
            deadline = time.perf_counter() + TIMEOUT
            while app.session is None or app.session.current is None:
                if time.perf_counter() > deadline:
                    raise TimeoutError("sign-in did not finish")
                await pilot.pause(0.05)
            await _settle(app, pilot)
            board_key = app.destination("board").key

            async def open_board(measured: bool, profile: bool = False) -> Sample | None:
                loads = PROBE.loads
                _arm(app, lambda: PROBE.loads > loads and _columns_drawn(app))
                RECORDER.start()
                profiler = profiler_cls(async_mode="disabled") if profile else None
                if profiler:
                    profiler.start()
                started = time.perf_counter()
                _key(app, board_key)
                whole = await _until_drawn(app, started)
                if profiler:
                    profiler.stop()
                    result.profiles["open"] = _profile_text(profiler)
                await _settle(app, pilot)
                await pilot.pause(0.3)  # the live feed opens its stream after the load
                calls = RECORDER.stop()
                if not measured:
                    return None
                bare = replayer.replay(board_calls(calls, started, whole))
                sample = _sample(calls, started, whole, bare)
                sample.service = _service_ms(app)
                return sample

            async def move_card(measured: bool, profile: bool = False) -> Sample | None:
                screen = app.screen
                assert isinstance(screen, BoardScreen)
                todo = screen.columns.get("todo")
                if todo is not None and len(todo.tasks) < 3 <= todo.total:
                    # Keep a few todo cards to move (the column refills itself; this is a guard).
                    await open_board(False)
                    screen = app.screen
                    assert isinstance(screen, BoardScreen)
                screen.column_index = 0
                screen.row_by_status["todo"] = 0
                screen._paint_cursor()
                await _settle(app, pilot)
                task = screen.selected_task()
                assert task is not None and task.status == "todo", "no todo card to move"
                before = replayer.db.tasks.find_one(
                    {"_id": ObjectId(task.id)},
                    {"status": 1, "position": 1, "updated_at": 1, "completed_at": 1})
                _arm(app, lambda: _card_drawn_in(app, task.id, "in_progress"))
                RECORDER.start()
                profiler = profiler_cls(async_mode="disabled") if profile else None
                if profiler:
                    profiler.start()
                started = time.perf_counter()
                _key(app, ">")
                whole = await _until_drawn(app, started)
                if profiler:
                    profiler.stop()
                    result.profiles["move"] = _profile_text(profiler)
                await _settle(app, pilot)
                await pilot.pause(0.3)  # the change stream brings the move back to the board
                calls = RECORDER.stop()
                if not measured:
                    return None
                assert before is not None
                replayer.db.tasks.update_one(
                    {"_id": before["_id"]},
                    {"$set": {k: before.get(k) for k in
                              ("status", "position", "updated_at", "completed_at")}})
                bare = replayer.replay(board_calls(calls, started, whole))
                return _sample(calls, started, whole, bare, task.task_id)

            search_round = 0

            async def type_search(text: str) -> None:
                screen = app.screen
                assert isinstance(screen, BoardScreen)
                await pilot.press("slash")
                screen.query_one("#board-search", Input).value = text
                await _settle(app, pilot)

            async def search(measured: bool, profile: bool = False) -> Sample | None:
                nonlocal search_round
                text = texts[search_round % len(texts)]
                search_round += 1
                screen = app.screen
                assert isinstance(screen, BoardScreen)
                if args.search_from == "empty":
                    await type_search(NO_MATCH)
                    await pilot.press("enter")
                    await _settle(app, pilot)
                await type_search(text)
                loads, said = PROBE.loads, len(PROBE.messages)
                _arm(app, lambda: PROBE.loads > loads and _columns_drawn(app))
                RECORDER.start()
                profiler = profiler_cls(async_mode="disabled") if profile else None
                if profiler:
                    profiler.start()
                started = time.perf_counter()
                _key(app, "enter")
                try:
                    whole = await _until_drawn(app, started)
                finally:
                    if profiler:
                        profiler.stop()
                    if any("DuplicateIds" in m for _, m in PROBE.messages[said:]):
                        raise SystemExit(
                            "The board failed to redraw its columns (DuplicateIds: a reload "
                            "mounts cards before the old ones are removed; see "
                            "bench/README.md). Run with --search-from empty to measure "
                            "searches from an empty board.")
                if profiler:
                    result.profiles[f"search {text}"] = _profile_text(profiler)
                await _settle(app, pilot)
                calls = RECORDER.stop()
                if not measured:
                    return None
                bare = replayer.replay(board_calls(calls, started, whole))
                found = sum(c.total for c in screen.columns.values())
                sample = _sample(calls, started, whole, bare, f"{text} ({found:,} found)")
                sample.service = _service_ms(app)
                return sample

            actions: list[tuple[str, Callable[..., Any]]] = [
                ("open", open_board), ("move", move_card), ("search", search)]
            for name, action in actions:
                for _ in range(args.warmup if name != "search" else args.warmup * len(texts)):
                    await action(False)
                samples = []
                for i in range(args.repeat):
                    sample = await action(True)
                    assert sample is not None
                    samples.append(sample)
                    print(f"  {size[0]}x{size[1]} {name} {i + 1}/{args.repeat}: whole "
                          f"{sample.whole:.1f} ms, bare {sample.bare:.1f} ms, own "
                          f"{sample.own:.1f} ms, trips mongo {sample.mongo_trips} pg "
                          f"{sample.pg_trips}; gc {sample.gc_ms:.0f}; service "
                          f"{sample.service if sample.service is None else round(sample.service)}"
                          f"; phases "
                          f"{'/'.join(f'{x:.0f}' for x in sample.phases)} {sample.note}",
                          flush=True)
                result.samples[name] = samples
                if name == "open":
                    result.shape = _board_shape(app)
                if args.profile:
                    await action(False, profile=True)
                if name == "move":
                    # Back to an unfiltered board for the searches (and to the top).
                    await open_board(False)
            result.pipelines = _distinct_pipelines(
                [c for s in result.samples.values() for x in s for c in x.calls])
        # The live feed's thread notices the app is gone within a second; then close.
        await asyncio.sleep(1.5)
    finally:
        replayer.close()
        dbs.close()
    return result


def _profile_text(profiler: Any) -> str:
    """The call tree (library frames folded), then the 40 functions with the most own time
    (Textual's included: where the UI thread's time goes)."""
    tree = profiler.output_text(color=False, unicode=True)
    flat = profiler.output_text(color=False, unicode=True, flat=True, show_all=True)
    lines = flat.splitlines()
    return tree + "\nown time by function:\n" + "\n".join(lines[:48])


def _service_ms(app: BenchApp) -> float:
    """The board's read through its own service, called alone (no UI): the data layer's time
    (driver calls, decoding, Task objects) without the screen."""
    screen = app.screen
    assert isinstance(screen, BoardScreen)
    limit = max(screen.limits.values()) if screen.limits else 20
    service = BoardService(app.dbs, screen.actor)
    started = time.perf_counter()
    service.load_board(screen.task_filter, screen.statuses, limit)
    return (time.perf_counter() - started) * 1000


def _board_shape(app: BenchApp) -> dict[str, Any]:
    """How much the open board fetched and drew, and how many widgets it took."""
    screen = app.screen
    assert isinstance(screen, BoardScreen)
    shape: dict[str, Any] = {"visible_cards_estimate": screen.visible_cards(),
                             "widgets": sum(1 for _ in screen.walk_children())}
    for status in TASK_STATUSES:
        column = screen.columns.get(status)
        widget = screen._column(status)
        whole = len(widget.visible_rows()) if widget.tasks else 0
        # A card cut at the bottom: its first line is above the column's end.
        cut = int(widget.top + whole < len(widget.tasks)
                  and 1 + whole * CARD_ROWS < widget.size.height)
        shape[status] = {
            "fetched": len(column.tasks) if column else 0,
            "total": column.total if column else 0,
            "limit": screen.limits.get(status),
            "handed": len(widget.tasks),
            "visible": whole + cut,
            "fully_visible": whole,
        }
    return shape


def _distinct_pipelines(calls: list[Call]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for call in calls:
        if call.kind != "mongo" or call.payload.get(call.name) != "tasks":
            continue
        seen.setdefault(_summary(call.payload), call.payload)
    return list(seen.values())


# ---------------------------------------------------------------- explain
def explain(target: BenchTarget, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    client = pymongo.MongoClient(target.mongo_uri, tz_aware=True)
    db = client[target.mongo_db]
    findings = []
    try:
        for command in commands:
            name = next(iter(command))
            body = {k: v for k, v in command.items() if k not in ("ordered", "writeConcern")}
            # Writes are explained without running them (queryPlanner).
            verbosity = "executionStats" if name in ("aggregate", "find") else "queryPlanner"
            try:
                plan = db.command({"explain": body, "verbosity": verbosity})
            except pymongo.errors.PyMongoError as exc:
                try:
                    plan = db.command({"explain": body, "verbosity": "queryPlanner"})
                except pymongo.errors.PyMongoError:
                    findings.append({"command": name, "query": _summary(command),
                                     "error": str(exc)[:200]})
                    continue
            stages = sorted(set(_values(plan, "stage")))
            indexes = sorted(set(_values(plan, "indexName")))
            examined = list(_values(plan, "totalDocsExamined"))
            keys = list(_values(plan, "totalKeysExamined"))
            findings.append({
                "command": name, "query": _summary(command), "stages": stages,
                "verbosity": verbosity,
                "indexes": indexes, "collscan": "COLLSCAN" in stages,
                "docs_examined": examined[0] if examined else None,
                "keys_examined": keys[0] if keys else None,
            })
    finally:
        client.close()
    return findings


def _values(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and not isinstance(v, (dict, list)):
                yield v
            else:
                yield from _values(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)


def _summary(command: dict[str, Any]) -> str:
    name = next(iter(command))
    if name == "aggregate":
        stages = command.get("pipeline", [])
        first = stages[0].get("$match", {}) if stages else {}
        rest = [next(iter(s)) for s in stages[1:]]
        second = stages[1].get("$match") if len(stages) > 1 and "$match" in stages[1] else None
        extra = ""
        if second:
            extra = " + $match " + ", ".join(sorted(second))
        return (f"aggregate $match {{{', '.join(sorted(first))}}} status={first.get('status')}"
                f"{extra} | {' '.join(rest)}")
    if name == "update":
        q = command.get("updates", [{}])[0].get("q", {})
        return f"update q {{{', '.join(q)}}}"
    return name


# ---------------------------------------------------------------- report
def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)]


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):7.1f} {_p95(values):7.1f}"


def print_report(results: list[SizeResult], findings: list[dict[str, Any]],
                 member: Member) -> None:
    print()
    print("ms; median and p95 over the repetitions; own = whole - bare per repetition")
    print(f"{'size':<8}{'action':<8}{'n':>3}  {'whole med/p95':>15}  {'bare med/p95':>15}  "
          f"{'own med/p95':>15}  {'target':>7}  trips (mongo+pg)  beside")
    verdicts: dict[str, bool] = {}
    for result in results:
        for name, samples in result.samples.items():
            own = [s.own for s in samples]
            target = TARGETS_MS[name]
            met = statistics.median(own) < target
            verdicts[f"{result.size[0]}x{result.size[1]} {name}"] = met
            trips = sorted({(s.mongo_trips, s.pg_trips) for s in samples})
            side = sorted({(s.side_mongo, s.side_pg) for s in samples})
            print(f"{result.size[0]}x{result.size[1]:<5}{name:<8}{len(samples):>3}  "
                  f"{_stats([s.whole for s in samples]):>15}  "
                  f"{_stats([s.bare for s in samples]):>15}  {_stats(own):>15}  "
                  f"{'<' if met else 'MISS'} {target:>3.0f}  "
                  f"{', '.join(f'{m}+{p}' for m, p in trips):<16}  "
                  f"{', '.join(f'{m}+{p}' for m, p in side)}")
        for name, samples in result.samples.items():
            services = [s.service for s in samples if s.service is not None]
            if services:
                print(f"{'':<8}{'':<8}{'':>3}  BoardService.load_board alone (median/p95): "
                      f"{_stats(services)}  [{name}]")
            phases = [statistics.median(s.phases[i] for s in samples) for i in range(4)]
            gcs = [s.gc_ms for s in samples]
            fulls = [s.gc_full_ms for s in samples]
            print(f"{'':<8}{'':<8}{'':>3}  garbage-collector pauses inside the measured time: "
                  f"median {statistics.median(gcs):.1f} ms, max {max(gcs):.1f} ms; full "
                  f"collections in {sum(1 for g in fulls if g)} of {len(fulls)} repetitions, "
                  f"median {statistics.median(fulls):.1f} ms  [{name}]")
            print(f"{'':<8}{'':<8}{'':>3}  phases (median ms): key->first call "
                  f"{phases[0]:.1f}, calls as the app saw them {phases[1]:.1f}, "
                  f"answer->applied {phases[2]:.1f}, applied->drawn {phases[3]:.1f}  [{name}]")
        for name, samples in result.samples.items():
            if name == "search":
                by_text: dict[str, list[Sample]] = {}
                for s in samples:
                    by_text.setdefault(s.note.split(" (")[0], []).append(s)
                for _text, group in by_text.items():
                    print(f"{'':<8}{'':<8}{len(group):>3}  "
                          f"{_stats([s.whole for s in group]):>15}  "
                          f"{_stats([s.bare for s in group]):>15}  "
                          f"{_stats([s.own for s in group]):>15}  search {group[0].note}")
    print()
    print("timeline of the median repetition (ms from the key: sent +duration, worker group):")
    for result in results:
        for name, samples in result.samples.items():
            sample = sorted(samples, key=lambda s: s.whole)[len(samples) // 2]
            parts = []
            for c in sorted(sample.everything, key=lambda c: c.at):
                took = (c.end - c.at) * 1000 if c.end is not None else None
                parts.append(f"{c.kind}:{c.name}@{(c.at - sample.started) * 1000:.0f}"
                             + (f"+{took:.0f}" if took is not None else "")
                             + f" [{c.group or '-'}]")
            print(f"  {result.size[0]}x{result.size[1]} {name} (whole {sample.whole:.0f}): "
                  + "; ".join(parts))
    print()
    for result in results:
        print(f"board at {result.size[0]}x{result.size[1]} after opening "
              f"(visible_cards() {result.shape.get('visible_cards_estimate')}; "
              f"{result.shape.get('widgets')} widgets on the screen):")
        for status in TASK_STATUSES:
            s = result.shape.get(status, {})
            print(f"  {status:<12} fetched {s.get('fetched')} of {s.get('total'):,} "
                  f"(limit {s.get('limit')}), in its column widget {s.get('handed')}, on "
                  f"screen {s.get('visible')} ({s.get('fully_visible')} whole)")
    print()
    print("explain of each distinct tasks command the board sent (reads: executionStats; "
          "writes: queryPlanner):")
    for f in findings:
        if "error" in f:
            print(f"  {f['query']}: explain refused: {f['error']}")
            continue
        print(f"  {'COLLSCAN!' if f['collscan'] else 'index   '} {f['query']}: stages "
              f"{', '.join(map(str, f['stages']))}; index {', '.join(map(str, f['indexes']))}"
              f"; keys {f['keys_examined']}, docs {f['docs_examined']}")
    scans = [f for f in findings if f.get("collscan") and f["command"] in READS]
    write_scans = [f for f in findings if f.get("collscan") and f["command"] not in READS]
    print()
    print("targets:")
    for key, met in verdicts.items():
        print(f"  {key}: own share {'met' if met else 'MISSED'}")
    for result in results:
        opens = result.samples.get("open", [])
        columns = sum(1 for s in TASK_STATUSES if result.shape.get(s, {}).get("visible"))
        if opens:
            mongo = max(s.mongo_trips for s in opens)
            pg = max(s.pg_trips for s in opens)
            print(f"  {result.size[0]}x{result.size[1]} open round trips: {mongo} MongoDB + "
                  f"{pg} PostgreSQL for {columns} visible columns: "
                  f"{'met' if mongo + pg <= columns else 'MISSED'} (MongoDB alone "
                  f"{'met' if mongo <= columns else 'MISSED'})")
    print(f"  index on every board/search query: {'MISSED' if scans else 'met'}"
          f" ({sum(1 for f in findings if f['command'] in READS)} distinct reads explained)")
    if write_scans:
        print(f"  {len(write_scans)} write filter(s) explained as COLLSCAN: "
              + "; ".join(f["query"] for f in write_scans)
              + " (their time in the table above says whether the server really scans)")
    print(f"measured organization: {member.organization_name}, "
          + ", ".join(f"{s} {n:,}" for s, n in member.counts.items()))


def code_state() -> str:
    """The commit and the board's source files as this run imported them."""
    import hashlib
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "src"], cwd=root, text=True,
                               capture_output=True, check=False).stdout.split("\n")
    except OSError:
        return "unknown"
    files = ["screens/board.py", "data/board.py", "widgets/task_card.py", "data/task_feed.py"]
    parts = []
    for name in files:
        path = root / "src" / "creatia_tui" / name
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:8] if path.exists() else "-"
        changed = any(line.strip().endswith(name) for line in dirty)
        parts.append(f"{name} {digest}{' (uncommitted)' if changed else ''}")
    return f"commit {head}; " + ", ".join(parts)


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    print(f"code: {code_state()}", flush=True)
    if args.reuse:
        target = BenchTarget(_with_dbname(target.pg_dsn, args.reuse), target.mongo_uri,
                             args.reuse, f"{target.description}, databases {args.reuse} reused")
    sizes = []
    for text in args.sizes.split(","):
        width, _, height = text.strip().partition("x")
        sizes.append((int(width), int(height)))
    member = load(target, args)
    _install_probe()
    gc.callbacks.append(GC)
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    results = []
    with tempfile.TemporaryDirectory(prefix="creatia-bench-board-") as home:
        for size in sizes:
            load_avg = os.getloadavg()
            print(f"measuring at {size[0]}x{size[1]} (load average {load_avg[0]:.2f}, "
                  f"{load_avg[1]:.2f})", flush=True)
            results.append(asyncio.run(measure_size(target, member, size, args, Path(home))))
    commands = []
    seen = set()
    for result in results:
        for command in result.pipelines:
            key = _summary(command)
            if key not in seen:
                seen.add(key)
                commands.append(command)
    findings = explain(target, commands)
    print_report(results, findings, member)
    for result in results:
        for name, text in result.profiles.items():
            print(f"\n---- profile {result.size[0]}x{result.size[1]} {name} (UI thread)")
            print(text)
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0
