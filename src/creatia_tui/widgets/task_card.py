"""A task card and a board column.

A card is three lines: the key and priority, the title, then the assignee, due date and tags.
Every line is measured in terminal cells (Korean takes two) and cut with an ellipsis, so a card
never wraps into the next. States are written in words or signs as well as colour, so the board
reads the same under NO_COLOR: "!high", "overdue".
"""

from __future__ import annotations

import datetime as dt

from rich.cells import cell_len
from rich.text import Text
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from creatia_tui.data.models import Task
from creatia_tui.widgets.text import fit

PRIORITY_MARK = {"urgent": "!urgent", "high": "!high", "medium": "med", "low": "low"}
PRIORITY_STYLE = {"urgent": "bold red", "high": "yellow", "medium": "", "low": "dim"}
STATUS_TITLES = {"todo": "Todo", "in_progress": "In progress", "review": "Review", "done": "Done"}


def is_overdue(task: Task, now: dt.datetime) -> bool:
    return bool(task.due_date and task.due_date < now and task.status != "done")


def assignee_name(task: Task) -> str:
    snapshot = task.assignee_snapshot or {}
    if not task.assignee_id:
        return "unassigned"
    return str(snapshot.get("name") or snapshot.get("email") or "someone")


def card_lines(task: Task, width: int, now: dt.datetime) -> list[Text]:
    """The card's three lines, each at most ``width`` cells."""
    priority = task.priority or "medium"
    mark = PRIORITY_MARK.get(priority, priority)
    key = fit(task.task_id, max(width - cell_len(mark) - 1, 4))
    first = Text.assemble(key, " " * max(width - key.cell_len - cell_len(mark), 1))
    first.append(mark, style=PRIORITY_STYLE.get(priority, ""))
    first.truncate(width)

    title = fit(task.title, width)
    title.stylize("bold")

    # The due date first: "late" is what triage looks for, and it must survive a narrow card.
    parts: list[Text] = []
    if task.due_date:
        due = task.due_date.strftime("%m-%d")
        if is_overdue(task, now):
            parts.append(Text(f"late {due}", style="bold red"))
        else:
            parts.append(Text(due))
    parts.append(Text(assignee_name(task), style="italic" if not task.assignee_id else ""))
    if task.tags:
        parts.append(Text(" ".join(f"#{tag}" for tag in task.tags[:3]), style="dim"))
    third = Text(" · ").join(parts)
    if third.cell_len > width:
        third = _cut(third, width)
    return [first, title, third]


def _cut(text: Text, width: int) -> Text:
    """Cut a styled line to ``width`` cells with an ellipsis, keeping the styles of what stays."""
    plain = fit(text.plain, width).plain
    kept = len(plain) - 1 if plain.endswith("…") else len(plain)
    cut = text[:kept]
    cut.rstrip()
    cut.append("…")
    return cut


class TaskCard(Static):
    """One card; the board moves the ``-selected`` class, not the focus."""

    DEFAULT_CSS = """
    TaskCard {
        height: 3;
        padding: 0 1;
        margin-bottom: 1;
        background: $boost;
    }
    TaskCard.-selected {
        background: $primary 40%;
        border-left: thick $accent;
        padding-left: 0;
    }
    TaskCard.-stale {
        text-style: italic;
    }
    """

    def __init__(self, task: Task, now: dt.datetime) -> None:
        super().__init__(id=f"card-{task.id}", markup=False)
        self.card_task = task
        self.now = now

    def update_task(self, task: Task, now: dt.datetime) -> None:
        self.card_task, self.now = task, now
        self.refresh()

    def render(self) -> Text:
        width = max(self.content_size.width, 8)
        return Text("\n").join(card_lines(self.card_task, width, self.now))


class TaskColumn(Vertical):
    """A status column: a header with counts, then its cards in a scroll."""

    DEFAULT_CSS = """
    TaskColumn {
        width: 1fr;
        height: 1fr;
        margin: 0 0 0 1;
    }
    TaskColumn.-collapsed {
        width: 5;
    }
    TaskColumn > .column-title {
        height: 1;
        text-style: bold;
        background: $panel;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    TaskColumn > .column-title.-current {
        background: $accent 50%;
    }
    TaskColumn > VerticalScroll {
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    """

    def __init__(self, status: str) -> None:
        super().__init__(id=f"column-{status}")
        self.status = status

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(STATUS_TITLES.get(self.status, self.status), classes="column-title",
                     markup=False)
        yield VerticalScroll(can_focus=False)

    def mark_current(self, current: bool) -> None:
        """The cursor's column: the class goes on its title, not on the column, whose
        restyling would restyle every card in it."""
        self.query_one(".column-title").set_class(current, "-current")

    @property
    def is_current(self) -> bool:
        return self.query_one(".column-title").has_class("-current")

    def set_title(self, shown: int, total: int, collapsed: bool) -> None:
        title = STATUS_TITLES.get(self.status, self.status)
        text = f"{title[:1]} {total}" if collapsed else f"{title} {shown}/{total}"
        if not collapsed and shown == total:
            text = f"{title} {total}"
        self.query_one(".column-title", Static).update(text)
