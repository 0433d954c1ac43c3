"""Modal forms that save through a data service and stay open until the save succeeds.

A form collects its fields into a job (``collect``), which may refuse at once with a
ValidationError (a field that cannot be right); the job then runs in a thread in one transaction
through the service, which validates again and checks the permission. A refusal from either is
one line at the bottom of the form, with everything typed still there: nothing is lost, nothing
half written. On success the form closes with the service's result.

Keys: ctrl+s saves from anywhere in the form, enter saves from a one-line field, tab moves
between fields, escape cancels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, TypeVar

import psycopg
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Label, Static

from creatia_tui.errors import UserError, one_line
from creatia_tui.screens.base import run_db

T = TypeVar("T")

Job = Callable[[psycopg.Connection[Any]], T]


def field(label: str, widget: Widget) -> Iterable[Widget]:
    """A label and its field, for the form's two-column grid."""
    yield Label(label, classes="form-label")
    yield widget


class FormScreen(ModalScreen[T | None], Generic[T]):
    """Subclasses give ``TITLE_TEXT``, ``compose_fields`` and ``collect``."""

    TITLE_TEXT: ClassVar[str] = "Form"
    SAVE_LABEL: ClassVar[str] = "Save"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    DEFAULT_CSS = """
    FormScreen {
        align: center middle;
    }
    FormScreen > Vertical {
        width: 72;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    FormScreen .form-title {
        text-style: bold;
        width: 1fr;
        margin-bottom: 1;
    }
    FormScreen Grid {
        grid-size: 2;
        grid-columns: 12 1fr;
        grid-rows: auto;
        grid-gutter: 1 1;
        height: auto;
    }
    FormScreen .form-label {
        width: 1fr;
        height: 1;
        text-align: right;
        color: $text-muted;
    }
    FormScreen TextArea {
        border: none;
        height: 5;
    }
    FormScreen .form-hint {
        color: $text-muted;
        height: auto;
    }
    FormScreen #form-error {
        color: $error;
        text-style: bold;
        height: auto;
        margin-top: 1;
    }
    FormScreen Horizontal {
        width: 100%;
        height: auto;
        margin-top: 1;
    }
    FormScreen Horizontal > Button {
        width: 1fr;
        min-width: 8;
        margin: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.form_title(), classes="form-title", markup=False)
            with Grid():
                yield from self.compose_fields()
            yield from self.compose_after_fields()
            yield Static("", id="form-error", markup=False)
            with Horizontal():
                yield Button(f"{self.SAVE_LABEL} (^s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def form_title(self) -> str:
        return self.TITLE_TEXT

    def compose_fields(self) -> Iterable[Widget]:
        raise NotImplementedError

    def compose_after_fields(self) -> Iterable[Widget]:
        return ()

    def collect(self) -> Job[T]:
        """The job that saves the form; raise ValidationError for a field that cannot be right."""
        raise NotImplementedError

    def on_mount(self) -> None:
        first = next(iter(self.query(Input)), None)
        if first is not None:
            first.focus()

    # ------------------------------------------------------------ saving
    @property
    def error_text(self) -> str:
        return str(self.query_one("#form-error", Static).render())

    def show_error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(one_line(text) if text else "")
        self.query_one("#save", Button).disabled = False

    def action_save(self) -> None:
        if self.query_one("#save", Button).disabled:
            return  # a save is already running
        try:
            job = self.collect()
        except UserError as exc:
            self.show_error(str(exc))
            return
        self.query_one("#form-error", Static).update("Saving…")
        self.query_one("#save", Button).disabled = True
        run_db(self, job, self.dismiss, failed=self.show_error, group="form-save")

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def input_submitted(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self) -> None:
        self.action_cancel()
