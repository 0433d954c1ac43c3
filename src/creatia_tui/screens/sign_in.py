"""Sign-in: email and password, checked against ``users.encrypted_password`` in a thread.

A refusal (wrong password, deactivated account, no active membership, database down) is one
sentence under the form; the password field is cleared and focused, the email kept. The
password lives in the Input widget only: it is never logged, stored or put in a message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Static
from textual.worker import get_current_worker

from creatia_tui.data.access import OrganizationChoice, sign_in
from creatia_tui.data.models import User
from creatia_tui.errors import UserError, one_line
from creatia_tui.screens.base import unexpected
from creatia_tui.widgets.status_line import StatusLine

if TYPE_CHECKING:
    from creatia_tui.app import CreatiaApp

log = logging.getLogger(__name__)


class SignInScreen(Screen[None]):
    """The first screen when the app was not given credentials."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    DEFAULT_CSS = """
    SignInScreen {
        align: center middle;
    }
    SignInScreen #sign-in {
        width: 56;
        max-width: 100%;
        height: auto;
        border: round $primary;
        padding: 0 1;
    }
    SignInScreen #sign-in-title {
        text-style: bold;
        width: 1fr;
        margin-bottom: 1;
    }
    SignInScreen Input {
        margin-bottom: 1;
    }
    SignInScreen #sign-in-error {
        color: $error;
        text-style: bold;
        height: auto;
    }
    SignInScreen Button {
        width: 1fr;
    }
    SignInScreen StatusLine {
        dock: bottom;
    }
    """

    def __init__(self, email: str = "", password: str | None = None) -> None:
        super().__init__()
        self._email = email
        # Given only by `creatia-tui demo` (the demo admin), submitted once on mount.
        self._auto_password = password

    @property
    def creatia(self) -> CreatiaApp:
        return cast("CreatiaApp", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(id="sign-in"):
            yield Static("Sign in to Creatia", id="sign-in-title")
            yield Label("Email")
            yield Input(self._email, placeholder="you@example.com", id="email")
            yield Label("Password")
            yield Input(placeholder="password", password=True, id="password")
            yield Static("", id="sign-in-error", markup=False)
            yield Button("Sign in", id="submit", variant="primary")
        yield StatusLine(self.creatia.dbs, show_latency=self.creatia.show_latency)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#password" if self._email else "#email", Input).focus()
        if self._auto_password is not None:
            password, self._auto_password = self._auto_password, None
            self.query_one("#password", Input).value = password
            self.submit()

    @property
    def error_text(self) -> str:
        return str(self.query_one("#sign-in-error", Static).render())

    def _fail(self, text: str) -> None:
        self.query_one("#sign-in-error", Static).update(text)
        self.query_one("#submit", Button).disabled = False
        password = self.query_one("#password", Input)
        password.value = ""
        password.focus()

    @on(Input.Submitted, "#email")
    def next_field(self) -> None:
        self.query_one("#password", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#submit")
    def submit(self) -> None:
        email = self.query_one("#email", Input).value.strip()
        password = self.query_one("#password", Input).value
        if not email or not password:
            self._fail("Type your email and password.")
            return
        self.query_one("#sign-in-error", Static).update("Signing in…")
        self.query_one("#submit", Button).disabled = True
        self._check(email, password)

    @work(thread=True, exclusive=True, group="sign-in", exit_on_error=False)
    def _check(self, email: str, password: str) -> None:
        worker = get_current_worker()
        result: tuple[User, list[OrganizationChoice]] | str
        try:
            with self.creatia.dbs.pg() as conn:
                result = sign_in(conn, email, password)
        except UserError as exc:
            result = one_line(str(exc))
        except Exception as exc:
            log.exception("sign-in failed")
            result = unexpected(exc)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._finish, result)

    def _finish(self, result: tuple[User, list[OrganizationChoice]] | str) -> None:
        if isinstance(result, str):
            self._fail(result)
            return
        user, choices = result
        self.creatia.signed_in(user, choices)
