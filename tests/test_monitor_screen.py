"""The Monitor screen: real figures from both servers, actions with confirmation and audit rows,
refusals that change nothing, and snapshots (of fixed figures: live ones differ every run)."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import psycopg
import pytest
from rich.console import Console
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static, TabbedContent

from creatia_tui.data.db import Databases
from creatia_tui.ops.monitor import (
    Backend,
    CollectionStat,
    IndexStat,
    IndexUse,
    MongoSample,
    Operation,
    Partition,
    PgSample,
    ProfiledOperation,
    SlowStatement,
    TableStat,
)
from creatia_tui.screens.dialogs import ConfirmScreen, PickScreen
from creatia_tui.screens.monitor import SPARKS, MonitorScreen, PollResult, Series
from tests.conftest import World
from tests.tui import app_as, message_of, press, run_async, settle, snapshot_before


def text_of(screen: MonitorScreen, selector: str) -> str:
    """The Static's content as plain text (rich tables included)."""
    console = Console(width=200, record=True, file=io.StringIO())
    content = screen.query_one(selector, Static).content
    console.print(content if not isinstance(content, str) else Text(content))
    return console.export_text()


def audit_actions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT action FROM permission_audit_logs ORDER BY created_at")]


async def open_monitor(pilot: Pilot[Any]) -> MonitorScreen:
    await settle(pilot)
    await pilot.press("9")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    return screen


@pytest.fixture
def blocked(pg_dsn: str) -> Iterator[tuple[int, list[BaseException | None]]]:
    """A session waiting for a row lock another session holds; yields the waiter's pid."""
    holder = psycopg.connect(pg_dsn)
    holder.execute("SELECT id FROM permissions ORDER BY id LIMIT 1 FOR UPDATE")
    waiter = psycopg.connect(pg_dsn)
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            waiter.execute("UPDATE permissions SET description = description "
                           "WHERE id = (SELECT id FROM permissions ORDER BY id LIMIT 1)")
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    with psycopg.connect(pg_dsn, autocommit=True) as probe:
        for _ in range(100):
            if probe.execute("SELECT cardinality(pg_blocking_pids(%s))",
                             (waiter.info.backend_pid,)).fetchone()[0]:  # type: ignore[index]
                break
            time.sleep(0.05)
    yield waiter.info.backend_pid, outcome
    holder.close()
    thread.join(5)
    waiter.close()


@run_async
async def test_live_figures_and_cancelling_a_blocked_query(
    dbs: Databases, world: World, pg_dsn: str, blocked: tuple[int, list[Any]]
) -> None:
    waiter_pid, outcome = blocked
    app = app_as(dbs, "root", world.lab)  # acting on a shared server: a platform admin
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_monitor(pilot)
        pg = text_of(screen, "#pg-summary")
        assert pg.startswith("PostgreSQL 18.") and "connections " in pg
        assert "rates: from the next poll" in pg
        mongo = text_of(screen, "#mongo-summary")
        assert mongo.startswith("MongoDB 8.") and "profiling level 0" in mongo
        screen.tick(force_full=True)
        await settle(pilot)
        assert "commits " in text_of(screen, "#pg-summary")
        assert "ops/s insert" in text_of(screen, "#mongo-summary")
        assert "last poll " in text_of(screen, "#poll-cost")
        assert text_of(screen, "#poll-cost").startswith("Backup")  # its age, from a full poll
        assert "PG latency " in text_of(screen, "#spark-pg-latency-label")
        storage = text_of(screen, "#storage-body")
        assert "public.users" in storage and "tasks" in storage and "next month" in storage
        assert "pg_sleep" not in text_of(screen, "#statements-body")
        assert "MongoDB sizes not read: this server (secantus)" in storage
        await pilot.press("s")
        await settle(pilot)
        assert message_of(app).startswith("MongoDB sizes read in ")
        assert "MongoDB sizes as read on request" in text_of(screen, "#storage-body")

        await pilot.press("right_square_bracket")
        assert screen.query_one(TabbedContent).active == "sessions"
        sessions = cast(DataTable[Any], screen.query_one("#pg-sessions", DataTable))
        assert str(waiter_pid) in [str(k.value) for k in sessions.rows]
        sessions.move_cursor(row=sessions.get_row_index(str(waiter_pid)))
        row = [str(cell) for cell in sessions.get_row(str(waiter_pid))]
        assert row[2].startswith("BLOCKED")

        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == f"Session {waiter_pid}: query cancelled."
        for _ in range(50):
            if outcome:
                break
            time.sleep(0.05)
        assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
        assert audit_actions(pg_dsn) == ["monitoring.backend_cancelled"]

        # Pause, faster, profiling level 1 through the picker and a confirmation.
        await pilot.press("p", "plus")
        assert screen.paused and screen.interval == 1.0
        assert "Polling paused" in text_of(screen, "#poll-cost")
        await pilot.press("f")
        await settle(pilot)
        assert isinstance(app.screen, PickScreen)
        await pilot.press("1", "enter")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert dbs.mongo.command("profile", -1)["was"] == 1
        assert audit_actions(pg_dsn)[-1] == "monitoring.profiling_changed"
        dbs.mongo.command("profile", 0)


@run_async
async def test_a_member_or_owner_watches_but_acts_on_nothing_and_a_viewer_cannot_open_it(
    dbs: Databases, world: World, pg_dsn: str, blocked: tuple[int, list[Any]]
) -> None:
    """An organization's owner holds monitoring.manage, but the servers are every
    organization's: they see the sessions without their text and act on none."""
    waiter_pid, outcome = blocked
    for who in ("jiho", "minjun"):
        app = app_as(dbs, who, world.lab)
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_monitor(pilot)
            await pilot.press("right_square_bracket")
            sessions = cast(DataTable[Any], screen.query_one("#pg-sessions", DataTable))
            assert str(waiter_pid) in [str(k.value) for k in sessions.rows]
            assert str(sessions.get_row(str(waiter_pid))[-1]) == "hidden"
            sessions.move_cursor(row=sessions.get_row_index(str(waiter_pid)))
            await pilot.pause()
            assert text_of(screen, "#session-detail").rstrip().endswith("query hidden")
            await pilot.press("c", "x", "f", "K")
            await settle(pilot)
            assert app.screen is screen  # no confirmation was offered
            assert outcome == [] and audit_actions(pg_dsn) == []
            assert dbs.mongo.command("profile", -1)["was"] == 0

    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("9")
        await settle(pilot)
        assert not isinstance(app.screen, MonitorScreen)


# ---------------------------------------------------------------- snapshots (fixed figures)
AT = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.timezone.utc)


def fixed_pg(seconds: int, commits: int) -> PgSample:
    return PgSample(
        version_num=180006, version="18.6", database="creatia", own_pid=100,
        sampled_at=AT + dt.timedelta(seconds=seconds), uptime_s=3 * 3600 + 120,
        max_connections=200, connections={"active": 3, "idle": 9, "idle in transaction": 1},
        counters={"xact_commit": commits, "xact_rollback": 2, "tup_inserted": commits * 3,
                  "tup_updated": 10, "tup_deleted": 0, "blks_hit": commits * 100,
                  "blks_read": 5},
        checkpoints={"timed": 12, "requested": 1}, full=True, database_size=812_000_000,
        tables=[TableStat("public.users", 52_000_000, 120_000, 3, 9_000),
                TableStat("public.조직_메모", 8_192, None, None, None)],
        indexes=[IndexStat("public.users", "idx_users_name", 0, 2_400_000, False),
                 IndexStat("public.users", "users_email_key", 0, 3_100_000, True),
                 IndexStat("public.users", "users_pkey", 9_000, 2_600_000, True)],
        slow_statements=[SlowStatement(1, "SELECT * FROM tasks_archive WHERE 제목 LIKE $1", 12,
                                       240.5, 2886.0, 10, 1.0)],
        activity=[
            Backend(4242, "creatia", "creatia", "creatia-tui", "active", "Lock",
                    "transactionid", 12.5, "UPDATE permissions SET description = $1", (4141,),
                    "transactionid"),
            Backend(4141, "김민준", "creatia", "psql", "idle in transaction", "Client",
                    "ClientRead", 40.0, "SELECT id FROM permissions FOR UPDATE", (), None),
            Backend(4343, "monitor", "creatia", "", None, None, None, None, None, (), None),
        ],
        partitions=[Partition("permission_audit_logs_2026_11", 1_200_000, None),
                    Partition("permission_audit_logs_default", 8_192, None)],
        next_partition="permission_audit_logs_2026_12", next_partition_exists=False,
    )


def fixed_mongo(at: float, inserts: int) -> MongoSample:
    return MongoSample(
        sampled_at=at, version="8.2.11", uptime_s=7260, connections_current=14,
        connections_available=None, opcounters={"insert": inserts, "query": 400, "update": 90,
                                                 "delete": 0, "getmore": None, "command": 900},
        network_in=1_000_000 + inserts * 500, network_out=4_000_000 + inserts * 2_000,
        network_requests=5000, full=True, database="creatia_logs",
        operations=[Operation(77, "query", "creatia_logs.tasks", 3.2, "10.0.0.7:51234",
                              "conn77")],
        absent={"dbStats": "not authorized"}, profiling_level=1, profiling_slowms=100,
        profiled=[ProfiledOperation(None, "query", "creatia_logs.tasks", 130,
                                    "find tasks")],
        collections=[CollectionStat("tasks", 1_000_000, 900_000_000, 600_000_000, 6,
                                    210_000_000),
                     CollectionStat("activity_logs", None, None, None, None, None)],
        index_usage=[IndexUse("tasks", "_id_", 0, None),
                     IndexUse("tasks", "organization_id_1_status_1_position_1", 88_000, None)],
    )


async def show_fixed_figures(pilot: Pilot[Any]) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, MonitorScreen)
    screen.action_pause()
    screen.paused, screen.skipped, screen.last, screen.backup = True, 0, None, None
    screen.previous_pg = screen.previous_mongo = None
    screen.series = {key: Series() for key, _, _ in SPARKS}
    for step in range(12):
        commits, inserts = 1000 + step * step * 7, 500 + step * 40
        screen.show_poll(PollResult(
            pg=fixed_pg(step * 2, commits), pg_latency_ms=1.0 + (step % 4) * 0.6,
            pg_ms=14.0, mongo=fixed_mongo(100.0 + step * 2, inserts),
            mongo_latency_ms=2.0 + (step % 3), mongo_ms=21.0, wall_ms=36.0, cpu_ms=6.0,
            at=1000.0 + step * 2,
        ))
    screen.say("Paused: p resumes, r polls once.")


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_snapshot_monitor_overview(
    dbs: Databases, world: World, snap_compare: Any, size: tuple[int, int]
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=size,
                        run_before=snapshot_before(press("9"), show_fixed_figures))


@pytest.mark.parametrize("tab", ["sessions", "statements", "storage"])
def test_snapshot_monitor_tabs_80x24(
    dbs: Databases, world: World, snap_compare: Any, tab: str
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    steps = ["right_square_bracket"] * (["sessions", "statements", "storage"].index(tab) + 1)
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=snapshot_before(press("9"), show_fixed_figures,
                                                   press(*steps)))
