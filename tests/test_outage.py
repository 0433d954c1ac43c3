"""Outages: stop MongoDB, then PostgreSQL, under a running app; it says so, keeps running, and
recovers by itself once they are back.

The servers are this module's own (LocalServers in a temp dir): the session's shared servers are
never stopped.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from creatia_tui.app import CreatiaApp
from creatia_tui.config import Locations, Settings
from creatia_tui.data.db import BACKOFF_CAP_S, Databases, Link, backoff_delay
from creatia_tui.data.migrations import migrate_postgres
from creatia_tui.data.mongo_schema import migrate_mongo
from creatia_tui.errors import DatabaseUnavailable
from creatia_tui.ops.local_servers import LocalServers, _pid_alive
from creatia_tui.screens.monitor import MonitorScreen
from creatia_tui.widgets.status_line import StatusLine
from tests.conftest import WORLD_PASSWORD, _world_password_hash
from tests.tui import run_async, settle

EMAIL = "oncall@example.com"


def test_backoff_doubles_with_jitter_and_stops_at_30_seconds() -> None:
    assert backoff_delay(1, rng=lambda: 0.0) == 0.5 and backoff_delay(1, rng=lambda: 1.0) == 1.0
    assert backoff_delay(4, rng=lambda: 0.0) == 4.0 and backoff_delay(4, rng=lambda: 1.0) == 8.0
    for failures in (6, 7, 50):
        assert BACKOFF_CAP_S / 2 <= backoff_delay(failures) <= BACKOFF_CAP_S
    link = Link("MongoDB")
    link.mark_down(DatabaseUnavailable("MongoDB at x is unavailable: refused.", "refused."))
    link.mark_down(DatabaseUnavailable("MongoDB at x is unavailable: refused.", "refused."))
    assert link.down and link.failures == 2 and 0 < link.retry_in() <= 2.0
    assert link.mark_up(1.5) is True and not link.down and link.retry_in() == 0


@pytest.fixture(scope="module")
def own_servers() -> Iterator[LocalServers]:
    root = Path(tempfile.mkdtemp(prefix="creatia-outage-"))
    local = LocalServers(root / "local")
    state = local.start()
    try:
        with psycopg.connect(state.pg_dsn, autocommit=True) as conn:
            migrate_postgres(conn)
            org = conn.execute("INSERT INTO organizations (name, subdomain) "
                               "VALUES ('당직 조직', 'oncall') RETURNING id::text").fetchone()
            user = conn.execute(
                "INSERT INTO users (email, encrypted_password, name) VALUES (%s, %s, '당직자') "
                "RETURNING id::text", (EMAIL, _world_password_hash())).fetchone()
            assert org and user
            conn.execute("INSERT INTO organization_memberships (user_id, organization_id, role) "
                         "VALUES (%s, %s, 'owner')", (user[0], org[0]))
        yield local
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


def stop_mongo(local: LocalServers) -> None:
    pid = local.mongo_running()
    assert pid
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop_postgres(local: LocalServers) -> None:
    result = local._pg_tool("pg_ctl", "-w", "-t", "30", "-m", "fast", "stop", timeout=40)
    assert result.returncode == 0, result.stdout


async def wait_for(pilot: Pilot[Any], what: str, check: Callable[[], bool], limit: float) -> None:
    def describe() -> str:
        screen = pilot.app.screen
        lines = [str(w.render()) for w in screen.query(StatusLine)]
        return f"{type(screen).__name__}: {lines}"

    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"not within {limit:.0f} s: {what} ({describe()})"
        await pilot.pause(0.1)


@run_async
async def test_both_databases_stop_and_come_back(own_servers: LocalServers, tmp_path: Path) -> None:
    state = own_servers.read_state()
    assert state is not None
    settings = Settings(pg_dsn=state.pg_dsn, mongo_uri=state.mongo_uri, mongo_db="creatia_logs",
                        locations=Locations.from_env({"CREATIA_HOME": str(tmp_path)}))
    dbs = Databases(settings)
    migrate_mongo(dbs.mongo)
    app = CreatiaApp(dbs, email=EMAIL, password=WORLD_PASSWORD)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            await pilot.press("9")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, MonitorScreen)
            status = screen.query_one(StatusLine)
            status.interval = 0.5  # a poll every half second, so "two polls" is one second
            status.poll()

            def line() -> str:
                return status.render().plain

            def summary(selector: str) -> str:
                return str(screen.query_one(selector, Static).content)

            await wait_for(pilot, "both up", lambda: "PostgreSQL ● up" in line()
                           and "MongoDB ● up" in line(), 10)

            await asyncio.to_thread(stop_mongo, own_servers)
            # Two polls plus the probe's 2 s server-selection timeout.
            await wait_for(pilot, "MongoDB down", lambda: "MongoDB ● down" in line(), 1 + 2 + 1)
            # The countdown to the next attempt ("retrying" once it is due).
            assert "PostgreSQL ● up" in line() and re.search(r"retry(ing| in \d+ s)", line())

            await asyncio.to_thread(stop_postgres, own_servers)
            await wait_for(pilot, "PostgreSQL down", lambda: "PostgreSQL ● down" in line(), 3)
            # While PostgreSQL is known down, a request fails at once, not after the pool's 5 s.
            started = time.perf_counter()
            with pytest.raises(DatabaseUnavailable):
                await asyncio.to_thread(lambda: dbs.pg().__enter__())
            assert time.perf_counter() - started < 1.0
            # The app still answers keys, and the monitor says what is down.
            await pilot.press("right_square_bracket", "left_square_bracket")
            screen.tick(force_full=True)
            await wait_for(pilot, "monitor shows the outage",
                           lambda: "PostgreSQL down" in summary("#pg-summary"), 8)
            assert app.is_running

            restarted = await asyncio.to_thread(own_servers.start)
            assert (restarted.pg_port, restarted.mongo_port) == (state.pg_port, state.mongo_port)
            await wait_for(pilot, "both up again", lambda: "PostgreSQL ● up" in line()
                           and "MongoDB ● up" in line(), BACKOFF_CAP_S + 5)
            await wait_for(pilot, "the monitor reads both again",
                           lambda: summary("#pg-summary").startswith("PostgreSQL 18.")
                           and summary("#mongo-summary").startswith("MongoDB 8."), 10)
            assert app.is_running
    finally:
        dbs.close()
