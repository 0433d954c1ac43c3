"""One line that says whether PostgreSQL and MongoDB answer, and how fast.

    PostgreSQL ● up 3 ms · MongoDB ● up 2 ms
    PostgreSQL ● down, retry in 7 s: connection refused · MongoDB ● up 2 ms

The state is spelled out ("up", "down") so it reads the same under NO_COLOR; the dot's colour
only repeats it. The checks run in a thread worker, and the next poll is armed only when the
previous one has finished, so a server that hangs until its connect timeout delays the next
check instead of piling checks up behind it.

Outages: the state lives in the shared :class:`~creatia_tui.data.db.Link` of each database, so
every screen's line shows what the last check anywhere found, at once. A database that is down is
checked again only when its backoff (exponential, jittered, capped at 30 s) is due; the line
counts down to that attempt, and an answer turns it back to "up" by itself.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from textual import work
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.worker import Worker, WorkerState, get_current_worker

from creatia_tui.data.db import Databases, Link
from creatia_tui.ops.health import ServiceHealth, measure

__all__ = ["ServiceHealth", "StatusLine", "measure", "render_status"]

POLL_GROUP = "status-line"
SEPARATOR = " · "
DOT = "●"
MIN_DELAY_S = 0.2


def health_of(link: Link) -> ServiceHealth:
    """What the shared link says about one database, as the line shows it."""
    error = link.error.cause if link.error is not None else None
    return ServiceHealth(link.name, up=link.up, latency_ms=link.latency_ms, error=error)


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
        # What another screen's line already knows shows at once; the countdown ticks each
        # second while a database is down.
        self.services = tuple(health_of(link) for link in self.links)
        self.set_interval(1.0, self._tick)
        self.poll()

    def _tick(self) -> None:
        if any(link.down for link in self.links):
            self.services = tuple(health_of(link) for link in self.links)
            self.refresh()

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

    @property
    def links(self) -> tuple[Link, Link]:
        return (self.dbs.pg_link, self.dbs.mongo_link)

    @work(thread=True, exclusive=True, group=POLL_GROUP, exit_on_error=False)
    def _check(self) -> None:
        worker = get_current_worker()
        services = list(self.services)
        dbs = self.dbs
        checks = ((dbs.pg_link, dbs.check_pg), (dbs.mongo_link, dbs.check_mongo))
        for index, (link, check) in enumerate(checks):
            if link.down and link.retry_in() > 0:
                services[index] = health_of(link)  # backing off: not this time
            else:
                services[index] = measure(link.name, check)
            # Posted after each check: a refused PostgreSQL shows at once, even while MongoDB
            # makes us wait out its server-selection timeout.
            if worker.is_cancelled:
                return
            self.post_message(self.Checked(tuple(services)))

    def on_status_line_checked(self, message: StatusLine.Checked) -> None:
        self.services = message.services
        self.refresh()

    def next_delay(self) -> float:
        """The normal interval, or sooner when a database's retry falls due before it."""
        now = time.monotonic()
        due = [link.retry_in(now) for link in self.links if link.down]
        return max(MIN_DELAY_S, min([self.interval, *due]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != POLL_GROUP:
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            # Re-armed here rather than by set_interval: the next poll waits for this one.
            if self._timer is not None:
                self._timer.stop()  # one pending poll at most, even after a manual poll()
            self._timer = self.set_timer(self.next_delay(), self.poll)

    # ------------------------------------------------------------ rendering
    def _head(self, service: ServiceHealth) -> Content:
        if service.up is None:
            return Content.assemble(f"{service.name} ", (DOT, "$text-muted"), " checking…")
        if service.up:
            state = "up"
            if self.show_latency and service.latency_ms is not None:
                state = f"up {service.latency_ms:.0f} ms"
            return Content.assemble(f"{service.name} ", (DOT, "$success"), f" {state}")
        retry = ""
        dbs: Databases | None = getattr(self, "dbs", None)  # None in pure rendering tests
        links = (dbs.pg_link, dbs.mongo_link) if dbs is not None else ()
        link = next((k for k in links if k.name == service.name), None)
        # The countdown varies per run like the latency: snapshot tests turn both off.
        if link is not None and link.down and self.show_latency:
            wait = link.retry_in()
            retry = f", retry in {wait:.0f} s" if wait >= 0.5 else ", retrying"
        return Content.assemble(
            f"{service.name} ", (DOT, "$error"), " ", ("down", "bold $error"), retry
        )

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
