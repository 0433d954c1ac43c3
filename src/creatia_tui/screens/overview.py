"""The overview: the organizations the user belongs to (every one for a platform admin), with
their members and task counts from both databases.

The read runs in a thread worker; the table keeps one row per organization id, so a refresh
updates the cells that changed and leaves the cursor where it was. Enter switches to the
highlighted organization.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Static

from creatia_tui.data.models import OrganizationOverview
from creatia_tui.data.overview import organization_overview
from creatia_tui.screens.base import AppScreen
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

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


class OverviewScreen(AppScreen):
    """Organizations overview; ``r`` reads both databases again, enter switches to one."""

    NEEDS_ORGANIZATION = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "reload", "Refresh"),
        Binding("enter", "open", "Switch to", show=False),
    ]

    DEFAULT_CSS = """
    OverviewScreen #organizations {
        height: 1fr;
    }
    OverviewScreen #home-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.organizations: list[OrganizationOverview] = []
        self._shown_columns: list[Column] = []
        self._loaded_once = False

    def compose_body(self) -> Iterable[Widget]:
        yield DataTable(id="organizations", cursor_type="row", zebra_stripes=True)
        yield Static("", id="home-detail", markup=False)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#organizations", DataTable)

    # ------------------------------------------------------------ loading
    def action_reload(self) -> None:
        if not self._loaded_once:
            self.table.loading = True
        self.say("Loading…")
        session = self.session
        # A platform admin sees every organization; anyone else those they belong to.
        ids = None if session.user.is_platform_admin else [c.id for c in session.organizations]
        dbs = self.creatia.dbs
        self.run_job(
            lambda: organization_overview(dbs, ids), self._loaded, failed=self._show_failure
        )

    def _show_failure(self, error: str) -> None:
        self.table.loading = False
        self.say(error, error=True)

    def _loaded(self, organizations: list[OrganizationOverview]) -> None:
        self._loaded_once = True
        self.organizations = organizations
        self.table.loading = False
        self.say(plural(len(organizations), "organization"))
        self._fill_table()

    def action_open(self) -> None:
        selected = self._highlighted_id()
        choice = self.session.choice(selected) if selected else None
        if choice is None:
            self.say("You are not a member of that organization.", error=True)
            return
        self.creatia.select_organization(choice)

    def on_data_table_row_selected(self) -> None:
        self.action_open()

    def copy_target(self) -> tuple[str, str] | None:
        selected = self._highlighted_id()
        return ("the organization id", selected) if selected else None

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
        if selected is None and self.session.current is not None:
            selected = self.session.current.id  # first load: start on the current organization
        if selected in rows:
            table.move_cursor(row=table.get_row_index(selected))

    def on_resize(self) -> None:
        if self._loaded_once:
            self._fill_table()

    def _highlighted_id(self) -> str | None:
        return highlighted_key(self.table)

    def _show_detail(self) -> None:
        selected = self._highlighted_id()
        org = next((o for o in self.organizations if o.id == selected), None)
        self.query_one("#home-detail", Static).update(describe(org) if org else "")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
