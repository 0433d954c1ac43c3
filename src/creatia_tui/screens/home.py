"""The home screen: every organization with its members and task counts from both databases.

The read runs in a thread worker and comes back as a message; the table keeps one row per
organization id, so a refresh updates the cells that changed and leaves the cursor where it was.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual.worker import Worker, WorkerState, get_current_worker

from creatia_tui.data.db import Databases
from creatia_tui.data.models import OrganizationOverview
from creatia_tui.data.overview import organization_overview
from creatia_tui.errors import UserError, one_line
from creatia_tui.widgets.status_line import StatusLine

log = logging.getLogger(__name__)

LOAD_GROUP = "home"
# Korean names take two cells a character; 24 cells keep the counts on screen at 80 columns.
NAME_WIDTH = 24
SUBDOMAIN_WIDTH = 20
PLAN_WIDTH = 12


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    # Optional columns are dropped when the table would not fit the terminal (80 columns), and
    # the highlighted row's detail line shows their values instead.
    optional: bool = False
    numeric: bool = False


COLUMNS = (
    Column("name", "Organization"),
    Column("subdomain", "Subdomain", optional=True),
    Column("plan", "Plan", optional=True),
    Column("active", "Active"),
    Column("members", "Members", numeric=True),
    Column("todo", "Todo", numeric=True),
    Column("in_progress", "In progress", numeric=True),
    Column("review", "Review", numeric=True),
    Column("done", "Done", numeric=True),
)


def fit(text: str, width: int) -> Text:
    """One line at most ``width`` cells, cut with an ellipsis (measured in cells, not chars).

    A Text, not a str, also keeps DataTable from reading "[" in a name as markup.
    """
    if cell_len(text) <= width:
        return Text(text, no_wrap=True, end="")
    kept, used = [], 0
    for char in text:
        used += cell_len(char)
        if used > width - 1:  # one cell for the ellipsis
            break
        kept.append(char)
    # Built by hand rather than with Text.truncate, which pads a split wide character with a
    # space and leaves "플 …" instead of "플…".
    return Text("".join(kept).rstrip() + "…", no_wrap=True, end="")


def cells_for(org: OrganizationOverview) -> dict[str, Text]:
    counts = org.task_counts
    return {
        "name": fit(org.name, NAME_WIDTH),
        "subdomain": fit(org.subdomain, SUBDOMAIN_WIDTH),
        "plan": fit(org.plan, PLAN_WIDTH),
        "active": Text("yes" if org.active else "no"),
        "members": Text(str(org.member_count), justify="right"),
        "todo": Text(str(counts.get("todo", 0)), justify="right"),
        "in_progress": Text(str(counts.get("in_progress", 0)), justify="right"),
        "review": Text(str(counts.get("review", 0)), justify="right"),
        "done": Text(str(counts.get("done", 0)), justify="right"),
    }


def columns_that_fit(rows: Sequence[dict[str, Text]], width: int, padding: int) -> list[Column]:
    """All columns when they fit in ``width`` cells, otherwise only the required ones."""

    def column_width(column: Column) -> int:
        widest = max((row[column.key].cell_len for row in rows), default=0)
        return max(len(column.label), widest) + 2 * padding

    scrollbar = 2
    if sum(column_width(c) for c in COLUMNS) + scrollbar <= width:
        return list(COLUMNS)
    return [c for c in COLUMNS if not c.optional]


def describe(org: OrganizationOverview) -> str:
    state = "active" if org.active else "inactive"
    members = f"{org.member_count} member" + ("" if org.member_count == 1 else "s")
    return (
        f"{org.name} · {org.subdomain} · {org.plan} · {state} · {members} · "
        f"{org.open_tasks} open of {org.total_tasks} tasks"
    )


class HomeScreen(Screen[None]):
    """Organizations overview; ``r`` reads both databases again."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("r", "reload", "Refresh")]

    DEFAULT_CSS = """
    HomeScreen #home-message {
        height: auto;
        padding: 0 1;
        color: $text-muted;
    }
    HomeScreen #home-message.-error {
        color: $error;
        text-style: bold;
    }
    HomeScreen #organizations {
        height: 1fr;
    }
    HomeScreen #home-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    class OverviewLoaded(Message):
        def __init__(self, organizations: list[OrganizationOverview]) -> None:
            super().__init__()
            self.organizations = organizations

    class OverviewFailed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    def __init__(self, dbs: Databases, *, show_latency: bool = True) -> None:
        super().__init__()
        self.dbs = dbs
        self.show_latency = show_latency
        self.organizations: list[OrganizationOverview] = []
        self._shown_columns: list[Column] = []
        self._loaded_once = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading…", id="home-message", markup=False)
        yield DataTable(id="organizations", cursor_type="row", zebra_stripes=True)
        yield Static("", id="home-detail", markup=False)
        yield StatusLine(self.dbs, show_latency=self.show_latency)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self.action_reload()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#organizations", DataTable)

    def _message(self, text: str, *, error: bool = False) -> None:
        message = self.query_one("#home-message", Static)
        message.update(text)
        message.set_class(error, "-error")

    # ------------------------------------------------------------ loading
    def action_reload(self) -> None:
        if not self._loaded_once:
            self.table.loading = True
        self._message("Loading…")
        self._load()

    @work(thread=True, exclusive=True, group=LOAD_GROUP, exit_on_error=False)
    def _load(self) -> None:
        worker = get_current_worker()
        try:
            organizations = organization_overview(self.dbs)
        except UserError as exc:
            message: Message = self.OverviewFailed(one_line(str(exc)))
        else:
            message = self.OverviewLoaded(organizations)
        # A refresh pressed mid-read cancels this worker, but a thread cannot be interrupted:
        # drop its result so an older read never overwrites a newer one.
        if not worker.is_cancelled:
            self.post_message(message)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group == LOAD_GROUP and event.state == WorkerState.ERROR:
            # Not a UserError: a bug. Keep the app running and say so in one line.
            error = event.worker.error
            log.error("loading the organizations failed", exc_info=error)
            self._show_failure(one_line(f"Unexpected error: {type(error).__name__}: {error}"))

    def on_home_screen_overview_failed(self, message: OverviewFailed) -> None:
        self._show_failure(message.error)

    def _show_failure(self, error: str) -> None:
        self.table.loading = False
        self._message(error, error=True)

    def on_home_screen_overview_loaded(self, message: OverviewLoaded) -> None:
        self._loaded_once = True
        self.organizations = message.organizations
        self.table.loading = False
        count = len(self.organizations)
        self._message(f"{count} organization" + ("" if count == 1 else "s"))
        self._fill_table()

    # ------------------------------------------------------------ table
    def _fill_table(self) -> None:
        table = self.table
        rows = {org.id: cells_for(org) for org in self.organizations}
        # The screen's width, not the table's: on a resize the table is laid out after this runs.
        columns = columns_that_fit(list(rows.values()), self.size.width, table.cell_padding)
        same_rows = [str(k.value) for k in table.rows] == list(rows)
        with self.app.batch_update():
            if columns == self._shown_columns and same_rows:
                # The common refresh: same organizations in the same order, some counts moved.
                for org_id, cells in rows.items():
                    current = table.get_row(org_id)
                    for column, old in zip(columns, current, strict=True):
                        new = cells[column.key]
                        if new != old:
                            table.update_cell(org_id, column.key, new, update_width=True)
            else:
                self._rebuild(table, columns, rows)
        self._show_detail()

    def _rebuild(
        self, table: DataTable[Text], columns: list[Column], rows: dict[str, dict[str, Text]]
    ) -> None:
        selected = self._highlighted_id()
        if columns != self._shown_columns:
            table.clear(columns=True)
            for column in columns:
                label = Text(column.label, justify="right" if column.numeric else "left")
                table.add_column(label, key=column.key)
            self._shown_columns = columns
        else:
            table.clear()
        for org_id, cells in rows.items():
            table.add_row(*(cells[c.key] for c in columns), key=org_id)
        if selected in rows:
            table.move_cursor(row=table.get_row_index(selected))

    def on_resize(self) -> None:
        if self._loaded_once:
            self._fill_table()

    def _highlighted_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def _show_detail(self) -> None:
        selected = self._highlighted_id()
        org = next((o for o in self.organizations if o.id == selected), None)
        self.query_one("#home-detail", Static).update(describe(org) if org else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
