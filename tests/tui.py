"""Helpers for pilot and snapshot tests of the app (the project has no asyncio plugin)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import psycopg
from textual.command import CommandList
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import DataTable, Static

from creatia_tui.app import CreatiaApp
from creatia_tui.data.db import Databases
from creatia_tui.screens.paged_log import PAGE_SIZE
from creatia_tui.widgets.choice import Choice
from tests.conftest import WORLD_EMAILS, WORLD_PASSWORD


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test in its own event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[Any]) -> None:
    """Let the workers finish and their results reach the widgets.

    A result may start another read (signing in starts the permission read, then the screen's
    own, then the highlighted row's details), so this goes on until two rounds in a row found
    no worker running, at least three rounds and at most twenty: a fixed number of rounds was
    too few on a loaded machine, where a chained read started after the last round."""
    quiet_rounds = 0
    for round_number in range(20):
        await pilot.pause()
        # A "-feed" worker (the board's live changes) runs until its screen closes.
        finite = [w for w in pilot.app.workers if not w.group.endswith("-feed")]
        if finite:  # an empty list would mean "every worker" to Textual
            quiet_rounds = 0
            await pilot.app.workers.wait_for_complete(finite)
        else:
            quiet_rounds += 1
            if quiet_rounds >= 2 and round_number >= 2:
                break
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def app_as(
    dbs: Databases, who: str, organization: str | None = None, **kwargs: Any
) -> CreatiaApp:
    """An app that signs `who` (a World key) in on start, in `organization` (an id)."""
    return CreatiaApp(
        dbs,
        email=WORLD_EMAILS[who],
        password=WORLD_PASSWORD,
        organization_id=organization,
        show_latency=False,
        **kwargs,
    )


def snapshot_before(
    *steps: Callable[[Pilot[Any]], Awaitable[None]],
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A run_before for snap_compare: settle, then each step, settling after each."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        for step in steps:
            await step(pilot)
            await settle(pilot)

    return run_before


async def run_from_palette(pilot: Pilot[Any], text: str) -> None:
    """Open the command palette, type `text` and press enter once the highlighted command is
    the one asked for (the palette searches in the background: a fixed pause was too short on
    a loaded machine, and enter then ran nothing)."""
    await pilot.press("ctrl+p")
    await settle(pilot)
    await pilot.press(*text)
    for _ in range(100):
        await pilot.pause(0.05)
        commands = pilot.app.screen.query(CommandList)
        if commands and (found := commands.first()).highlighted is not None:
            prompt = found.get_option_at_index(found.highlighted).prompt
            if text in str(getattr(prompt, "plain", prompt)):
                break
    await pilot.press("enter")
    await settle(pilot)


def press(*keys: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*keys)

    return step


def message_of(app: CreatiaApp) -> str:
    return str(app.screen.query_one("#message", Static).render())


def cell_texts(table: DataTable[Any], row_key: str) -> dict[str, str]:
    """The row's cells by column key, as plain text."""
    values = table.get_row(row_key)
    return {
        str(key.value): str(getattr(value, "plain", value))
        for key, value in zip(table.columns, values, strict=True)
    }


def row_keys(table: DataTable[Any]) -> list[str]:
    """The table's row keys, top to bottom."""
    return [str(key.value) for key in table.rows]


def shown(screen: Screen[Any]) -> list[str]:
    """The row keys of the screen's DataTable, top to bottom."""
    return row_keys(screen.query_one(DataTable))


async def choose(pilot: Pilot[Any], screen: Screen[Any], menu: str, value: str) -> None:
    """Pick `value` in the filter menu whose id is `menu` by keyboard: f, tab to the menu (the
    screen's Choices in order), right until chosen, escape back to the list (its DataTable)."""
    menus = [c.id for c in screen.query(Choice)]
    await pilot.press("f", *["tab"] * menus.index(menu))
    choice = screen.query_one(f"#{menu}", Choice)
    assert choice.has_focus
    values = [v for _, v in choice.options]
    await pilot.press(*["right"] * ((values.index(value) - choice.index) % len(values)))
    await settle(pilot)
    assert choice.value == value
    await pilot.press("escape")
    assert screen.query_one(DataTable).has_focus


async def assert_pages_through(pilot: Pilot[Any], every: list[str], end: str) -> None:
    """A paged log showing the first page of `every` (its ids, newest first; more than two
    pages): n appends the next page, pagedown on the last row reads to the end, none missing and
    none twice, and then nothing more is read. `end` closes the last summary ("end of log")."""
    app = cast(CreatiaApp, pilot.app)
    table = app.screen.query_one(DataTable)
    assert len(every) > 2 * PAGE_SIZE
    assert row_keys(table) == every[:PAGE_SIZE]
    assert message_of(app) == f"{PAGE_SIZE} entries · more: n"

    await pilot.press("n")  # the next page is appended; the cursor goes to its first row
    await settle(pilot)
    assert row_keys(table) == every[: 2 * PAGE_SIZE]
    assert table.cursor_row == PAGE_SIZE
    assert message_of(app) == f"{2 * PAGE_SIZE} entries · more: n"

    await pilot.press("ctrl+end", "pagedown")  # pagedown on the last row reads on
    await settle(pilot)
    assert row_keys(table) == every
    assert len(set(row_keys(table))) == len(every)
    assert message_of(app) == f"{len(every)} entries · {end}"

    await pilot.press("ctrl+end", "down", "n")  # nothing more to read
    await settle(pilot)
    assert row_keys(table) == every
    assert message_of(app) == f"{len(every)} entries · {end}"


async def assert_down_reads_the_next_page(pilot: Pilot[Any], every: list[str], end: str) -> None:
    """A paged log showing the first page of `every` (one page and part of a second): down to
    the last row reads nothing, one more down appends the rest with the cursor on its first."""
    app = cast(CreatiaApp, pilot.app)
    table = app.screen.query_one(DataTable)
    assert PAGE_SIZE < len(every) <= 2 * PAGE_SIZE
    await pilot.press(*["down"] * (PAGE_SIZE - 1))
    await settle(pilot)
    assert row_keys(table) == every[:PAGE_SIZE]
    await pilot.press("down")
    await settle(pilot)
    assert row_keys(table) == every
    assert table.cursor_row == PAGE_SIZE
    assert message_of(app) == f"{len(every)} entries · {end}"


async def assert_refusals_said(
    pilot: Pilot[Any], before: list[str], permission: str,
    other_filter: Callable[[], Awaitable[None]],
) -> None:
    """A paged log that showed `before` and has since lost `permission`: n says the refusal in
    one line and what was read stays on screen; `other_filter` (choosing another filter) is
    refused too, and the rows of the old filter do not stay under the new one."""
    app = cast(CreatiaApp, pilot.app)
    table = app.screen.query_one(DataTable)
    await pilot.press("n")
    await settle(pilot)
    assert permission in message_of(app) and "\n" not in message_of(app)
    assert row_keys(table) == before  # what was read stays on screen

    await other_filter()
    assert row_keys(table) == []
    assert permission in message_of(app)


def audit_rows(pg_dsn: str, organization_id: str | None = None) -> list[dict[str, Any]]:
    """Every audit row (of one organization), oldest first."""
    from psycopg.rows import dict_row

    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT organization_id::text AS organization_id, user_id::text AS user_id, action, "
            "resource_type, resource_id::text AS resource_id, changes, user_agent "
            "FROM permission_audit_logs WHERE %(org)s::uuid IS NULL OR organization_id = %(org)s "
            "ORDER BY created_at, id",
            {"org": organization_id},
        ).fetchall()


def table_snapshot(pg_dsn: str, sql: str) -> list[tuple[Any, ...]]:
    """All rows of a query, for asserting that a refusal changed nothing."""
    with psycopg.connect(pg_dsn) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]
