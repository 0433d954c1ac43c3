"""The organization's activity: who did what to which task, newest first, read page by page.

It works as the audit log does. Pages come from ``read_activity`` by keyset (the last entry's
cursor, never skip), 50 entries at a time, and a new page is *appended* under the entries
already shown: ``n`` reads the next one, and so do down or pagedown on the last row.

Each row says when (UTC, to the minute), who, the action and what changed, in one line:
``status todo → in_progress``, ``priority low → high``, ``assignee (none) → 박지호`` (an
assignee is named when they are a member or an actor on screen, else shown by a short id).
From 93 columns the resource has a column of its own (before the change): the task's key when
the entry carries it (``task.created``, ``task.deleted``), else a short id (the last 8
characters of an ObjectId, which differ between tasks made in the same second; the first 8 of
anything else).

The filter bar holds three one-line choices (``f`` goes there, left/right change the value,
escape goes back to the list): the user (anyone, or one of the organization's active members;
deactivated people's entries are listed but not offered as a filter), the action (the fixed
vocabulary of ``activity_actions``) and the resource type. Changing one reads from the first
page again; ``r`` reads the menus and the first page again (the newest entries appear on top).

Enter opens the highlighted entry whole: its changes and metadata as indented JSON (Korean as it
is) and every id; there ``y`` copies the entry id and ``o`` shows only this resource's activity
(the resource choice then offers that one task, until another ``o`` replaces it). The screen
only reads: it needs ``tasks.read`` ("See tasks and activity"), which a viewer holds, and the
service checks it again on every page.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from pymongo.errors import ConnectionFailure
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Label, Static

from creatia_tui.data.activity import (
    ACTIVITY_ACTIONS,
    ActivityCursor,
    ActivityEntry,
    ActivityFilter,
    ActivityPage,
    activity_actions,
    read_activity,
)
from creatia_tui.data.board import BoardService, MemberChoice
from creatia_tui.data.db import Databases
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import DIALOG_CSS
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.text import fit, plural

if TYPE_CHECKING:
    from creatia_tui.app import CreatiaApp

T = TypeVar("T")

PAGE_SIZE = 50
TIME_FORMAT = "%Y-%m-%d %H:%M"
FULL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
WHO_WIDTH = 10  # 5 Korean characters: keeps time, who, action and 25 cells of change at 80
WIDE_WHO_WIDTH = 20
WIDE = 120  # from this many columns the who column widens and the filters share one line
WHAT_MIN = 24  # the resource column is shown only when the change keeps this much room
USER_MENU_WIDTH = 16  # 8 Korean characters: user and action share a line at 80
SCROLLBAR = 2
RESOURCE_TYPES = ("Task", "Sprint")  # the board writes Task; Sprint is the seed's other kind
NO_ACTOR = "(unknown user)"
NOTHING = "(none)"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    # Dropped when the terminal is too narrow; the line under the table and the entry view
    # still show the value.
    optional: bool = False


COLUMNS = (
    Column("time", "When (UTC)", len("2026-01-01 00:00")),
    Column("who", "Who", WHO_WIDTH),
    Column("action", "Action", max(len(a) for a in ACTIVITY_ACTIONS)),
    Column("resource", "Resource", 12, optional=True),
    Column("what", "What changed", WHAT_MIN),  # last: takes the room the others leave
)


def columns_that_fit(width: int, padding: int) -> list[Column]:
    """The columns for a terminal `width` cells wide: "what" takes the room the others leave,
    and the resource column comes only when "what" keeps WHAT_MIN cells beside it."""
    who_width = WIDE_WHO_WIDTH if width >= WIDE else WHO_WIDTH
    columns = [Column(c.key, c.label, who_width) if c.key == "who" else c for c in COLUMNS]

    def room_for_what(shown: list[Column]) -> int:
        others = sum(c.width + 2 * padding for c in shown if c.key != "what")
        return width - others - 2 * padding - SCROLLBAR

    if room_for_what(columns) < WHAT_MIN:
        columns = [c for c in columns if not c.optional]
    what = max(room_for_what(columns), 10)
    return [Column(c.key, c.label, what) if c.key == "what" else c for c in columns]


# ---------------------------------------------------------------- words for an entry
def utc_time(at: dt.datetime, time_format: str = TIME_FORMAT) -> str:
    if at.tzinfo is None:  # pymongo without tz_aware: the stored value is UTC
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).strftime(time_format)


def who_label(entry: ActivityEntry) -> str:
    return entry.actor_name or NO_ACTOR


def short_id(value: str | None) -> str:
    """A resource id in 8 characters: an ObjectId's tail (its head is the second it was made)."""
    if not value:
        return ""
    is_object_id = len(value) == 24 and all(c in "0123456789abcdef" for c in value.lower())
    return value[-8:] if is_object_id else value[:8]


def task_key(entry: ActivityEntry) -> str | None:
    key = (entry.changes or {}).get("task_id")
    return key if isinstance(key, str) and key else None


def resource_label(entry: ActivityEntry) -> str:
    return task_key(entry) or short_id(entry.resource_id)


FIELD_LABELS = {"assignee_id": "assignee", "sprint_id": "sprint"}


def value_text(key: str, value: Any, names: dict[str, str]) -> str:
    """One changed value in words, on one line."""
    if value is None or value == "" or value == []:
        return NOTHING
    if key in ("assignee_id", "user_id") and isinstance(value, str):
        return names.get(value) or short_id(value)
    if isinstance(value, dt.datetime):
        return utc_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ", ".join(value_text(key, v, names) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return " ".join(str(value).split())  # a description's line breaks become spaces


BARE_KEYS = ("task_id", "title")  # a created or deleted task: its key and title, unlabelled


def change_summary(changes: dict[str, Any] | None, names: dict[str, str]) -> str:
    """What changed, in one line: ``status todo → in_progress``, ``TASK-0001 로그인 화면``."""
    if not changes:
        return ""
    bare = [
        value_text(key, changes[key], names)
        for key in BARE_KEYS
        if key in changes and not isinstance(changes[key], dict)
    ]
    parts = [" ".join(bare)] if bare else []
    for key, value in changes.items():
        label = FIELD_LABELS.get(key, key)
        if key in BARE_KEYS and not isinstance(value, dict):
            continue
        if isinstance(value, dict) and ("from" in value or "to" in value):
            before = value_text(key, value.get("from"), names)
            after = value_text(key, value.get("to"), names)
            parts.append(f"{label} {before} → {after}")
        else:
            parts.append(f"{label} {value_text(key, value, names)}")
    return ", ".join(parts)


def cells_for(entry: ActivityEntry, columns: list[Column], names: dict[str, str]) -> list[Text]:
    values = {
        "time": utc_time(entry.created_at),
        "who": who_label(entry),
        "action": entry.action,
        "what": change_summary(entry.changes, names),
        "resource": resource_label(entry),
    }
    return [fit(values[c.key], c.width) for c in columns]


def describe(entry: ActivityEntry, names: dict[str, str]) -> str:
    """The line under the table: the change, the resource, the client."""
    parts = [change_summary(entry.changes, names) or "no changes recorded"]
    resource = " ".join(p for p in (entry.resource_type, task_key(entry), entry.resource_id) if p)
    if resource:
        parts.append(resource)
    client = (entry.metadata or {}).get("client_type")
    if client:
        parts.append(f"from {client}")
    return " · ".join(parts)


def as_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def entries_text(count: int) -> str:
    return plural(count, "entry")


def resource_value(resource_type: str, resource_id: str | None = None) -> str:
    """A resource choice's value: the type, or "type:id" for one resource."""
    return f"{resource_type}:{resource_id}" if resource_id else resource_type


# ---------------------------------------------------------------- the entry view
class ActivityEntryScreen(ModalScreen[str | None]):
    """One entry, whole: when, who, what, which resource, changes and metadata as JSON.

    Dismissed with "only" when ``o`` asks for this resource's activity alone."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("enter", "dismiss", "Close", show=False),
        Binding("y", "copy_id", "Copy id"),
        Binding("o", "only_this", "Only this resource"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="ActivityEntryScreen") + """
    ActivityEntryScreen > Vertical {
        width: 100;
    }
    ActivityEntryScreen VerticalScroll {
        height: auto;
        max-height: 75vh;  /* leaves the title, the hint and the border on screen at 24 rows */
    }
    """

    def __init__(self, entry: ActivityEntry, organization: str) -> None:
        super().__init__()
        self.entry = entry
        self.organization = organization

    def body(self) -> Text:
        entry = self.entry
        resource = " ".join(p for p in (entry.resource_type, task_key(entry)) if p)
        fields = [
            ("Time", f"{utc_time(entry.created_at, FULL_TIME_FORMAT)} UTC"),
            ("Who", who_label(entry)),
            ("Action", entry.action),
            ("Resource", resource or NOTHING),
            ("Entry id", entry.id),
            ("User id", entry.user_id),
            ("Resource id", entry.resource_id or NOTHING),
            ("Organization", f"{self.organization} · {entry.organization_id}"),
        ]
        text = Text()
        for label, value in fields:
            text.append(f"{label:<13}", style="bold")
            text.append(f"{value}\n")
        for label, value in (("Changes", entry.changes), ("Metadata", entry.metadata)):
            text.append(f"\n{label}\n", style="bold")
            text.append(as_json(value) if value else "(nothing)")
            text.append("\n")
        text.rstrip()
        return text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Activity entry", classes="dialog-title")
            # Focusable so the arrow keys scroll long changes.
            with VerticalScroll(can_focus=True, id="activity-entry-scroll"):
                yield Static(self.body(), id="activity-entry-body")
            hint = "y copies the entry id · o only this resource · escape closes"
            yield Static(hint, classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#activity-entry-scroll").focus()

    def action_copy_id(self) -> None:
        cast("CreatiaApp", self.app).copy_text(self.entry.id, "the activity entry id")

    def action_only_this(self) -> None:
        if not (self.entry.resource_type and self.entry.resource_id):
            self.notify("This entry names no resource.", severity="warning", timeout=3)
            return
        self.dismiss("only")


# ---------------------------------------------------------------- the list
class ActivityTable(DataTable[Text]):
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


Menus = tuple[list[str], list[MemberChoice]]


class ActivityScreen(AppScreen):
    """The organization's activity, newest first, with user, action and resource filters."""

    READ_PERMISSION = "tasks.read"
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
    ActivityScreen #activity-filters {
        height: auto;
        padding: 0 1;
    }
    ActivityScreen.-narrow #activity-filters {
        layout: vertical;
    }
    ActivityScreen #activity-who-what {
        width: auto;
        height: 1;
    }
    ActivityScreen .activity-filter {
        width: auto;
        height: 1;
        margin-right: 2;
    }
    ActivityScreen .activity-filter Label {
        width: auto;
        margin-right: 1;
        color: $text-muted;
    }
    ActivityScreen #activity-user {
        width: 28;  /* "◀ " + a name cut to USER_MENU_WIDTH + " ▶  nn/nn" */
    }
    ActivityScreen #activity-action {
        width: 29;
    }
    ActivityScreen #activity-resource {
        width: 28;
    }
    ActivityScreen #activity-table {
        height: 1fr;
    }
    ActivityScreen #activity-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[ActivityEntry] = []
        self.filters = ActivityFilter()
        self.next_cursor: ActivityCursor | None = None
        self.member_names: dict[str, str] = {}
        # Not `loading`: that is Widget's reactive, which would cover the screen with a spinner.
        self._reading = False
        self._shown_filters = ActivityFilter()  # the filters the rows on screen were read with
        self._shown_columns: list[Column] = []

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        # One line from 120 columns; below, the resource menu takes a second line.
        with Horizontal(id="activity-filters"):
            with Horizontal(id="activity-who-what"):
                with Horizontal(classes="activity-filter"):
                    yield Label("User")
                    yield Choice([("anyone", "")], id="activity-user")
                with Horizontal(classes="activity-filter"):
                    yield Label("Action")
                    yield Choice(
                        [("any", ""), *((a, a) for a in ACTIVITY_ACTIONS)], id="activity-action"
                    )
            with Horizontal(classes="activity-filter"):
                yield Label("Resource")
                yield Choice(
                    [("any", ""), *((t, t) for t in RESOURCE_TYPES)], id="activity-resource"
                )
        yield ActivityTable(id="activity-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="activity-detail", markup=False)

    @property
    def table(self) -> ActivityTable:
        return self.query_one("#activity-table", ActivityTable)

    def on_mount(self) -> None:
        self.table.focus()
        self._fill_table()
        self.action_reload()

    def on_resize(self) -> None:
        self._fill_table()

    def names(self) -> dict[str, str]:
        """Names for the user ids in changes (an assignee): members, then the actors shown."""
        known = {e.user_id: e.actor_name for e in self.entries if e.actor_name}
        return known | self.member_names

    def _fill_table(self, keep: str | None = None) -> None:
        """Show self.entries with the columns that fit; the cursor stays on `keep` (or where
        it was)."""
        table = self.table
        keep = keep or self.highlighted_id()
        columns = columns_that_fit(self.size.width or self.app.size.width, table.cell_padding)
        names = self.names()
        with self.app.batch_update():
            if columns != self._shown_columns:
                table.clear(columns=True)
                for column in columns:
                    table.add_column(Text(column.label), width=column.width, key=column.key)
                self._shown_columns = columns
            else:
                table.clear()
            for entry in self.entries:
                table.add_row(*cells_for(entry, columns, names), key=entry.id)
            if keep is not None and keep in {e.id for e in self.entries}:
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def _append(self, entries: list[ActivityEntry]) -> None:
        self.entries.extend(entries)
        table = self.table
        columns = self._shown_columns
        names = self.names()
        with self.app.batch_update():
            for entry in entries:
                table.add_row(*cells_for(entry, columns, names), key=entry.id)

    # ------------------------------------------------------------ filters
    def _choice(self, name: str) -> Choice:
        return self.query_one(f"#activity-{name}", Choice)

    def current_filters(self) -> ActivityFilter:
        resource_type, _, resource_id = self._choice("resource").value.partition(":")
        return ActivityFilter(
            user_id=self._choice("user").value or None,
            action=self._choice("action").value or None,
            resource_type=resource_type or None,
            resource_id=resource_id or None,
        )

    @staticmethod
    def _set_options(
        choice: Choice, options: list[tuple[str, str]], chosen: str | None = None
    ) -> None:
        """New options for a menu; the chosen value (or `chosen`) stays chosen while offered."""
        kept = choice.value if chosen is None else chosen
        choice.options = options
        values = [value for _, value in options]
        choice.set_reactive(Choice.index, values.index(kept) if kept in values else 0)
        choice.refresh()

    def _menus_loaded(self, menus: Menus) -> None:
        actions, members = menus
        self._set_options(self._choice("action"), [("any", ""), *((a, a) for a in actions)])
        labels = [m.name for m in members]
        options = [("anyone", "")]
        for member, label in zip(members, labels, strict=True):
            if labels.count(label) > 1:
                label = f"{label} <{member.email}>"
            options.append((fit(label, USER_MENU_WIDTH).plain, member.user_id))
        self._set_options(self._choice("user"), options)
        self.member_names = {m.user_id: m.name for m in members}
        if self.current_filters() != self.filters:  # a chosen user is no longer offered
            self._load_first_page()
        else:
            self._fill_table()  # assignees may now have names

    @on(Choice.Changed)
    def filter_changed(self) -> None:
        if self.current_filters() != self.filters:
            self._load_first_page()

    def action_filters(self) -> None:
        # set_focus, not focus(): at once, so a tab typed right after moves on from here.
        self.set_focus(self._choice("user"))

    def key_escape(self) -> None:
        if not self.table.has_focus:
            self.set_focus(self.table)

    def only_resource(self, entry: ActivityEntry) -> None:
        """Narrow the list to the entry's resource (the resource menu offers it from now on)."""
        if not (entry.resource_type and entry.resource_id):
            return
        label = f"{entry.resource_type} {resource_label(entry)}"
        value = resource_value(entry.resource_type, entry.resource_id)
        options = [("any", ""), *((t, t) for t in RESOURCE_TYPES), (label, value)]
        self._set_options(self._choice("resource"), options, chosen=value)
        if self.current_filters() != self.filters:
            self._load_first_page()

    # ------------------------------------------------------------ reading
    def _run_read(
        self,
        job: Callable[[Databases], T],
        done: Callable[[T], Any],
        *,
        failed: Callable[[str], Any] | None = None,
        group: str,
    ) -> None:
        """Run a service call that opens its own connections; an unreachable MongoDB is said as
        the other screens say it, not as an unexpected error."""
        dbs = self.creatia.dbs

        def run() -> T:
            try:
                return job(dbs)
            except ConnectionFailure as exc:
                raise dbs.mongo_error(exc) from exc

        self.run_job(run, done, failed=failed, group=group)

    def action_reload(self) -> None:
        """Read the filter menus and the first page again."""
        actor = self.actor
        self._run_read(
            lambda dbs: (
                activity_actions(dbs, actor),
                BoardService(dbs, actor).assignable_members(),
            ),
            self._menus_loaded,
            group="activity-menus",
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

    def on_activity_table_past_end(self) -> None:
        self.action_more()

    def _read_page(self, filters: ActivityFilter, after: ActivityCursor | None) -> None:
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
        self._run_read(
            lambda dbs: read_activity(dbs, actor, filters, after, PAGE_SIZE),
            lambda page: self._page_loaded(page, filters, after),
            failed=failed,
            group="activity-page",
        )

    def _page_loaded(
        self, page: ActivityPage, filters: ActivityFilter, after: ActivityCursor | None
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
            filtered = self.filters != ActivityFilter()
            return "No entries match these filters." if filtered else "No activity yet."
        more = "more: n" if self.next_cursor is not None else "end of activity"
        return f"{entries_text(len(self.entries))} · {more}"

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        table = self.table
        if not table.row_count:
            return None
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        return str(row_key.value)

    def highlighted(self) -> ActivityEntry | None:
        selected = self.highlighted_id()
        return next((e for e in self.entries if e.id == selected), None)

    def _show_detail(self) -> None:
        entry = self.highlighted()
        detail = describe(entry, self.names()) if entry else ""
        self.query_one("#activity-detail", Static).update(detail)

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

        def closed(result: str | None) -> None:
            if result == "only":
                self.only_resource(entry)

        self.app.push_screen(ActivityEntryScreen(entry, current.name if current else ""), closed)

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return ("the activity entry id", selected) if selected else None
