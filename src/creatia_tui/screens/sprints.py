"""Sprints of the current organization: the list, create and edit, tasks in and out, start and
complete; the burndown, velocity and retrospective open from here (screens/sprint_views.py).

The list groups the sprints by status, active first, then planned (soonest first), then
completed (latest first); the status is a word in its own column, so it reads the same without
colour. The highlighted sprint's goal, capacity and metrics are on the detail lines below, and
its burndown under them (the active sprint's when the screen opens: the list and that burndown
are read by one job and drawn together; another highlighted sprint's is read when the cursor
stops on it). b opens the burndown on a screen of its own, with the task-count switch.

Every change goes through :class:`~creatia_tui.data.sprints.SprintService`, which checks the
permission (sprints.create, sprints.update, tasks.update) and refuses what must not happen (two
active sprints, a start after the sprint's last day, a carry-over to a sprint that is not
planned, an edit of a sprint someone else changed meanwhile): one sentence on the message line
or in the form, and nothing written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import psycopg
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Input, SelectionList, Static
from textual.widgets.selection_list import Selection

from creatia_tui.data.models import Task
from creatia_tui.data.sprints import (
    BurndownChart,
    CompletionResult,
    SprintConflict,
    SprintDraft,
    SprintRecord,
    SprintService,
)
from creatia_tui.errors import ValidationError
from creatia_tui.screens import sprint_views
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import DIALOG_CSS, ConfirmScreen, PickScreen
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.widgets.charts import BURNDOWN_KEY, BurndownPlot
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

BACKLOG = "backlog"  # the PickScreen value standing for "no sprint"
STATUS_ORDER = {"active": 0, "planned": 1, "completed": 2}
FIXED_COLUMNS = 9 + 11 + 8 + 6 + 9  # status, dates, capacity, done, tasks
GOAL_FROM = 130  # terminal width from which the goal gets a column of its own
CHART_DELAY = 0.25  # seconds the cursor rests on a sprint before its burndown is read


# ---------------------------------------------------------------- formatting
def day(moment: dt.datetime | dt.date) -> str:
    return moment.strftime("%Y-%m-%d")


def hours(value: float) -> str:
    return f"{value:g} h"


def sprint_order(sprints: Iterable[SprintRecord]) -> list[SprintRecord]:
    """Active first, planned soonest first, completed latest first."""
    listed = list(sprints)

    def key(sprint: SprintRecord) -> tuple[int, float]:
        start = sprint.start_date.timestamp()
        return STATUS_ORDER.get(sprint.status, 3), (-start if sprint.status == "completed"
                                                    else start)

    return sorted(listed, key=key)


def tasks_done(sprint: SprintRecord) -> str:
    metrics = sprint.metrics
    return f"{int(metrics.get('completed_tasks') or 0)}/{int(metrics.get('total_tasks') or 0)}"


def sprint_cells(sprint: SprintRecord, name_width: int, goal_width: int) -> list[Text]:
    cells = [
        Text(sprint.status),
        fit(sprint.name, name_width),
        Text(f"{sprint.start_date:%m-%d}–{sprint.end_date:%m-%d}"),
        Text(hours(sprint.total_hours), justify="right"),
        Text(f"{sprint.completion_rate:g}%", justify="right"),
        Text(tasks_done(sprint), justify="right"),
    ]
    if goal_width:
        cells.append(fit(sprint.goal or "-", goal_width))
    return cells


def describe(sprint: SprintRecord) -> tuple[str, str]:
    """The detail lines of a sprint: what it is for and when; where it stands."""
    metrics = sprint.metrics
    first = " · ".join(part for part in (
        f"{sprint.name} ({sprint.status})",
        f"{day(sprint.start_date)} → {day(sprint.end_date)}",
        f"goal: {sprint.goal}" if sprint.goal else "no goal",
        f"milestone {sprint.milestone_id}" if sprint.milestone_id else "",
    ) if part)
    total = int(metrics.get("total_tasks") or 0)
    second = " · ".join([
        f"capacity {hours(sprint.total_hours)}, allocated {hours(sprint.allocated_hours)}, "
        f"available {hours(round(sprint.available_hours, 2))}",
        f"{int(metrics.get('completed_tasks') or 0)} of {plural(total, 'task')} done "
        f"({sprint.completion_rate:g}%), {int(metrics.get('in_progress_tasks') or 0)} in "
        f"progress, {int(metrics.get('todo_tasks') or 0)} todo",
    ])
    return first, second


def parse_day(text: str, what: str) -> dt.date:
    value = text.strip()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"The {what} {value!r} is not a date (YYYY-MM-DD).") from None


def parse_hours(text: str) -> float:
    value = text.strip() or "0"
    try:
        return float(value)
    except ValueError:
        raise ValidationError(f"The capacity {value!r} is not a number of hours.") from None


# ---------------------------------------------------------------- forms and pickers
class SprintForm(FormScreen[SprintRecord]):
    """A new sprint, or the edit of one (``sprint`` given)."""

    def __init__(self, service: SprintService, sprint: SprintRecord | None = None) -> None:
        super().__init__()
        self.service = service
        self.sprint = sprint

    def form_title(self) -> str:
        return f"Edit {self.sprint.name}" if self.sprint else "New sprint"

    def compose_fields(self) -> Iterable[Widget]:
        sprint = self.sprint
        today = dt.date.today()
        start = day(sprint.start_date) if sprint else today.isoformat()
        end = day(sprint.end_date) if sprint else (today + dt.timedelta(days=13)).isoformat()
        yield from field("Name", Input(sprint.name if sprint else "", id="name", compact=True))
        yield from field("Goal", Input((sprint.goal or "") if sprint else "", id="goal",
                                       compact=True))
        yield from field("Start", Input(start, id="start", compact=True,
                                        placeholder="YYYY-MM-DD"))
        yield from field("End", Input(end, id="end", compact=True, placeholder="YYYY-MM-DD"))
        yield from field("Capacity h", Input(f"{sprint.total_hours:g}" if sprint else "0",
                                             id="capacity", compact=True))
        yield from field("Milestone", Input((sprint.milestone_id or "") if sprint else "",
                                            id="milestone", compact=True,
                                            placeholder="milestone id (optional)"))

    def collect(self) -> Job[SprintRecord]:
        def text(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        draft = SprintDraft(
            name=text("name"),
            goal=text("goal"),
            start_date=parse_day(text("start"), "start"),
            end_date=parse_day(text("end"), "end"),
            capacity_hours=parse_hours(text("capacity")),
            milestone_id=text("milestone").strip() or None,
        )
        service, sprint = self.service, self.sprint

        def save(_: psycopg.Connection[Any]) -> SprintRecord:
            return service.edit(sprint, draft) if sprint else service.create(draft)

        return save


class TaskPickScreen(ModalScreen[list[str] | None]):
    """Mark several tasks (space), ctrl+s to take them; / filters by key or title (enter goes
    back to the list)."""

    AUTO_FOCUS = "#tasks"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "take", "Take"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "dismiss(None)", "Cancel"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="TaskPickScreen") + """
    TaskPickScreen > Vertical {
        width: 76;
    }
    TaskPickScreen SelectionList {
        height: auto;
        max-height: 14;
    }
    """

    def __init__(self, title: str, tasks: Sequence[Task], verb: str) -> None:
        super().__init__()
        self.title_text = title
        self.tasks = list(tasks)
        self.verb = verb
        self.marked: set[str] = set()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Input(placeholder="type to filter by key or title", id="filter")
            yield SelectionList[str](id="tasks")
            yield Static(f"space marks · / filters · ctrl+s {self.verb} · escape cancels",
                         classes="dialog-hint")

    def on_mount(self) -> None:
        self._fill("")

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @staticmethod
    def label(task: Task) -> Text:
        estimate = f"{task.estimated_hours:g} h" if task.estimated_hours else "-"
        head = f"{task.task_id:<10} {task.status:<11} {estimate:>6}  "
        return Text.assemble(head, fit(task.title, 68 - len(head)))

    def _fill(self, text: str) -> None:
        needle = text.strip().casefold()
        options = self.query_one("#tasks", SelectionList)
        options.clear_options()
        options.add_options([
            Selection(self.label(t), t.id, t.id in self.marked) for t in self.tasks
            if needle in t.task_id.casefold() or needle in t.title.casefold()
        ][:300])
        if options.option_count:
            options.highlighted = 0

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#filter")
    def to_list(self) -> None:
        self.query_one("#tasks", SelectionList).focus()

    @on(SelectionList.SelectionToggled)
    def toggled(self, event: SelectionList.SelectionToggled) -> None:
        value = str(event.selection.value)
        if value in self.marked:
            self.marked.discard(value)
        else:
            self.marked.add(value)

    def action_take(self) -> None:
        self.dismiss(sorted(self.marked))


# ---------------------------------------------------------------- the screen
class SprintsScreen(AppScreen):
    """The organization's sprints; ``select`` highlights one when the list is read."""

    READ_PERMISSION = "sprints.read"
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "new": "sprints.create",
        "edit": "sprints.update",
        "start": "sprints.update",
        "complete": "sprints.update",
        "add_tasks": "tasks.update",
        "remove_tasks": "tasks.update",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit", show=False),
        Binding("s", "start", "Start"),
        Binding("c", "complete", "Complete"),
        Binding("a", "add_tasks", "Add tasks", show=False),
        Binding("d", "remove_tasks", "Remove tasks", show=False),
        Binding("b", "burndown", "Burndown"),
        Binding("v", "velocity", "Velocity", show=False),
        Binding("w", "retrospective", "Retro"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    SprintsScreen #sprint-table {
        height: auto;
        max-height: 40%;
    }
    SprintsScreen #sprint-chart {
        height: 1fr;
        min-height: 6;
    }
    SprintsScreen #sprint-chart-note {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    SprintsScreen .sprint-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, select: str | None = None) -> None:
        super().__init__()
        self.sprints: list[SprintRecord] = []
        self._select = select
        self._loaded_once = False
        self.chart: BurndownChart | None = None
        self._chart_timer: Timer | None = None
        self._charted: BurndownChart | None = None  # the chart the plot shows

    def compose_body(self) -> Iterable[Widget]:
        yield DataTable(id="sprint-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="sprint-detail-1", classes="sprint-detail", markup=False)
        yield Static("", id="sprint-detail-2", classes="sprint-detail", markup=False)
        yield BurndownPlot(id="sprint-chart")
        yield Static("", id="sprint-chart-note", markup=False)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload(select=self._select)

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#sprint-table", DataTable)

    @property
    def service(self) -> SprintService:
        return SprintService(self.creatia.dbs, self.actor)

    # ------------------------------------------------------------ loading
    def action_reload(self, select: str | None = None, note: str | None = None) -> None:
        """Read the list and, in the same job, the burndown of the sprint that will be
        highlighted (``select``, the one highlighted now, else the first: the active one)."""
        service, at = self.service, sprint_views.now()
        wanted = select or self.highlighted_id()

        def load() -> tuple[list[SprintRecord], BurndownChart | None]:
            sprints = sprint_order(service.list_sprints())
            ids = [s.id for s in sprints]
            shown = wanted if wanted in ids else (ids[0] if ids else None)
            return sprints, service.burndown(shown, at) if shown else None

        self.run_job(load, lambda loaded: self._loaded(*loaded, select, note), group="sprints")

    def _loaded(self, sprints: list[SprintRecord], chart: BurndownChart | None,
                select: str | None, note: str | None) -> None:
        self._loaded_once = True
        self.sprints = sprints
        self.chart = chart
        self._fill_table(select)
        self._show_chart()
        counts = [f"{sum(s.status == status for s in self.sprints)} {status}"
                  for status in STATUS_ORDER]
        self.say(note or (f"{plural(len(self.sprints), 'sprint')}: {', '.join(counts)}"
                          if self.sprints else "No sprints yet: n creates one."))

    def _show_chart(self) -> None:
        chart = self.chart
        if chart is not None and chart is self._charted and chart.sprint_id == \
                self.highlighted_id():
            return  # drawn already
        self._charted = chart
        plot = self.query_one("#sprint-chart", BurndownPlot)
        note = self.query_one("#sprint-chart-note", Static)
        if chart is None or chart.sprint_id != self.highlighted_id():
            self._charted = None
            plot.show([], [], [], [], None)
            note.update("")
            return
        plot.show(chart.days, chart.ideal_hours, chart.ideal_tasks,
                  [*chart.points, *([chart.live] if chart.live else [])], chart.today,
                  chart.capacity_hours)
        words = sprint_views.burndown_note(chart, "hours").split("\n")[0]
        note.update(f"{BURNDOWN_KEY} · {words}" if words else BURNDOWN_KEY)

    def _load_chart(self) -> None:
        """The highlighted sprint's burndown, once the cursor stopped on it (a newer request
        cancels an older one: the group is exclusive)."""
        sprint_id = self.highlighted_id()
        if sprint_id is None or (self.chart is not None and self.chart.sprint_id == sprint_id):
            self._show_chart()
            return
        self._show_chart()  # the old sprint's chart goes away at once
        service, at = self.service, sprint_views.now()

        def shown(chart: BurndownChart) -> None:
            self.chart = chart
            self._show_chart()

        self.run_job(lambda: service.burndown(sprint_id, at), shown, group="sprint-chart")

    def _fill_table(self, select: str | None = None) -> None:
        table = self.table
        keep = select or self.highlighted_id()
        width = self.size.width
        # Cell padding (2 per column) and the scrollbar (2) besides the content widths.
        goal_width = max(width - 2 - 14 - FIXED_COLUMNS - 40, 0) if width >= GOAL_FROM else 0
        columns = 7 if goal_width else 6
        name_width = max(min(width - 2 - 2 * columns - FIXED_COLUMNS - goal_width, 40), 8)
        with self.app.batch_update():
            table.clear(columns=True)
            for key, label, size in (
                ("status", "Status", 9), ("name", "Name", name_width), ("dates", "Dates", 11),
                ("capacity", "Capacity", 8), ("done", "Done", 6), ("tasks", "Tasks", 9),
                *((("goal", "Goal", goal_width),) if goal_width else ()),
            ):
                table.add_column(Text(label), key=key, width=size)
            for sprint in self.sprints:
                table.add_row(*sprint_cells(sprint, name_width, goal_width), key=sprint.id)
            if keep and any(s.id == keep for s in self.sprints):
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def on_resize(self) -> None:
        if self._loaded_once:
            self._fill_table()

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        return highlighted_key(self.table)

    def highlighted(self) -> SprintRecord | None:
        selected = self.highlighted_id()
        return next((s for s in self.sprints if s.id == selected), None)

    def _show_detail(self) -> None:
        sprint = self.highlighted()
        first, second = describe(sprint) if sprint else ("", "")
        self.query_one("#sprint-detail-1", Static).update(first)
        self.query_one("#sprint-detail-2", Static).update(second)

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()
        if self._loaded_once:
            if self._chart_timer is not None:
                self._chart_timer.stop()
            self._chart_timer = self.set_timer(CHART_DELAY, self._load_chart)

    def on_data_table_row_selected(self) -> None:
        self.action_burndown()

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return ("the sprint id", selected) if selected else None

    def _selected(self) -> SprintRecord | None:
        sprint = self.highlighted()
        if sprint is None:
            self.say("No sprint is highlighted: n creates one.", error=True)
        return sprint

    # ------------------------------------------------------------ writes
    def _write(self, job: Any, note: Any, select: str | None = None) -> None:
        """Run a write; then read the list again and say ``note(result)``. A conflict says
        so and shows the sprint as it is now."""

        def failed(sentence: str) -> None:
            self.say(sentence, error=True)

        def run() -> Any:
            try:
                return job()
            except SprintConflict:
                self.app.call_from_thread(self.action_reload, select)
                raise

        self.run_job(run, lambda result: self.action_reload(select=select, note=note(result)),
                     failed=failed, group="sprint-write")

    def action_new(self) -> None:
        def saved(sprint: SprintRecord | None) -> None:
            if sprint is not None:
                self.action_reload(select=sprint.id, note=f"Created {sprint.name} (planned).")

        self.app.push_screen(SprintForm(self.service), saved)

    def action_edit(self) -> None:
        sprint = self._selected()
        if sprint is None:
            return

        def saved(result: SprintRecord | None) -> None:
            if result is None:
                return
            same = result.updated_at == sprint.updated_at
            self.action_reload(select=result.id,
                               note="Nothing changed." if same else f"Saved {result.name}.")

        self.app.push_screen(SprintForm(self.service, sprint), saved)

    def action_start(self) -> None:
        sprint = self._selected()
        if sprint is None:
            return
        service = self.service

        def answered(yes: bool | None) -> None:
            if yes:
                self._write(lambda: service.start(sprint),
                            lambda s: f"{s.name} is active.", sprint.id)
            else:
                self.say("Nothing changed.")

        self.app.push_screen(
            ConfirmScreen(f"Start {sprint.name} ({day(sprint.start_date)} → "
                          f"{day(sprint.end_date)})?", "Start"),
            answered,
        )

    def action_complete(self) -> None:
        sprint = self._selected()
        if sprint is None:
            return
        if sprint.status != "active":
            self.say(f"{sprint.name} is {sprint.status}; only the active sprint can be "
                     "completed.", error=True)
            return
        service = self.service
        unfinished = int(sprint.metrics.get("total_tasks") or 0) - int(
            sprint.metrics.get("completed_tasks") or 0)

        def finished(result: CompletionResult) -> str:
            if not result.carried_over:
                return f"Completed {result.sprint.name}."
            where = next((s.name for s in self.sprints if s.id == result.carried_over_to),
                         "the backlog")
            return (f"Completed {result.sprint.name}; "
                    f"{plural(result.carried_over, 'unfinished task')} moved to {where}.")

        def chosen(value: str | None) -> None:
            if value is None:
                self.say("Nothing changed.")
                return
            target = None if value == BACKLOG else value
            self._write(lambda: service.complete(sprint, target), finished, sprint.id)

        planned = [s for s in sprint_order(self.sprints) if s.status == "planned"]
        options = [(f"{s.name} (planned, starts {day(s.start_date)})", s.id) for s in planned]
        options.append(("the backlog (no sprint)", BACKLOG))
        following = next((s.id for s in planned if s.start_date >= sprint.start_date), BACKLOG)
        question = (f"Complete {sprint.name}: move its {plural(unfinished, 'unfinished task')} "
                    "to")
        self.app.push_screen(PickScreen(question, options, following), chosen)

    def action_add_tasks(self) -> None:
        sprint = self._selected()
        if sprint is None:
            return
        service = self.service

        def pick(tasks: list[Task]) -> None:
            if not tasks:
                self.say("The backlog has no unfinished task to add.")
                return

            def chosen(ids: list[str] | None) -> None:
                if not ids:
                    self.say("Nothing changed.")
                    return
                self._write(lambda: service.add_tasks(sprint, ids),
                            lambda n: f"Added {plural(n, 'task')} to {sprint.name}.", sprint.id)

            self.app.push_screen(
                TaskPickScreen(f"Add backlog tasks to {sprint.name}", tasks, "adds them"),
                chosen,
            )

        self.run_job(service.backlog_tasks, pick, group="sprint-pick")

    def action_remove_tasks(self) -> None:
        sprint = self._selected()
        if sprint is None:
            return
        service = self.service

        def pick(tasks: list[Task]) -> None:
            if not tasks:
                self.say(f"{sprint.name} has no tasks.")
                return

            def chosen(ids: list[str] | None) -> None:
                if not ids:
                    self.say("Nothing changed.")
                    return
                self._write(
                    lambda: service.remove_tasks(sprint, ids),
                    lambda n: f"Moved {plural(n, 'task')} from {sprint.name} to the backlog.",
                    sprint.id,
                )

            self.app.push_screen(
                TaskPickScreen(f"Remove tasks from {sprint.name} (to the backlog)", tasks,
                               "removes them"),
                chosen,
            )

        self.run_job(lambda: service.sprint_tasks(sprint), pick, group="sprint-pick")

    # ------------------------------------------------------------ views
    def action_burndown(self) -> None:
        from creatia_tui.screens.sprint_views import SprintBurndownScreen

        sprint = self._selected()
        if sprint is not None:
            self.app.switch_screen(SprintBurndownScreen(sprint.id))

    def action_velocity(self) -> None:
        from creatia_tui.screens.sprint_views import SprintVelocityScreen

        self.app.switch_screen(SprintVelocityScreen(self.highlighted_id()))

    def action_retrospective(self) -> None:
        from creatia_tui.screens.sprint_views import SprintRetroScreen

        sprint = self._selected()
        if sprint is not None:
            self.app.switch_screen(SprintRetroScreen(sprint.id))
