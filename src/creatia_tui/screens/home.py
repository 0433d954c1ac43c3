"""Home: the signed-in member's dashboard in the current organization (the seed's user dashboard).

Their open tasks by status, what is due this week and what is overdue, the active sprint's
progress and the organization's recent activity. It comes from the shared dashboard cache
(10 minutes per user, dropped by every task write, so a move on the board shows here at once);
the header line says when it was built and whether it came from the cache. ``b`` opens the
board on the user's open tasks, ``o`` on the overdue ones; ``r`` reads it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from creatia_tui.data.activity import ActivityEntry
from creatia_tui.data.dashboard import Dashboard, TaskGroup, load_dashboard
from creatia_tui.data.models import Task
from creatia_tui.data.task_filters import BUILT_IN_FILTERS
from creatia_tui.screens.base import AppScreen
from creatia_tui.widgets.task_card import STATUS_TITLES
from creatia_tui.widgets.text import fit

BAR_WIDTH = 20


def progress_bar(rate: float, width: int = BAR_WIDTH) -> str:
    """"████████░░░░ 53.3%": the bar and the number, so it reads without colour."""
    filled = round(width * max(0.0, min(rate, 100.0)) / 100)
    return "█" * filled + "░" * (width - filled) + f" {rate:.1f}%"


def summarize_changes(changes: dict[str, object] | None) -> str:
    """"status todo → in_progress" for each changed field."""
    if not changes:
        return ""
    parts = []
    for name, change in changes.items():
        if isinstance(change, dict) and ("from" in change or "to" in change):
            parts.append(f"{name} {change.get('from')} → {change.get('to')}")
        else:
            parts.append(f"{name} {change}")
    return "; ".join(parts)


def task_line(task: Task, width: int, now: dt.datetime) -> Text:
    due = ""
    if task.due_date:
        late = task.due_date < now and task.status != "done"
        due = f" {'late ' if late else ''}{task.due_date:%m-%d}"
    head = f"{task.task_id} "
    title_width = max(width - len(head) - len(due), 4)
    line = Text(head, style="bold")
    line.append_text(fit(task.title, title_width))
    line.append(due, style="bold red" if "late" in due else "dim")
    return line


def activity_line(entry: ActivityEntry, width: int) -> Text:
    when = f"{entry.created_at:%m-%d %H:%M} "
    who = fit(entry.actor_name or entry.user_id[:8], 10)
    what = f" {entry.action.removeprefix('task.')} {summarize_changes(entry.changes)}"
    line = Text(when, style="dim")
    line.append_text(who)
    line.append_text(fit(what, max(width - len(when) - who.cell_len, 4)))
    return line


class HomeScreen(AppScreen):
    """The dashboard; with no organization chosen yet, a hint to choose one."""

    NEEDS_ORGANIZATION = False
    READ_PERMISSION = None
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh"),
        Binding("b", "board('my open tasks')", "My tasks"),
        Binding("o", "board('overdue')", "Overdue"),
    ]

    DEFAULT_CSS = """
    HomeScreen #dashboard {
        height: 1fr;
        padding: 0 1;
    }
    HomeScreen .panel {
        height: auto;
        border: round $panel-lighten-2;
        border-title-color: $text;
        padding: 0 1;
    }
    HomeScreen #due-row {
        height: auto;
    }
    HomeScreen #due-row > .panel {
        width: 1fr;
    }
    HomeScreen #dashboard-head {
        height: 1;
        color: $text-muted;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.dashboard: Dashboard | None = None
        self.cached = False

    def compose_body(self) -> Iterable[Widget]:
        with VerticalScroll(id="dashboard"):
            yield Static("", id="dashboard-head", markup=False)
            yield Static("", id="open-work", classes="panel", markup=False)
            with Horizontal(id="due-row"):
                yield Static("", id="overdue", classes="panel", markup=False)
                yield Static("", id="due-week", classes="panel", markup=False)
            yield Static("", id="sprint", classes="panel", markup=False)
            yield Static("", id="activity", classes="panel", markup=False)

    def on_mount(self) -> None:
        self.query_one("#open-work").border_title = "My open work"
        self.query_one("#overdue").border_title = "Overdue"
        self.query_one("#due-week").border_title = "Due this week"
        self.query_one("#sprint").border_title = "Active sprint"
        self.query_one("#activity").border_title = "Recent activity"
        self.action_reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "board" and self.creatia.session is not None:
            return self.session.current is not None and self.session.may("tasks.read")
        return super().check_action(action, parameters)

    # ------------------------------------------------------------ loading
    def action_reload(self) -> None:
        actor = self.session.actor
        if actor is None:
            self.say("Choose an organization (ctrl+o) to see your work in it.")
            return
        if not self.session.may("tasks.read"):
            self.say("You may not read tasks in this organization (permission tasks.read).",
                     error=True)
            return
        self.say("Loading your dashboard…")
        dbs = self.creatia.dbs
        self.run_job(lambda: load_dashboard(dbs, actor), self._loaded, group="dashboard")

    def _loaded(self, result: tuple[Dashboard, bool]) -> None:
        self.dashboard, self.cached = result
        self._draw()
        dashboard = self.dashboard
        minutes = int((dt.datetime.now(dt.timezone.utc) - dashboard.generated_at).total_seconds()
                      // 60)
        age = "just now" if minutes < 1 else f"{minutes} min ago"
        source = "cached" if self.cached else "built"
        # An age, not a clock time: it says how fresh it is (and keeps snapshots stable).
        self.query_one("#dashboard-head", Static).update(
            f"Your work here, {source} {age} (every task change rebuilds it)"
        )
        self.say(f"{sum(g.count for g in dashboard.open_by_status.values())} open tasks are yours.")

    def on_resize(self) -> None:
        if self.dashboard is not None:
            self._draw()

    def _draw(self) -> None:
        dashboard = self.dashboard
        if dashboard is None:
            return
        width = max(self.size.width - 6, 20)
        now = dt.datetime.now(dt.timezone.utc)

        counts = Text()
        for index, (status, group) in enumerate(dashboard.open_by_status.items()):
            if index:
                counts.append(" · ", style="dim")
            counts.append(f"{STATUS_TITLES.get(status, status)} ")
            counts.append(str(group.count), style="bold")
        self.query_one("#open-work", Static).update(counts)

        half = max((self.size.width - 8) // 2 - 2, 16)
        self._group("#overdue", "Overdue", dashboard.overdue, half, now)
        self._group("#due-week", "Due this week", dashboard.due_this_week, half, now)

        sprint = dashboard.sprint
        panel = self.query_one("#sprint", Static)
        if sprint is None:
            panel.border_title = "Active sprint"
            panel.update(Text("No sprint is active.", style="dim"))
        else:
            panel.border_title = f"Active sprint: {fit(sprint.name, 30).plain}"
            text = Text(progress_bar(sprint.completion_rate))
            text.append(
                f"\n{sprint.completed}/{sprint.total} done · {sprint.in_progress} in progress · "
                f"{sprint.review} review · {sprint.todo} todo · ends {sprint.end_date:%m-%d}"
            )
            if sprint.goal:
                text.append("\n")
                text.append_text(fit(sprint.goal, width))
            panel.update(text)

        activity = self.query_one("#activity", Static)
        if dashboard.recent_activity:
            activity.update(
                Text("\n").join(activity_line(e, width) for e in dashboard.recent_activity)
            )
        else:
            activity.update(Text("Nothing has happened yet.", style="dim"))

    def _group(self, selector: str, title: str, group: TaskGroup, width: int,
               now: dt.datetime) -> None:
        panel = self.query_one(selector, Static)
        panel.border_title = f"{title} ({group.count})"
        if not group.tasks:
            panel.update(Text("none", style="dim"))
            return
        lines = [task_line(task, width, now) for task in group.tasks]
        if group.count > len(group.tasks):
            lines.append(Text(f"… {group.count - len(group.tasks)} more", style="dim"))
        panel.update(Text("\n").join(lines))

    # ------------------------------------------------------------ to the board
    def action_board(self, name: str) -> None:
        from creatia_tui.screens.board import BoardScreen

        task_filter = BUILT_IN_FILTERS[name]
        self.app.switch_screen(BoardScreen(task_filter))
