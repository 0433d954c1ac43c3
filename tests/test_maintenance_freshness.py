"""Freshness on screen (issue 7): a snapshot older than 5 minutes shown on the board or in a
task's detail is checked against PostgreSQL in the background, and rewritten only when it
shows the person otherwise; a database away is a log line, never a message or a traceback.

No sync worker runs here: the renames reach the screen through the freshness check alone.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import psycopg
import pytest

from creatia_tui.config import Locations, Settings
from creatia_tui.data.access import Actor
from creatia_tui.data.db import Databases
from creatia_tui.data.maintenance import refresh_quietly, refresh_shown_snapshots
from creatia_tui.data.models import Task
from creatia_tui.data.users import get_user
from creatia_tui.errors import PermissionDenied
from creatia_tui.screens.task_detail import TaskDetailScreen
from tests.conftest import World
from tests.test_app_board import (
    BASE,
    card_text,
    detail_text,
    keys,
    oid,
    open_board,
    select,
    snapshot_of,
    task_doc,
    wait_until,
)
from tests.tui import app_as, run_async

ON_SCREEN_WITHIN = 2.0  # seconds from the board's first load to the new name on its card


def rename(pg_dsn: str, user_id: str, name: str) -> None:
    """Directly in PostgreSQL: its NOTIFY reaches nobody (no listener runs in these tests)."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = %s WHERE id = %s", (name, user_id))


def seed_tasks(dbs: Databases, world: World) -> dict[str, str]:
    """TASK-0001: jiho's, with a stale copy; TASK-0002: minjun's, stale but still right."""
    docs = [
        task_doc(world, 1, title="오래된 사본", assignee_id=world.jiho,
                 assignee_snapshot=snapshot_of(world.jiho, "박지호", "jiho@example.com")),
        task_doc(world, 2, title="맞는 사본", position=2000.0, assignee_id=world.minjun,
                 assignee_snapshot=snapshot_of(world.minjun, "김민준", "minjun@example.com")),
    ]
    dbs.mongo.tasks.insert_many(docs)
    return {doc["task_id"]: str(doc["_id"]) for doc in docs}


def assignee_copy(dbs: Databases, world: World, n: int) -> dict[str, Any]:
    doc = dbs.mongo.tasks.find_one({"_id": oid(n), "organization_id": world.lab})
    assert doc is not None
    return dict(doc["assignee_snapshot"])


@run_async
async def test_a_rename_shows_on_the_open_board_and_in_the_detail(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    ids = seed_tasks(dbs, world)
    rename(pg_dsn, world.jiho, "박지호 책임")
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_board(pilot)
        assert await wait_until(
            pilot, lambda: "박지호 책임" in card_text(screen, ids["TASK-0001"]), ON_SCREEN_WITHIN
        ), card_text(screen, ids["TASK-0001"])
        fixed = assignee_copy(dbs, world, 1)
        assert fixed["name"] == "박지호 책임" and fixed["synced_at"] > BASE
        # A stale copy that is still right is left alone, its time included.
        assert assignee_copy(dbs, world, 2) == snapshot_of(
            world.minjun, "김민준", "minjun@example.com")
        assert dbs.mongo.user_snapshots.find_one({"user_id": world.jiho})["name"] == "박지호 책임"  # type: ignore[index]

        # The detail on open: renamed again, and the copy made stale again behind its back.
        rename(pg_dsn, world.jiho, "박지호 수석")
        dbs.mongo.tasks.update_one(
            {"_id": oid(1), "organization_id": world.lab},
            {"$set": {"assignee_snapshot.synced_at": BASE}},
        )
        select(screen, ids, "TASK-0001")
        await keys(pilot, "enter")
        assert isinstance(app.screen, TaskDetailScreen)
        assert await wait_until(pilot, lambda: "Assignee  박지호 수석" in detail_text(app),
                                ON_SCREEN_WITHIN), detail_text(app)
        assert "synced 2026-01-05" not in detail_text(app)  # the copy's new time
        assert assignee_copy(dbs, world, 1)["name"] == "박지호 수석"


def test_a_database_away_is_one_log_line(
    dbs: Databases, world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with dbs.pg() as conn:
        user = get_user(conn, world.minjun)
    assert user is not None
    stale = Task.from_document(task_doc(
        world, 1, assignee_id=world.jiho,
        assignee_snapshot=snapshot_of(world.jiho, "박지호", "jiho@example.com")))
    away = Databases(Settings(
        pg_dsn="host=127.0.0.1 port=9 dbname=creatia user=creatia connect_timeout=2",
        mongo_uri=dbs.settings.mongo_uri, mongo_db=dbs.settings.mongo_db,
        locations=Locations.from_env({"CREATIA_HOME": str(tmp_path)}),
    ))
    try:
        with caplog.at_level(logging.WARNING, logger="creatia_tui.data.maintenance"):
            assert refresh_quietly(away, Actor(user, world.lab), [stale]) is None
    finally:
        away.close()
    [record] = [r for r in caplog.records if r.name == "creatia_tui.data.maintenance"]
    assert record.getMessage().startswith("snapshot freshness skipped: ")
    assert "\n" not in record.getMessage() and record.exc_info is None
    # Fresh copies cost nothing: no database is asked at all.
    fresh = Task.from_document(task_doc(
        world, 2, assignee_id=world.jiho,
        assignee_snapshot={**snapshot_of(world.jiho, "박지호", "jiho@example.com"),
                           "synced_at": dt.datetime.now(dt.timezone.utc)}))
    result = refresh_quietly(away, Actor(user, world.lab), [fresh])
    assert result is not None and result.users == 0


def test_the_check_needs_tasks_read_in_the_organization(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    seed_tasks(dbs, world)
    rename(pg_dsn, world.jiho, "박지호 책임")
    with dbs.pg() as conn:
        outsider = get_user(conn, world.bob)  # no membership in the lab
    assert outsider is not None
    before = list(dbs.mongo.tasks.find({"organization_id": world.lab}).sort("_id", 1))
    shown = [Task.from_document(doc) for doc in before]
    with pytest.raises(PermissionDenied):
        refresh_shown_snapshots(dbs, Actor(outsider, world.lab), shown)
    assert list(dbs.mongo.tasks.find({"organization_id": world.lab}).sort("_id", 1)) == before
    assert dbs.mongo.user_snapshots.count_documents({}) == 0
