"""Forms of the board: a task (new or edit), logging time, and the filter.

Fields are checked here only where the text cannot be read at all (a date that is not a date,
hours that are not a number); the service validates everything again and refuses with one
sentence, and the form stays open with what was typed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Button, Input, Static, TextArea

from creatia_tui.data.access import Actor
from creatia_tui.data.board import BoardService, MemberChoice, TaskDraft
from creatia_tui.data.models import TASK_PRIORITIES, TASK_STATUSES, Task
from creatia_tui.data.saved_filters import SavedFilter, save_filter
from creatia_tui.data.task_filters import (
    DUE_CHOICES,
    ME,
    NO_SPRINT,
    UNASSIGNED,
    TaskFilter,
    validate,
)
from creatia_tui.errors import UserError, ValidationError, one_line
from creatia_tui.screens.base import run_job
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.widgets.choice import Choice


def parse_date(text: str, what: str) -> dt.datetime | None:
    """YYYY-MM-DD as midnight UTC; empty is None."""
    text = text.strip()
    if not text:
        return None
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError(f"The {what} {text!r} is not a date like 2026-12-01.") from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


def parse_hours(text: str, what: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValidationError(f"The {what} {text!r} is not a number of hours.") from None


def parse_words(text: str) -> list[str]:
    """"ui, 프론트엔드 , api" -> ["ui", "프론트엔드", "api"] (commas separate)."""
    return [word.strip() for word in text.split(",") if word.strip()]


def _day(value: dt.datetime | None) -> str:
    return value.date().isoformat() if value else ""


class TaskForm(FormScreen[Task]):
    """A new task (``task=None``) or the editable fields of one."""

    # No blank row between fields: with the gutter of FormScreen a new task's eight fields push
    # the buttons past the bottom at 80x24. The rows are given because an auto grid row sizes a
    # TextArea by its text (one line), not by its height.
    DEFAULT_CSS = """
    TaskForm Grid {
        grid-gutter: 0 1;
        grid-rows: 1 3 1 1 1 1 1 1;
    }
    TaskForm TextArea {
        height: 3;
    }
    """

    def __init__(self, service: BoardService, task: Task | None, status: str = "todo") -> None:
        super().__init__()
        self.service = service
        self.task_ = task
        self.status = status

    def form_title(self) -> str:
        return f"Edit {self.task_.task_id}" if self.task_ else "New task"

    def compose_fields(self) -> Iterable[Widget]:
        task = self.task_
        yield from field("Title", Input(task.title if task else "", id="title", compact=True))
        yield from field(
            "Description", TextArea(task.description or "" if task else "", id="description")
        )
        yield from field(
            "Priority",
            Choice([(p, p) for p in TASK_PRIORITIES], task.priority if task else "medium",
                   id="priority"),
        )
        if task is None:
            yield from field(
                "Status", Choice([(s, s) for s in TASK_STATUSES], self.status, id="status")
            )
        yield from field(
            "Due", Input(_day(task.due_date) if task else "", id="due", compact=True,
                         placeholder="YYYY-MM-DD"),
        )
        hours = task.estimated_hours if task else None
        estimate = "" if hours is None else f"{hours:g}"
        yield from field(
            "Estimate", Input(estimate, id="estimate", compact=True, placeholder="hours")
        )
        yield from field(
            "Tags", Input(", ".join(task.tags) if task else "", id="tags", compact=True,
                          placeholder="comma, separated"),
        )
        yield from field(
            "Labels", Input(", ".join(task.labels) if task else "", id="labels", compact=True,
                            placeholder="comma, separated"),
        )

    def collect(self) -> Job[Task]:
        task = self.task_
        draft = TaskDraft(
            title=self.query_one("#title", Input).value,
            description=self.query_one("#description", TextArea).text or None,
            status=self.query_one("#status", Choice).value if task is None else task.status,
            priority=self.query_one("#priority", Choice).value,
            task_type=task.task_type if task else None,
            due_date=parse_date(self.query_one("#due", Input).value, "due date"),
            start_date=task.start_date if task else None,
            estimated_hours=parse_hours(self.query_one("#estimate", Input).value, "estimate"),
            tags=parse_words(self.query_one("#tags", Input).value),
            labels=parse_words(self.query_one("#labels", Input).value),
            sprint_id=task.sprint_id if task else None,
        )
        if not draft.title.strip():
            raise ValidationError("The title is empty.")
        service = self.service
        if task is None:
            return lambda conn: service.create(draft)
        return lambda conn: service.edit(task, draft)


class TimeForm(FormScreen[Task]):
    """Log time on a task: hours (more than 0, at most 24) and what was done."""

    SAVE_LABEL = "Log"

    def __init__(self, service: BoardService, task: Task) -> None:
        super().__init__()
        self.service = service
        self.task_ = task

    def form_title(self) -> str:
        task = self.task_
        estimate = "no estimate" if task.estimated_hours is None else (
            f"estimated {task.estimated_hours:g} h"
        )
        actual = task.actual_hours or 0
        return f"Log time on {task.task_id} ({estimate}, {actual:g} h logged)"

    def compose_fields(self) -> Iterable[Widget]:
        yield from field("Hours", Input(id="hours", compact=True, placeholder="e.g. 1.5"))
        yield from field("What", Input(id="what", compact=True, placeholder="what was done"))

    def collect(self) -> Job[Task]:
        hours = parse_hours(self.query_one("#hours", Input).value, "time")
        if hours is None:
            raise ValidationError("Type the hours to log (more than 0, at most 24).")
        what = self.query_one("#what", Input).value.strip()
        service, task = self.service, self.task_
        return lambda conn: service.log_time(task, hours, what)


class FilterScreen(ModalScreen[TaskFilter | None]):
    """Narrow the board: assignee, priority, due, sprint, tag, label, text, open only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "apply", "Apply"),
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+r", "clear", "Clear"),
    ]

    # Eight one-line fields without blank rows between them, so the buttons fit at 80x24.
    DEFAULT_CSS = FormScreen.DEFAULT_CSS.replace("FormScreen", "FilterScreen") + """
    FilterScreen Grid {
        grid-gutter: 0 1;
    }
    """

    def __init__(self, service: BoardService, current: TaskFilter) -> None:
        super().__init__()
        self.service = service
        self.current = current
        self.members: list[MemberChoice] = []

    def compose(self) -> ComposeResult:
        current = self.current
        with Vertical():
            yield Static("Filter the board", classes="form-title")
            with Grid():
                yield from field("Assignee", Choice(self._assignee_options(), current.assignee
                                                     or "", id="assignee"))
                yield from field("Priority", Choice(
                    [("any", "")] + [(p, p) for p in TASK_PRIORITIES], current.priority or "",
                    id="priority"))
                yield from field("Due", Choice(
                    [("any", "")] + [(d.replace("_", " "), d) for d in DUE_CHOICES],
                    current.due or "", id="due"))
                yield from field("Sprint", Choice(
                    [("any", ""), ("backlog (no sprint)", NO_SPRINT)]
                    + ([(current.sprint_id, current.sprint_id)]
                       if current.sprint_id not in (None, NO_SPRINT) else []),
                    current.sprint_id or "", id="sprint"))
                yield from field("Tag", Input(current.tag or "", id="tag", compact=True))
                yield from field("Label", Input(current.label or "", id="label", compact=True))
                yield from field("Text", Input(current.text or "", id="text", compact=True,
                                               placeholder="in key, title, description, tags"))
                yield from field("Open only", Choice([("no", ""), ("yes", "yes")],
                                                     "yes" if current.open_only else "",
                                                     id="open"))
            yield Static("", id="form-error", markup=False)
            with Horizontal():
                yield Button("Apply (^s)", id="save", variant="primary")
                yield Button("Clear (^r)", id="clear")
                yield Button("Cancel (esc)", id="cancel")

    def _assignee_options(self) -> list[tuple[str, str]]:
        options = [("anyone", ""), ("me", ME), ("unassigned", UNASSIGNED)]
        options += [(m.name, m.user_id) for m in self.members]
        if self.current.assignee and all(v != self.current.assignee for _, v in options):
            options.append(("one member", self.current.assignee))
        return options

    def on_mount(self) -> None:
        self.query_one("#assignee", Choice).focus()

        def loaded(members: list[MemberChoice]) -> None:
            self.members = members
            choice = self.query_one("#assignee", Choice)
            value = choice.value
            choice.options = self._assignee_options()
            values = [v for _, v in choice.options]
            choice.index = values.index(value) if value in values else 0
            choice.refresh()

        run_job(self, self.service.assignable_members, loaded,
                failed=lambda text: self.query_one("#form-error", Static).update(text))

    def action_apply(self) -> None:
        def value(selector: str) -> str | None:
            widget = self.query_one(selector)
            text = widget.value if isinstance(widget, (Input, Choice)) else ""
            return text.strip() or None

        try:
            chosen = TaskFilter(
                assignee=value("#assignee"), priority=value("#priority"), due=value("#due"),
                sprint_id=value("#sprint"), tag=value("#tag"), label=value("#label"),
                text=value("#text"), open_only=value("#open") == "yes",
            )
            validate(chosen)
        except UserError as exc:
            self.query_one("#form-error", Static).update(one_line(str(exc)))
            return
        self.dismiss(chosen)

    def action_clear(self) -> None:
        self.dismiss(TaskFilter())

    @on(Input.Submitted)
    def submitted(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#save")
    def save_pressed(self) -> None:
        self.action_apply()

    @on(Button.Pressed, "#clear")
    def clear_pressed(self) -> None:
        self.action_clear()

    @on(Button.Pressed, "#cancel")
    def cancel_pressed(self) -> None:
        self.dismiss(None)


class SaveFilterForm(FormScreen[SavedFilter]):
    """Name the board's current filter; it is kept for this user in this organization."""

    def __init__(self, actor: Actor, task_filter: TaskFilter) -> None:
        super().__init__()
        self.actor = actor
        self.task_filter = task_filter

    def form_title(self) -> str:
        return f"Save the filter: {self.task_filter.describe()}"

    def compose_fields(self) -> Iterable[Widget]:
        yield from field("Name", Input(id="name", compact=True, placeholder="e.g. 급한 버그"))

    def collect(self) -> Job[SavedFilter]:
        name = self.query_one("#name", Input).value
        actor, task_filter = self.actor, self.task_filter
        return lambda conn: save_filter(conn, actor, name, task_filter)
