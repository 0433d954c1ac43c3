"""The organization's activity: who did what to which task, newest first, read page by page.

It is a :class:`~creatia_tui.screens.paged_log.PagedLogScreen`, as the audit log is. Pages come
from ``read_activity`` by keyset (the last entry's cursor, never skip), 50 entries at a time,
and a new page is *appended* under the entries already shown: ``n`` reads the next one, and so
do down or pagedown on the last row.

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
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from pymongo.errors import ConnectionFailure
from rich.text import Text
from textual.binding import Binding, BindingType

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
from creatia_tui.screens.paged_log import (
    PAGE_SIZE,
    WIDE,
    Column,
    LogEntryScreen,
    PagedLogScreen,
    as_json,
    set_options,
)
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.text import fit

T = TypeVar("T")

TIME_FORMAT = "%Y-%m-%d %H:%M"
FULL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
WHO_WIDTH = 10  # 5 Korean characters: keeps time, who, action and 25 cells of change at 80
WIDE_WHO_WIDTH = 20  # from WIDE columns
WHAT_MIN = 24  # the resource column is shown only when the change keeps this much room
USER_MENU_WIDTH = 16  # 8 Korean characters: user and action share a line at 80
SCROLLBAR = 2
RESOURCE_TYPES = ("Task", "Sprint")  # the board writes Task; Sprint is the seed's other kind
NO_ACTOR = "(unknown user)"
NOTHING = "(none)"


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


def resource_value(resource_type: str, resource_id: str | None = None) -> str:
    """A resource choice's value: the type, or "type:id" for one resource."""
    return f"{resource_type}:{resource_id}" if resource_id else resource_type


# ---------------------------------------------------------------- the entry view
class ActivityEntryScreen(LogEntryScreen[ActivityEntry, str | None]):
    """One entry, whole: when, who, what, which resource, changes and metadata as JSON.

    Dismissed with "only" when ``o`` asks for this resource's activity alone."""

    HEADING = "Activity entry"
    HINT = "y copies the entry id · o only this resource · escape closes"
    PREFIX = "activity"
    ENTRY_NOUN = "activity entry"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("o", "only_this", "Only this resource"),
    ]

    def fields(self) -> list[tuple[str, str]]:
        entry = self.entry
        resource = " ".join(p for p in (entry.resource_type, task_key(entry)) if p)
        return [
            ("Time", f"{utc_time(entry.created_at, FULL_TIME_FORMAT)} UTC"),
            ("Who", who_label(entry)),
            ("Action", entry.action),
            ("Resource", resource or NOTHING),
            ("Entry id", entry.id),
            ("User id", entry.user_id),
            ("Resource id", entry.resource_id or NOTHING),
            ("Organization", f"{self.organization} · {entry.organization_id}"),
        ]

    def sections(self) -> list[tuple[str, str]]:
        entry = self.entry
        return [
            (heading, as_json(value) if value else "(nothing)")
            for heading, value in (("Changes", entry.changes), ("Metadata", entry.metadata))
        ]

    def action_only_this(self) -> None:
        if not (self.entry.resource_type and self.entry.resource_id):
            self.notify("This entry names no resource.", severity="warning", timeout=3)
            return
        self.dismiss("only")


# ---------------------------------------------------------------- the list
Menus = tuple[list[str], list[MemberChoice]]


class ActivityScreen(PagedLogScreen[ActivityEntry, ActivityFilter, ActivityCursor, Menus]):
    """The organization's activity, newest first, with user, action and resource filters."""

    READ_PERMISSION = "tasks.read"
    PREFIX = "activity"
    ENTRY_NOUN = "activity entry"
    EMPTY = "No activity yet."
    END = "end of activity"

    DEFAULT_CSS = """
    ActivityScreen .log-filter Label {
        width: auto;
        margin-right: 1;
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
    """

    def __init__(self) -> None:
        super().__init__(ActivityFilter())
        self.member_names: dict[str, str] = {}

    def filter_menus(self) -> list[tuple[str, Choice]]:
        actions = [("any", ""), *((a, a) for a in ACTIVITY_ACTIONS)]
        resources = [("any", ""), *((t, t) for t in RESOURCE_TYPES)]
        return [
            ("User", Choice([("anyone", "")], id="activity-user")),
            ("Action", Choice(actions, id="activity-action")),
            ("Resource", Choice(resources, id="activity-resource")),
        ]

    def current_filters(self) -> ActivityFilter:
        resource_type, _, resource_id = self._choice("resource").value.partition(":")
        return ActivityFilter(
            user_id=self._choice("user").value or None,
            action=self._choice("action").value or None,
            resource_type=resource_type or None,
            resource_id=resource_id or None,
        )

    def names(self) -> dict[str, str]:
        """Names for the user ids in changes (an assignee): members, then the actors shown."""
        known = {e.user_id: e.actor_name for e in self.entries if e.actor_name}
        return known | self.member_names

    def columns_that_fit(self, width: int, padding: int) -> list[Column]:
        return columns_that_fit(width, padding)

    def cell_maker(self, columns: list[Column]) -> Callable[[ActivityEntry], list[Text]]:
        names = self.names()
        return lambda entry: cells_for(entry, columns, names)

    def describe(self, entry: ActivityEntry) -> str:
        return describe(entry, self.names())

    def run_read(
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

    def menus_job(self) -> Callable[[Databases], Menus]:
        actor = self.actor
        return lambda dbs: (
            activity_actions(dbs, actor),
            BoardService(dbs, actor).assignable_members(),
        )

    def menus_loaded(self, menus: Menus) -> None:
        actions, members = menus
        set_options(self._choice("action"), [("any", ""), *((a, a) for a in actions)])
        labels = [m.name for m in members]
        options = [("anyone", "")]
        for member, label in zip(members, labels, strict=True):
            if labels.count(label) > 1:
                label = f"{label} <{member.email}>"
            options.append((fit(label, USER_MENU_WIDTH).plain, member.user_id))
        set_options(self._choice("user"), options)
        self.member_names = {m.user_id: m.name for m in members}
        if not self.read_if_filters_changed():  # else a chosen user is no longer offered
            self._fill_table()  # assignees may now have names

    def only_resource(self, entry: ActivityEntry) -> None:
        """Narrow the list to the entry's resource (the resource menu offers it from now on)."""
        if not (entry.resource_type and entry.resource_id):
            return
        label = f"{entry.resource_type} {resource_label(entry)}"
        value = resource_value(entry.resource_type, entry.resource_id)
        options = [("any", ""), *((t, t) for t in RESOURCE_TYPES), (label, value)]
        set_options(self._choice("resource"), options, chosen=value)
        self.read_if_filters_changed()

    def page_job(
        self, filters: ActivityFilter, after: ActivityCursor | None
    ) -> Callable[[Databases], ActivityPage]:
        actor = self.actor
        return lambda dbs: read_activity(dbs, actor, filters, after, PAGE_SIZE)

    def open_entry(self, entry: ActivityEntry, organization: str) -> None:
        def closed(result: str | None) -> None:
            if result == "only":
                self.only_resource(entry)

        self.app.push_screen(ActivityEntryScreen(entry, organization), closed)
