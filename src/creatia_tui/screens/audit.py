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

The paging, the filter bar and the entry view are :mod:`creatia_tui.screens.paged_log`'s; this
module says the columns, the words for an entry and the service calls.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from rich.text import Text

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

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ACTOR_WIDTH = 14  # 7 Korean characters: keeps time, actor, action and resource at 80 columns
WIDE_ACTOR_WIDTH = 24  # from WIDE columns
ACTOR_MENU_WIDTH = 28
SCROLLBAR = 2
CLIENT_MAX = 80
NO_ACTOR = "(deleted user)"

# Optional columns are dropped, last first, when the table would not fit the terminal.
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


# ---------------------------------------------------------------- the detail view
class AuditEntryScreen(LogEntryScreen[AuditRow, None]):
    """One entry, whole: when, who, what, where from, every id, and before/after as JSON."""

    HEADING = "Audit entry"
    PREFIX = "audit"
    ENTRY_NOUN = "audit entry"

    def fields(self) -> list[tuple[str, str]]:
        entry = self.entry
        who = actor_label(entry)
        if entry.actor_name and entry.actor_email:
            who = f"{entry.actor_name} <{entry.actor_email}>"
        return [
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

    def sections(self) -> list[tuple[str, str]]:
        changes = self.entry.changes if isinstance(self.entry.changes, dict) else {}
        sections = []
        for heading, key in (("Before", "before"), ("After", "after")):
            value = changes.get(key)
            sections.append((heading, as_json(value) if value is not None else "(nothing)"))
        others = {k: v for k, v in changes.items() if k not in ("before", "after")}
        if others:
            sections.append(("Other", as_json(others)))
        return sections


# ---------------------------------------------------------------- the list
Menus = tuple[list[dt.date], list[AuditActor]]


class AuditScreen(PagedLogScreen[AuditRow, AuditFilter, AuditCursor, Menus]):
    """The organization's audit log, newest first, with month, actor and action filters."""

    READ_PERMISSION = "audit.read"
    PREFIX = "audit"
    ENTRY_NOUN = "audit entry"
    EMPTY = "The log is empty."
    END = "end of log"

    DEFAULT_CSS = """
    AuditScreen .log-filter Label {
        width: 7;
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
    """

    def __init__(self) -> None:
        super().__init__(AuditFilter())

    def filter_menus(self) -> list[tuple[str, Choice]]:
        return [
            ("Month", Choice([("all", "")], id="audit-month")),
            ("Actor", Choice([("anyone", "")], id="audit-actor")),
            ("Action", Choice([("any", ""), *((a, a) for a in AUDIT_ACTIONS)], id="audit-action")),
        ]

    def current_filters(self) -> AuditFilter:
        month = self._choice("month").value
        return AuditFilter(
            month=dt.date.fromisoformat(month) if month else None,
            actor_id=self._choice("actor").value or None,
            action=self._choice("action").value or None,
        )

    def columns_that_fit(self, width: int, padding: int) -> list[Column]:
        return columns_that_fit(width, padding)

    def cell_maker(self, columns: list[Column]) -> Callable[[AuditRow], list[Text]]:
        return lambda entry: cells_for(entry, columns)

    def describe(self, entry: AuditRow) -> str:
        return describe(entry)

    def menus_job(self) -> Callable[[Any], Menus]:
        actor = self.actor
        return lambda conn: (audit_months(conn, actor), audit_actors(conn, actor))

    def menus_loaded(self, menus: Menus) -> None:
        months, actors = menus
        set_options(
            self._choice("month"),
            [("all", "")] + [(m.strftime("%Y-%m"), m.isoformat()) for m in months],
        )
        names = [a.name or a.email for a in actors]
        options = [("anyone", "")]
        for actor, name in zip(actors, names, strict=True):
            label = name if names.count(name) == 1 else f"{name} <{actor.email}>"
            options.append((fit(label, ACTOR_MENU_WIDTH).plain, actor.id))
        set_options(self._choice("actor"), options)
        self.read_if_filters_changed()  # a chosen actor or month is gone

    def page_job(
        self, filters: AuditFilter, after: AuditCursor | None
    ) -> Callable[[Any], AuditPage]:
        actor = self.actor
        return lambda conn: read_audit(conn, actor, filters, after, PAGE_SIZE)

    def open_entry(self, entry: AuditRow, organization: str) -> None:
        self.app.push_screen(AuditEntryScreen(entry, organization))
