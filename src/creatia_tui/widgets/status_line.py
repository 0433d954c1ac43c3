"""One line that says whether PostgreSQL and MongoDB answer, and how fast.

    PostgreSQL ● up 3 ms · MongoDB ● up 2 ms
    PostgreSQL ● down: PostgreSQL at 127.0.0.1:1/none is unavailable: … · MongoDB ● up 2 ms

The state is spelled out ("up", "down") so it reads the same under NO_COLOR; the dot's colour
only repeats it. The checks run in a thread worker, and the next poll is armed only when the
previous one has finished, so a server that hangs until its connect timeout delays the next
check instead of piling checks up behind it. A later issue grows this into reconnect/backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from textual import work
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.worker import Worker, WorkerState, get_current_worker

from creatia_tui.data.db import Databases
from creatia_tui.errors import DatabaseUnavailable, UserError, one_line, redact

log = logging.getLogger(__name__)

POLL_GROUP = "status-line"
SEPARATOR = " · "
DOT = "●"


@dataclass(frozen=True)
class ServiceHealth:
    """One database's last check; ``up is None`` until the first check has answered."""

    name: str
    up: bool | None = None
    latency_ms: float | None = None
    error: str | None = None


def measure(name: str, check: Callable[[], None]) -> ServiceHealth:
    """Run one blocking check and time it (call from a worker thread, never the UI thread)."""
    started = time.perf_counter()
    try:
        check()
    except DatabaseUnavailable as exc:
        return ServiceHealth(name, up=False, error=exc.cause)  # the line names the database
    except UserError as exc:
        return ServiceHealth(name, up=False, error=one_line(str(exc)))
    except Exception as exc:
        # A probe that fails in a way the data layer did not foresee still means "down"; the
        # log keeps the traceback for whoever fixes the data layer.
        log.warning("%s health check failed", name, exc_info=True)
        reason = f"{type(exc).__name__}: {redact(str(exc))}"
        return ServiceHealth(name, up=False, error=one_line(reason))
    return ServiceHealth(name, up=True, latency_ms=(time.perf_counter() - started) * 1000)


class StatusLine(Widget):
    """Polls ``dbs.check_pg()`` and ``dbs.check_mongo()`` and shows the result on one line."""

    DEFAULT_CSS = """
    StatusLine {
        height: 1;
        width: 1fr;
        padding: 0 1;
        background: $panel;
        color: $foreground;
    }
    """

    class Checked(Message):
        """Posted after every poll, so screens can react to an outage without polling again."""

        def __init__(self, services: tuple[ServiceHealth, ...]) -> None:
            super().__init__()
            self.services = services

    def __init__(
        self,
        dbs: Databases,
        *,
        interval: float = 5.0,
        show_latency: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.dbs = dbs
        self.interval = interval
        # Snapshot tests turn latency off: it is the only part of the line that varies per run.
        self.show_latency = show_latency
        self.services: tuple[ServiceHealth, ...] = (
            ServiceHealth("PostgreSQL"),
            ServiceHealth("MongoDB"),
        )
        self._timer: Timer | None = None

    def on_mount(self) -> None:
        self.poll()

    def poll(self) -> None:
        """Start a check now (a no-op while one is running)."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if any(
            w.node is self and w.group == POLL_GROUP and not w.is_finished for w in self.workers
        ):
            return
        self._check()

    @work(thread=True, exclusive=True, group=POLL_GROUP, exit_on_error=False)
    def _check(self) -> None:
        worker = get_current_worker()
        services = list(self.services)
        checks = (("PostgreSQL", self.dbs.check_pg), ("MongoDB", self.dbs.check_mongo))
        for index, (name, check) in enumerate(checks):
            services[index] = measure(name, check)
            # Posted after each check: a refused PostgreSQL shows at once, even while MongoDB
            # makes us wait out its server-selection timeout.
            if worker.is_cancelled:
                return
            self.post_message(self.Checked(tuple(services)))

    def on_status_line_checked(self, message: StatusLine.Checked) -> None:
        self.services = message.services
        self.refresh()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != POLL_GROUP:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            # Re-armed here rather than by set_interval: the next poll waits for this one.
            if self._timer is not None:
                self._timer.stop()  # one pending poll at most, even after a manual poll()
            self._timer = self.set_timer(self.interval, self.poll)

    # ------------------------------------------------------------ rendering
    def _head(self, service: ServiceHealth) -> Content:
        if service.up is None:
            return Content.assemble(f"{service.name} ", (DOT, "$text-muted"), " checking…")
        if service.up:
            state = "up"
            if self.show_latency and service.latency_ms is not None:
                state = f"up {service.latency_ms:.0f} ms"
            return Content.assemble(f"{service.name} ", (DOT, "$success"), f" {state}")
        return Content.assemble(f"{service.name} ", (DOT, "$error"), " ", ("down", "bold $error"))

    def render(self) -> Content:
        return render_status(
            [self._head(s) for s in self.services],
            [s.error if s.up is False else None for s in self.services],
            self.content_size.width,
        )


def render_status(heads: Sequence[Content], reasons: Sequence[str | None], width: int) -> Content:
    """Join the parts, sharing what width is left among the reasons of the databases that are down.

    Cropping the line as a whole would let a long PostgreSQL error hide MongoDB's state.
    """
    fixed = sum(h.cell_length for h in heads) + len(SEPARATOR) * (len(heads) - 1)
    down = [r for r in reasons if r]
    room = (width - fixed) // len(down) if down else 0
    parts = []
    for head, reason in zip(heads, reasons, strict=True):
        if reason and room > 4:
            head = head + Content(f": {reason}").truncate(room, ellipsis=True)
        parts.append(head)
    line = Content(SEPARATOR).join(parts)
    return line.truncate(width, ellipsis=True) if width > 0 else line
