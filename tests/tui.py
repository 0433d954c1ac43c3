"""Helpers for pilot and snapshot tests of the app (the project has no asyncio plugin)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import psycopg
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from creatia_tui.app import CreatiaApp
from creatia_tui.data.db import Databases
from tests.conftest import WORLD_EMAILS, WORLD_PASSWORD


def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test in its own event loop."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[Any]) -> None:
    """Let the workers finish and their results reach the widgets (twice: a result may start
    another read, as signing in starts the permission read and then the screen's own)."""
    for _ in range(3):
        await pilot.pause()
        # A "-feed" worker (the board's live changes) runs until its screen closes.
        finite = [w for w in pilot.app.workers if not w.group.endswith("-feed")]
        if finite:  # an empty list would mean "every worker" to Textual
            await pilot.app.workers.wait_for_complete(finite)
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
