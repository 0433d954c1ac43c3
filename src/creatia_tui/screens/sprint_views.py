"""A sprint's burndown, the organization's velocity and a sprint's retrospective.

They open from the sprint list (b, v, w) in its place, and escape goes back to it with the
same sprint highlighted. Reads and writes go through SprintService, as the list's do.

- Burndown: remaining hours per day (t switches to the task count) against the ideal line from
  the capacity to zero, today's live value and a rule on today, the days on which scope was
  added marked ``+``; the line under the chart says it in words (today's numbers, the scope
  added, the days reconstructed from the activity log because the daily worker missed them).
- Velocity: the completed hours of the last completed sprints (bars) against what each
  committed (points); the sprints' names are listed under the chart, numbered as its x axis.
- Retrospective: the seed's three lists; e edits them (one item per line), t turns the
  highlighted action item into a task in the next planned sprint (the backlog when there is
  none), once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, ClassVar

import psycopg
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import OptionList, Static, TextArea
from textual.widgets.option_list import Option

from creatia_tui.data.models import Task
from creatia_tui.data.sprints import (
    BurndownChart,
    SprintRecord,
    SprintService,
    VelocityPoint,
)
from creatia_tui.data.tasks import utcnow
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.widgets.charts import BURNDOWN_KEY, VELOCITY_KEY, BurndownPlot, VelocityPlot
from creatia_tui.widgets.text import fit, plural

VELOCITY_SPRINTS = 6


def now() -> dt.datetime:
    """The moment the burndown is drawn for (tests fix it)."""
    return utcnow()


def _h(value: float | None) -> str:
    return "-" if value is None else f"{value:g} h"


class SprintViewScreen(AppScreen):
    """What the three views share: escape back to the list, the sprint they show."""

    READ_PERMISSION = "sprints.read"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Sprints"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    SprintViewScreen .view-title {
        height: 1;
        padding: 0 1;
        text-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    SprintViewScreen .view-note {
        height: auto;
        max-height: 7;
        padding: 0 1;
    }
    """

    def __init__(self, sprint_id: str | None) -> None:
        super().__init__()
        self.sprint_id = sprint_id

    @property
    def service(self) -> SprintService:
        return SprintService(self.creatia.dbs, self.actor)

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        from creatia_tui.screens.sprints import SprintsScreen

        self.app.switch_screen(SprintsScreen(select=self.sprint_id))

    def copy_target(self) -> tuple[str, str] | None:
        return ("the sprint id", self.sprint_id) if self.sprint_id else None


# ---------------------------------------------------------------- burndown
def burndown_note(chart: BurndownChart, mode: str) -> str:
    """The chart in words: where today stands, the scope added, the reconstructed days."""
    parts = []
    latest = chart.live or (chart.points[-1] if chart.points else None)
    index = {day: i + 1 for i, day in enumerate(chart.days)}
    ideal = dict(chart.ideal_tasks if mode == "tasks" else chart.ideal_hours)
    if latest is not None:
        when = "today" if chart.live is not None else latest.date
        if mode == "tasks":
            left = f"{latest.remaining_tasks if latest.remaining_tasks is not None else '-'}"
            parts.append(f"{when}: {left} of {chart.metrics.total_tasks} tasks open "
                         f"(ideal {ideal.get(latest.date, 0):g})")
        else:
            parts.append(f"{when}: {_h(latest.remaining_hours)} left "
                         f"(ideal {_h(ideal.get(latest.date, 0.0))})")
    elif chart.status == "planned":
        parts.append("not started")
    if chart.today in index:
        parts.append(f"day {index[chart.today]} of {len(chart.days)}")
    added = [p for p in chart.scope_changes if p.date in index]
    if added:
        parts.append("scope added (+): " + ", ".join(
            f"{p.date[5:]} +{p.added_tasks if mode == 'tasks' else _h(p.added_hours)}"
            for p in added))
    if chart.filled:
        parts.append(f"{plural(len(chart.filled), 'day')} rebuilt from the activity log: "
                     + ", ".join(date[5:] for date in chart.filled))
    return " · ".join(parts) + "\n" + BURNDOWN_KEY


class SprintBurndownScreen(SprintViewScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("t", "toggle_mode", "Hours/tasks"),
        Binding("v", "velocity", "Velocity", show=False),
        Binding("w", "retrospective", "Retro"),
    ]

    def __init__(self, sprint_id: str | None) -> None:
        super().__init__(sprint_id)
        self.chart: BurndownChart | None = None

    DEFAULT_CSS = """
    SprintBurndownScreen #burndown-note {
        height: 3;  /* fixed: the chart is laid out once, not again when the note arrives */
    }
    """

    def compose_body(self) -> Iterable[Widget]:
        yield Static("Burndown", id="burndown-title", classes="view-title", markup=False)
        yield BurndownPlot(id="burndown-plot")
        yield Static("", id="burndown-note", classes="view-note", markup=False)

    @property
    def plot(self) -> BurndownPlot:
        return self.query_one("#burndown-plot", BurndownPlot)

    def action_reload(self) -> None:
        service, sprint_id, at = self.service, self.sprint_id, now()
        assert sprint_id is not None
        self.run_job(lambda: service.burndown(sprint_id, at), self._loaded, group="burndown")

    def _loaded(self, chart: BurndownChart) -> None:
        self.chart = chart
        points = [*chart.points, *([chart.live] if chart.live else [])]
        self.plot.show(chart.days, chart.ideal_hours, chart.ideal_tasks, points, chart.today,
                       chart.capacity_hours)
        self._describe()

    def _describe(self) -> None:
        chart = self.chart
        if chart is None:
            return
        mode = self.plot.mode
        unit = "open tasks" if mode == "tasks" else "remaining hours"
        dates = f"{chart.days[0][5:]} → {chart.days[-1][5:]}" if chart.days else ""
        title = (f"{chart.name} · {chart.status} · {dates} · {unit} "
                 f"(capacity {_h(chart.capacity_hours)})")
        self.query_one("#burndown-title", Static).update(fit(title, max(self.size.width - 2, 10)))
        self.query_one("#burndown-note", Static).update(burndown_note(chart, mode))

    def on_resize(self) -> None:
        self._describe()

    def action_toggle_mode(self) -> None:
        plot = self.plot
        plot.mode = "tasks" if plot.mode == "hours" else "hours"
        self._describe()
        self.say(f"Showing {'open tasks' if plot.mode == 'tasks' else 'remaining hours'}.")

    def action_velocity(self) -> None:
        self.app.switch_screen(SprintVelocityScreen(self.sprint_id))

    def action_retrospective(self) -> None:
        self.app.switch_screen(SprintRetroScreen(self.sprint_id))


# ---------------------------------------------------------------- velocity
def velocity_lines(points: list[VelocityPoint], width: int) -> list[Text]:
    """One line per sprint, numbered as the chart's x axis."""
    lines = []
    for number, point in enumerate(points, start=1):
        tail = (f": {_h(point.completed_hours)} of {_h(point.committed_hours)} committed, "
                f"{plural(point.completed_tasks, 'task')} done "
                f"({point.start_date:%m-%d}–{point.end_date:%m-%d})")
        name = fit(point.name, max(width - len(tail) - 4, 8))
        lines.append(Text.assemble(f"{number} ", name, tail))
    return lines


class SprintVelocityScreen(SprintViewScreen):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "burndown", "Burndown"),
    ]

    def __init__(self, sprint_id: str | None = None) -> None:
        super().__init__(sprint_id)
        self.points: list[VelocityPoint] = []

    def compose_body(self) -> Iterable[Widget]:
        yield Static("Velocity", id="velocity-title", classes="view-title", markup=False)
        yield VelocityPlot(id="velocity-plot")
        yield Static("", id="velocity-note", classes="view-note", markup=False)

    def action_reload(self) -> None:
        service = self.service
        self.run_job(lambda: service.velocity(VELOCITY_SPRINTS), self._loaded, group="velocity")

    def _loaded(self, points: list[VelocityPoint]) -> None:
        self.points = points
        self.query_one("#velocity-plot", VelocityPlot).show(
            [p.completed_hours for p in points], [p.committed_hours for p in points]
        )
        self._describe()

    def _describe(self) -> None:
        points = self.points
        if points:
            average = sum(p.completed_hours for p in points) / len(points)
            title = (f"Velocity: completed hours of the last {plural(len(points), 'sprint')} "
                     f"(average {average:.1f} h)")
        else:
            title = "Velocity: no completed sprint yet"
        self.query_one("#velocity-title", Static).update(title)
        self.query_one("#velocity-note", Static).update(
            Text("\n").join([Text(VELOCITY_KEY), *velocity_lines(points, self.size.width)])
        )

    def on_resize(self) -> None:
        self._describe()

    def action_burndown(self) -> None:
        if self.sprint_id is None:
            self.say("Highlight a sprint in the list first.", error=True)
            return
        self.app.switch_screen(SprintBurndownScreen(self.sprint_id))


# ---------------------------------------------------------------- retrospective
class RetroForm(FormScreen[SprintRecord]):
    """The three lists, one item per line."""

    DEFAULT_CSS = """
    RetroForm TextArea {
        height: 4;
    }
    """

    LISTS = (
        ("what_went_well", "Went well"),
        ("what_to_improve", "To improve"),
        ("action_items", "Actions"),
    )

    def __init__(self, service: SprintService, sprint: SprintRecord) -> None:
        super().__init__()
        self.service = service
        self.sprint = sprint

    def form_title(self) -> str:
        return f"Retrospective of {self.sprint.name} (one item per line)"

    def compose_fields(self) -> Iterable[Widget]:
        for name, label in self.LISTS:
            yield from field(label, TextArea("\n".join(self.sprint.retro(name)), id=name,
                                             soft_wrap=True, show_line_numbers=False))

    def on_mount(self) -> None:
        self.query_one("#what_went_well", TextArea).focus()

    def collect(self) -> Job[SprintRecord]:
        lists = {name: self.query_one(f"#{name}", TextArea).text.splitlines()
                 for name, _ in self.LISTS}
        service, sprint = self.service, self.sprint

        def save(_: psycopg.Connection[Any]) -> SprintRecord:
            return service.set_retrospective(sprint, **lists)

        return save


def next_sprint(sprint: SprintRecord, planned: list[SprintRecord]) -> SprintRecord | None:
    """The planned sprint that comes next: the soonest one starting after this one started."""
    later = sorted((s for s in planned if s.id != sprint.id
                    and s.start_date >= sprint.start_date), key=lambda s: s.start_date)
    return later[0] if later else None


class SprintRetroScreen(SprintViewScreen):
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "edit": "sprints.update",
        "to_task": "tasks.create",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "edit", "Edit"),
        Binding("t", "to_task", "To task"),
        Binding("b", "burndown", "Burndown"),
    ]

    DEFAULT_CSS = """
    SprintRetroScreen VerticalScroll {
        height: 1fr;
        padding: 0 1;
    }
    SprintRetroScreen .retro-heading {
        text-style: bold underline;
        margin-top: 1;
    }
    SprintRetroScreen #action-items {
        height: auto;
        max-height: 12;
        border: none;
        padding: 0;
    }
    """

    def __init__(self, sprint_id: str | None) -> None:
        super().__init__(sprint_id)
        self.sprint: SprintRecord | None = None
        self.next: SprintRecord | None = None

    def compose_body(self) -> Iterable[Widget]:
        yield Static("Retrospective", id="retro-title", classes="view-title", markup=False)
        with VerticalScroll():
            yield Static("What went well", classes="retro-heading")
            yield Static("", id="went-well", markup=False)
            yield Static("What to improve", classes="retro-heading")
            yield Static("", id="to-improve", markup=False)
            yield Static("Action items (t: to a task in the next sprint)",
                         classes="retro-heading")
            yield OptionList(id="action-items")

    def action_reload(self, note: str | None = None) -> None:
        service, sprint_id = self.service, self.sprint_id
        assert sprint_id is not None

        def load() -> tuple[SprintRecord, list[SprintRecord]]:
            return service.get_sprint(sprint_id), service.list_sprints("planned")

        self.run_job(load, lambda loaded: self._loaded(*loaded, note), group="retro")

    def _loaded(self, sprint: SprintRecord, planned: list[SprintRecord],
                note: str | None) -> None:
        self.sprint = sprint
        self.next = next_sprint(sprint, planned)
        where = self.next.name if self.next else "the backlog (no planned sprint)"
        self.query_one("#retro-title", Static).update(
            fit(f"Retrospective of {sprint.name} ({sprint.status}) · action items go to {where}",
                max(self.size.width - 2, 10)))

        def bullets(items: list[str]) -> str:
            return "\n".join(f"- {item}" for item in items) or "(nothing yet: e edits)"

        self.query_one("#went-well", Static).update(bullets(sprint.retro("what_went_well")))
        self.query_one("#to-improve", Static).update(bullets(sprint.retro("what_to_improve")))
        items = self.query_one("#action-items", OptionList)
        highlighted = items.highlighted
        items.clear_options()
        links = sprint.action_item_tasks
        for index, item in enumerate(sprint.retro("action_items")):
            mark = f"  → {links[item]}" if item in links else ""
            items.add_option(Option(Text(f"- {item}{mark}"), id=str(index)))
        if items.option_count:
            items.highlighted = min(highlighted or 0, items.option_count - 1)
            items.focus()
        if note:
            self.say(note)

    def action_edit(self) -> None:
        sprint = self.sprint
        if sprint is None:
            return

        def saved(result: SprintRecord | None) -> None:
            if result is not None:
                same = result.updated_at == sprint.updated_at
                self.action_reload(note="Nothing changed." if same
                                   else "Saved the retrospective.")

        self.app.push_screen(RetroForm(self.service, sprint), saved)

    def action_to_task(self) -> None:
        sprint = self.sprint
        items = self.query_one("#action-items", OptionList)
        if sprint is None or items.highlighted is None:
            self.say("There is no action item to turn into a task.", error=True)
            return
        index = items.highlighted
        service, target = self.service, self.next
        where = target.name if target else "the backlog"

        def made(task: Task) -> None:
            self.action_reload(note=f"Created {task.task_id} in {where}.")

        self.run_job(lambda: service.action_item_to_task(sprint.id, index,
                                                         target.id if target else None),
                     made, group="retro-write")

    def action_burndown(self) -> None:
        self.app.switch_screen(SprintBurndownScreen(self.sprint_id))
