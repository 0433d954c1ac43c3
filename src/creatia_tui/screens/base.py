"""What every signed-in screen shares: the frame, database calls in threads, one-line errors.

The frame is the header (who, which organization), the screen's body, a message line, the status
line of both databases and the footer. A screen reads and writes through :meth:`AppScreen.run_db`:
the job runs in a thread worker on a pooled PostgreSQL connection (one transaction), and its
result, or its error as one sentence, comes back on the UI thread. A job whose worker was
cancelled by a newer one of the same group drops its result, so an old read never overwrites a
newer one.

Keys that need a permission are listed in ``ACTION_PERMISSIONS``; the footer, help and command
palette leave out the ones the signed-in user lacks. The services check again, so a key that is
pressed anyway (or a stale permission set) still ends in a refusal, not a change.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import psycopg
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from creatia_tui.data.access import Actor
from creatia_tui.errors import UserError, one_line, redact
from creatia_tui.session import Session
from creatia_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from creatia_tui.app import CreatiaApp

log = logging.getLogger(__name__)

T = TypeVar("T")


def unexpected(exc: BaseException) -> str:
    """A bug, said in one line; the traceback goes to the log file."""
    return one_line(f"Unexpected error: {type(exc).__name__}: {redact(str(exc))}")


class AppScreen(Screen[None]):
    """Base of the signed-in screens. Subclasses implement :meth:`compose_body`."""

    # action name -> permission the user must hold in the current organization
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {}
    # the permission needed to open the screen at all (None: anyone signed in)
    READ_PERMISSION: ClassVar[str | None] = None
    NEEDS_ORGANIZATION: ClassVar[bool] = True
    # Screens of the whole installation (backups): not offered to anyone else at all, even
    # where their role holds READ_PERMISSION in an organization (the services refuse them too).
    PLATFORM_ADMIN_ONLY: ClassVar[bool] = False
    # Actions on what every organization shares (a server): a platform admin's only, besides
    # their ACTION_PERMISSIONS entry (the services refuse everyone else too).
    PLATFORM_ADMIN_ACTIONS: ClassVar[frozenset[str]] = frozenset()

    BINDINGS: ClassVar[list[BindingType]] = [
        # Off the footer to leave room at 80 columns; listed by ? and the palette.
        Binding("y", "copy_id", "Copy id", show=False),
    ]

    DEFAULT_CSS = """
    AppScreen #message {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    AppScreen #message.-error {
        color: $error;
        text-style: bold;
    }
    """

    @property
    def creatia(self) -> CreatiaApp:
        return cast("CreatiaApp", self.app)

    @property
    def session(self) -> Session:
        session = self.creatia.session
        assert session is not None, "signed-in screens exist only after sign-in"
        return session

    @property
    def actor(self) -> Actor:
        actor = self.session.actor
        assert actor is not None, "this screen needs an organization"
        return actor

    # ------------------------------------------------------------ frame
    def compose(self) -> ComposeResult:
        yield Header()
        yield from self.compose_body()
        yield Static("", id="message", markup=False)
        yield StatusLine(self.creatia.dbs, show_latency=self.creatia.show_latency)
        yield Footer()

    def compose_body(self) -> Iterable[Widget]:
        raise NotImplementedError

    def say(self, text: str, *, error: bool = False) -> None:
        """Put one line on the message line (an error in the error colour)."""
        message = self.query_one("#message", Static)
        message.update(one_line(text) if error else text)
        message.set_class(error, "-error")

    @property
    def message_text(self) -> str:
        return str(self.query_one("#message", Static).render())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        permission = self.ACTION_PERMISSIONS.get(action)
        if permission is None or self.creatia.session is None:
            return True
        if action in self.PLATFORM_ADMIN_ACTIONS and not self.session.user.is_platform_admin:
            return False
        return self.session.may(permission)

    def palette_commands(self) -> Iterable[SystemCommand]:
        """Extra command-palette entries of this screen (saved filters, say)."""
        return ()

    # ------------------------------------------------------------ copying
    def copy_target(self) -> tuple[str, str] | None:
        """(what, text) to copy with ``y``: the highlighted row's id, say."""
        return None

    def action_copy_id(self) -> None:
        target = self.copy_target()
        if target is None:
            self.say("Nothing to copy here.", error=True)
            return
        what, text = target
        self.creatia.copy_text(text, what)

    # ------------------------------------------------------------ database work
    def run_db(
        self,
        job: Callable[[psycopg.Connection[Any]], T],
        done: Callable[[T], Any],
        *,
        failed: Callable[[str], Any] | None = None,
        group: str = "db",
        exclusive: bool = True,
    ) -> None:
        """Run ``job(conn)`` in a thread on a pooled connection, in one transaction; then
        ``done(result)`` or ``failed(sentence)`` on the UI thread (``failed`` defaults to the
        message line)."""
        run_db(
            self, job, done, failed=failed or (lambda text: self.say(text, error=True)),
            group=group, exclusive=exclusive,
        )

    def run_job(
        self,
        job: Callable[[], T],
        done: Callable[[T], Any],
        *,
        failed: Callable[[str], Any] | None = None,
        group: str = "db",
        exclusive: bool = True,
    ) -> None:
        """Run a blocking ``job()`` in a thread worker; see :meth:`run_db`."""
        run_job(
            self, job, done, failed=failed or (lambda text: self.say(text, error=True)),
            group=group, exclusive=exclusive,
        )


def run_db(
    node: Widget,
    job: Callable[[psycopg.Connection[Any]], T],
    done: Callable[[T], Any],
    *,
    failed: Callable[[str], Any],
    group: str = "db",
    exclusive: bool = True,
) -> None:
    """:func:`run_job` on a pooled PostgreSQL connection, in one transaction."""
    dbs = cast("CreatiaApp", node.app).dbs

    def with_connection() -> T:
        with dbs.pg() as conn:
            return job(conn)

    run_job(node, with_connection, done, failed=failed, group=group, exclusive=exclusive)


def run_job(
    node: Widget,
    job: Callable[[], T],
    done: Callable[[T], Any],
    *,
    failed: Callable[[str], Any],
    group: str = "db",
    exclusive: bool = True,
) -> None:
    """Run a blocking ``job()`` in a thread worker of ``node``; then ``done(result)``, or
    ``failed(sentence)`` for a UserError (or a bug, logged), on the UI thread. Dropped when a
    newer job of the same group replaced it or ``node`` is gone."""

    def work() -> None:
        worker = get_current_worker()
        outcome: Callable[[], Any]
        try:
            result = job()
        except UserError as exc:
            outcome = partial(failed, one_line(str(exc)))
        except Exception as exc:  # a bug: keep the app running, say it in one line
            log.exception("database job failed")
            outcome = partial(failed, unexpected(exc))
        else:
            outcome = partial(done, result)

        def deliver() -> None:
            if worker.is_cancelled or not node.is_attached:
                return
            try:
                outcome()
            except Exception as exc:  # a bug in showing the result: say so, keep running
                log.exception("showing a job's result failed")
                failed(unexpected(exc))

        with contextlib.suppress(RuntimeError):  # the app closed while the job ran
            node.app.call_from_thread(deliver)

    node.run_worker(work, thread=True, group=group, exclusive=exclusive, exit_on_error=False)
