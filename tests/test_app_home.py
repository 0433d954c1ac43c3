"""Home, the member's dashboard: what it shows, the cache it comes from, and the way to the
board; pilot tests against the real databases and snapshots at 80x24 and 160x50."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bson import ObjectId
from textual.widgets import Static

from creatia_tui.data.access import Actor
from creatia_tui.data.board import BoardService
from creatia_tui.data.db import Databases
from creatia_tui.data.users import get_user
from creatia_tui.screens.board import BoardScreen
from creatia_tui.screens.home import HomeScreen, progress_bar
from tests.conftest import World
from tests.tui import app_as, message_of, press, run_async, settle, snapshot_before

FIXED = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)
SPRINT_ID = ObjectId("65a1b2c3d4e5f60718293a4b")


def text_of(app: Any, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


@pytest.fixture
def work(dbs: Databases, world: World) -> World:
    """minjun's tasks in lab: two todo (one overdue), one in progress in the sprint, one in
    review, one done; jiho has one; and an active sprint with fixed dates."""
    snapshot = {"user_id": world.minjun, "name": "김민준", "email": "minjun@example.com"}

    def task(n: int, status: str, title: str, **extra: Any) -> dict[str, Any]:
        doc = {
            "organization_id": world.lab, "task_id": f"TASK-{n:04d}", "title": title,
            "status": status, "priority": "high", "position": n * 1000.0,
            "assignee_id": world.minjun, "assignee_snapshot": snapshot,
            "created_at": FIXED, "updated_at": FIXED,
        }
        doc.update(extra)
        return doc

    dbs.mongo.tasks.insert_many([
        task(1, "todo", "로그인 화면 개선",
             due_date=dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)),
        task(2, "todo", "결제 모듈 리팩터링"),
        task(3, "in_progress", "대시보드 차트 성능 개선과 아주 긴 제목", sprint_id=str(SPRINT_ID)),
        task(4, "review", "API 문서화", sprint_id=str(SPRINT_ID)),
        task(5, "done", "검색 속도 개선", sprint_id=str(SPRINT_ID), completed_at=FIXED),
        task(6, "todo", "지호의 작업", assignee_id=world.jiho,
             assignee_snapshot={"user_id": world.jiho, "name": "박지호"}),
    ])
    dbs.mongo.sprints.insert_one({
        "_id": SPRINT_ID, "organization_id": world.lab, "name": "스프린트 2026-01",
        "goal": "사용자 경험 개선", "status": "active",
        "start_date": dt.datetime(2026, 1, 5, tzinfo=dt.timezone.utc),
        "end_date": dt.datetime(2026, 1, 18, 23, 59, tzinfo=dt.timezone.utc),
        "created_at": FIXED, "updated_at": FIXED,
    })
    return world


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


@run_async
async def test_the_dashboard_shows_the_members_own_work(dbs: Databases, work: World) -> None:
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)
    dbs.mongo.tasks.update_one(
        {"organization_id": work.lab, "task_id": "TASK-0002"}, {"$set": {"due_date": soon}}
    )
    app = app_as(dbs, "minjun", work.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert text_of(app, "#open-work") == "Todo 2 · In progress 1 · Review 1"
        overdue = text_of(app, "#overdue")
        assert "TASK-0001" in overdue and "late 03-01" in overdue
        assert "TASK-0006" not in overdue  # jiho's
        assert "TASK-0002" in text_of(app, "#due-week")
        sprint = text_of(app, "#sprint")
        assert "1/3 done · 1 in progress · 1 review · 0 todo · ends 01-18" in sprint
        assert progress_bar(33.3) in sprint
        assert "사용자 경험 개선" in sprint
        assert message_of(app) == "4 open tasks are yours."
        assert "built just now" in text_of(app, "#dashboard-head")


@run_async
async def test_it_comes_from_the_cache_until_a_task_changes(dbs: Databases, work: World) -> None:
    app = app_as(dbs, "minjun", work.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert "built just now" in text_of(app, "#dashboard-head")
        await pilot.press("r")
        await settle(pilot)
        assert "cached just now" in text_of(app, "#dashboard-head")

        # A move on the board (here through the service, as the board does) drops the cache.
        service = BoardService(dbs, actor(dbs, work.minjun, work.lab))
        todo = service.get_task(str(dbs.mongo.tasks.find_one(
            {"organization_id": work.lab, "task_id": "TASK-0002"})["_id"]))
        service.move(todo, "in_progress", 5000.0)
        await pilot.press("r")
        await settle(pilot)
        assert "built just now" in text_of(app, "#dashboard-head")
        assert text_of(app, "#open-work") == "Todo 1 · In progress 2 · Review 1"
        activity = text_of(app, "#activity")
        assert "김민준" in activity and "status_changed status todo → in_progress" in activity


@run_async
async def test_keys_open_the_board_on_my_tasks_or_the_overdue_ones(
    dbs: Databases, work: World
) -> None:
    app = app_as(dbs, "minjun", work.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        await pilot.press("b")
        await settle(pilot)
        board = app.screen
        assert isinstance(board, BoardScreen)
        assert board.task_filter.assignee == "me" and board.task_filter.open_only
        shown = {t.task_id for c in board.columns.values() for t in c.tasks}
        assert shown == {"TASK-0001", "TASK-0002", "TASK-0003", "TASK-0004"}

        await pilot.press("1")
        await settle(pilot)
        await pilot.press("o")
        await settle(pilot)
        board = app.screen
        assert isinstance(board, BoardScreen)
        shown = {t.task_id for c in board.columns.values() for t in c.tasks}
        assert shown == {"TASK-0001"}


@run_async
async def test_without_an_organization_it_says_how_to_choose_one(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "minjun")  # two organizations: the switcher opens over Home
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert message_of(app) == "Choose an organization (ctrl+o) to see your work in it."


def test_progress_bar_reads_without_colour() -> None:
    assert progress_bar(0) == "░" * 20 + " 0.0%"
    assert progress_bar(53.3) == "█" * 11 + "░" * 9 + " 53.3%"
    assert progress_bar(100) == "█" * 20 + " 100.0%"


# ---------------------------------------------------------------- snapshots
def test_snapshot_home_80x24(dbs: Databases, work: World, snap_compare: Any) -> None:
    app = app_as(dbs, "minjun", work.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before())


def test_snapshot_home_160x50(dbs: Databases, work: World, snap_compare: Any) -> None:
    app = app_as(dbs, "minjun", work.lab)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before())


def test_snapshot_home_no_color_80x24(
    dbs: Databases, work: World, snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_as(dbs, "minjun", work.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("r")))
