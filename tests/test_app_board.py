"""The board screen: every key, pilot-driven, asserting on the task documents and the
activity_logs written (and on nothing written for a refusal, a conflict or a viewer); live
changes from the task feed; wide characters; snapshots at 80x24 and 160x50.

The board runs a thread worker for the whole time it is open (``_follow_changes``: the task
feed, until the screen goes away), so ``tests.tui.settle``, which waits for *every* worker,
would wait forever here. ``settle_board`` below waits for every worker but that one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bson import ObjectId
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TextArea

from creatia_tui.app import CreatiaApp
from creatia_tui.data.db import Databases
from creatia_tui.data.models import Task
from creatia_tui.screens.board import BoardScreen
from creatia_tui.screens.dialogs import ConfirmScreen, PickScreen
from creatia_tui.screens.task_detail import TaskDetailScreen
from creatia_tui.screens.task_forms import FilterScreen, TaskForm, TimeForm
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.task_card import CARD_HEIGHT, SELECTED_EDGE, TaskColumn
from tests.conftest import World
from tests.tui import app_as, message_of, run_async

UTC = dt.timezone.utc
BASE = dt.datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OVERDUE = dt.datetime(2025, 3, 1, tzinfo=UTC)  # long past: overdue whenever the test runs
LATER = dt.datetime(2030, 6, 1, tzinfo=UTC)  # far ahead: never overdue
LONG_TITLE = (
    "아주 긴 한국어 제목이 카드의 너비를 넘어가면 말줄임표로 잘리고 다음 카드로 줄바꿈되지 않는다"
)
FEED = "board-feed"
WRITE_ACTIONS = {"move", "reorder", "undo", "edit", "priority", "log_time", "assign", "new",
                 "delete"}


# ---------------------------------------------------------------- settling
async def settle_board(pilot: Pilot[Any]) -> None:
    """tests.tui.settle without waiting for the board's feed worker, which never completes
    while the board is open."""
    app = pilot.app
    for _ in range(3):
        await pilot.pause()
        # Not wait_for_complete([]): an empty list means "every worker" to Textual.
        others = [worker for worker in app.workers if worker.group != FEED]
        if others:
            await app.workers.wait_for_complete(others)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


async def open_board(pilot: Pilot[Any]) -> BoardScreen:
    await settle_board(pilot)  # signed in, home open
    pilot.app.show("board")
    await settle_board(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, BoardScreen)
    return screen


async def keys(pilot: Pilot[Any], *pressed: str) -> None:
    await pilot.press(*pressed)
    await settle_board(pilot)


def board_steps(
    *steps: Callable[[Pilot[Any]], Awaitable[None]],
) -> Callable[[Pilot[Any]], Awaitable[None]]:
    """A run_before for snap_compare: open the board, then each step, settling after each."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await open_board(pilot)
        for step in steps:
            await step(pilot)
            await settle_board(pilot)

    return run_before


def press(*pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def step(pilot: Pilot[Any]) -> None:
        await pilot.press(*pressed)

    return step


@pytest.fixture
def no_feed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A board whose feed has not delivered yet (the window a conflict happens in)."""
    monkeypatch.setattr(BoardScreen, "_follow_changes", lambda self, since=None: None)


# ---------------------------------------------------------------- test data
def oid(n: int) -> ObjectId:
    """Fixed document ids, so the detail view's Id line is the same in every run."""
    return ObjectId(f"65a0000000000000000000{n:02x}")


def snapshot_of(user_id: str, name: str, email: str) -> dict[str, Any]:
    return {"user_id": user_id, "name": name, "email": email, "avatar_url": None,
            "synced_at": BASE}


def task_doc(world: World, n: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": oid(n),
        "organization_id": world.lab,
        "task_id": f"TASK-{n:04d}",
        "title": f"작업 {n}",
        "description": None,
        "task_type": "feature",
        "status": "todo",
        "priority": "medium",
        "position": 1000.0,
        "assignee_id": None,
        "assignee_snapshot": None,
        "estimated_hours": None,
        "actual_hours": 0.0,
        "remaining_hours": None,
        "time_entries": [],
        "due_date": None,
        "completed_at": None,
        "tags": [],
        "labels": [],
        "created_at": BASE,
        "updated_at": BASE,
    }
    doc.update(fields)
    return doc


def seed_board(dbs: Databases, world: World) -> dict[str, str]:
    """Seven tasks in every status; {TASK-key: document id}."""
    jiho = snapshot_of(world.jiho, "박지호", "jiho@example.com")
    minjun = snapshot_of(world.minjun, "김민준", "minjun@example.com")
    seoyeon = snapshot_of(world.seoyeon, "이서연", "seoyeon@example.com")
    docs = [
        task_doc(world, 1, title="사용자 대시보드 개선", priority="high", position=1000.0,
                 assignee_id=world.jiho, assignee_snapshot=jiho, due_date=LATER,
                 tags=["frontend", "ui"]),
        task_doc(world, 2, title="로그인 오류 수정", priority="urgent", position=2000.0,
                 due_date=OVERDUE, tags=["backend"]),
        task_doc(world, 3, title="문서 정리", priority="low", position=3000.0,
                 assignee_id=world.minjun, assignee_snapshot=minjun),
        task_doc(world, 4, title="결제 모듈 리팩터링", status="in_progress", position=1000.0,
                 description="결제 흐름을 한 곳으로 모은다.", assignee_id=world.minjun,
                 assignee_snapshot=minjun, estimated_hours=8.0, actual_hours=2.0,
                 remaining_hours=6.0, start_date=dt.datetime(2026, 1, 2, tzinfo=UTC),
                 due_date=dt.datetime(2030, 1, 15, tzinfo=UTC),
                 labels=["customer-request"], sprint_id=None,
                 time_entries=[{"user_id": world.minjun, "hours": 2.0,
                                "description": "초기 분석",
                                "logged_at": dt.datetime(2026, 1, 6, 10, 0, tzinfo=UTC)}]),
        task_doc(world, 5, title="API 응답 속도", priority="high", status="in_progress",
                 position=2000.0, assignee_id=world.seoyeon, assignee_snapshot=seoyeon,
                 tags=["성능개선"]),
        task_doc(world, 6, title=LONG_TITLE, status="review", position=1000.0),
        task_doc(world, 7, title="온보딩 가이드 작성", priority="low", status="done",
                 position=1000.0, assignee_id=world.jiho, assignee_snapshot=jiho,
                 due_date=dt.datetime(2025, 1, 1, tzinfo=UTC),
                 completed_at=dt.datetime(2026, 1, 10, tzinfo=UTC)),
    ]
    dbs.mongo.tasks.insert_many(docs)
    return {doc["task_id"]: str(doc["_id"]) for doc in docs}


def task_of(dbs: Databases, world: World, key: str) -> dict[str, Any] | None:
    return dbs.mongo.tasks.find_one({"organization_id": world.lab, "task_id": key})


def stored(dbs: Databases, world: World, key: str) -> dict[str, Any]:
    doc = task_of(dbs, world, key)
    assert doc is not None, key
    return doc


def activity(dbs: Databases, world: World) -> list[dict[str, Any]]:
    return list(
        dbs.mongo.activity_logs.find({"organization_id": world.lab}).sort(
            [("created_at", 1), ("_id", 1)]
        )
    )


def everything(dbs: Databases, world: World) -> list[list[dict[str, Any]]]:
    """The lab's tasks and activity, to prove that nothing was written."""
    return [
        list(dbs.mongo.tasks.find({"organization_id": world.lab}).sort("_id", 1)),
        activity(dbs, world),
    ]


def assert_logged(
    entry: dict[str, Any], world: World, action: str, task_id: str, user: str | None = None
) -> None:
    assert entry["action"] == action
    assert (entry["resource_type"], entry["resource_id"]) == ("Task", task_id)
    assert entry["user_id"] == (user or world.minjun)
    assert entry["metadata"]["client_type"] == "tui"


# ---------------------------------------------------------------- board helpers
def select(screen: BoardScreen, ids: dict[str, str], key: str) -> None:
    assert screen._select_task(ids[key]), key
    screen._paint_cursor()


def selected_key(screen: BoardScreen) -> str | None:
    task = screen.selected_task()
    return task.task_id if task else None


def column_keys(screen: BoardScreen, status: str) -> list[str]:
    """The keys of the cards drawn in a column, top to bottom."""
    column = screen.query_one(f"#column-{status}", TaskColumn)
    return [task.task_id for task in column.tasks]


def column_of(screen: BoardScreen, task_id: str) -> TaskColumn:
    """The column widget that draws a task's card."""
    for column in screen.query(TaskColumn):
        if any(task.id == task_id for task in column.tasks):
            return column
    raise AssertionError(f"no card of {task_id}")


def card_text(screen: BoardScreen, task_id: str) -> str:
    text = column_of(screen, task_id).card_text(task_id)
    assert text is not None, task_id
    return text


def shown_task(screen: BoardScreen, task_id: str) -> Task:
    """The task a card holds (its title may be cut on screen)."""
    return next(t for t in column_of(screen, task_id).tasks if t.id == task_id)


def selected_cards(screen: BoardScreen) -> list[str]:
    """The cards drawn as selected (the edge mark on their first line)."""
    selected = []
    for column in screen.query(TaskColumn):
        for task in column.tasks:
            drawn = column.drawn_lines(task.id)
            if drawn is not None and drawn[0].startswith(SELECTED_EDGE):
                selected.append(task.task_id)
    return selected


def enabled_actions(screen: BoardScreen) -> set[str]:
    return {
        active.binding.action.split("(")[0]
        for active in screen.active_bindings.values()
        if active.enabled and active.node is screen
    }


# ---------------------------------------------------------------- opening
@run_async
async def test_the_board_shows_every_status_with_its_cards(dbs: Databases, world: World) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_board(pilot)
        assert column_keys(screen, "todo") == ["TASK-0001", "TASK-0002", "TASK-0003"]
        assert column_keys(screen, "in_progress") == ["TASK-0004", "TASK-0005"]
        assert column_keys(screen, "review") == ["TASK-0006"]
        assert column_keys(screen, "done") == ["TASK-0007"]
        assert message_of(app) == "7 tasks · all tasks"
        assert selected_key(screen) == "TASK-0001" and selected_cards(screen) == ["TASK-0001"]
        first = card_text(screen, str(oid(1))).split("\n")
        assert first[0].startswith("TASK-0001") and first[0].endswith("!high")
        assert first[1] == "사용자 대시보드 개선"
        assert first[2] == "06-01 · 박지호 · #frontend #ui"
        overdue = card_text(screen, str(oid(2))).split("\n")
        assert overdue[2] == "late 03-01 · unassigned · #backend"  # in words, not colour only
        # A done task past its due date is not late.
        assert "late" not in card_text(screen, str(oid(7)))


# ---------------------------------------------------------------- cursor
@run_async
async def test_arrows_and_hjkl_move_the_selection_and_write_nothing(
    dbs: Databases, world: World
) -> None:
    seed_board(dbs, world)
    before = everything(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        assert selected_key(screen) == "TASK-0001"
        walk = [
            ("j", "TASK-0002"), ("down", "TASK-0003"), ("down", "TASK-0003"),  # stops at the end
            ("k", "TASK-0002"), ("up", "TASK-0001"), ("up", "TASK-0001"),
            ("l", "TASK-0004"), ("j", "TASK-0005"), ("right", "TASK-0006"),
            ("l", "TASK-0007"),
            ("h", "TASK-0006"), ("left", "TASK-0005"),  # each column keeps its own row
            ("h", "TASK-0001"),
            ("left", "TASK-0007"),  # from the first column round to the last
        ]
        for key, expected in walk:
            await keys(pilot, key)
            assert selected_key(screen) == expected, key
            assert selected_cards(screen) == [expected], key
        current = [c.status for c in screen.query(TaskColumn) if c.is_current]
        assert current == ["done"]
    assert everything(dbs, world) == before


# ---------------------------------------------------------------- moves
@run_async
async def test_greater_and_less_move_a_card_between_statuses(
    dbs: Databases, world: World
) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0006")
        await keys(pilot, "greater_than_sign")
        doc = stored(dbs, world, "TASK-0006")
        assert doc["status"] == "done"
        assert doc["position"] == 2000.0  # after the done column's last card
        assert doc["completed_at"] is not None and doc["completed_at"] == doc["updated_at"]
        assert column_keys(screen, "done") == ["TASK-0007", "TASK-0006"]
        assert column_keys(screen, "review") == []
        assert selected_key(screen) == "TASK-0006"  # the cursor follows the card
        assert message_of(app) == "TASK-0006 → Done (u undoes)."
        [moved] = activity(dbs, world)
        assert_logged(moved, world, "task.status_changed", ids["TASK-0006"])
        assert moved["changes"] == {"status": {"from": "review", "to": "done"}}

        await keys(pilot, "greater_than_sign")  # already in the last column
        assert message_of(app) == "TASK-0006 is already in Done."
        assert len(activity(dbs, world)) == 1

        await keys(pilot, "less_than_sign")
        doc = stored(dbs, world, "TASK-0006")
        assert (doc["status"], doc["completed_at"]) == ("review", None)  # cleared on leaving
        assert doc["position"] == 1000.0
        assert column_keys(screen, "review") == ["TASK-0006"]

        await keys(pilot, "shift+left")
        assert stored(dbs, world, "TASK-0006")["status"] == "in_progress"
        assert column_keys(screen, "in_progress") == ["TASK-0004", "TASK-0005", "TASK-0006"]
        await keys(pilot, "shift+right")
        assert stored(dbs, world, "TASK-0006")["status"] == "review"
        changes = [(a["action"], a["changes"]) for a in activity(dbs, world)]
        assert changes == [
            ("task.status_changed", {"status": {"from": "review", "to": "done"}}),
            ("task.status_changed", {"status": {"from": "done", "to": "review"}}),
            ("task.status_changed", {"status": {"from": "review", "to": "in_progress"}}),
            ("task.status_changed", {"status": {"from": "in_progress", "to": "review"}}),
        ]
        assert all(a["metadata"]["client_type"] == "tui" for a in activity(dbs, world))


@run_async
async def test_shift_k_and_j_reorder_within_the_column(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        assert selected_key(screen) == "TASK-0001"
        await keys(pilot, "J")
        assert stored(dbs, world, "TASK-0001")["position"] == 2500.0  # between 2 and 3
        assert column_keys(screen, "todo") == ["TASK-0002", "TASK-0001", "TASK-0003"]
        assert selected_key(screen) == "TASK-0001"
        await keys(pilot, "shift+down")
        assert stored(dbs, world, "TASK-0001")["position"] == 4000.0  # past the last
        assert column_keys(screen, "todo") == ["TASK-0002", "TASK-0003", "TASK-0001"]
        await keys(pilot, "J")  # already last: nothing to do
        assert len(activity(dbs, world)) == 2

        await keys(pilot, "K")
        assert stored(dbs, world, "TASK-0001")["position"] == 2500.0
        await keys(pilot, "shift+up")
        assert stored(dbs, world, "TASK-0001")["position"] == 1000.0  # before the first
        assert column_keys(screen, "todo") == ["TASK-0001", "TASK-0002", "TASK-0003"]
        log = activity(dbs, world)
        assert [a["action"] for a in log] == ["task.moved"] * 4
        assert [a["changes"]["position"] for a in log] == [
            {"from": 1000.0, "to": 2500.0}, {"from": 2500.0, "to": 4000.0},
            {"from": 4000.0, "to": 2500.0}, {"from": 2500.0, "to": 1000.0},
        ]
        for entry in log:
            assert_logged(entry, world, "task.moved", ids["TASK-0001"])
        assert stored(dbs, world, "TASK-0001")["status"] == "todo"


@run_async
async def test_u_undoes_the_last_move(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        await keys(pilot, "u")
        assert message_of(app) == "There is no move to undo."
        assert activity(dbs, world) == []

        select(screen, ids, "TASK-0002")
        await keys(pilot, "greater_than_sign")
        assert stored(dbs, world, "TASK-0002")["status"] == "in_progress"
        await keys(pilot, "l")  # the cursor wanders off; undo still knows the card
        await keys(pilot, "u")
        doc = stored(dbs, world, "TASK-0002")
        assert (doc["status"], doc["position"]) == ("todo", 2000.0)
        assert column_keys(screen, "todo") == ["TASK-0001", "TASK-0002", "TASK-0003"]
        assert selected_key(screen) == "TASK-0002"
        assert message_of(app) == "Undone: TASK-0002 is back in Todo."
        assert [a["changes"] for a in activity(dbs, world)] == [
            {"status": {"from": "todo", "to": "in_progress"}},
            {"status": {"from": "in_progress", "to": "todo"}},
        ]
        await keys(pilot, "u")  # one undo per move
        assert message_of(app) == "There is no move to undo."
        assert len(activity(dbs, world)) == 2


# ---------------------------------------------------------------- assign, priority
@run_async
async def test_a_assigns_through_the_picker_and_unassigns(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:  # wide enough for the name on the card
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0002")
        await keys(pilot, "a")
        picker = app.screen
        assert isinstance(picker, PickScreen)
        values = [value for _, value in picker.options]
        # Active members only: not "gone" (deactivated), not bob (another organization).
        assert values[1:] == [world.minjun, world.jiho, world.seoyeon, world.yuna]
        await keys(pilot, *"jiho", "enter")
        assert app.screen is screen
        doc = stored(dbs, world, "TASK-0002")
        assert doc["assignee_id"] == world.jiho
        assert doc["assignee_snapshot"]["user_id"] == world.jiho
        assert doc["assignee_snapshot"]["name"] == "박지호"
        assert doc["assignee_snapshot"]["email"] == "jiho@example.com"
        assert "박지호" in card_text(screen, ids["TASK-0002"])
        assert message_of(app) == "TASK-0002 assigned."

        await keys(pilot, "a")
        await keys(pilot, *"unassigned", "enter")
        doc = stored(dbs, world, "TASK-0002")
        assert (doc["assignee_id"], doc["assignee_snapshot"]) == (None, None)
        assert "unassigned" in card_text(screen, ids["TASK-0002"])

        await keys(pilot, "a")
        await keys(pilot, "escape")  # cancelled: nothing written
        log = activity(dbs, world)
        assert [a["changes"] for a in log] == [
            {"assignee_id": {"from": None, "to": world.jiho}},
            {"assignee_id": {"from": world.jiho, "to": None}},
        ]
        for entry in log:
            assert_logged(entry, world, "task.assigned", ids["TASK-0002"])


@run_async
async def test_p_sets_the_priority(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0003")
        await keys(pilot, "p")
        picker = app.screen
        assert isinstance(picker, PickScreen)
        assert [value for _, value in picker.options] == ["urgent", "high", "medium", "low"]
        await keys(pilot, "enter")  # the current one (low): nothing to write
        assert activity(dbs, world) == []
        await keys(pilot, "p")
        await keys(pilot, "up", "up", "enter")  # low -> medium -> high
        assert stored(dbs, world, "TASK-0003")["priority"] == "high"
        assert card_text(screen, ids["TASK-0003"]).split("\n")[0].endswith("!high")
        assert message_of(app) == "TASK-0003 is now high."
        [entry] = activity(dbs, world)
        assert_logged(entry, world, "task.updated", ids["TASK-0003"])
        assert entry["changes"] == {"priority": {"from": "low", "to": "high"}}


# ---------------------------------------------------------------- edit, new, delete
def fill(form: TaskForm, **values: str) -> None:
    for name, value in values.items():
        if name == "description":
            form.query_one("#description", TextArea).text = value
        else:
            form.query_one(f"#{name}", Input).value = value


@run_async
async def test_e_edits_the_fields_and_a_bad_date_writes_nothing(
    dbs: Databases, world: World
) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0004")
        await keys(pilot, "e")
        form = app.screen
        assert isinstance(form, TaskForm)
        assert form.query_one("#title", Input).value == "결제 모듈 리팩터링"
        assert form.query_one("#description", TextArea).text == "결제 흐름을 한 곳으로 모은다."
        assert form.query_one("#due", Input).value == "2030-01-15"
        assert form.query_one("#estimate", Input).value == "8"
        assert form.query_one("#labels", Input).value == "customer-request"
        before = everything(dbs, world)

        fill(form, due="2026-02-30")
        await keys(pilot, "ctrl+s")
        assert app.screen is form
        assert form.error_text == "The due date '2026-02-30' is not a date like 2026-12-01."
        assert everything(dbs, world) == before

        fill(form, title="결제 모듈 리팩터링 2단계", due="2030-02-01", estimate="10",
             tags="결제, backend", description="")
        form.query_one("#priority", Choice).action_step(1)  # medium -> high
        await keys(pilot, "ctrl+s")
        assert app.screen is screen
        assert message_of(app) == "TASK-0004 saved."
        assert shown_task(screen, ids["TASK-0004"]).title == "결제 모듈 리팩터링 2단계"

    doc = stored(dbs, world, "TASK-0004")
    assert doc["title"] == "결제 모듈 리팩터링 2단계"
    assert doc["description"] is None
    assert doc["due_date"] == dt.datetime(2030, 2, 1, tzinfo=UTC)
    assert doc["priority"] == "high"
    assert (doc["estimated_hours"], doc["actual_hours"], doc["remaining_hours"]) == (10.0, 2.0, 8.0)
    assert doc["tags"] == ["결제", "backend"]
    assert doc["labels"] == ["customer-request"] and doc["status"] == "in_progress"
    [entry] = activity(dbs, world)
    assert_logged(entry, world, "task.updated", ids["TASK-0004"])
    assert entry["changes"] == {
        "title": {"from": "결제 모듈 리팩터링", "to": "결제 모듈 리팩터링 2단계"},
        "description": {"from": "결제 흐름을 한 곳으로 모은다.", "to": None},
        "priority": {"from": "medium", "to": "high"},
        "due_date": {"from": dt.datetime(2030, 1, 15, tzinfo=UTC),
                     "to": dt.datetime(2030, 2, 1, tzinfo=UTC)},
        "estimated_hours": {"from": 8.0, "to": 10.0},
        "tags": {"from": [], "to": ["결제", "backend"]},
    }


@run_async
async def test_n_creates_a_task_in_the_current_column(dbs: Databases, world: World) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        await keys(pilot, "l", "n")  # in the in-progress column
        form = app.screen
        assert isinstance(form, TaskForm)
        assert form.query_one("#status", Choice).value == "in_progress"
        await keys(pilot, "ctrl+s")  # no title
        assert form.error_text == "The title is empty."
        assert task_of(dbs, world, "TASK-0008") is None

        await pilot.press(*"새 검색 화면 설계")
        fill(form, due="2030-03-01", estimate="4", tags="검색", labels="design")
        await keys(pilot, "ctrl+s")
        assert app.screen is screen
        assert message_of(app) == "Created TASK-0008."
        doc = stored(dbs, world, "TASK-0008")
        assert column_keys(screen, "in_progress") == ["TASK-0004", "TASK-0005", "TASK-0008"]
        assert selected_key(screen) == "TASK-0008"

    assert (doc["title"], doc["status"], doc["priority"]) == ("새 검색 화면 설계", "in_progress",
                                                                "medium")
    assert doc["position"] == 3000.0  # the end of its column
    assert doc["due_date"] == dt.datetime(2030, 3, 1, tzinfo=UTC)
    assert (doc["estimated_hours"], doc["actual_hours"], doc["remaining_hours"]) == (4.0, 0.0, 4.0)
    assert (doc["tags"], doc["labels"]) == (["검색"], ["design"])
    assert doc["created_by_id"] == world.minjun and doc["completed_at"] is None
    [entry] = activity(dbs, world)
    assert_logged(entry, world, "task.created", str(doc["_id"]))
    assert entry["changes"] == {"task_id": "TASK-0008", "title": "새 검색 화면 설계"}


@run_async
async def test_x_deletes_only_after_yes(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0002")
        before = everything(dbs, world)
        await keys(pilot, "x")
        assert isinstance(app.screen, ConfirmScreen)
        await keys(pilot, "n")
        assert app.screen is screen
        assert message_of(app) == "Nothing deleted."
        assert everything(dbs, world) == before

        await keys(pilot, "x")
        await keys(pilot, "y")
        assert message_of(app) == "Deleted TASK-0002."
        assert task_of(dbs, world, "TASK-0002") is None
        assert column_keys(screen, "todo") == ["TASK-0001", "TASK-0003"]
        assert selected_key(screen) in ("TASK-0001", "TASK-0003")
        [entry] = activity(dbs, world)
        assert_logged(entry, world, "task.deleted", ids["TASK-0002"])
        assert entry["changes"] == {"task_id": "TASK-0002", "title": "로그인 오류 수정"}


# ---------------------------------------------------------------- time
@run_async
async def test_t_logs_time_within_0_and_24_hours(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0004")
        await keys(pilot, "t")
        form = app.screen
        assert isinstance(form, TimeForm)
        assert form.form_title() == "Log time on TASK-0004 (estimated 8 h, 2 h logged)"
        before = everything(dbs, world)
        for hours, error in (
            ("0", "Log more than 0 and at most 24 hours at a time, not 0.0."),
            ("25", "Log more than 0 and at most 24 hours at a time, not 25.0."),
            ("한 시간", "The time '한 시간' is not a number of hours."),
            ("", "Type the hours to log (more than 0, at most 24)."),
        ):
            form.query_one("#hours", Input).value = hours
            await keys(pilot, "ctrl+s")
            assert app.screen is form, hours
            assert form.error_text == error
        assert everything(dbs, world) == before

        form.query_one("#hours", Input).value = "1.5"
        form.query_one("#what", Input).value = "리뷰 반영"
        await keys(pilot, "ctrl+s")
        assert app.screen is screen
        assert message_of(app) == "TASK-0004 time logged."

    doc = stored(dbs, world, "TASK-0004")
    assert (doc["estimated_hours"], doc["actual_hours"], doc["remaining_hours"]) == (8.0, 3.5, 4.5)
    assert len(doc["time_entries"]) == 2
    entry = doc["time_entries"][-1]
    assert (entry["user_id"], entry["hours"], entry["description"]) == (
        world.minjun, 1.5, "리뷰 반영")
    assert entry["logged_at"] == doc["updated_at"]
    [logged] = activity(dbs, world)
    assert_logged(logged, world, "task.time_logged", ids["TASK-0004"])
    assert logged["changes"] == {"actual_hours": {"from": 2.0, "to": 3.5}}


# ---------------------------------------------------------------- detail
def detail_text(app: CreatiaApp) -> str:
    return str(app.screen.query_one("#detail-fields", Static).render())


def time_rows(app: CreatiaApp) -> list[list[str]]:
    table = app.screen.query_one("#time-entries", DataTable)
    return [
        [str(getattr(cell, "plain", cell)) for cell in table.get_row_at(row)]
        for row in range(table.row_count)
    ]


@run_async
async def test_enter_opens_the_detail_where_t_and_e_work(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 40)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0004")
        await keys(pilot, "enter")
        assert isinstance(app.screen, TaskDetailScreen)
        text = detail_text(app)
        pairs = [line.strip().split("  ", 1) for line in text.splitlines() if line.strip()]
        lines = {label: value.strip() for label, value in pairs}
        assert lines == {
            "Key": "TASK-0004",
            "Title": "결제 모듈 리팩터링",
            "Description": "결제 흐름을 한 곳으로 모은다.",
            "Status": "In progress",
            "Priority": "medium",
            "Type": "feature",
            "Assignee": "김민준",
            "Reviewer": "—",
            "Sprint": "backlog",
            "Estimated": "8 h",
            "Actual": "2 h",
            "Remaining": "6 h",
            "Start": "2026-01-02 00:00 UTC",
            "Due": "2030-01-15 00:00 UTC",
            "Completed": "—",
            "Tags": "—",
            "Labels": "customer-request",
            "Created": "2026-01-05 09:00 UTC",
            "Updated": "2026-01-05 09:00 UTC",
            "Id": ids["TASK-0004"],
            "Snapshot": "김민준 <minjun@example.com> · synced 2026-01-05 09:00 UTC",
        }
        assert time_rows(app) == [["2026-01-06 10:00", "2", "김민준", "초기 분석"]]

        await keys(pilot, "t")
        assert isinstance(app.screen, TimeForm)
        app.screen.query_one("#hours", Input).value = "1"
        app.screen.query_one("#what", Input).value = "테스트 작성"
        await keys(pilot, "ctrl+s")
        assert isinstance(app.screen, TaskDetailScreen)
        assert "Actual  3 h\n" in detail_text(app) and "Remaining  5 h\n" in detail_text(app)
        assert [row[3] for row in time_rows(app)] == ["초기 분석", "테스트 작성"]

        await keys(pilot, "e")
        form = app.screen
        assert isinstance(form, TaskForm)
        fill(form, title="결제 모듈 정리")
        await keys(pilot, "ctrl+s")
        assert isinstance(app.screen, TaskDetailScreen)
        assert "Title  결제 모듈 정리" in detail_text(app)

        await keys(pilot, "y")
        assert app.clipboard == "TASK-0004"
        await keys(pilot, "escape")
        assert app.screen is screen
        assert card_text(screen, ids["TASK-0004"]).split("\n")[1] == "결제 모듈 정리"
        assert selected_key(screen) == "TASK-0004"

    doc = stored(dbs, world, "TASK-0004")
    assert (doc["title"], doc["actual_hours"], doc["remaining_hours"]) == ("결제 모듈 정리", 3.0,
                                                                          5.0)
    assert [a["action"] for a in activity(dbs, world)] == ["task.time_logged", "task.updated"]
    assert activity(dbs, world)[1]["changes"] == {
        "title": {"from": "결제 모듈 리팩터링", "to": "결제 모듈 정리"}}


# ---------------------------------------------------------------- filter, search, fold, copy
def all_keys(screen: BoardScreen) -> set[str]:
    return {key for status in screen.statuses for key in column_keys(screen, status)}


async def apply_filter(pilot: Pilot[Any], **values: Any) -> None:
    """f, set the fields (Choice values or Input texts), ctrl+s."""
    await keys(pilot, "f")
    form = pilot.app.screen
    assert isinstance(form, FilterScreen)
    await keys(pilot, "ctrl+r")  # start from nothing
    await keys(pilot, "f")
    form = pilot.app.screen
    assert isinstance(form, FilterScreen)
    for name, value in values.items():
        widget = form.query_one(f"#{name}")
        if isinstance(widget, Choice):
            widget.index = [v for _, v in widget.options].index(value)
        else:
            assert isinstance(widget, Input)
            widget.value = value
    await keys(pilot, "ctrl+s")
    assert isinstance(pilot.app.screen, BoardScreen)


@run_async
async def test_f_filters_by_assignee_priority_due_and_tag(dbs: Databases, world: World) -> None:
    seed_board(dbs, world)
    before = everything(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        await apply_filter(pilot, assignee="me")
        assert all_keys(screen) == {"TASK-0003", "TASK-0004"}
        assert str(screen.query_one("#board-filter", Static).render()).startswith("Showing: me")
        assert message_of(app) == "2 tasks · me"
        await apply_filter(pilot, assignee="unassigned")
        assert all_keys(screen) == {"TASK-0002", "TASK-0006"}
        await apply_filter(pilot, assignee=world.jiho)  # one member, from the loaded list
        assert all_keys(screen) == {"TASK-0001", "TASK-0007"}
        await apply_filter(pilot, priority="high")
        assert all_keys(screen) == {"TASK-0001", "TASK-0005"}
        await apply_filter(pilot, due="overdue")
        assert all_keys(screen) == {"TASK-0002"}  # the done one is not overdue
        await apply_filter(pilot, tag="frontend")
        assert all_keys(screen) == {"TASK-0001"}
        await apply_filter(pilot, assignee="me", priority="low")
        assert all_keys(screen) == {"TASK-0003"}
        await keys(pilot, "f", "ctrl+r")  # clear
        assert len(all_keys(screen)) == 7
        assert message_of(app) == "7 tasks · all tasks"
    assert everything(dbs, world) == before


@run_async
async def test_slash_searches_korean_substrings_of_titles_and_tags(
    dbs: Databases, world: World
) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        await keys(pilot, "slash")
        search = screen.query_one("#board-search", Input)
        assert search.has_focus
        await keys(pilot, *"대시보드", "enter")
        assert all_keys(screen) == {"TASK-0001"}
        assert not search.has_focus and not search.has_class("-open")
        assert message_of(app) == "1 task · '대시보드'"
        assert selected_key(screen) == "TASK-0001"

        await keys(pilot, "slash")
        assert search.value == "대시보드"  # the current search, to change
        search.value = "성능"  # a substring of the tag 성능개선
        await keys(pilot, "enter")
        assert all_keys(screen) == {"TASK-0005"}

        await keys(pilot, "slash")
        search.value = "task-0006"
        await keys(pilot, "enter")
        assert all_keys(screen) == {"TASK-0006"}

        await keys(pilot, "slash", *"문서", "escape")  # closed, not applied
        assert not search.has_focus and not search.has_class("-open")
        assert all_keys(screen) == {"TASK-0006"}

        await keys(pilot, "slash")
        search.value = ""
        await keys(pilot, "enter")
        assert len(all_keys(screen)) == 7


@run_async
async def test_z_folds_the_done_column(dbs: Databases, world: World) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        done = screen.query_one("#column-done", TaskColumn)
        await keys(pilot, "l", "l", "l")
        assert selected_key(screen) == "TASK-0007"
        await keys(pilot, "z")
        assert done.has_class("-collapsed")
        assert column_keys(screen, "done") == []
        assert done.title_text == "D 1"
        assert screen.current_status == "review"  # the cursor left the folded column
        await keys(pilot, "l")
        assert screen.current_status == "todo"  # skipped
        await keys(pilot, "z")
        assert not done.has_class("-collapsed")
        assert column_keys(screen, "done") == ["TASK-0007"]
        assert done.title_text == "Done 1"


@run_async
async def test_y_copies_the_task_key(dbs: Databases, world: World) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0005")
        await keys(pilot, "y")
        assert app.clipboard == "TASK-0005"


@run_async
async def test_the_cursor_loads_more_of_a_long_column_and_r_reloads(
    dbs: Databases, world: World, no_feed: None
) -> None:
    dbs.mongo.tasks.insert_many(
        [task_doc(world, n, title=f"긴 목록 {n}", position=n * 1000.0) for n in range(1, 41)]
    )
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        first = len(column_keys(screen, "todo"))
        assert first < 40
        assert screen.query_one("#column-todo", TaskColumn).title_text == f"Todo {first}/40"
        for _ in range(first - 1):
            await keys(pilot, "j")
        assert selected_key(screen) == f"TASK-{first:04d}"
        loaded = column_keys(screen, "todo")
        assert len(loaded) > first
        assert loaded == [f"TASK-{n:04d}" for n in range(1, len(loaded) + 1)]
        assert selected_cards(screen) == [f"TASK-{first:04d}"]
        assert not message_of(app).startswith("Unexpected")

        # Someone renames a card and adds one at the top; r shows both, the cursor stays.
        dbs.mongo.tasks.update_one({"_id": oid(2), "organization_id": world.lab},
                                   {"$set": {"title": "바뀐 제목", "updated_at": LATER}})
        dbs.mongo.tasks.insert_one(task_doc(world, 99, title="맨 위", position=1.0))
        await keys(pilot, "r")
        assert column_keys(screen, "todo")[:3] == ["TASK-0099", "TASK-0001", "TASK-0002"]
        assert shown_task(screen, str(oid(2))).title == "바뀐 제목"
        assert selected_key(screen) == f"TASK-{first:04d}"
        assert selected_cards(screen) == [f"TASK-{first:04d}"]
        assert message_of(app) == "41 tasks · all tasks"
    assert activity(dbs, world) == []


# ---------------------------------------------------------------- conflicts, permissions
@run_async
async def test_a_task_changed_meanwhile_is_reloaded_not_overwritten(
    dbs: Databases, world: World, no_feed: None
) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        select(screen, ids, "TASK-0001")
        later = BASE + dt.timedelta(days=1)
        dbs.mongo.tasks.update_one(
            {"_id": oid(1), "organization_id": world.lab},
            {"$set": {"title": "다른 사람이 바꾼 제목", "priority": "low", "updated_at": later}},
        )
        changed = everything(dbs, world)
        await keys(pilot, "greater_than_sign")
        assert message_of(app) == (
            "TASK-0001 was changed by someone else; the card was reloaded."
        )
        assert everything(dbs, world) == changed  # nothing of the board's was written
        assert activity(dbs, world) == []
        shown = shown_task(screen, ids["TASK-0001"])
        assert (shown.title, shown.priority) == ("다른 사람이 바꾼 제목", "low")
        assert card_text(screen, ids["TASK-0001"]).split("\n")[0].endswith("low")
        assert column_keys(screen, "todo")[0] == "TASK-0001"
        assert selected_key(screen) == "TASK-0001"

        await keys(pilot, "greater_than_sign")  # the card now holds the current version
        assert stored(dbs, world, "TASK-0001")["status"] == "in_progress"
        assert stored(dbs, world, "TASK-0001")["title"] == "다른 사람이 바꾼 제목"
        assert [a["action"] for a in activity(dbs, world)] == ["task.status_changed"]


@run_async
async def test_a_viewer_sees_the_board_but_is_not_offered_writes(
    dbs: Databases, world: World
) -> None:
    seed_board(dbs, world)
    before = everything(dbs, world)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        assert len(all_keys(screen)) == 7
        offered = enabled_actions(screen)
        assert not offered & WRITE_ACTIONS
        assert {"column", "card", "open", "filter", "search", "toggle_done"} <= offered
        for key in ("greater_than_sign", "less_than_sign", "shift+right", "shift+left", "J", "K",
                    "shift+up", "shift+down", "u", "a", "p", "e", "n", "x", "delete", "t"):
            await keys(pilot, key)
            assert app.screen is screen, key
        help_keys = dict((d, k) for k, d in app.help_keys())
        assert "Assign" not in help_keys and "Move ›" not in help_keys
        await keys(pilot, "enter")  # reading is allowed
        assert isinstance(app.screen, TaskDetailScreen)
        await keys(pilot, "escape")
    assert everything(dbs, world) == before


# ---------------------------------------------------------------- live changes
async def wait_until(
    pilot: Pilot[Any], condition: Callable[[], bool], seconds: float = 5.0
) -> bool:
    """Poll with pilot.pause until the condition holds (the feed delivers within ~1 s)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await pilot.pause(0.05)
    return condition()


@run_async
async def test_changes_by_others_appear_without_moving_the_cursor(
    dbs: Databases, world: World
) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_board(pilot)
        # The feed opens after the first load; these writes carry old updated_at values, which
        # its catch-up read would not find: write once it is open.
        assert await wait_until(pilot, lambda: screen.feed_mode is not None)
        select(screen, ids, "TASK-0002")
        dbs.mongo.tasks.update_one(
            {"_id": oid(1), "organization_id": world.lab},
            {"$set": {"title": "실시간으로 바뀐 제목", "updated_at": BASE + dt.timedelta(days=1)}},
        )
        assert await wait_until(
            pilot, lambda: shown_task(screen, ids["TASK-0001"]).title == "실시간으로 바뀐 제목"
        )
        assert card_text(screen, ids["TASK-0001"]).split("\n")[1] == "실시간으로 바뀐…"
        assert selected_key(screen) == "TASK-0002" and selected_cards(screen) == ["TASK-0002"]

        # Moved to another column, added and deleted by someone else.
        dbs.mongo.tasks.update_one(
            {"_id": oid(5), "organization_id": world.lab},
            {"$set": {"status": "review", "position": 500.0,
                      "updated_at": BASE + dt.timedelta(days=1)}},
        )
        dbs.mongo.tasks.insert_one(task_doc(world, 9, title="다른 사람이 만든 작업",
                                            position=5000.0))
        dbs.mongo.tasks.delete_one({"_id": oid(3), "organization_id": world.lab})
        assert await wait_until(
            pilot,
            lambda: column_keys(screen, "review") == ["TASK-0005", "TASK-0006"]
            and column_keys(screen, "todo") == ["TASK-0001", "TASK-0002", "TASK-0009"],
        ), (column_keys(screen, "review"), column_keys(screen, "todo"))
        assert selected_key(screen) == "TASK-0002" and screen.current_status == "todo"
    assert activity(dbs, world) == []


# ---------------------------------------------------------------- wide characters
@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
@run_async
async def test_long_korean_titles_are_cut_within_the_card(
    dbs: Databases, world: World, size: tuple[int, int]
) -> None:
    ids = seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=size) as pilot:
        screen = await open_board(pilot)
        for column in screen.query(TaskColumn):
            width = column.card_width
            assert width == column.size.width - 2  # a cell each side, as the card's edges
            for task in column.tasks:
                lines = (column.card_text(task.id) or "").split("\n")
                assert len(lines) == CARD_HEIGHT
                assert all(cell_len(line) <= width for line in lines), (width, lines)
                drawn = column.drawn_lines(task.id)
                assert drawn is not None and len(drawn) == CARD_HEIGHT, task.task_id
                assert all(cell_len(line) == column.size.width for line in drawn), drawn
        long_column = column_of(screen, ids["TASK-0006"])
        title = card_text(screen, ids["TASK-0006"]).split("\n")[1]
        assert title.endswith("…") and LONG_TITLE.startswith(title[:-1])
        # Cut as late as it can: one cell for the ellipsis, one a wide character may leave and
        # one for a space dropped before the ellipsis.
        assert long_column.card_width - 3 <= cell_len(title) <= long_column.card_width
        drawn = long_column.drawn_lines(ids["TASK-0006"])
        assert drawn is not None and title in drawn[1]  # one line, not wrapped into the next


# ---------------------------------------------------------------- snapshots
def test_snapshot_board_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=board_steps(press("j")))


def test_snapshot_board_160x50(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(160, 50), run_before=board_steps(press("j")))


def test_snapshot_board_no_color_80x24(
    dbs: Databases, world: World, snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=board_steps(press("j")))


def test_snapshot_task_form_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    steps = board_steps(press("l"), press("e"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_snapshot_task_detail_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    steps = board_steps(press("l"), press("enter"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_snapshot_task_detail_160x50(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    steps = board_steps(press("l"), press("enter"))
    assert snap_compare(app, terminal_size=(160, 50), run_before=steps)


def test_snapshot_filter_form_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    seed_board(dbs, world)
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=board_steps(press("f")))


# ---------------------------------------------------------------- saved filters
@run_async
async def test_a_filter_is_saved_per_user_listed_in_the_palette_and_deleted(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    import psycopg

    from creatia_tui.screens.task_forms import SaveFilterForm

    dbs.mongo.tasks.insert_many([
        task_doc(world, 1, title="급한 버그", priority="urgent"),
        task_doc(world, 2, title="천천히", priority="low"),
    ])
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        board = await open_board(pilot)
        await keys(pilot, "s")  # nothing to save yet
        assert message_of(app).startswith("There is no filter to save")
        board.set_filter(board.task_filter.with_(priority="urgent"))
        await settle_board(pilot)
        await keys(pilot, "s")
        form = app.screen
        assert isinstance(form, SaveFilterForm)
        await keys(pilot, *"overdue", "enter")  # a built-in's name is refused
        assert app.screen is form and form.error_text
        form.query_one("#name", Input).value = "급한 것"
        await keys(pilot, "enter")
        assert app.screen is board
        assert message_of(app) == "Saved the filter '급한 것': ctrl+p lists it."
        titles = {c.title for c in app.get_system_commands(board)}
        assert {"Filter: 급한 것", "Filter: my open tasks", "Filter: overdue"} <= titles

        board.set_filter(board.task_filter.with_(priority=None))
        await settle_board(pilot)
        [apply] = [c for c in app.get_system_commands(board) if c.title == "Filter: 급한 것"]
        apply.callback()
        await settle_board(pilot)
        shown = {t.task_id for c in board.columns.values() for t in c.tasks}
        assert shown == {"TASK-0001"}

        with psycopg.connect(pg_dsn) as conn:
            rows = conn.execute(
                "SELECT user_id::text, organization_id::text, name, filter FROM saved_filters"
            ).fetchall()
        assert rows == [(world.jiho, world.lab, "급한 것", {"priority": "urgent"})]

        [delete] = [c for c in app.get_system_commands(board)
                    if c.title == "Delete saved filter: 급한 것"]
        delete.callback()
        await settle_board(pilot)
        assert "Filter: 급한 것" not in {c.title for c in app.get_system_commands(board)}
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM saved_filters").fetchone() == (0,)


@run_async
async def test_a_column_refills_when_its_cards_move_out(dbs: Databases, world: World) -> None:
    dbs.mongo.tasks.insert_many(
        [task_doc(world, n, position=float(n * 1000)) for n in range(1, 31)]
    )
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        board = await open_board(pilot)
        loaded = len(board.columns["todo"].tasks)
        assert loaded < 30
        for _ in range(loaded):
            await keys(pilot, "greater_than_sign")  # the cursor follows the card…
            await keys(pilot, "h")  # …so step back to todo for the next one
        todo = board.columns["todo"]
        assert todo.total == 30 - loaded
        # Not left empty: the next cards were fetched from the server.
        assert len(todo.tasks) >= min(board.visible_cards(), todo.total)
        shown = {t.task_id for t in todo.tasks}
        assert shown <= {doc["task_id"] for doc in dbs.mongo.tasks.find(
            {"organization_id": world.lab, "status": "todo"})}
