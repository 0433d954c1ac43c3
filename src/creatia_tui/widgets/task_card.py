"""A board column: its title and its cards, drawn by one widget.

A card is three lines: the key and priority, the title, then the assignee, due date and tags.
Every line is measured in terminal cells (Korean takes two) and cut with an ellipsis, so a card
never wraps into the next. States are written in words or signs as well as colour, so the board
reads the same under NO_COLOR: "!high", "overdue", and the selected card's left edge "▌".

Why one widget per column and not one per card (issue 4's speed targets): a widget costs
Textual ~900 objects, a mount, a reflow and a restyle of its subtree; a board of cards as widgets
spent most of its time from key to screen on that (and on collecting it afterwards). A column
here holds its tasks as a list and draws the lines the terminal shows (Textual's line API,
``render_line``), each card's three lines made once and kept until the card, its width or its
selection changes: moving the cursor repaints two cards, moving a card changes two lists and
repaints two columns, with nothing mounted, removed or laid out.
"""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

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



CARD_HEIGHT = 3  # lines of a card
CARD_ROWS = CARD_HEIGHT + 1  # a card and the blank line after it
SELECTED_EDGE = "▌"  # the selected card's left edge: the cursor without colour too


class TaskColumn(Widget):
    """A status column: a title line with counts, then its cards, top to bottom.

    The board hands it its tasks (:meth:`set_cards`), the row of the cursor when the cursor is
    in this column (:meth:`set_cursor`), whether it is the cursor's column (:meth:`mark_current`)
    and its counts (:meth:`set_title`); the column scrolls itself to keep the cursor's card in
    view. ``version`` counts what changed and ``drawn_version`` is the version last drawn, so
    whoever waits for the screen (the bench) can tell that a change reached it.
    """

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "task-column--title",
        "task-column--title-current",
        "task-column--card",
        "task-column--selected",
        "task-column--edge",
    }

    DEFAULT_CSS = """
    TaskColumn {
        width: 1fr;
        height: 1fr;
        margin: 0 0 0 1;
    }
    TaskColumn.-collapsed {
        width: 5;
    }
    TaskColumn > .task-column--title {
        text-style: bold;
        background: $panel;
    }
    TaskColumn > .task-column--title-current {
        text-style: bold;
        background: $accent 50%;
    }
    TaskColumn > .task-column--card {
        background: $boost;
    }
    TaskColumn > .task-column--selected {
        background: $primary 40%;
    }
    TaskColumn > .task-column--edge {
        color: $accent;
        background: $primary 40%;
    }
    """

    def __init__(self, status: str) -> None:
        super().__init__(id=f"column-{status}")
        self.status = status
        self.tasks: list[Task] = []
        self.now = dt.datetime.now(dt.timezone.utc)  # what "overdue" is measured against
        self.cursor: int | None = None  # the selected card's row, when the cursor is here
        self.current = False  # the cursor's column (its title is marked)
        self.collapsed = False
        self.top = 0  # the first card drawn
        self.title_text = STATUS_TITLES.get(status, status)
        self.version = 0
        self.drawn_version = -1
        # task id -> (the Task drawn, width, selected, its three lines)
        self._strips: dict[str, tuple[Task, int, bool, list[Strip]]] = {}
        self._blank: Strip | None = None

    # ------------------------------------------------------------ what the board sets
    def set_cards(self, tasks: list[Task], now: dt.datetime) -> None:
        """Show these tasks (in this order); keeps the drawn lines of cards that did not
        change."""
        self.tasks = list(tasks)
        self.now = now
        kept = {task.id for task in self.tasks}
        self._strips = {key: value for key, value in self._strips.items() if key in kept}
        if self.cursor is not None and self.cursor >= len(self.tasks):
            self.cursor = len(self.tasks) - 1 if self.tasks else None
        self.top = max(0, min(self.top, len(self.tasks) - 1))
        self._scroll_to_cursor()
        self._changed()

    def set_cursor(self, row: int | None) -> None:
        """Select the card at ``row`` (None: the cursor is in another column)."""
        if row is not None:
            row = max(0, min(row, len(self.tasks) - 1)) if self.tasks else None
        if row == self.cursor:
            return
        old, self.cursor = self.cursor, row
        if self._scroll_to_cursor():
            self._changed()
            return
        self.version += 1
        for index in (old, row):
            if index is not None:
                self._refresh_card(index)

    def mark_current(self, current: bool) -> None:
        if current != self.current:
            self.current = current
            self._refresh_title()

    def set_title(self, shown: int, total: int, collapsed: bool) -> None:
        title = STATUS_TITLES.get(self.status, self.status)
        text = f"{title[:1]} {total}" if collapsed else f"{title} {shown}/{total}"
        if not collapsed and shown == total:
            text = f"{title} {total}"
        if text != self.title_text:
            self.title_text = text
            self._refresh_title()

    def set_collapsed(self, collapsed: bool) -> None:
        """Folded to its title's first letter and count (the done column)."""
        if collapsed != self.collapsed:
            self.collapsed = collapsed
            self.set_class(collapsed, "-collapsed")
            self._changed()

    # ------------------------------------------------------------ what tests and the board read
    @property
    def is_current(self) -> bool:
        return self.current

    def card_text(self, task_id: str) -> str | None:
        """A card's three lines as drawn (without the edges), or None when it is not here."""
        for task in self.tasks:
            if task.id == task_id:
                return "\n".join(t.plain for t in card_lines(task, self.card_width, self.now))
        return None

    @property
    def card_width(self) -> int:
        """Cells a card's text may take: the column less a cell each side."""
        return max(self.size.width - 2, 8)

    def visible_rows(self) -> range:
        """The rows of the cards drawn whole."""
        fits = max(self.size.height // CARD_ROWS, 1)  # below the title: 4n - 1 lines
        return range(self.top, min(self.top + fits, len(self.tasks)))

    def drawn_lines(self, task_id: str) -> list[str] | None:
        """The card's lines as the terminal shows them (edges included), when it is in view."""
        for row, task in enumerate(self.tasks):
            if task.id == task_id and row in self.visible_rows():
                first = 1 + (row - self.top) * CARD_ROWS
                return [self.render_line(first + i).text for i in range(CARD_HEIGHT)]
        return None

    # ------------------------------------------------------------ drawing
    def _changed(self) -> None:
        self.version += 1
        self.refresh()

    def _refresh_title(self) -> None:
        self.version += 1
        self.refresh(Region(0, 0, self.size.width, 1))

    def _refresh_card(self, row: int) -> None:
        top = 1 + (row - self.top) * CARD_ROWS
        if 0 < top < self.size.height:
            self.refresh(Region(0, top, self.size.width, CARD_HEIGHT))

    def _scroll_to_cursor(self) -> bool:
        """Scroll so the cursor's card is whole in view; True when ``top`` changed."""
        if self.cursor is None or not self.size.height:
            return False  # not laid out yet: on_resize scrolls once the height is known
        fits = max(self.size.height // CARD_ROWS, 1)  # n cards and the gaps between: 4n - 1
        top = self.top
        if self.cursor < top:
            top = self.cursor
        elif self.cursor >= top + fits:
            top = self.cursor - fits + 1
        if top != self.top:
            self.top = top
            return True
        return False

    def on_resize(self) -> None:
        if self._scroll_to_cursor():
            self._changed()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()  # a theme changed the colours the lines were made with
        self._blank = None

    def render_line(self, y: int) -> Strip:
        self.drawn_version = self.version
        width = self.size.width
        if y == 0:
            return self._title_strip(width)
        if self.collapsed:
            return self._blank_strip(width)
        row, line = divmod(y - 1, CARD_ROWS)
        row += self.top
        if row >= len(self.tasks) or line >= CARD_HEIGHT:
            return self._blank_strip(width)
        return self._card_strips(row, width)[line]

    def _blank_strip(self, width: int) -> Strip:
        # The widget's own style walks its ancestors: made once per width (and theme).
        if self._blank is None or self._blank.cell_length != width:
            self._blank = Strip.blank(width, self.rich_style)
        return self._blank

    def _title_strip(self, width: int) -> Strip:
        style = self.get_component_rich_style(
            "task-column--title-current" if self.current else "task-column--title")
        text = fit(self.title_text, max(width - 2, 1))
        segments = [Segment(" ", style), *Segment.apply_style(self._segments(text), style)]
        return Strip(segments).adjust_cell_length(width, style)

    def _card_strips(self, row: int, width: int) -> list[Strip]:
        task = self.tasks[row]
        selected = row == self.cursor
        held = self._strips.get(task.id)
        if held is not None and held[0] is task and held[1] == width and held[2] == selected:
            return held[3]
        base = self.get_component_rich_style(
            "task-column--selected" if selected else "task-column--card")
        edge = (Segment(SELECTED_EDGE, self.get_component_rich_style("task-column--edge"))
                if selected else Segment(" ", base))
        strips = []
        for text in card_lines(task, max(width - 2, 8), self.now):
            segments = [edge, *Segment.apply_style(self._segments(text), base)]
            used = 1 + text.cell_len
            if used < width:  # the usual case: pad to the width, a cell at least on the right
                segments.append(Segment(" " * (width - used), base))
                strips.append(Strip(segments, width))
            else:  # a column narrower than a card's least width: cut, keep the right cell
                strips.append(Strip(segments).adjust_cell_length(width - 1, base)
                              .extend_cell_length(width, base))
        self._strips[task.id] = (task, width, selected, strips)
        return strips

    def _segments(self, text: Text) -> list[Segment]:
        """A line's segments. Its spans do not overlap (card_lines makes them so): then each
        piece is cut straight from the text, ~3 times faster than Rich's general
        ``Text.render``, which stays the fallback."""
        console = self.app.console
        plain = text.plain
        base = console.get_style(text.style) if text.style else Style.null()
        segments: list[Segment] = []
        position = 0
        for span in sorted(text.spans, key=lambda span: span.start):
            if span.start < position:
                return list(text.render(console))
            if span.start > position:
                segments.append(Segment(plain[position:span.start], base))
            style = span.style if isinstance(span.style, Style) else console.get_style(span.style)
            segments.append(Segment(plain[span.start:span.end], base + style))
            position = span.end
        if position < len(plain):
            segments.append(Segment(plain[position:], base))
        return segments
