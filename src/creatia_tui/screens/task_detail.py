"""A task opened from the board: every field of its document and its time entries.

``t`` logs time and ``e`` edits, through the same forms as the board; escape goes back to the
board with the task as it is now, so the card there is updated.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from creatia_tui.data.board import BoardService
from creatia_tui.data.models import Task
from creatia_tui.screens.base import run_job
from creatia_tui.widgets.task_card import STATUS_TITLES, assignee_name
from creatia_tui.widgets.text import fit

log = logging.getLogger(__name__)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def _hours(value: float | None) -> str:
    return "—" if value is None else f"{value:g} h"


def detail_lines(task: Task) -> list[tuple[str, str]]:
    """(label, value) for every field of the seed's task document."""
    reviewer = (task.reviewer_snapshot or {}).get("name") or task.reviewer_id or "—"
    return [
        ("Key", task.task_id),
        ("Title", task.title),
        ("Description", task.description or "—"),
        ("Status", STATUS_TITLES.get(task.status, task.status)),
        ("Priority", task.priority or "—"),
        ("Type", task.task_type or "—"),
        ("Assignee", assignee_name(task)),
        ("Reviewer", str(reviewer)),
        ("Sprint", task.sprint_id or "backlog"),
        ("Estimated", _hours(task.estimated_hours)),
        ("Actual", _hours(task.actual_hours)),
        ("Remaining", _hours(task.remaining_hours)),
        ("Start", _when(task.start_date)),
        ("Due", _when(task.due_date)),
        ("Completed", _when(task.completed_at)),
        ("Tags", ", ".join(task.tags) or "—"),
        ("Labels", ", ".join(task.labels) or "—"),
        ("Created", _when(task.created_at)),
        ("Updated", _when(task.updated_at)),
        ("Id", task.id),
        ("Snapshot", _snapshot(task.assignee_snapshot)),
    ]


def _snapshot(snapshot: dict[str, Any] | None) -> str:
    """The assignee as the task copied them: name <email>, and when the copy was written (the
    ids are above).

    The time is the copy's own ``synced_at``, shown as it is: the freshness check on opening
    (data/maintenance.refresh_shown_snapshots) rewrites a copy only when it shows the person
    otherwise than PostgreSQL, so a copy that is still right keeps the time it was made (and a
    detail of unchanged data reads the same in every run), and a rewritten one shows when."""
    if not snapshot:
        return "—"
    synced = snapshot.get("synced_at")
    when = _when(synced) if isinstance(synced, dt.datetime) else str(synced or "—")
    return f"{snapshot.get('name') or '—'} <{snapshot.get('email') or '—'}> · synced {when}"


class TaskDetailScreen(ModalScreen[Task | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("t", "log_time", "Log time"),
        Binding("e", "edit", "Edit"),
        Binding("y", "copy", "Copy key"),
    ]

    DEFAULT_CSS = """
    TaskDetailScreen {
        align: center middle;
    }
    TaskDetailScreen > Vertical {
        width: 100%;
        max-width: 120;
        height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    TaskDetailScreen #detail-title {
        text-style: bold;
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    TaskDetailScreen #detail-fields {
        height: auto;
    }
    TaskDetailScreen #time-entries {
        height: auto;
        max-height: 10;
        margin-top: 1;
    }
    TaskDetailScreen #detail-hint {
        color: $text-muted;
        height: 1;
    }
    TaskDetailScreen #detail-error {
        color: $error;
        height: auto;
    }
    """

    def __init__(self, service: BoardService, task_id: str) -> None:
        super().__init__()
        self.service = service
        self.task_id = task_id
        self.task_: Task | None = None
        self.changed = False
        self.names: dict[str, str] = {}  # user id -> name, for the time entries

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Loading…", id="detail-title", markup=False)
            with VerticalScroll(id="detail-scroll"):
                yield Static("", id="detail-fields", markup=False)
                yield DataTable(id="time-entries", cursor_type="row", show_cursor=False)
            yield Static("", id="detail-error", markup=False)
            yield Static("t log time · e edit · y copy key · escape back", id="detail-hint")

    def on_mount(self) -> None:
        table = self.query_one("#time-entries", DataTable)
        table.add_columns("Logged", "Hours", "By", "What")
        self.reload()

    def reload(self) -> None:
        service, task_id = self.service, self.task_id

        def load() -> tuple[Task, dict[str, str]]:
            task = service.get_task(task_id)
            return task, {m.user_id: m.name for m in service.assignable_members()}

        def loaded(result: tuple[Task, dict[str, str]]) -> None:
            self.task_, self.names = result
            self.show(self.task_)
            self._refresh_stale_snapshots(self.task_)

        run_job(self, load, loaded,
                failed=lambda text: self.query_one("#detail-error", Static).update(text))

    def _refresh_stale_snapshots(self, task: Task) -> None:
        """Issue 7's freshness, as on the board: the assignee's and reviewer's copies older than
        5 minutes are checked against PostgreSQL in the background (a failure is a log line);
        when that rewrote this task, it is shown again as it is now."""
        from creatia_tui.data.maintenance import refresh_quietly

        dbs, actor = self.service.dbs, self.service.actor

        def refreshed(result: Any) -> None:
            if result is not None and result.tasks_modified:
                self.reload()

        run_job(self, lambda: refresh_quietly(dbs, actor, [task]), refreshed,
                failed=lambda text: log.warning("snapshot freshness: %s", text),
                group="detail-freshness")

    def _who(self, user_id: str) -> str:
        """Who logged an entry: the member's name; an id's start for a former member."""
        return self.names.get(user_id) or user_id[:8]

    def show(self, task: Task) -> None:
        self.task_ = task
        self.query_one("#detail-title", Static).update(f"{task.task_id} · {task.title}")
        width = max(max(len(label) for label, _ in detail_lines(task)), 1)
        text = Text()
        for label, value in detail_lines(task):
            text.append(label.rjust(width) + "  ", style="dim")
            text.append(value + "\n")
        self.query_one("#detail-fields", Static).update(text)
        table = self.query_one("#time-entries", DataTable)
        table.clear()
        for entry in task.time_entries:
            table.add_row(
                entry.logged_at.strftime("%Y-%m-%d %H:%M") if entry.logged_at else "—",
                f"{entry.hours:g}", fit(self._who(entry.user_id), 12),
                fit(entry.description or "", 40),
            )
        if not task.time_entries:
            table.add_row("—", "", "", "no time logged yet")

    def _after_form(self, task: Task | None) -> None:
        if task is not None:
            self.changed = True
            self.show(task)

    def action_log_time(self) -> None:
        from creatia_tui.screens.task_forms import TimeForm

        if self.task_ is not None:
            self.app.push_screen(TimeForm(self.service, self.task_), self._after_form)

    def action_edit(self) -> None:
        from creatia_tui.screens.task_forms import TaskForm

        if self.task_ is not None:
            self.app.push_screen(TaskForm(self.service, self.task_), self._after_form)

    def action_copy(self) -> None:
        if self.task_ is not None:
            app: Any = self.app
            app.copy_text(self.task_.task_id, "the task key")

    def action_close(self) -> None:
        self.dismiss(self.task_ if self.changed else None)
