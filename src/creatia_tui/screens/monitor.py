"""Monitor: both databases the way pg_activity shows PostgreSQL and mongostat MongoDB.

Four tabs ([ and ] switch): Overview (versions, uptime, connections, per-second rates, and
sparklines of latency, connections and operations per second over the last 15 minutes),
Sessions (PostgreSQL's running and blocked sessions, MongoDB's operations over a second),
Statements (pg_stat_statements' slow statements, the profiler's slow operations) and Storage
(sizes, sequential-scan ratios, index usage, audit-log partitions, collections, $indexStats).

Polling: every 2 s by default (+ and - step through 0.5 to 60 s), p pauses, r polls now. A tick
starts a thread worker only when the previous poll has finished; otherwise the tick is skipped
(and counted), so a slow server never queues polls and never blocks typing. Sizes and
per-object statistics are read on a full poll, at most every 10 s. The poll's own cost (wall
time of each database's part, and the client CPU it used) is shown on the Overview tab.

Actions (monitoring.manage, each confirmed, each audited by :mod:`creatia_tui.data.monitor`):
c cancels the highlighted PostgreSQL session's query, x terminates the session, K kills the
highlighted MongoDB operation, f changes the profiling level.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg
from pymongo.errors import PyMongoError
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Sparkline, Static, TabbedContent, TabPane

from creatia_tui.data import monitor as service
from creatia_tui.data.access import Actor
from creatia_tui.data.db import Databases
from creatia_tui.errors import PermissionDenied, UserError, one_line
from creatia_tui.ops.backup import backup_health
from creatia_tui.ops.health import ServiceHealth
from creatia_tui.ops.monitor import (
    LONG_OPERATION_S,
    SLOW_STATEMENT_MS,
    Backend,
    MongoRates,
    MongoSample,
    PgRates,
    PgSample,
    human_bytes,
    human_duration,
    mongo_rates,
    pg_rates,
)
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen, PickScreen
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit

log = logging.getLogger(__name__)

INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DEFAULT_INTERVAL = 2.0
FULL_EVERY_S = 10.0
HISTORY_S = 15 * 60
TABS = ("overview", "sessions", "statements", "storage")
ABSENT = "absent"
HIDDEN = "hidden"  # withheld from who is not a platform admin (data.monitor's tenancy decision)
PROFILING_LEVELS = {"0": "0: off", "1": f"1: slow operations (over {SLOW_STATEMENT_MS} ms)",
                    "2": "2: every operation"}


@dataclass
class PollResult:
    """One poll of both databases, made in a worker thread."""

    pg: PgSample | None = None
    pg_error: str | None = None
    pg_latency_ms: float | None = None
    pg_ms: float | None = None
    mongo: MongoSample | None = None
    mongo_error: str | None = None
    mongo_latency_ms: float | None = None
    mongo_ms: float | None = None
    denied: str | None = None
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    at: float = field(default_factory=time.monotonic)
    backup: ServiceHealth | None = None  # the age of the last good backup, on full polls


def poll_databases(dbs: Databases, actor: Actor, *, full: bool) -> PollResult:
    """Read both databases (blocking: call from a worker thread)."""
    started, cpu = time.perf_counter(), time.thread_time()
    result = PollResult()
    try:
        with dbs.pg() as conn:
            t0 = time.perf_counter()
            conn.execute("SELECT 1")
            result.pg_latency_ms = (time.perf_counter() - t0) * 1000
            result.pg = service.read_postgres(conn, actor, full=full)
    except PermissionDenied as exc:
        result.denied = one_line(str(exc))
    except UserError as exc:  # DatabaseUnavailable: the status line says the rest
        result.pg_error = one_line(str(exc))
    result.pg_ms = (time.perf_counter() - started) * 1000
    if result.denied is None:
        mongo_started = time.perf_counter()
        link = dbs.mongo_link
        if link.down and link.retry_in() > 0:
            result.mongo_error = link.error.cause if link.error else "down."
        else:
            try:
                dbs.check_mongo()  # the timed ping, with the probe's short timeout
                result.mongo_latency_ms = dbs.mongo_link.latency_ms
                # What PostgreSQL just said of this actor; while it is down, what the session
                # read at sign-in (the module decision of data.monitor).
                reveal = (
                    result.pg.details_shown if result.pg is not None
                    else actor.user.is_platform_admin
                )
                result.mongo = service.read_mongo(dbs.mongo, full=full, reveal=reveal)
            except UserError as exc:
                result.mongo_error = one_line(str(exc))
            except PyMongoError as exc:  # the server went away between ping and sample
                error = dbs.mongo_error(exc)
                dbs.mongo_link.mark_down(error)
                result.mongo_error = error.cause
        result.mongo_ms = (time.perf_counter() - mongo_started) * 1000
    if full and result.denied is None:
        result.backup = _backup_health(dbs)
    result.wall_ms = (time.perf_counter() - started) * 1000
    result.cpu_ms = (time.thread_time() - cpu) * 1000
    return result


def _backup_health(dbs: Databases) -> ServiceHealth | None:
    """The health command's backup check (a listing of the backup folder, no database call)."""
    try:
        return backup_health(dbs.settings)
    except Exception:  # an unreadable folder must not cost the poll its database figures
        log.warning("reading the backup folder failed", exc_info=True)
        return None


def read_sizes(dbs: Databases, actor: Actor) -> MongoSample:
    """MongoDB's dbStats and collStats on request (blocking; see ops.monitor on their cost)."""
    reveal = actor.user.is_platform_admin
    if not dbs.pg_link.down:  # the module decision of data.monitor: PostgreSQL checks when up
        with dbs.pg() as conn:
            reveal = service.may_read(conn, actor)
    try:
        return service.read_mongo(dbs.mongo, full=True, sizes=True, reveal=reveal)
    except PyMongoError as exc:
        raise dbs.mongo_error(exc) from None


# ---------------------------------------------------------------- rendering (pure)
def num(value: float | int | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return ABSENT if value is None else fmt.format(value) + unit


def pg_summary(sample: PgSample | None, rates: PgRates | None, error: str | None) -> Text:
    if sample is None:
        return Text.assemble(("PostgreSQL ", "bold"), ("down", "bold red"),
                             f": {error}" if error else "")
    states = ", ".join(f"{state} {n}" for state, n in sorted(sample.connections.items()))
    lines = [
        Text.assemble(("PostgreSQL ", "bold"), f"{sample.version} · up ",
                      human_duration(sample.uptime_s), f" · database {sample.database} ",
                      human_bytes(sample.database_size)),
        Text(f"connections {sample.connection_total}/{sample.max_connections}"
             + (f" ({states})" if states else "")),
    ]
    if rates is None:
        lines.append(Text("rates: from the next poll", style="dim"))
    else:
        lines.append(Text(
            f"commits {num(rates.commits, '{:.1f}')}/s · rollbacks "
            f"{num(rates.rollbacks, '{:.1f}')}/s · tuples written "
            f"{num(rates.tuples_written, '{:.0f}')}/s · cache hit "
            f"{num(rates.cache_hit_ratio, '{:.1f}', ' %')}"))
    checkpoints = sample.checkpoints
    lines.append(Text(f"checkpoints timed {num(checkpoints.get('timed'))} · requested "
                      f"{num(checkpoints.get('requested'))} · sessions running "
                      f"{len(sample.activity)} · blocked "
                      f"{sum(1 for b in sample.activity if b.blocked)}"))
    if error:
        lines.append(Text(error, style="red"))
    return Text("\n").join(lines)


def mongo_summary(sample: MongoSample | None, rates: MongoRates | None, error: str | None) -> Text:
    if sample is None:
        return Text.assemble(("MongoDB ", "bold"), ("down", "bold red"),
                             f": {error}" if error else "")
    lines = [
        Text.assemble(("MongoDB ", "bold"), f"{sample.version or ABSENT} · up ",
                      human_duration(sample.uptime_s), f" · database {sample.database}"),
        Text(f"connections {num(sample.connections_current)} (available "
             f"{num(sample.connections_available)}) · profiling level "
             f"{num(sample.profiling_level)}"),
    ]
    if rates is None:
        lines.append(Text("rates: from the next poll", style="dim"))
    else:
        ops = " ".join(f"{kind} {num(value, '{:.0f}')}" for kind, value in rates.operations.items())
        lines.append(Text(f"ops/s {ops}"))
        lines.append(Text(f"network in {human_bytes(rates.network_in)}/s · out "
                          f"{human_bytes(rates.network_out)}/s"))
    if sample.absent:
        lines.append(Text("absent here: " + ", ".join(sorted(sample.absent)), style="dim"))
    return Text("\n").join(lines)


NUMERIC_COLUMNS = {"size", "rows", "seq scan %", "scans", "calls", "mean ms", "total ms", "ms",
                   "documents", "indexes", "index size", "ops"}


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", box=None,
                  padding=(0, 1), expand=False, show_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=40,
                         justify="right" if column in NUMERIC_COLUMNS else "left")
    return table


def storage_tables(
    pg: PgSample | None, mongo: MongoSample | None, sizes: MongoSample | None = None
) -> list[Table | Text]:
    """``sizes``: the last MongoDB sample read with sizes on request (key s), if any."""
    parts: list[Table | Text] = []
    if pg is not None and pg.tables is not None:
        tables = _table("PostgreSQL tables", "table", "size", "rows", "seq scan %")
        for t in pg.tables:
            tables.add_row(t.name, human_bytes(t.size_bytes), num(t.live_rows),
                           num(t.seq_scan_ratio, "{:.1f}"))
        parts.append(tables)
    if pg is not None and pg.indexes is not None:
        indexes = _table("PostgreSQL indexes (least used first)", "index", "table", "scans",
                         "size", "usage")
        for i in pg.indexes:
            indexes.add_row(i.name, i.table_name, num(i.idx_scan), human_bytes(i.size_bytes),
                            Text(i.usage, style="bold yellow" if i.usage == "unused" else ""))
        parts.append(indexes)
    if pg is not None and pg.partitions is not None:
        partitions = _table("Audit-log partitions", "partition", "size")
        for p in pg.partitions:
            partitions.add_row(p.name, human_bytes(p.size_bytes))
        parts.append(partitions)
        state = "exists" if pg.next_partition_exists else "MISSING"
        parts.append(Text(f"next month's partition {pg.next_partition}: {state}",
                          style="" if pg.next_partition_exists else "bold red"))
    if mongo is not None and sizes is None and mongo.sizes_skipped:
        parts.append(Text(f"MongoDB sizes not read: {mongo.sizes_skipped} (s reads them now).",
                          style="yellow"))
    sized = sizes or mongo
    if sizes is not None:
        parts.append(Text(f"MongoDB sizes as read on request ({sizes.cost_ms:.0f} ms; s reads "
                          "them again).", style="dim"))
    if sized is not None and sized.db_stats is not None:
        s = sized.db_stats
        parts.append(Text(
            f"MongoDB {sized.database}: {num(s.get('collections'))} collections · "
            f"{num(s.get('objects'))} documents · data {human_bytes(s.get('dataSize'))} · "
            f"storage {human_bytes(s.get('storageSize'))} · {num(s.get('indexes'))} indexes "
            f"{human_bytes(s.get('indexSize'))}"))
    if sized is not None and sized.collections is not None:
        collections = _table("MongoDB collections", "collection", "documents", "size",
                             "indexes", "index size")
        for c in sized.collections:
            collections.add_row(c.name, num(c.documents), human_bytes(c.size_bytes),
                                num(c.indexes), human_bytes(c.index_bytes))
        parts.append(collections)
    if mongo is not None and mongo.index_usage is not None:
        usage = _table("MongoDB index usage ($indexStats)", "collection", "index", "ops",
                       "usage")
        for u in mongo.index_usage:
            usage.add_row(u.collection, u.name, num(u.ops),
                          Text(u.usage, style="bold yellow" if u.usage == "unused" else ""))
        parts.append(usage)
    if mongo is not None:
        for section, reason in sorted(mongo.absent.items()):
            parts.append(Text(f"{section}: absent ({reason})", style="dim"))
    if not parts:
        parts.append(Text("Sizes and statistics come with the next full poll.", style="dim"))
    return parts


def statement_tables(pg: PgSample | None, mongo: MongoSample | None) -> list[Table | Text]:
    parts: list[Table | Text] = []
    if pg is not None and pg.statements_hint:
        parts.append(Text(pg.statements_hint, style="yellow"))
    elif pg is not None and pg.slow_statements is not None:
        slow = _table(f"PostgreSQL statements over {SLOW_STATEMENT_MS} ms on average",
                      "query", "calls", "mean ms", "total ms")
        for s in pg.slow_statements:
            slow.add_row(one_line(s.query or ABSENT).rstrip("."), num(s.calls),
                         num(s.mean_ms, "{:.1f}"), num(s.total_ms, "{:.0f}"))
        parts.append(slow if pg.slow_statements else Text(
            f"No PostgreSQL statement averages over {SLOW_STATEMENT_MS} ms."))
    if mongo is not None:
        if mongo.profiled is None:
            reason = mongo.absent.get("profiler", "")
            parts.append(Text(f"MongoDB profiler: absent ({reason})", style="dim"))
        else:
            level = num(mongo.profiling_level)
            profiled = _table(f"MongoDB profiler (level {level}, slowms "
                              f"{num(mongo.profiling_slowms)}): operations over "
                              f"{SLOW_STATEMENT_MS} ms", "namespace", "op", "ms", "command")
            withheld = ABSENT if mongo.details_shown else HIDDEN
            for p in mongo.profiled:
                profiled.add_row(p.namespace or ABSENT, p.op or ABSENT, num(p.millis),
                                 p.summary or withheld)
            parts.append(profiled if mongo.profiled else Text(
                f"No profiled MongoDB operation over {SLOW_STATEMENT_MS} ms (profiling level "
                f"{level}; f changes it)."))
    return parts or [Text("Waiting for the first poll.", style="dim")]


class Series:
    """(time, value) pairs of the last 15 minutes."""

    def __init__(self) -> None:
        self.points: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float | None) -> None:
        if value is not None:
            self.points.append((at, float(value)))
        while self.points and self.points[0][0] < at - HISTORY_S:
            self.points.popleft()

    @property
    def values(self) -> list[float]:
        return [v for _, v in self.points]

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None


SPARKS = (
    ("pg-latency", "PG latency", "{:.1f} ms"),
    ("mongo-latency", "Mongo latency", "{:.1f} ms"),
    ("pg-connections", "PG connections", "{:.0f}"),
    ("mongo-connections", "Mongo connections", "{:.0f}"),
    ("pg-ops", "PG commits/s", "{:.1f}"),
    ("mongo-ops", "Mongo ops/s", "{:.0f}"),
)


# ---------------------------------------------------------------- the screen
class MonitorScreen(AppScreen):
    """Both databases, live."""

    READ_PERMISSION = "monitoring.read"
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "cancel_backend": "monitoring.manage",
        "terminate_backend": "monitoring.manage",
        "kill_operation": "monitoring.manage",
        "profiling": "monitoring.manage",
    }
    PLATFORM_ADMIN_ACTIONS = frozenset(ACTION_PERMISSIONS)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pause", "Pause"),
        Binding("r", "refresh_now", "Refresh"),
        Binding("plus", "interval(-1)", "Faster", key_display="+", show=False),
        Binding("minus", "interval(1)", "Slower", key_display="-", show=False),
        Binding("right_square_bracket", "tab(1)", "Next tab", key_display="]"),
        Binding("left_square_bracket", "tab(-1)", "Previous tab", key_display="[",
                show=False),
        Binding("c", "cancel_backend", "Cancel query", show=False),
        Binding("x", "terminate_backend", "Terminate session", show=False),
        Binding("K", "kill_operation", "Kill Mongo op", show=False),
        Binding("f", "profiling", "Profiling level", show=False),
        Binding("s", "read_sizes", "Read MongoDB sizes", show=False),
    ]

    DEFAULT_CSS = """
    MonitorScreen TabbedContent {
        height: 1fr;
    }
    MonitorScreen TabPane {
        padding: 0 1;
    }
    MonitorScreen .spark-row {
        height: 1;
    }
    MonitorScreen .spark-label {
        width: 32;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    MonitorScreen Sparkline {
        width: 1fr;
        height: 1;
    }
    MonitorScreen #poll-cost {
        color: $text-muted;
        margin-top: 1;
    }
    MonitorScreen #pg-summary, MonitorScreen #mongo-summary {
        margin-bottom: 1;
    }
    MonitorScreen .panel-title {
        text-style: bold;
    }
    MonitorScreen #pg-sessions {
        height: 1fr;
        min-height: 4;
    }
    MonitorScreen #mongo-ops {
        height: auto;
        max-height: 6;
        min-height: 2;
    }
    MonitorScreen #session-detail {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        super().__init__()
        self.interval = min(INTERVALS, key=lambda step: abs(step - interval))
        self.paused = False
        self.polling = False
        self.skipped = 0
        self.polls = 0
        self.last: PollResult | None = None
        self.backup: ServiceHealth | None = None  # from the last full poll
        self.previous_pg: PgSample | None = None
        self.previous_mongo: MongoSample | None = None
        self.full_pg: PgSample | None = None  # the last sample with sizes and statistics
        self.full_mongo: MongoSample | None = None
        self.mongo_sizes: MongoSample | None = None  # read on request (s)
        self.last_full_at = float("-inf")
        self.series = {key: Series() for key, _, _ in SPARKS}
        self._timer: Timer | None = None

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        with TabbedContent(initial="overview"):
            with TabPane("Overview", id="overview"), VerticalScroll(can_focus=True):
                yield Static("", id="pg-summary")
                yield Static("", id="mongo-summary")
                for key, _, _ in SPARKS:
                    with Horizontal(classes="spark-row"):
                        yield Static("", id=f"spark-{key}-label", classes="spark-label")
                        yield Sparkline([], id=f"spark-{key}", summary_function=max)
                yield Static("", id="poll-cost")
            with TabPane("Sessions", id="sessions"):
                yield Static("PostgreSQL sessions: running and waiting (c cancel, x terminate)",
                             classes="panel-title")
                yield DataTable(id="pg-sessions", cursor_type="row", zebra_stripes=True)
                yield Static(f"MongoDB operations over {LONG_OPERATION_S} s (K kills)",
                             classes="panel-title")
                yield DataTable(id="mongo-ops", cursor_type="row")
                yield Static("", id="session-detail", markup=False)
            with TabPane("Statements", id="statements"), VerticalScroll(can_focus=True):
                yield Static("", id="statements-body")
            with TabPane("Storage", id="storage"), VerticalScroll(can_focus=True):
                yield Static("", id="storage-body")

    def on_mount(self) -> None:
        sessions = self.query_one("#pg-sessions", DataTable)
        for label in ("pid", "user", "state", "secs", "blocked by", "query"):
            sessions.add_column(label, key=label)
        operations = self.query_one("#mongo-ops", DataTable)
        for label in ("opid", "op", "namespace", "secs", "client"):
            operations.add_column(label, key=label)
        self._show_cost()
        self._arm()
        self.tick()

    # ------------------------------------------------------------ polling
    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_interval(self.interval, self.tick)

    def tick(self, *, force_full: bool = False) -> None:
        """Start a poll unless paused or one is still running (then the tick is skipped)."""
        if self.paused and not force_full:
            return
        if self.polling:
            self.skipped += 1
            return
        now = time.monotonic()
        full = force_full or now - self.last_full_at >= FULL_EVERY_S
        if full:
            self.last_full_at = now
        self.polling = True
        dbs, actor = self.creatia.dbs, self.actor
        self.run_job(
            lambda: poll_databases(dbs, actor, full=full),
            self.show_poll,
            failed=self._poll_failed,
            group="monitor-poll",
            exclusive=False,
        )

    def _poll_failed(self, text: str) -> None:
        self.polling = False
        self.say(text, error=True)

    def show_poll(self, result: PollResult) -> None:
        """Put a poll's figures on screen (the UI thread)."""
        self.polling = False
        self.polls += 1
        self.last = result
        if result.denied:
            self.say(result.denied, error=True)
            return
        pg_rate = pg_rates(result.pg, self.previous_pg) if result.pg else None
        mongo_rate = mongo_rates(result.mongo, self.previous_mongo) if result.mongo else None
        if result.pg is not None:
            self.previous_pg = result.pg
            if result.pg.full:
                self.full_pg = result.pg
        if result.mongo is not None:
            self.previous_mongo = result.mongo
            if result.mongo.full:
                self.full_mongo = result.mongo
        at = result.at
        self.series["pg-latency"].add(at, result.pg_latency_ms)
        self.series["mongo-latency"].add(at, result.mongo_latency_ms)
        self.series["pg-connections"].add(at, result.pg.connection_total if result.pg else None)
        self.series["mongo-connections"].add(
            at, result.mongo.connections_current if result.mongo else None)
        self.series["pg-ops"].add(at, pg_rate.commits if pg_rate else None)
        self.series["mongo-ops"].add(at, mongo_rate.total_operations if mongo_rate else None)
        with self.app.batch_update():
            self.query_one("#pg-summary", Static).update(
                pg_summary(result.pg, pg_rate, result.pg_error))
            self.query_one("#mongo-summary", Static).update(
                mongo_summary(result.mongo, mongo_rate, result.mongo_error))
            self._show_sparklines()
            self._show_sessions(result)
            self.query_one("#statements-body", Static).update(
                _group(statement_tables(self.full_pg, self.full_mongo)))
            self.query_one("#storage-body", Static).update(
                _group(storage_tables(self.full_pg, self.full_mongo, self.mongo_sizes)))
            self._show_cost()

    def _show_sparklines(self) -> None:
        for key, label, fmt in SPARKS:
            series = self.series[key]
            last = series.last
            shown = ABSENT if last is None else fmt.format(last)
            self.query_one(f"#spark-{key}-label", Static).update(f"{label} {shown}")
            self.query_one(f"#spark-{key}", Sparkline).data = series.values or [0.0]

    def _show_cost(self) -> None:
        state = "paused" if self.paused else f"every {self.interval:g} s"
        parts = [f"Polling {state}"]
        if self.last is not None and self.last.backup is not None:
            self.backup = self.last.backup
        if self.backup is not None:  # the line the person on call reads first, before the cost
            backup = self.backup
            parts.insert(0, f"Backup: {backup.detail}" if backup.up
                         else f"Backup WARNING: {backup.error}")
        last = self.last
        if last is not None:
            parts.append(f"last poll {last.wall_ms:.0f} ms (PostgreSQL {num(last.pg_ms)} ms, "
                         f"MongoDB {num(last.mongo_ms)} ms, client CPU {last.cpu_ms:.0f} ms)")
        if self.skipped:
            parts.append(f"{self.skipped} ticks skipped behind a slow poll")
        self.query_one("#poll-cost", Static).update(" · ".join(parts))

    def _show_sessions(self, result: PollResult) -> None:
        sessions = self.query_one("#pg-sessions", DataTable)
        keep = highlighted_key(sessions)
        sessions.clear()
        withheld = ABSENT if result.pg is None or result.pg.details_shown else HIDDEN
        for b in result.pg.activity if result.pg else []:
            state = b.state or ABSENT
            if b.blocked:
                state = f"BLOCKED {b.waiting_on or ''}".strip()
            sessions.add_row(
                str(b.pid), fit(b.user_name or ABSENT, 12), fit(state, 22),
                num(b.running_s, "{:.1f}"), ",".join(map(str, b.blocked_by)) or "-",
                fit(one_line(b.query).rstrip(".") if b.query else withheld, 60),
                key=str(b.pid),
            )
        if keep is not None and keep in {str(r.value) for r in sessions.rows}:
            sessions.move_cursor(row=sessions.get_row_index(keep))
        operations = self.query_one("#mongo-ops", DataTable)
        keep = highlighted_key(operations)
        operations.clear()
        ops = result.mongo.operations if result.mongo else None
        withheld = ABSENT if result.mongo is None or result.mongo.details_shown else HIDDEN
        for op in ops or []:
            operations.add_row(str(op.opid), op.op or ABSENT, fit(op.namespace or ABSENT, 30),
                               num(op.running_s, "{:.1f}"), op.client or withheld,
                               key=str(op.opid))
        if keep is not None and keep in {str(r.value) for r in operations.rows}:
            operations.move_cursor(row=operations.get_row_index(keep))
        self._show_session_detail()

    def _show_session_detail(self) -> None:
        backend = self.highlighted_backend()
        pg = self.last.pg if self.last else None
        withheld = ABSENT if pg is None or pg.details_shown else HIDDEN
        detail = ""
        if backend is not None:
            detail = (f"{backend.pid} · {backend.database or ABSENT} · "
                      f"{backend.application_name or '-'} · wait "
                      f"{backend.wait_event_type or '-'}/{backend.wait_event or '-'} · "
                      f"{one_line(backend.query) if backend.query else 'query ' + withheld}")
        self.query_one("#session-detail", Static).update(detail)

    def on_data_table_row_highlighted(self) -> None:
        self._show_session_detail()

    # ------------------------------------------------------------ keys
    def action_pause(self) -> None:
        self.paused = not self.paused
        self.say("Paused: p resumes, r polls once." if self.paused else "Polling resumed.")
        self._show_cost()

    def action_refresh_now(self) -> None:
        self.tick(force_full=True)

    def action_interval(self, step: int) -> None:
        index = INTERVALS.index(self.interval)
        self.interval = INTERVALS[max(0, min(len(INTERVALS) - 1, index + step))]
        self._arm()
        self._show_cost()
        self.say(f"Polling every {self.interval:g} s.")

    def action_tab(self, step: int) -> None:
        tabs = self.query_one(TabbedContent)
        index = TABS.index(tabs.active) if tabs.active in TABS else 0
        tabs.active = TABS[(index + step) % len(TABS)]
        # Focus follows: a focused widget left in the hidden pane would pull its tab back.
        pane = self.query_one(f"#{tabs.active}", TabPane)
        target = pane.query("#pg-sessions, VerticalScroll").first()
        target.focus()

    def action_read_sizes(self) -> None:
        self.say("Reading MongoDB's sizes (this server may take a while)…")
        dbs, actor = self.creatia.dbs, self.actor
        self.run_job(lambda: read_sizes(dbs, actor), self._sizes_read, group="monitor-sizes")

    def _sizes_read(self, sample: MongoSample) -> None:
        self.mongo_sizes = sample
        self.query_one("#storage-body", Static).update(
            _group(storage_tables(self.full_pg, self.full_mongo, self.mongo_sizes)))
        self.say(f"MongoDB sizes read in {sample.cost_ms:.0f} ms (Storage tab).")

    # ------------------------------------------------------------ actions
    def highlighted_backend(self) -> Backend | None:
        key = highlighted_key(self.query_one("#pg-sessions", DataTable))
        activity = self.last.pg.activity if self.last and self.last.pg else []
        return next((b for b in activity if str(b.pid) == key), None)

    def copy_target(self) -> tuple[str, str] | None:
        backend = self.highlighted_backend()
        return ("the backend's pid", str(backend.pid)) if backend else None

    def _confirm_then(
        self,
        question: str,
        yes: str,
        run: Callable[[psycopg.Connection[Any]], object],
        done: str,
    ) -> None:
        """Ask; on yes run the service call in a transaction, then say ``done`` and poll."""
        def answered(ok: bool | None) -> None:
            if ok:
                self.run_db(run, lambda _: self._acted(done), group="monitor-action")

        self.app.push_screen(ConfirmScreen(question, yes), answered)

    def _acted(self, note: str) -> None:
        self.say(note)
        self.tick(force_full=True)

    def _signal(self, terminate: bool) -> None:
        backend = self.highlighted_backend()
        if backend is None:
            self.say("Highlight a PostgreSQL session first (Sessions tab).", error=True)
            return
        actor, pid = self.actor, backend.pid
        what = "Terminate session" if terminate else "Cancel the query of session"
        query = one_line(backend.query).rstrip(".")[:80] if backend.query else ABSENT
        self._confirm_then(
            f"{what} {pid} ({backend.user_name or ABSENT}, {backend.database or ABSENT}): "
            f"{query}?",
            "Terminate" if terminate else "Cancel query",
            lambda conn: service.signal_backend(conn, actor, pid, terminate=terminate),
            f"Session {pid}: {'terminated' if terminate else 'query cancelled'}.",
        )

    def action_cancel_backend(self) -> None:
        self._signal(terminate=False)

    def action_terminate_backend(self) -> None:
        self._signal(terminate=True)

    def action_kill_operation(self) -> None:
        key = highlighted_key(self.query_one("#mongo-ops", DataTable))
        ops = self.last.mongo.operations if self.last and self.last.mongo else None
        op = next((o for o in ops or [] if str(o.opid) == key), None)
        if op is None:
            self.say("Highlight a MongoDB operation first (Sessions tab).", error=True)
            return
        actor, db, opid = self.actor, self.creatia.dbs.mongo, op.opid
        self._confirm_then(
            f"Kill MongoDB operation {opid} ({op.op or ABSENT} on {op.namespace or ABSENT}, "
            f"{num(op.running_s, '{:.0f}')} s)?",
            "Kill",
            lambda conn: service.kill_operation(conn, actor, db, opid),
            f"MongoDB operation {opid}: killed.",
        )

    def action_profiling(self) -> None:
        current = self.last.mongo.profiling_level if self.last and self.last.mongo else None
        options = [(label, value) for value, label in PROFILING_LEVELS.items()]

        def picked(value: str | None) -> None:
            if value is None or (current is not None and int(value) == current):
                return
            actor, db, level = self.actor, self.creatia.dbs.mongo, int(value)
            self._confirm_then(
                f"Set MongoDB's profiling level on {db.name} from {num(current)} to "
                f"{PROFILING_LEVELS[value]}? Level 2 records every operation and slows the "
                "server.",
                "Set level",
                lambda conn: service.set_profiling_level(conn, actor, db, level),
                f"Profiling level {level} set on {db.name}.",
            )

        self.app.push_screen(
            PickScreen("MongoDB profiling level", options,
                       None if current is None else str(current)),
            picked,
        )


def _group(parts: list[Table | Text]) -> Group:
    """The panels one under the other, a blank line apart, in one Static."""
    spaced: list[Any] = []
    for part in parts:
        spaced.extend([part, Text("")])
    return Group(*spaced[:-1])
