"""Background workers: a small job registry and a runner with one thread per job.

A :class:`Job` is a name, a title, an interval and a ``run_once(ctx)`` callable returning a
:class:`JobOutcome` (items processed, a one-line summary, errors, the lag it saw). ``JOBS`` is
the registry; adding a job is one line there (or ``JOBS.append(Job(...))`` from elsewhere):

    Job("backup", "Daily backup", 24 * 3600, backup_once),

:class:`WorkerRunner` runs the jobs: each in its own thread, ``run_once`` then a wait of
``interval`` seconds (or until :meth:`WorkerRunner.run_now`), until stopped. A job with interval
0 is a loop that blocks inside ``run_once`` (the LISTEN sync returns every few seconds so it
sees a stop promptly). A failing run is counted, logged, and retried after the interval
(at least 5 s): one bad run never stops the worker.

Where the state lives: every runner keeps each job's :class:`JobState` in memory, and a runner
that publishes (``creatia-tui worker``, and the TUI's in-process runner) writes it to MongoDB's
``sync_state`` as ``{_id: "worker:<host>:<pid>", kind: "worker", heartbeat_at, jobs: [...]}``
after every run and every 10 s, so the Workers screen of any TUI shows the ops host's workers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pymongo.errors import PyMongoError

from creatia_tui.data.db import Databases
from creatia_tui.errors import UserError, one_line
from creatia_tui.ops import sync

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_AFTER_SECONDS = 60.0  # a published worker silent this long is shown as gone
RETRY_FLOOR_SECONDS = 5.0
LISTEN_SLICE_SECONDS = 5.0


@dataclass
class JobOutcome:
    items: int = 0
    summary: str = ""
    errors: list[str] = field(default_factory=list)
    lag_seconds: float | None = None


@dataclass
class JobContext:
    dbs: Databases
    should_stop: Callable[[], bool]
    # What a job keeps between runs (the LISTEN connection); closed when the job stops.
    memory: dict[str, Any] = field(default_factory=dict)
    on_stop: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    name: str
    title: str
    interval: float  # seconds between runs; 0 = run again at once (a loop)
    run_once: Callable[[JobContext], JobOutcome]


@dataclass
class JobState:
    """What the Workers screen shows of a job."""

    name: str
    title: str
    interval: float
    state: str = "stopped"  # stopped, waiting, running, stopping
    runs: int = 0
    items: int = 0  # processed, since the runner started
    errors: int = 0
    last_run_at: dt.datetime | None = None
    last_seconds: float | None = None
    last_summary: str = ""
    last_error: str | None = None
    lag_seconds: float | None = None
    next_run_at: dt.datetime | None = None

    def to_document(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> JobState:
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in doc.items() if key in known})


# ---------------------------------------------------------------- the jobs
def _sync_outcome(result: sync.SyncResult) -> JobOutcome:
    lag = None
    if result.newest_change is not None:
        lag = max(0.0, (sync.utcnow() - result.newest_change).total_seconds())
    return JobOutcome(
        items=result.snapshots_written + result.deleted + result.tasks_modified,
        summary=result.summary(),
        errors=list(result.errors),
        lag_seconds=lag,
    )


def listen_once(ctx: JobContext) -> JobOutcome:
    """Real-time sync: LISTEN for a few seconds, syncing each burst of notifications."""
    listener = ctx.memory.get("listener")
    if listener is None:
        listener = ctx.memory["listener"] = sync.SnapshotListener(ctx.dbs)
        ctx.on_stop.append(listener.close)
    result = listener.run(ctx.should_stop, max_seconds=LISTEN_SLICE_SECONDS)
    outcome = _sync_outcome(result)
    if not (result.snapshots_written or result.deleted or result.tasks_modified):
        outcome.summary = f"listening; {listener.stats.notifications} notifications so far"
    return outcome


def catch_up_once(ctx: JobContext) -> JobOutcome:
    """The periodic catch-up by watermark (what a lost notification would have done)."""
    result = sync.catch_up(ctx.dbs, should_stop=ctx.should_stop)
    outcome = _sync_outcome(result)
    with ctx.dbs.pg() as conn:
        row = conn.execute("SELECT max(updated_at) AS newest FROM users").fetchone()
    newest = row["newest"] if row else None
    mark = sync.load_watermark(ctx.dbs.mongo)
    outcome.lag_seconds = (
        max(0.0, (newest - mark.updated_at).total_seconds()) if newest is not None else 0.0
    )
    return outcome


def consistency_once(ctx: JobContext) -> JobOutcome:
    from creatia_tui.ops.consistency import check_consistency

    report = check_consistency(ctx.dbs)
    return JobOutcome(
        items=report.tasks + report.users,
        summary=f"{report.problems} problems ({report.repairable} repairable)",
    )


def burndown_once(ctx: JobContext) -> JobOutcome:
    """The daily burndown recording; idempotent, so it runs hourly and records each closed day
    soon after midnight UTC whenever the worker started."""
    from creatia_tui.data import burndown

    run = burndown.run_once(ctx.dbs)
    return JobOutcome(
        items=getattr(run, "points", 0),
        summary=(
            f"{getattr(run, 'sprints', 0)} active sprints in "
            f"{getattr(run, 'organizations', 0)} organizations, "
            f"{getattr(run, 'points', 0)} points recorded"
        ),
        errors=list(getattr(run, "errors", [])),
    )


class _StopAsEvent:
    """The runner's stop question in the shape the backup's cancel takes (``is_set``)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        self.is_set = should_stop


def backup_once(ctx: JobContext) -> JobOutcome:
    """The scheduled backup (issue 8): it decides from the backup folder whether one is due
    (daily by default), so running it every 15 minutes never doubles or skips one; a stop
    cancels a backup in progress and leaves nothing partial."""
    from creatia_tui.ops.backup import run_scheduled_backup

    cancel: Any = _StopAsEvent(ctx.should_stop)
    outcome = run_scheduled_backup(ctx.dbs.settings, cancel=cancel)
    return JobOutcome(items=1 if outcome.ran else 0, summary=outcome.reason)


JOBS: list[Job] = [
    Job("snapshot-listener", "Snapshot sync (LISTEN)", 0, listen_once),
    Job("snapshot-catch-up", "Snapshot catch-up", 300, catch_up_once),
    Job("consistency-check", "Consistency check", 3600, consistency_once),
    Job("burndown", "Burndown recording", 3600, burndown_once),
    Job("backup", "Scheduled backup", 900, backup_once),
]


def job_named(name: str) -> Job:
    for job in JOBS:
        if job.name == name:
            return job
    raise UserError(f"There is no worker named {name!r}.")


# ---------------------------------------------------------------- the runner
class _Handle:
    def __init__(self, job: Job, dbs: Databases, on_change: Callable[[], None]) -> None:
        self.job = job
        self.dbs = dbs
        self.state = JobState(job.name, job.title, job.interval)
        self._on_change = on_change
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ctx: JobContext | None = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, once: bool = False) -> None:
        with self._lock:
            if self.alive:
                self._wake.set()
                return
            self._stop.clear()
            self._wake.clear()
            self._thread = threading.Thread(
                target=self._loop, args=(once,), name=f"worker-{self.job.name}", daemon=True
            )
            self.state.state = "running" if once else "waiting"
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self.alive:
            self.state.state = "stopping"

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _loop(self, once: bool) -> None:
        ctx = self._ctx = JobContext(self.dbs, self._stop.is_set)
        try:
            while not self._stop.is_set():
                failed = self._run(ctx)
                if once:
                    break
                pause = self.job.interval
                if failed:
                    pause = max(pause, RETRY_FLOOR_SECONDS)
                if pause > 0:
                    self.state.next_run_at = sync.utcnow() + dt.timedelta(seconds=pause)
                    self.state.state = "waiting"
                    self._on_change()
                    self._wake.wait(pause)
                    self._wake.clear()
        finally:
            for close in ctx.on_stop:
                with contextlib.suppress(Exception):
                    close()
            self.state.state = "stopped"
            self.state.next_run_at = None
            self._on_change()

    def _run(self, ctx: JobContext) -> bool:
        state = self.state
        state.state = "running"
        state.next_run_at = None
        started = time.monotonic()
        failed = False
        try:
            outcome = self.job.run_once(ctx)
        except (UserError, PyMongoError, OSError) as exc:
            outcome = JobOutcome(errors=[one_line(str(exc))])
            failed = True
        except Exception as exc:  # a bug in a job must not end the worker
            log.exception("worker %s failed", self.job.name)
            outcome = JobOutcome(errors=[f"{type(exc).__name__}: {one_line(str(exc))}"])
            failed = True
        state.runs += 1
        state.items += outcome.items
        state.last_run_at = sync.utcnow()
        state.last_seconds = round(time.monotonic() - started, 3)
        if outcome.summary:
            state.last_summary = outcome.summary
        if outcome.lag_seconds is not None:
            state.lag_seconds = round(outcome.lag_seconds, 3)
        if outcome.errors:
            state.errors += len(outcome.errors)
            state.last_error = outcome.errors[-1]
            log.warning("worker %s: %s", self.job.name, "; ".join(outcome.errors))
        elif outcome.items:
            log.info("worker %s: %s", self.job.name, outcome.summary)
        self._on_change()
        return failed


class WorkerRunner:
    """Runs jobs in threads; optionally publishes their states to MongoDB."""

    def __init__(
        self,
        dbs: Databases,
        jobs: list[Job] | None = None,
        *,
        publish: bool = True,
        label: str = "worker",
    ) -> None:
        self.dbs = dbs
        self.publish = publish
        self.status_id = f"worker:{socket.gethostname()}:{os.getpid()}:{label}"
        self.label = label
        self.started_at = sync.utcnow()
        self._handles = {
            job.name: _Handle(job, dbs, self._changed) for job in (jobs or list(JOBS))
        }
        self._publish_lock = threading.Lock()
        self._last_publish = 0.0
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # ------------------------------------------------------------ control
    def names(self) -> list[str]:
        return list(self._handles)

    def _handle(self, name: str) -> _Handle:
        handle = self._handles.get(name)
        if handle is None:
            raise UserError(f"There is no worker named {name!r}.")
        return handle

    def start(self, name: str | None = None) -> None:
        for handle in self._select(name):
            handle.start()
        self._ensure_heartbeat()

    def run_now(self, name: str) -> None:
        """Run the job at once: wakes a waiting job, or runs a stopped one a single time."""
        self._handle(name).start(once=not self._handle(name).alive)

    def stop(self, name: str | None = None, *, wait: float = 0.0) -> None:
        handles = self._select(name)
        for handle in handles:
            handle.stop()
        deadline = time.monotonic() + wait
        for handle in handles:
            handle.join(max(0.0, deadline - time.monotonic()))
        if name is None:
            self._heartbeat_stop.set()
            self._publish(final=True)

    def _select(self, name: str | None) -> list[_Handle]:
        return list(self._handles.values()) if name is None else [self._handle(name)]

    def states(self) -> list[JobState]:
        return [JobState(**asdict(handle.state)) for handle in self._handles.values()]

    def running(self) -> bool:
        return any(handle.alive for handle in self._handles.values())

    # ------------------------------------------------------------ publishing
    def _ensure_heartbeat(self) -> None:
        if not self.publish or (self._heartbeat is not None and self._heartbeat.is_alive()):
            return
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._beat, name="worker-heartbeat", daemon=True
        )
        self._heartbeat.start()

    def _beat(self) -> None:
        while not self._heartbeat_stop.wait(HEARTBEAT_SECONDS):
            self._publish()

    def _changed(self) -> None:
        self._publish()

    def _publish(self, final: bool = False) -> None:
        if not self.publish:
            return
        with self._publish_lock:
            now = sync.utcnow()
            document = {
                "kind": "worker",
                "label": self.label,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "started_at": self.started_at,
                "heartbeat_at": now,
                "stopped": final,
                "jobs": [state.to_document() for state in self.states()],
            }
            try:
                self.dbs.mongo[sync.STATE_COLLECTION].replace_one(
                    {"_id": self.status_id}, {"_id": self.status_id, **document}, upsert=True
                )
            except PyMongoError as exc:
                log.warning("worker status not published: %s", one_line(str(exc)))


@dataclass
class PublishedWorker:
    status_id: str
    label: str
    host: str
    pid: int
    heartbeat_at: dt.datetime
    stopped: bool
    jobs: list[JobState]

    def gone(self, now: dt.datetime | None = None) -> bool:
        age = ((now or sync.utcnow()) - self.heartbeat_at).total_seconds()
        return self.stopped or age > STALE_AFTER_SECONDS


def published_workers(
    dbs: Databases, *, within_seconds: float = 24 * 3600
) -> list[PublishedWorker]:
    """Workers that published a state in the last day (newest first)."""
    since = sync.utcnow() - dt.timedelta(seconds=within_seconds)
    found = []
    for doc in dbs.mongo[sync.STATE_COLLECTION].find(
        {"kind": "worker", "heartbeat_at": {"$gte": since}}
    ).sort("heartbeat_at", -1):
        found.append(
            PublishedWorker(
                status_id=doc["_id"],
                label=doc.get("label", "worker"),
                host=doc.get("host", "?"),
                pid=int(doc.get("pid", 0)),
                heartbeat_at=doc["heartbeat_at"],
                stopped=bool(doc.get("stopped")),
                jobs=[JobState.from_document(job) for job in doc.get("jobs", [])],
            )
        )
    return found


def run_headless(
    dbs: Databases,
    stop: threading.Event,
    jobs: list[Job] | None = None,
    *,
    label: str = "worker",
    grace_seconds: float = 20.0,
) -> WorkerRunner:
    """Run the jobs until `stop` is set (SIGTERM), then stop them and wait for them."""
    runner = WorkerRunner(dbs, jobs, label=label)
    log.info("%s starting: %s", label, ", ".join(runner.names()))
    runner.start()
    while not stop.wait(1.0):
        pass
    log.info("%s stopping", label)
    runner.stop(wait=grace_seconds)
    log.info("%s stopped", label)
    return runner
