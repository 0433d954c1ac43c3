"""Workers: the background jobs (snapshot sync, catch-up, consistency check, burndown), the
cache, and the consistency report with its repair. Reached from the command palette.

What it shows, and why (an operator's view):

- **Jobs.** The headless ``creatia-tui worker`` on an ops host publishes its jobs' states to
  MongoDB (ops/worker.py); every TUI shows them read-only, with the host and pid ("Where"), so
  anyone can see whether sync is running, how far behind it is and what failed. This TUI can
  also run the same jobs itself, in-process ("here"): ``s`` starts the highlighted job, ``x``
  stops it, ``n`` runs it now (once, when stopped). Jobs started here run until stopped or
  until the TUI exits, across screens; a headless worker is stopped on its host (SIGTERM).
  Starting, stopping and running need ``monitoring.manage`` and a platform admin (the jobs
  touch every organization), checked by the service before anything starts.
- **Cache.** This process's dashboard and task-statistics cache counters (data/cache.py):
  hits, misses, hit rate, invalidations.
- **Consistency.** The last stored report (counts, samples in the detail line); ``c`` checks
  now, ``R`` repairs after asking (permission-checked and audited, data/maintenance.py).

The jobs table is redrawn every 2 seconds from memory, published states are read every 10.
"""

from __future__ import annotations

import datetime as dt
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from creatia_tui.data.audit import ClientContext
from creatia_tui.data.cache import cache_stats
from creatia_tui.data.maintenance import (
    authorize_worker_control,
    consistency_report,
    repair_consistency,
)
from creatia_tui.errors import PermissionDenied, one_line
from creatia_tui.ops.consistency import ConsistencyReport, RepairResult
from creatia_tui.ops.worker import JobState, PublishedWorker, WorkerRunner, published_workers
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

TICK_SECONDS = 2.0
PUBLISHED_EVERY_TICKS = 5
HERE = "here"
JOB_WIDTH = 24
WHERE_WIDTH = 16

# The TUI's own runner, one per app (it outlives the screen: leaving the screen does not stop
# the jobs started here).
_RUNNERS: weakref.WeakKeyDictionary[App[Any], WorkerRunner] = weakref.WeakKeyDictionary()


def runner_for(app: Any) -> WorkerRunner:
    runner = _RUNNERS.get(app)
    if runner is None:
        runner = _RUNNERS[app] = WorkerRunner(app.dbs, label="tui")
    return runner


def stop_runner(app: Any, wait: float = 5.0) -> None:
    """Stop the jobs this app started (tests; an app that wants a clean exit)."""
    runner = _RUNNERS.pop(app, None)
    if runner is not None:
        runner.stop(wait=wait)


def ago(moment: dt.datetime | None, now: dt.datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def seconds_text(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value:.0f} s"
    return f"{value / 3600:.1f} h"


@dataclass(frozen=True)
class JobRow:
    key: str  # "here:<job>" or "<status id>:<job>"
    where: str
    state: JobState
    local: bool


JOB_COLUMNS = (
    ("job", "Job"), ("where", "Where"), ("state", "State"), ("last", "Last run"),
    ("took", "Took"), ("lag", "Lag"), ("items", "Items"), ("errors", "Errors"),
)
# Fixed widths: the findings arrive after the first paint, and an auto-sized column filled
# then was sometimes drawn at its label's width (seen in a loaded test run).
FINDING_WIDTH = 56
FINDING_COLUMNS = (("count", "Count", 6), ("finding", "Finding", FINDING_WIDTH), ("fix", "Fix", 6))


def job_cells(row: JobRow, now: dt.datetime) -> list[Text]:
    state = row.state
    return [
        fit(state.title, JOB_WIDTH),
        fit(row.where, WHERE_WIDTH),
        Text(state.state),
        Text(ago(state.last_run_at, now)),
        Text(seconds_text(state.last_seconds), justify="right"),
        Text(seconds_text(state.lag_seconds), justify="right"),
        Text(str(state.items), justify="right"),
        Text(str(state.errors), justify="right", style="bold" if state.errors else ""),
    ]


def cache_line() -> str:
    stats = cache_stats()
    rate = f"{stats.hit_rate * 100:.0f} % hit rate" if stats.hit_rate is not None else "no reads"
    misses = f"{stats.misses} miss" + ("" if stats.misses == 1 else "es")
    return (
        f"Cache (this session): {plural(stats.hits, 'hit')}, {misses} "
        f"({rate}), {plural(stats.invalidations, 'invalidation')}"
    )


def report_line(report: ConsistencyReport | None, refusal: str | None) -> str:
    if refusal:
        return f"Consistency: {refusal}"
    if report is None:
        return "Consistency: no report yet · c checks now"
    when = report.checked_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"Consistency {when}: {plural(report.problems, 'problem')}, "
        f"{report.repairable} repairable"
    )


class WorkersScreen(AppScreen):
    """Background jobs, the cache and the consistency report."""

    READ_PERMISSION = "monitoring.read"
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "start": "monitoring.manage",
        "stop": "monitoring.manage",
        "run_now": "monitoring.manage",
        "check": "monitoring.read",
        "repair": "monitoring.manage",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("n", "run_now", "Run"),
        Binding("c", "check", "Check"),
        Binding("R", "repair", "Repair"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    WorkersScreen #jobs {
        height: auto;
        max-height: 10;
    }
    WorkersScreen .line {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    WorkersScreen #report-title {
        text-style: bold;
        margin-top: 1;
    }
    WorkersScreen #findings {
        height: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.published: list[PublishedWorker] = []
        self.report: ConsistencyReport | None = None
        self.report_refusal: str | None = None
        self._rows: dict[str, JobRow] = {}
        self._ticks = 0

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        jobs: DataTable[Text] = DataTable(id="jobs", cursor_type="row", zebra_stripes=True)
        for key, label in JOB_COLUMNS:
            jobs.add_column(label, key=key)
        yield jobs
        yield Static("", id="job-detail", classes="line", markup=False)
        yield Static("", id="cache", classes="line", markup=False)
        yield Static("", id="report-title", classes="line", markup=False)
        yield Static("", id="finding-detail", classes="line", markup=False)
        findings: DataTable[Text] = DataTable(
            id="findings", cursor_type="row", zebra_stripes=True
        )
        for key, label, width in FINDING_COLUMNS:
            findings.add_column(label, key=key, width=width)
        yield findings

    @property
    def runner(self) -> WorkerRunner:
        return runner_for(self.app)

    @property
    def jobs_table(self) -> DataTable[Text]:
        return self.query_one("#jobs", DataTable)

    @property
    def findings_table(self) -> DataTable[Text]:
        return self.query_one("#findings", DataTable)

    def on_mount(self) -> None:
        self.jobs_table.focus()
        self._fill_jobs()
        self._show_report()
        self.action_reload()
        self.set_interval(TICK_SECONDS, self._tick)

    # ------------------------------------------------------------ reading
    def action_reload(self) -> None:
        dbs, actor = self.creatia.dbs, self.actor

        def load() -> tuple[list[PublishedWorker], ConsistencyReport | None, str | None]:
            workers = [
                w for w in published_workers(dbs) if w.status_id != self.runner.status_id
            ]
            try:
                return workers, consistency_report(dbs, actor), None
            except PermissionDenied as exc:
                return workers, None, one_line(str(exc))

        self.run_job(load, self._loaded, group="workers-read")

    def _loaded(
        self, loaded: tuple[list[PublishedWorker], ConsistencyReport | None, str | None]
    ) -> None:
        self.published, report, self.report_refusal = loaded
        if report is not None or self.report_refusal:
            self.report = report
        self._fill_jobs()
        self._show_report()
        if not self.message_text or self.message_text == "Loading…":
            self.say(self._summary())

    def _summary(self) -> str:
        here = [row for row in self._rows.values() if row.local]
        running = sum(1 for row in here if row.state.state != "stopped")
        headless = sum(1 for w in self.published if not w.gone())
        return (
            f"{plural(len(here), 'job')} here, {running} running · "
            f"{plural(headless, 'headless worker')} publishing"
        )

    def _tick(self) -> None:
        self._ticks += 1
        self._fill_jobs()
        if self._ticks % PUBLISHED_EVERY_TICKS == 0:
            self.action_reload()

    # ------------------------------------------------------------ the jobs table
    def _job_rows(self) -> dict[str, JobRow]:
        rows = {
            f"{HERE}:{state.name}": JobRow(f"{HERE}:{state.name}", HERE, state, True)
            for state in self.runner.states()
        }
        for published in self.published:
            where = f"{published.host}:{published.pid}"
            if published.gone():
                where += " (gone)"
            for state in published.jobs:
                key = f"{published.status_id}:{state.name}"
                rows[key] = JobRow(key, where, state, False)
        return rows

    def _fill_jobs(self) -> None:
        table = self.jobs_table
        now = dt.datetime.now(dt.timezone.utc)
        rows = self._job_rows()
        selected = highlighted_key(table)
        with self.app.batch_update():
            if [str(k.value) for k in table.rows] == list(rows):
                for key, row in rows.items():
                    for (column, _), new in zip(JOB_COLUMNS, job_cells(row, now), strict=True):
                        if table.get_cell(key, column) != new:
                            table.update_cell(key, column, new, update_width=True)
            else:
                table.clear()
                for key, row in rows.items():
                    table.add_row(*job_cells(row, now), key=key)
                if selected in rows:
                    table.move_cursor(row=table.get_row_index(selected))
        self._rows = rows
        self._show_job_detail()
        self.query_one("#cache", Static).update(cache_line())

    def _highlighted_job(self) -> JobRow | None:
        key = highlighted_key(self.jobs_table)
        return self._rows.get(key) if key else None

    def _show_job_detail(self) -> None:
        row = self._highlighted_job()
        text = ""
        if row is not None:
            state = row.state
            every = "a loop" if not state.interval else f"every {seconds_text(state.interval)}"
            last = state.last_error and f"last error: {state.last_error}"
            text = f"{state.name} ({every}): {last or state.last_summary or 'not run yet'}"
        self.query_one("#job-detail", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs":
            self._show_job_detail()
        else:
            self._show_finding_detail()

    # ------------------------------------------------------------ job control
    def _local_job(self) -> str | None:
        row = self._highlighted_job()
        if row is None:
            self.say("No job is highlighted.", error=True)
            return None
        if not row.local:
            self.say(
                f"{row.state.title} runs in the worker on {row.where}; stop or start it there.",
                error=True,
            )
            return None
        return row.state.name

    def _control(self, verb: str, name: str) -> None:
        dbs, actor, runner = self.creatia.dbs, self.actor, self.runner

        def job() -> str:
            authorize_worker_control(dbs, actor)
            getattr(runner, verb)(name)
            return name

        def done(_: str) -> None:
            what = {"start": "Started", "stop": "Stopping", "run_now": "Running"}[verb]
            self.say(f"{what} {name} here.")
            self._fill_jobs()

        self.run_job(job, done, group="workers-control")

    def action_start(self) -> None:
        name = self._local_job()
        if name:
            self._control("start", name)

    def action_stop(self) -> None:
        name = self._local_job()
        if name:
            self._control("stop", name)

    def action_run_now(self) -> None:
        name = self._local_job()
        if name:
            self._control("run_now", name)

    # ------------------------------------------------------------ consistency
    def _show_report(self) -> None:
        self.query_one("#report-title", Static).update(
            report_line(self.report, self.report_refusal)
        )
        table = self.findings_table
        with self.app.batch_update():
            table.clear()
            if self.report is not None:
                for finding in self.report.ordered():
                    table.add_row(
                        Text(str(finding.count), justify="right",
                             style="bold" if finding.count else ""),
                        fit(finding.title, FINDING_WIDTH),
                        Text("repair" if finding.repairable else "report"),
                        key=finding.kind,
                    )
        self._show_finding_detail()

    def _show_finding_detail(self) -> None:
        text = ""
        key = highlighted_key(self.findings_table)
        if self.report is not None and key:
            finding = self.report.findings.get(key)
            if finding and finding.samples:
                text = "e.g. " + " · ".join(finding.samples)
            elif finding is not None or key:
                text = "none found"
        self.query_one("#finding-detail", Static).update(text)

    def action_check(self) -> None:
        dbs, actor = self.creatia.dbs, self.actor
        self.say("Checking both databases…")

        def done(report: ConsistencyReport | None) -> None:
            self.report, self.report_refusal = report, None
            self._show_report()
            if report is not None:
                self.say(
                    f"Checked in {report.seconds:.1f} s: {plural(report.problems, 'problem')}."
                )

        self.run_job(lambda: consistency_report(dbs, actor, run=True), done,
                     group="workers-consistency")

    def action_repair(self) -> None:
        dbs, actor = self.creatia.dbs, self.actor
        client = ClientContext.current()

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing repaired.")
                return
            self.say("Repairing…")

            def done(result: RepairResult) -> None:
                self.report, self.report_refusal = result.after, None
                self._show_report()
                self.say(result.summary())

            self.run_job(lambda: repair_consistency(dbs, actor, client), done,
                         group="workers-consistency")

        self.app.push_screen(
            ConfirmScreen(
                "Repair every organization? Snapshots are rewritten and orphaned tasks "
                "quarantined (flagged, never deleted); the repair is audited.",
                yes="Repair",
            ),
            answered,
        )

    def copy_target(self) -> tuple[str, str] | None:
        row = self._highlighted_job()
        return ("the job's name", row.state.name) if row else None


__all__ = ["WorkersScreen", "runner_for", "stop_runner"]
