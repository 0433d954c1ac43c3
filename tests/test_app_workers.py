"""The Workers screen against the real databases: jobs run in the TUI, a headless worker's
published state, the consistency report and its audited repair, refusals; snapshots."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from creatia_tui.app import CreatiaApp
from creatia_tui.data.cache import CacheStats
from creatia_tui.data.db import Databases
from creatia_tui.ops import consistency, worker
from creatia_tui.screens import workers as workers_screen
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.workers import WorkersScreen, runner_for, stop_runner
from tests.conftest import World
from tests.test_sync import wait_for
from tests.test_sync_consistency import make_drift
from tests.tui import app_as, audit_rows, cell_texts, message_of, run_async, settle


async def open_workers(pilot: Pilot[Any]) -> WorkersScreen:
    await settle(pilot)
    app = pilot.app
    assert isinstance(app, CreatiaApp)
    app.show("workers")
    await settle(pilot)
    assert isinstance(app.screen, WorkersScreen)
    return app.screen


def jobs(screen: WorkersScreen) -> DataTable[Any]:
    return screen.query_one("#jobs", DataTable)


def text(screen: WorkersScreen, selector: str) -> str:
    return str(screen.query_one(selector).render())


@run_async
async def test_check_and_repair_from_the_screen_are_audited(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    make_drift(dbs, world)
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_workers(pilot)
        assert text(screen, "#report-title") == "Consistency: no report yet · c checks now"
        await pilot.press("c")
        await settle(pilot)
        assert "8 repairable" in text(screen, "#report-title")
        findings = screen.query_one("#findings", DataTable)
        assert cell_texts(findings, "orphaned_tasks")["count"] == "2"
        await pilot.press("tab")  # to the findings; the detail line shows samples
        await settle(pilot)
        assert text(screen, "#finding-detail").startswith("e.g. TASK-0001 of missing")

        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert message_of(app) == "Nothing repaired."
        assert audit_rows(pg_dsn) == []
        assert dbs.mongo.tasks.count_documents({"organization_id": {"$exists": True},
                                                "quarantined": True}) == 0

        await pilot.press("R")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app).startswith("Repaired: ")
        assert "0 repairable" in text(screen, "#report-title")
    [row] = audit_rows(pg_dsn)
    assert (row["action"], row["user_id"], row["organization_id"]) == (
        "consistency.repaired", world.root, world.lab
    )
    assert dbs.mongo.tasks.count_documents({"organization_id": {"$exists": True},
                                            "quarantined": True}) == 2


@run_async
async def test_jobs_run_here_and_headless_ones_are_shown(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    # A headless worker elsewhere that published its state.
    headless = worker.WorkerRunner(
        dbs, [worker.Job("burndown", "Burndown recording", 3600, worker.burndown_once)],
        label="worker",
    )
    headless.run_now("burndown")
    wait_for(lambda: headless.states()[0].runs == 1 and not headless.running())
    app = app_as(dbs, "root", world.lab)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_workers(pilot)
            table = jobs(screen)
            keys = [str(k.value) for k in table.rows]
            assert keys[:len(worker.JOBS)] == [f"here:{job.name}" for job in worker.JOBS]
            remote = f"{headless.status_id}:burndown"
            assert remote in keys
            assert cell_texts(table, remote)["state"] == "stopped"
            assert cell_texts(table, "here:snapshot-listener")["state"] == "stopped"

            # A headless worker's job is not started from here.
            table.move_cursor(row=keys.index(remote))
            await pilot.press("s")
            await settle(pilot)
            assert "runs in the worker on" in message_of(app)

            # Run the catch-up once here: every user gets a snapshot.
            table.move_cursor(row=1)
            await pilot.press("n")
            await settle(pilot)
            wait_for(lambda: runner_for(app).states()[1].runs == 1)
            assert dbs.mongo.user_snapshots.count_documents({}) == 7

            # Start the listener here; a rename in PostgreSQL reaches MongoDB.
            table.move_cursor(row=0)
            await pilot.press("s")
            await settle(pilot)
            assert message_of(app) == "Started snapshot-listener here."
            wait_for(lambda: runner_for(app).states()[0].runs >= 0
                     and runner_for(app).states()[0].state != "stopped")
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                conn.execute("UPDATE users SET name = 'Bobby' WHERE id = %s", (world.bob,))
            wait_for(lambda: (dbs.mongo.user_snapshots.find_one({"user_id": world.bob}) or {})
                     .get("name") == "Bobby", 5)
            await pilot.press("x")
            await settle(pilot)
            wait_for(lambda: runner_for(app).states()[0].state == "stopped", 10)
            await pilot.pause(workers_screen.TICK_SECONDS + 0.2)
            assert cell_texts(table, "here:snapshot-listener")["state"] == "stopped"
    finally:
        stop_runner(app)


@run_async
async def test_refusals_change_nothing(dbs: Databases, world: World) -> None:
    # The lab owner holds monitoring.manage in lab, but the jobs span every organization.
    app = app_as(dbs, "minjun", world.lab)
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_workers(pilot)
            assert text(screen, "#report-title").startswith(
                "Consistency: Only a platform admin may see the consistency report"
            )
            await pilot.press("s")
            await settle(pilot)
            assert message_of(app) == (
                "Only a platform admin may start or stop workers: it covers every organization."
            )
            assert not runner_for(app).running()
            await pilot.press("R", "y")
            await settle(pilot)
            assert "Only a platform admin may repair" in message_of(app)
    finally:
        stop_runner(app)
    assert dbs.mongo.user_snapshots.count_documents({}) == 0

    # A member may open the screen (monitoring.read) but is offered no control keys.
    member = app_as(dbs, "jiho", world.lab)
    async with member.run_test(size=(120, 40)) as pilot:
        screen = await open_workers(pilot)
        offered = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert "check" in offered and not {"start", "stop", "run_now", "repair"} & offered
    # A viewer may not open it at all.
    viewer = app_as(dbs, "yuna", world.lab)
    async with viewer.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        viewer.show("workers")
        await settle(pilot)
        assert not isinstance(viewer.screen, WorkersScreen)


# ---------------------------------------------------------------- snapshots
@pytest.fixture
def fixed_report(dbs: Databases, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stored report at a fixed time and fixed cache counters: nothing varies per run."""
    report = consistency.ConsistencyReport(
        checked_at=dt.datetime(2026, 11, 26, 9, 30, tzinfo=dt.timezone.utc),
        seconds=1.25, organizations=3, users=7, tasks=40,
    )
    report.finding("orphaned_tasks").add(2, "TASK-0001 of missing organization 4b1f0c2e")
    report.finding("stale_task_snapshots").add(3, "TASK-0005 in 크리에이티아 연구소 "
                                               "(assignee: 옛 이름 → 이서연)")
    report.finding("non_member_assignees").add(1, "TASK-0007 in Acme Robotics: 박지호")
    consistency.save_report(dbs.mongo, report)
    monkeypatch.setattr(
        workers_screen, "cache_stats",
        lambda: CacheStats(hits=12, misses=4, invalidations=3),
    )


def test_snapshot_workers_80x24(
    dbs: Databases, world: World, fixed_report: None, snap_compare: Any
) -> None:
    app = app_as(dbs, "root", world.lab)
    try:
        assert snap_compare(app, terminal_size=(80, 24), run_before=open_workers)
    finally:
        stop_runner(app)


def test_snapshot_workers_160x50(
    dbs: Databases, world: World, fixed_report: None, snap_compare: Any
) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_workers(pilot)
        await pilot.press("tab", "down", "down", "down")  # the stale snapshots, with samples
        await settle(pilot)

    app = app_as(dbs, "root", world.lab)
    try:
        assert snap_compare(app, terminal_size=(160, 50), run_before=run_before)
    finally:
        stop_runner(app)
