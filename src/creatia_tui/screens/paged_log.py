"""What the audit log and the activity screen share: a log read page by page, newest first.

A :class:`PagedLogScreen` shows entries in a :class:`PagedTable` under a bar of filter menus
(one-line Choices) and over a one-line detail of the highlighted entry. Pages are read by keyset
(the last entry's cursor, never an offset), ``PAGE_SIZE`` entries at a time, and a new page is
*appended* under the rows already shown, so scrolling back up costs nothing and re-reads nothing:
``n`` reads the next page, and so do down or pagedown on the last row.

``f`` goes to the filter bar (left/right change a value, escape goes back to the list); a changed
filter reads from the first page again, and so does ``r``, which reads the menus too (the newest
entries appear on top). Enter opens the entry whole in a :class:`LogEntryScreen`; ``y`` copies
its id. From ``WIDE`` columns the menus share one line; below, the last takes a second line.

A screen built on it says only what differs: its ids' prefix, its columns and row text, what its
menus offer and mean, and the service calls that read a page and the menus.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import Label, Static

from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import DIALOG_CSS
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.tables import PagedTable, highlighted_key
from creatia_tui.widgets.text import plural

if TYPE_CHECKING:
    from creatia_tui.app import CreatiaApp

PAGE_SIZE = 50
WIDE = 120  # from this many columns the filter menus share one line


class Entry(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=Entry)
F = TypeVar("F")  # the filters: a frozen dataclass whose defaults mean "everything"
C = TypeVar("C")  # a page's cursor
M = TypeVar("M")  # what the menus are read as
R = TypeVar("R")


class Page(Protocol[E, C]):
    entries: list[E]
    next_cursor: C | None  # None on the last page


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    # Optional columns give way when the terminal is too narrow; the line under the table and
    # the entry view still show their values.
    optional: bool = False


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def set_options(choice: Choice, options: list[tuple[str, str]], chosen: str | None = None) -> None:
    """New options for a menu; the chosen value (or `chosen`) stays chosen while offered."""
    kept = choice.value if chosen is None else chosen
    choice.options = options
    values = [value for _, value in options]
    choice.set_reactive(Choice.index, values.index(kept) if kept in values else 0)
    choice.refresh()


def filter_menu(label: str, choice: Choice) -> Iterable[Widget]:
    """One menu of the filter bar: its label, then the choice (composed inside a Horizontal)."""
    with Horizontal(classes="log-filter"):
        yield Label(label)
        yield choice


# ---------------------------------------------------------------- the entry view
class LogEntryScreen(ModalScreen[R], Generic[E, R]):
    """One entry, whole: a column of labelled fields, then sections of JSON. ``y`` copies its id.

    A subclass sets the heading, the hint, the ids' prefix and the noun, and says the fields and
    the sections."""

    HEADING: ClassVar[str]  # "Audit entry"
    HINT: ClassVar[str] = "y copies the entry id · escape closes"
    PREFIX: ClassVar[str]  # the ids: "{PREFIX}-entry-scroll", "{PREFIX}-entry-body"
    ENTRY_NOUN: ClassVar[str]  # "audit entry": what the copied id is said to be

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
        Binding("y", "copy_id", "Copy id"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="LogEntryScreen") + """
    LogEntryScreen > Vertical {
        width: 100;
    }
    LogEntryScreen VerticalScroll {
        height: auto;
        max-height: 75vh;  /* leaves the title, the hint and the border on screen at 24 rows */
    }
    """

    def __init__(self, entry: E, organization: str) -> None:
        super().__init__()
        self.entry = entry
        self.organization = organization

    def fields(self) -> list[tuple[str, str]]:
        """(label, value) lines at the top."""
        raise NotImplementedError

    def sections(self) -> list[tuple[str, str]]:
        """(heading, text) blocks under the fields, each after a blank line."""
        raise NotImplementedError

    def body(self) -> Text:
        text = Text()
        for label, value in self.fields():
            text.append(f"{label:<13}", style="bold")
            text.append(f"{value}\n")
        for heading, block in self.sections():
            text.append(f"\n{heading}\n", style="bold")
            text.append(block)
            text.append("\n")
        text.rstrip()
        return text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.HEADING, classes="dialog-title")
            # Focusable so the arrow keys scroll a long entry.
            with VerticalScroll(can_focus=True, id=f"{self.PREFIX}-entry-scroll"):
                yield Static(self.body(), id=f"{self.PREFIX}-entry-body")
            yield Static(self.HINT, classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_copy_id(self) -> None:
        cast("CreatiaApp", self.app).copy_text(self.entry.id, f"the {self.ENTRY_NOUN} id")


# ---------------------------------------------------------------- the list
class PagedLogScreen(AppScreen, Generic[E, F, C, M]):
    """A log, newest first, read a page at a time, under a bar of filter menus."""

    PREFIX: ClassVar[str]  # the ids: "{PREFIX}-table", "{PREFIX}-detail", "{PREFIX}-<menu>"
    ENTRY_NOUN: ClassVar[str]  # "audit entry": what y copies the id of
    EMPTY: ClassVar[str]  # the summary when there is nothing at all: "The log is empty."
    END: ClassVar[str]  # after the last page: "end of log"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "more", "More"),
        Binding("f", "filters", "Filter"),
        Binding("r", "reload", "Refresh"),
        # Enter on the list is the table's own key (shown in the footer); this one serves the
        # palette and enter on a filter.
        Binding("enter", "detail", "Detail", show=False),
    ]

    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (WIDE, "-wide")]

    DEFAULT_CSS = """
    PagedLogScreen .log-filters {
        height: auto;
        padding: 0 1;
    }
    PagedLogScreen.-narrow .log-filters {
        layout: vertical;
    }
    PagedLogScreen .log-filter-pair {
        width: auto;
        height: 1;
    }
    PagedLogScreen .log-filter {
        width: auto;
        height: 1;
        margin-right: 2;
    }
    PagedLogScreen .log-filter Label {
        color: $text-muted;
    }
    PagedLogScreen PagedTable {
        height: 1fr;
    }
    PagedLogScreen .log-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self, unfiltered: F) -> None:
        super().__init__()
        self.entries: list[E] = []
        self.unfiltered = unfiltered
        self.filters = unfiltered
        self.next_cursor: C | None = None
        # Not `loading`: that is Widget's reactive, which would cover the screen with a spinner.
        self._reading = False
        self._shown_filters = unfiltered  # the filters the rows on screen were read with
        self._shown_columns: list[Column] = []

    # ------------------------------------------------------------ what a log says
    def filter_menus(self) -> list[tuple[str, Choice]]:
        """(label, menu) for the filter bar, in order; each menu's id is "{PREFIX}-<name>"."""
        raise NotImplementedError

    def current_filters(self) -> F:
        """The filters the menus show now."""
        raise NotImplementedError

    def columns_that_fit(self, width: int, padding: int) -> list[Column]:
        raise NotImplementedError

    def cell_maker(self, columns: list[Column]) -> Callable[[E], list[Text]]:
        """A function from an entry to its row's cells, one per column."""
        raise NotImplementedError

    def describe(self, entry: E) -> str:
        """The line under the table for the highlighted entry."""
        raise NotImplementedError

    def menus_job(self) -> Callable[[Any], M]:
        """The job (for :meth:`run_read`) that reads what the menus offer."""
        raise NotImplementedError

    def menus_loaded(self, menus: M) -> None:
        raise NotImplementedError

    def page_job(self, filters: F, after: C | None) -> Callable[[Any], Page[E, C]]:
        """The job (for :meth:`run_read`) that reads the page after `after` (None: the first)."""
        raise NotImplementedError

    def open_entry(self, entry: E, organization: str) -> None:
        """Push the entry view."""
        raise NotImplementedError

    def run_read(
        self,
        job: Callable[[Any], Any],
        done: Callable[[Any], Any],
        *,
        failed: Callable[[str], Any] | None = None,
        group: str,
    ) -> None:
        """Run a read job; a PostgreSQL one by default (``job(conn)``)."""
        self.run_db(job, done, failed=failed, group=group)

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        # One line from WIDE columns; below, the last menu takes a second line.
        first, second, *rest = self.filter_menus()
        with Horizontal(id=f"{self.PREFIX}-filters", classes="log-filters"):
            with Horizontal(classes="log-filter-pair"):
                yield from filter_menu(*first)
                yield from filter_menu(*second)
            for menu in rest:
                yield from filter_menu(*menu)
        yield PagedTable(id=f"{self.PREFIX}-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id=f"{self.PREFIX}-detail", classes="log-detail", markup=False)

    @property
    def table(self) -> PagedTable:
        return self.query_one(PagedTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._fill_table()
        self.action_reload()

    def on_resize(self) -> None:
        self._fill_table()

    def _fill_table(self, keep: str | None = None) -> None:
        """Show self.entries with the columns that fit; the cursor stays on `keep` (or where
        it was)."""
        table = self.table
        keep = keep or self.highlighted_id()
        columns = self.columns_that_fit(self.size.width or self.app.size.width, table.cell_padding)
        cells = self.cell_maker(columns)
        with self.app.batch_update():
            if columns != self._shown_columns:
                table.clear(columns=True)
                for column in columns:
                    table.add_column(Text(column.label), width=column.width, key=column.key)
                self._shown_columns = columns
            else:
                table.clear()
            for entry in self.entries:
                table.add_row(*cells(entry), key=entry.id)
            if keep is not None and keep in {e.id for e in self.entries}:
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def _append(self, entries: list[E]) -> None:
        self.entries.extend(entries)  # first: a row's text may name people the page brought
        table = self.table
        cells = self.cell_maker(self._shown_columns)
        with self.app.batch_update():
            for entry in entries:
                table.add_row(*cells(entry), key=entry.id)

    # ------------------------------------------------------------ filters
    def _choice(self, name: str) -> Choice:
        return self.query_one(f"#{self.PREFIX}-{name}", Choice)

    def read_if_filters_changed(self) -> bool:
        """Read the first page again when the menus no longer show the filters read with."""
        if self.current_filters() == self.filters:
            return False
        self._load_first_page()
        return True

    @on(Choice.Changed)
    def filter_changed(self) -> None:
        self.read_if_filters_changed()

    def action_filters(self) -> None:
        # set_focus, not focus(): at once, so a tab typed right after moves on from here.
        self.set_focus(self.query(Choice).first())

    def key_escape(self) -> None:
        if not self.table.has_focus:
            self.set_focus(self.table)

    # ------------------------------------------------------------ reading
    def action_reload(self) -> None:
        """Read the filter menus and the first page again."""
        self.run_read(self.menus_job(), self.menus_loaded, group=f"{self.PREFIX}-menus")
        self._load_first_page()

    def _load_first_page(self) -> None:
        self._read_page(self.current_filters(), None)

    def action_more(self) -> None:
        if self._reading:
            return
        if self.next_cursor is None:
            self.say(self._summary())
            return
        self._read_page(self.filters, self.next_cursor)

    def on_paged_table_past_end(self) -> None:
        self.action_more()

    def _read_page(self, filters: F, after: C | None) -> None:
        job = self.page_job(filters, after)
        self.filters = filters
        self._reading = True
        loaded = plural(len(self.entries), "entry")
        self.say("Loading…" if after is None else f"{loaded} · loading more…")

        def failed(sentence: str) -> None:
            self._reading = False
            if after is None and filters != self._shown_filters:
                # The rows on screen belong to other filters than the bar now shows.
                self.entries, self.next_cursor = [], None
                self._fill_table()
            self.say(sentence, error=True)

        # One group: a newer read (another filter, say) replaces an older one still running.
        self.run_read(
            job,
            lambda page: self._page_loaded(page, filters, after),
            failed=failed,
            group=f"{self.PREFIX}-page",
        )

    def _page_loaded(self, page: Page[E, C], filters: F, after: C | None) -> None:
        if filters != self.filters:  # read for filters no longer chosen
            return
        self._reading = False
        self.next_cursor = page.next_cursor
        if after is None:
            keep = self.highlighted_id()
            self._shown_filters = filters
            self.entries = list(page.entries)
            self._fill_table(keep)
            if keep not in {e.id for e in self.entries} and self.entries:
                self.table.move_cursor(row=0)
        else:
            first_new = len(self.entries)
            self._append(page.entries)
            if page.entries:
                self.table.move_cursor(row=first_new)
        self._show_detail()
        self.say(self._summary())

    def _summary(self) -> str:
        if not self.entries:
            filtered = self.filters != self.unfiltered
            return "No entries match these filters." if filtered else self.EMPTY
        more = "more: n" if self.next_cursor is not None else self.END
        return f"{plural(len(self.entries), 'entry')} · {more}"

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        return highlighted_key(self.table)

    def highlighted(self) -> E | None:
        selected = self.highlighted_id()
        return next((e for e in self.entries if e.id == selected), None)

    def _show_detail(self) -> None:
        entry = self.highlighted()
        detail = self.describe(entry) if entry else ""
        self.query_one(f"#{self.PREFIX}-detail", Static).update(detail)

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def on_data_table_row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        entry = self.highlighted()
        if entry is None:
            self.say("No entry to show.", error=True)
            return
        current = self.session.current
        self.open_entry(entry, current.name if current else "")

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return (f"the {self.ENTRY_NOUN} id", selected) if selected else None
