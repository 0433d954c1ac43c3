"""The audit log: every change made in the organization, newest first, read page by page.

Pages are read by keyset (``read_audit`` with the last row's cursor, never OFFSET), 50 rows at a
time. A new page is *appended* under the rows already shown, so scrolling back up costs nothing
and re-reads nothing: ``n`` loads the next page, and so do down or pagedown on the last row.
The rows held grow by a page at a time; reading far back by keyboard stays a few hundred rows.

The filter bar holds three one-line choices (``f`` goes there, left/right change the value,
escape goes back to the list): the month (UTC, the log's partitions), the actor (members past
and present, and the platform admins) and the action. Changing one reads from the first page
again. ``r`` reads the menus and the first page again (the newest entries appear on top).

Enter opens the highlighted entry whole: before and after as indented JSON (Korean as it is),
the client's address and terminal, and every id; ``y`` copies the entry id. The screen only
reads: it needs ``audit.read`` to open, and the service checks it again on every page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Label, Static

from creatia_tui.data.audit import (
    AUDIT_ACTIONS,
    AuditActor,
    AuditCursor,
    AuditFilter,
    AuditPage,
    AuditRow,
    audit_actors,
    audit_months,
    read_audit,
)
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import DIALOG_CSS
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.text import fit

if TYPE_CHECKING:
    from creatia_tui.app import CreatiaApp

PAGE_SIZE = 50
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ACTOR_WIDTH = 14  # 7 Korean characters: keeps time, actor, action and resource at 80 columns
WIDE_ACTOR_WIDTH = 24
WIDE = 120  # from this many columns the actor column widens
ACTOR_MENU_WIDTH = 28
SCROLLBAR = 2
CLIENT_MAX = 80
NO_ACTOR = "(deleted user)"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    # Optional columns are dropped, last first, when the table would not fit the terminal;
    # the line under the table and the detail view still show their values.
    optional: bool = False


COLUMNS = (
    Column("time", "Time (UTC)", 19),
    Column("actor", "Actor", ACTOR_WIDTH),
    Column("action", "Action", max(len(a) for a in AUDIT_ACTIONS)),
    Column("resource", "Resource", 12),  # "Organization"
    Column("resource_id", "Id", 8, optional=True),
    Column("ip", "IP address", 15, optional=True),
    Column("client", "Client", 36, optional=True),
)


def columns_that_fit(width: int, padding: int) -> list[Column]:
    """The columns for a terminal `width` cells wide (the actor column wider when there is room)."""
    actor_width = WIDE_ACTOR_WIDTH if width >= WIDE else ACTOR_WIDTH
    columns = [
        Column(c.key, c.label, actor_width) if c.key == "actor" else c for c in COLUMNS
    ]

    def needed(shown: list[Column]) -> int:
        return sum(c.width + 2 * padding for c in shown) + SCROLLBAR

    while needed(columns) > width and any(c.optional for c in columns):
        last_optional = max(i for i, c in enumerate(columns) if c.optional)
        del columns[last_optional]
    last = columns[-1]
    if last.key == "client":  # the client takes what is left, up to a long terminal string
        room = last.width + width - needed(columns)
        columns[-1] = Column(last.key, last.label, min(max(room, last.width), CLIENT_MAX))
    return columns


def utc_time(at: dt.datetime) -> str:
    return at.astimezone(dt.timezone.utc).strftime(TIME_FORMAT)


def actor_label(entry: AuditRow) -> str:
    return entry.actor_name or entry.actor_email or NO_ACTOR


def short_id(value: str | None) -> str:
    return value[:8] if value else ""


def cells_for(entry: AuditRow, columns: list[Column]) -> list[Text]:
    values = {
        "time": utc_time(entry.created_at),
        "actor": actor_label(entry),
        "action": entry.action,
        "resource": entry.resource_type or "",
        "resource_id": short_id(entry.resource_id),
        "ip": entry.ip_address or "",
        "client": entry.user_agent or "",
    }
    return [fit(values[c.key], c.width) for c in columns]


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def change_summary(changes: dict[str, Any] | None) -> str:
    """What changed, in one line: ``role "member" → "admin"``, ``new name "…"``."""
    if not changes:
        return "no changes recorded"
    before, after = changes.get("before"), changes.get("after")

    def value(v: Any) -> str:
        return json.dumps(v, ensure_ascii=False, default=str)

    if isinstance(after, dict) and not before:
        return "new " + ", ".join(f"{k} {value(v)}" for k, v in after.items())
    if isinstance(before, dict) and not after:
        return "was " + ", ".join(f"{k} {value(v)}" for k, v in before.items())
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(dict.fromkeys([*before, *after]))
        return ", ".join(
            f"{k} {value(before.get(k))} → {value(after.get(k))}"
            for k in keys
            if before.get(k) != after.get(k)
        ) or "no difference"
    return value(changes)


def describe(entry: AuditRow) -> str:
    """The line under the table: the change, the resource, where it came from."""
    parts = [change_summary(entry.changes)]
    if entry.resource_type or entry.resource_id:
        parts.append(" ".join(p for p in (entry.resource_type, entry.resource_id) if p))
    parts.append(f"from {entry.ip_address}" if entry.ip_address else "no client address")
    if entry.user_agent:
        parts.append(entry.user_agent)
    return " · ".join(parts)


def entries_text(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


# ---------------------------------------------------------------- the detail view
class AuditEntryScreen(ModalScreen[None]):
    """One entry, whole: when, who, what, where from, every id, and before/after as JSON."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
        Binding("y", "copy_id", "Copy id"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="AuditEntryScreen") + """
    AuditEntryScreen > Vertical {
        width: 100;
    }
    AuditEntryScreen VerticalScroll {
        height: auto;
        max-height: 75vh;  /* leaves the title, the hint and the border on screen at 24 rows */
    }
    """

    def __init__(self, entry: AuditRow, organization: str) -> None:
        super().__init__()
        self.entry = entry
        self.organization = organization

    def body(self) -> Text:
        entry = self.entry
        who = actor_label(entry)
        if entry.actor_name and entry.actor_email:
            who = f"{entry.actor_name} <{entry.actor_email}>"
        fields = [
            ("Time", f"{utc_time(entry.created_at)} UTC"),
            ("Actor", who),
            ("Action", entry.action),
            ("Resource", entry.resource_type or "(none)"),
            ("IP address", entry.ip_address or "(not recorded)"),
            ("Client", entry.user_agent or "(not recorded)"),
            ("Entry id", entry.id),
            ("Actor id", entry.user_id),
            ("Resource id", entry.resource_id or "(none)"),
            ("Organization", f"{self.organization} · {entry.organization_id}"),
        ]
        text = Text()
        for label, value in fields:
            text.append(f"{label:<13}", style="bold")
            text.append(f"{value}\n")
        changes = entry.changes if isinstance(entry.changes, dict) else {}
        for label, key in (("Before", "before"), ("After", "after")):
            text.append(f"\n{label}\n", style="bold")
            value = changes.get(key)
            text.append(as_json(value) if value is not None else "(nothing)")
            text.append("\n")
        others = {k: v for k, v in changes.items() if k not in ("before", "after")}
        if others:
            text.append("\nOther\n", style="bold")
            text.append(as_json(others) + "\n")
        text.rstrip()
        return text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Audit entry", classes="dialog-title")
            # Focusable so the arrow keys scroll a long before/after.
            with VerticalScroll(can_focus=True, id="audit-entry-scroll"):
                yield Static(self.body(), id="audit-entry-body")
            yield Static("y copies the entry id · escape closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#audit-entry-scroll").focus()

    def action_copy_id(self) -> None:
        cast("CreatiaApp", self.app).copy_text(self.entry.id, "the audit entry id")


# ---------------------------------------------------------------- the list
class AuditTable(DataTable[Text]):
    """A DataTable that asks for the next page when the cursor would go past its last row."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail"),
    ]

    class PastEnd(Message):
        """Down or pagedown on the last row."""

    def _at_last_row(self) -> bool:
        return self.row_count > 0 and self.cursor_row >= self.row_count - 1

    def action_cursor_down(self) -> None:
        if self._at_last_row():
            self.post_message(self.PastEnd())
        else:
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if self._at_last_row():
            self.post_message(self.PastEnd())
        else:
            super().action_page_down()


class AuditScreen(AppScreen):
    """The organization's audit log, newest first, with month, actor and action filters."""

    READ_PERMISSION = "audit.read"
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
    AuditScreen #audit-filters {
        height: auto;
        padding: 0 1;
    }
    AuditScreen.-narrow #audit-filters {
        layout: vertical;
    }
    AuditScreen #audit-who-when {
        width: auto;
        height: 1;
    }
    AuditScreen .audit-filter {
        width: auto;
        height: 1;
        margin-right: 2;
    }
    AuditScreen .audit-filter Label {
        width: 7;
        color: $text-muted;
    }
    AuditScreen #audit-month {
        width: 20;
    }
    AuditScreen #audit-actor {
        width: 40;
    }
    AuditScreen #audit-action {
        width: 34;
    }
    AuditScreen #audit-table {
        height: 1fr;
    }
    AuditScreen #audit-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[AuditRow] = []
        self.filters = AuditFilter()
        self.next_cursor: AuditCursor | None = None
        # Not `loading`: that is Widget's reactive, which would cover the screen with a spinner.
        self._reading = False
        self._shown_filters = AuditFilter()  # the filters the rows on screen were read with
        self._shown_columns: list[Column] = []

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        # One line from 120 columns; below, the action menu takes a second line.
        with Horizontal(id="audit-filters"):
            with Horizontal(id="audit-who-when"):
                with Horizontal(classes="audit-filter"):
                    yield Label("Month")
                    yield Choice([("all", "")], id="audit-month")
                with Horizontal(classes="audit-filter"):
                    yield Label("Actor")
                    yield Choice([("anyone", "")], id="audit-actor")
            with Horizontal(classes="audit-filter"):
                yield Label("Action")
                yield Choice([("any", ""), *((a, a) for a in AUDIT_ACTIONS)], id="audit-action")
        yield AuditTable(id="audit-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="audit-detail", markup=False)

    @property
    def table(self) -> AuditTable:
        return self.query_one("#audit-table", AuditTable)

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
        columns = columns_that_fit(self.size.width or self.app.size.width, table.cell_padding)
        with self.app.batch_update():
            if columns != self._shown_columns:
                table.clear(columns=True)
                for column in columns:
                    table.add_column(Text(column.label), width=column.width, key=column.key)
                self._shown_columns = columns
            else:
                table.clear()
            for entry in self.entries:
                table.add_row(*cells_for(entry, columns), key=entry.id)
            if keep is not None and keep in {e.id for e in self.entries}:
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def _append(self, entries: list[AuditRow]) -> None:
        table = self.table
        columns = self._shown_columns
        with self.app.batch_update():
            for entry in entries:
                table.add_row(*cells_for(entry, columns), key=entry.id)
        self.entries.extend(entries)

    # ------------------------------------------------------------ filters
    def _choice(self, name: str) -> Choice:
        return self.query_one(f"#audit-{name}", Choice)

    def current_filters(self) -> AuditFilter:
        month = self._choice("month").value
        return AuditFilter(
            month=dt.date.fromisoformat(month) if month else None,
            actor_id=self._choice("actor").value or None,
            action=self._choice("action").value or None,
        )

    @staticmethod
    def _set_options(choice: Choice, options: list[tuple[str, str]]) -> None:
        """New options for a menu; the chosen value stays chosen while it is still offered."""
        kept = choice.value
        choice.options = options
        values = [value for _, value in options]
        choice.set_reactive(Choice.index, values.index(kept) if kept in values else 0)
        choice.refresh()

    def _menus_loaded(self, menus: tuple[list[dt.date], list[AuditActor]]) -> None:
        months, actors = menus
        self._set_options(
            self._choice("month"),
            [("all", "")] + [(m.strftime("%Y-%m"), m.isoformat()) for m in months],
        )
        names = [a.name or a.email for a in actors]
        options = [("anyone", "")]
        for actor, name in zip(actors, names, strict=True):
            label = name if names.count(name) == 1 else f"{name} <{actor.email}>"
            options.append((fit(label, ACTOR_MENU_WIDTH).plain, actor.id))
        self._set_options(self._choice("actor"), options)
        if self.current_filters() != self.filters:  # a chosen actor or month is gone
            self._load_first_page()

    @on(Choice.Changed)
    def filter_changed(self) -> None:
        if self.current_filters() != self.filters:
            self._load_first_page()

    def action_filters(self) -> None:
        # set_focus, not focus(): at once, so a tab typed right after moves on from here.
        self.set_focus(self._choice("month"))

    def key_escape(self) -> None:
        if not self.table.has_focus:
            self.set_focus(self.table)

    # ------------------------------------------------------------ reading
    def action_reload(self) -> None:
        """Read the filter menus and the first page again."""
        actor = self.actor
        self.run_db(
            lambda conn: (audit_months(conn, actor), audit_actors(conn, actor)),
            self._menus_loaded,
            group="audit-menus",
        )
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

    def on_audit_table_past_end(self) -> None:
        self.action_more()

    def _read_page(self, filters: AuditFilter, after: AuditCursor | None) -> None:
        actor = self.actor
        self.filters = filters
        self._reading = True
        loaded = entries_text(len(self.entries))
        self.say("Loading…" if after is None else f"{loaded} · loading more…")

        def failed(sentence: str) -> None:
            self._reading = False
            if after is None and filters != self._shown_filters:
                # The rows on screen belong to other filters than the bar now shows.
                self.entries, self.next_cursor = [], None
                self._fill_table()
            self.say(sentence, error=True)

        # One group: a newer read (another filter, say) replaces an older one still running.
        self.run_db(
            lambda conn: read_audit(conn, actor, filters, after, PAGE_SIZE),
            lambda page: self._page_loaded(page, filters, after),
            failed=failed,
            group="audit-page",
        )

    def _page_loaded(
        self, page: AuditPage, filters: AuditFilter, after: AuditCursor | None
    ) -> None:
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
            filtered = self.filters != AuditFilter()
            return "No entries match these filters." if filtered else "The log is empty."
        more = "more: n" if self.next_cursor is not None else "end of log"
        return f"{entries_text(len(self.entries))} · {more}"

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def highlighted(self) -> AuditRow | None:
        selected = self.highlighted_id()
        return next((e for e in self.entries if e.id == selected), None)

    def _show_detail(self) -> None:
        entry = self.highlighted()
        self.query_one("#audit-detail", Static).update(describe(entry) if entry else "")

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
        self.app.push_screen(AuditEntryScreen(entry, current.name if current else ""))

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return ("the audit entry id", selected) if selected else None
