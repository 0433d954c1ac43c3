"""The Sprints screen and its views: pilot tests assert on the sprint and task documents the
keys changed in MongoDB (and on nothing changed when a viewer is refused); snapshots at 80x24
and 160x50 of the list, the burndown, the velocity and the retrospective, with Korean names, and
the burndown under NO_COLOR.

The data is fixed in March 2026 and the burndown is drawn for 2026-03-07 10:00 UTC (the views'
clock is patched), so the snapshots do not move with the calendar.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bson import ObjectId
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, SelectionList, TextArea

from creatia_tui.data.db import Databases
from creatia_tui.screens import sprint_views
from creatia_tui.screens.board import BoardScreen
from creatia_tui.screens.dialogs import ConfirmScreen, PickScreen
from creatia_tui.screens.sprint_views import (
    RetroForm,
    SprintBurndownScreen,
    SprintRetroScreen,
    SprintVelocityScreen,
)
from creatia_tui.screens.sprints import SprintForm, SprintsScreen, TaskPickScreen
from creatia_tui.widgets.charts import BurndownPlot
from tests.conftest import World
from tests.tui import app_as, message_of, run_async, settle, snapshot_before

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 3, 7, 10, 0, tzinfo=UTC)
CREATED = dt.datetime(2026, 1, 20, 9, 0, tzinfo=UTC)


def at(month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, month, day, hour, minute, second, tzinfo=UTC)


def oid(n: int) -> ObjectId:
    return ObjectId(f"65b0000000000000000000{n:02x}")


# Sprint ids: 1, 2 completed, 3 active, 4 planned.
S1, S2, S3, S4 = (str(oid(n)) for n in (1, 2, 3, 4))


def sprint_doc(world: World, n: int, name: str, status: str, start: dt.datetime,
               end: dt.datetime, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": oid(n), "organization_id": world.lab, "milestone_id": None, "name": name,
        "goal": None, "status": status, "start_date": start, "end_date": end,
        "capacity": {"total_hours": 40.0, "allocated_hours": 0.0, "available_hours": 40.0},
        "metrics": {"total_tasks": 0, "completed_tasks": 0, "in_progress_tasks": 0,
                    "todo_tasks": 0, "completion_rate": 0.0, "burndown_data": []},
        "retrospective": {"what_went_well": [], "what_to_improve": [], "action_items": []},
        "created_by_id": world.minjun, "created_at": CREATED, "updated_at": CREATED,
    }
    doc.update(fields)
    return doc


def task_doc(world: World, n: int, title: str, status: str, estimate: float | None,
             sprint: str | None, actual: float = 0.0) -> dict[str, Any]:
    return {
        "_id": oid(0x40 + n), "organization_id": world.lab, "task_id": f"TASK-{n:04d}",
        "title": title, "description": None, "task_type": "feature", "status": status,
        "priority": "medium", "position": n * 1000.0, "assignee_id": None,
        "assignee_snapshot": None, "estimated_hours": estimate, "actual_hours": actual,
        "remaining_hours": None if estimate is None else max(estimate - actual, 0.0),
        "time_entries": [], "due_date": None,
        "completed_at": at(3, 5, 15) if status == "done" else None, "tags": [], "labels": [],
        "sprint_id": sprint, "created_at": CREATED, "updated_at": CREATED,
    }


def point(date: str, hours: float, tasks: int, scope: float, scope_tasks: int,
          added: float = 0.0, added_tasks: int = 0) -> dict[str, Any]:
    return {"date": date, "remaining_hours": hours, "remaining_tasks": tasks,
            "scope_hours": scope, "scope_tasks": scope_tasks, "added_hours": added,
            "added_tasks": added_tasks}


def seed_sprints(dbs: Databases, world: World) -> None:
    """Two completed sprints, the active one (day 6 of 14 on 2026-03-07, 6 h added on day 3)
    and a planned one; seven tasks, six of them in the active sprint, two in the backlog."""
    done_metrics = {"total_tasks": 8, "completed_tasks": 6, "in_progress_tasks": 1,
                    "todo_tasks": 1, "completion_rate": 75.0, "completed_hours": 30.0,
                    "estimated_hours": 38.0, "burndown_data": []}
    sprints = [
        sprint_doc(world, 1, "스프린트 1 · 로그인 개편", "completed", at(2, 2),
                   at(2, 15, 23, 59, 59),
                   goal="로그인 흐름 단순화",
                   capacity={"total_hours": 40.0, "allocated_hours": 38.0,
                             "available_hours": 2.0},
                   metrics=done_metrics, completed_at=at(2, 15, 18)),
        sprint_doc(world, 2, "스프린트 2 · 결제", "completed", at(2, 16), at(3, 1, 23, 59, 59),
                   goal="결제 모듈 안정화",
                   capacity={"total_hours": 40.0, "allocated_hours": 44.0,
                             "available_hours": -4.0},
                   metrics={**done_metrics, "completed_hours": 36.0, "completed_tasks": 7,
                            "completion_rate": 87.5},
                   completed_at=at(3, 1, 18),
                   retrospective={"what_went_well": ["좋은 팀워크", "빠른 배포"],
                                  "what_to_improve": ["코드 리뷰 시간", "테스트 커버리지"],
                                  "action_items": ["코드 리뷰 체크리스트 도입",
                                                   "배포 전 점검표 만들기"]}),
        sprint_doc(world, 3, "스프린트 3 · 사용자 경험 개선", "active", at(3, 2),
                   at(3, 15, 23, 59, 59), goal="사용자 경험 개선", started_at=at(3, 2, 9),
                   metrics={"total_tasks": 6, "completed_tasks": 2, "in_progress_tasks": 2,
                            "todo_tasks": 2, "completion_rate": 33.3, "burndown_data": [
                                point("2026-03-02", 30.0, 5, 30.0, 5),
                                point("2026-03-03", 27.0, 5, 30.0, 5),
                                point("2026-03-04", 29.0, 6, 36.0, 6, 6.0, 1),
                                point("2026-03-05", 22.0, 4, 36.0, 6),
                                point("2026-03-06", 19.0, 4, 36.0, 6),
                            ]},
                   capacity={"total_hours": 40.0, "allocated_hours": 36.0,
                             "available_hours": 4.0}),
        sprint_doc(world, 4, "스프린트 4 · 검색", "planned", at(3, 16), at(3, 29, 23, 59, 59),
                   goal="검색 속도 개선"),
    ]
    dbs.mongo.sprints.insert_many(sprints)
    dbs.mongo.tasks.insert_many([
        task_doc(world, 1, "사용자 대시보드 개선", "done", 8.0, S3, 8.0),
        task_doc(world, 2, "로그인 오류 수정", "done", 4.0, S3, 3.0),
        task_doc(world, 3, "결제 모듈 리팩터링", "in_progress", 8.0, S3, 3.0),
        task_doc(world, 4, "API 응답 속도", "review", 6.0, S3, 2.0),
        task_doc(world, 5, "문서 정리", "todo", 4.0, S3),
        task_doc(world, 6, "온보딩 가이드 작성", "todo", 6.0, S3),
        task_doc(world, 7, "검색 색인 설계", "todo", 5.0, None),
        task_doc(world, 8, "알림 설정 화면", "todo", 3.0, None),
    ])


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sprint_views, "now", lambda: NOW)


@pytest.fixture
def seeded(dbs: Databases, world: World, fixed_clock: None) -> World:
    seed_sprints(dbs, world)
    return world


async def metrics_when(
    pilot: Pilot[Any], dbs: Databases, world: World, sprint_id: str,
    done: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """The sprint's metrics once `done` holds: the board recomputes them on a thread of its own
    after the write (the issue allows 2 seconds)."""
    deadline = time.monotonic() + 2
    metrics = sprint(dbs, world, sprint_id)["metrics"]
    while not done(metrics) and time.monotonic() < deadline:
        await pilot.pause(0.05)
        metrics = sprint(dbs, world, sprint_id)["metrics"]
    return metrics


def sprint(dbs: Databases, world: World, sprint_id: str) -> dict[str, Any]:
    doc = dbs.mongo.sprints.find_one({"_id": ObjectId(sprint_id), "organization_id": world.lab})
    assert doc is not None
    return doc


def task(dbs: Databases, world: World, n: int) -> dict[str, Any]:
    doc = dbs.mongo.tasks.find_one({"_id": oid(0x40 + n), "organization_id": world.lab})
    assert doc is not None
    return doc


def everything(dbs: Databases, world: World) -> list[list[dict[str, Any]]]:
    org = {"organization_id": world.lab}
    return [list(dbs.mongo[name].find(org).sort("_id", 1))
            for name in ("sprints", "tasks", "activity_logs")]


async def open_sprints(pilot: Pilot[Any]) -> SprintsScreen:
    await settle(pilot)
    await pilot.press("3")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, SprintsScreen)
    return screen


async def keys(pilot: Pilot[Any], *pressed: str) -> None:
    await pilot.press(*pressed)
    await settle(pilot)


def select(screen: SprintsScreen, sprint_id: str) -> None:
    table = screen.query_one("#sprint-table", DataTable)
    table.move_cursor(row=table.get_row_index(sprint_id))


def offered(screen: Any) -> set[str]:
    return {b.binding.action for b in screen.active_bindings.values() if b.enabled}


# ---------------------------------------------------------------- the list and its writes
@run_async
async def test_the_list_groups_by_status_and_an_owner_creates_edits_and_completes(
    dbs: Databases, seeded: World
) -> None:
    world = seeded
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sprints(pilot)
        table = screen.query_one("#sprint-table", DataTable)
        assert [str(k.value) for k in table.rows] == [S3, S4, S2, S1]
        assert message_of(app) == "4 sprints: 1 active, 1 planned, 2 completed"

        # n: a form that refuses an end before the start, then creates the sprint.
        await keys(pilot, "n")
        form = app.screen
        assert isinstance(form, SprintForm)
        form.query_one("#name", Input).value = "스프린트 5 · 알림"
        # In the future: a sprint whose days are over could not start below.
        today = dt.date.today()
        start, end = today + dt.timedelta(days=30), today + dt.timedelta(days=43)
        form.query_one("#start", Input).value = start.isoformat()
        form.query_one("#end", Input).value = (start - dt.timedelta(days=1)).isoformat()
        form.query_one("#capacity", Input).value = "32"
        await keys(pilot, "ctrl+s")
        assert form.error_text == "The sprint must start before it ends."
        form.query_one("#end", Input).value = end.isoformat()
        await keys(pilot, "ctrl+s")
        assert app.screen is screen
        created = dbs.mongo.sprints.find_one({"organization_id": world.lab,
                                              "name": "스프린트 5 · 알림"})
        assert created is not None
        assert (created["status"], created["capacity"]["total_hours"]) == ("planned", 32.0)
        assert created["start_date"].date() == start and created["end_date"].date() == end
        assert screen.highlighted_id() == str(created["_id"])
        assert message_of(app) == "Created 스프린트 5 · 알림 (planned)."

        # e: a negative capacity is refused in the form; a new goal is saved.
        await keys(pilot, "e")
        form = app.screen
        assert isinstance(form, SprintForm)
        form.query_one("#capacity", Input).value = "-1"
        await keys(pilot, "ctrl+s")
        assert form.error_text == "The capacity cannot be negative."
        form.query_one("#capacity", Input).value = "30"
        form.query_one("#goal", Input).value = "알림 설정"
        await keys(pilot, "ctrl+s")
        edited = sprint(dbs, world, str(created["_id"]))
        assert (edited["goal"], edited["capacity"]["total_hours"]) == ("알림 설정", 30.0)

        # s on a planned sprint while another is active: refused, nothing written.
        before = everything(dbs, world)
        await keys(pilot, "s")
        assert isinstance(app.screen, ConfirmScreen)
        await keys(pilot, "y")
        assert message_of(app).startswith("스프린트 3 · 사용자 경험 개선 is already active")
        assert everything(dbs, world) == before

        # c on the active sprint: its unfinished tasks go to the planned sprint chosen.
        select(screen, S3)
        await keys(pilot, "c")
        picker = app.screen
        assert isinstance(picker, PickScreen)
        assert picker.current == S4  # the next planned sprint is offered first
        await keys(pilot, "enter")
        done = sprint(dbs, world, S3)
        assert done["status"] == "completed"
        assert done["metrics"]["carried_over_tasks"] == 4
        assert [task(dbs, world, n)["sprint_id"] for n in range(1, 7)] == [S3, S3, S4, S4, S4, S4]
        assert sprint(dbs, world, S4)["metrics"]["total_tasks"] == 4
        assert message_of(app) == (
            "Completed 스프린트 3 · 사용자 경험 개선; 4 unfinished tasks moved to "
            "스프린트 4 · 검색."
        )


@run_async
async def test_add_and_remove_tasks_with_the_pickers(dbs: Databases, seeded: World) -> None:
    world = seeded
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sprints(pilot)
        select(screen, S4)
        await keys(pilot, "a")
        picker = app.screen
        assert isinstance(picker, TaskPickScreen)
        assert [str(o.value) for o in picker.query_one(SelectionList).options] == [
            str(oid(0x47)), str(oid(0x48))]
        await keys(pilot, "space", "down", "space", "ctrl+s")
        assert (task(dbs, world, 7)["sprint_id"], task(dbs, world, 8)["sprint_id"]) == (S4, S4)
        assert sprint(dbs, world, S4)["metrics"]["total_tasks"] == 2
        assert sprint(dbs, world, S4)["capacity"]["allocated_hours"] == 8.0
        assert message_of(app) == "Added 2 tasks to 스프린트 4 · 검색."

        await keys(pilot, "d")
        picker = app.screen
        assert isinstance(picker, TaskPickScreen)
        await keys(pilot, "slash", *"알림", "enter", "space", "ctrl+s")
        assert (task(dbs, world, 7)["sprint_id"], task(dbs, world, 8)["sprint_id"]) == (S4, None)
        assert sprint(dbs, world, S4)["metrics"]["total_tasks"] == 1
        assert message_of(app) == "Moved 1 task from 스프린트 4 · 검색 to the backlog."


@run_async
async def test_a_viewer_reads_but_every_change_is_refused(
    dbs: Databases, seeded: World
) -> None:
    world = seeded
    before = everything(dbs, world)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sprints(pilot)
        writes = {"new", "edit", "start", "complete", "add_tasks", "remove_tasks"}
        assert not writes & offered(screen)
        assert {"burndown", "velocity", "retrospective"} <= offered(screen)
        for key in ("n", "e", "s", "c", "a", "d"):
            await keys(pilot, key)
            assert app.screen is screen
        # A stale permission set offers the key; the service still refuses and writes nothing.
        session = app.session
        assert session is not None
        session.permissions = session.permissions | {"sprints.update"}
        select(screen, S4)
        await keys(pilot, "s")
        await keys(pilot, "y")
        assert "sprints.update" in message_of(app)
        select(screen, S2)
        await keys(pilot, "w")
        retro = app.screen
        assert isinstance(retro, SprintRetroScreen)
        assert "to_task" not in offered(retro)  # tasks.create: not even the stale set has it
        await keys(pilot, "t")
        assert app.screen is retro
        await keys(pilot, "e")  # offered by the stale set; the service refuses the save
        form = app.screen
        assert isinstance(form, RetroForm)
        form.query_one("#what_went_well", TextArea).text = "몰래 고친 항목"
        await keys(pilot, "ctrl+s")
        assert app.screen is form and "sprints.update" in form.error_text
    assert everything(dbs, world) == before


# ---------------------------------------------------------------- the views
@run_async
async def test_burndown_switches_to_tasks_and_redraws_on_resize(
    dbs: Databases, seeded: World
) -> None:
    world = seeded
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sprints(pilot)
        # The list shows the highlighted sprint's burndown: the active one's on opening,
        # another's once the cursor rests on it.
        assert screen.chart is not None and screen.chart.sprint_id == S3
        select(screen, S2)
        await pilot.pause(0.4)
        await settle(pilot)
        assert screen.chart.sprint_id == S2
        assert screen.query_one("#sprint-chart", BurndownPlot).days[0] == "2026-02-16"
        select(screen, S3)
        await keys(pilot, "b")
        view = app.screen
        assert isinstance(view, SprintBurndownScreen)
        note = str(view.query_one("#burndown-note").render())
        # Today's live point: 4 open tasks, 8+6+4+6 estimated less 3+2 logged = 19 h; the
        # ideal on day 6 of 14 is 40 * 8 / 14.
        assert note.startswith("today: 19 h left (ideal 22.86 h) · day 6 of 14")
        assert "scope added (+): 03-04 +6 h" in note
        plot = view.query_one(BurndownPlot)
        assert [p.date for p in plot.points][-1] == "2026-03-07"
        drawn = str(plot.render())
        await keys(pilot, "t")
        assert plot.mode == "tasks"
        assert str(view.query_one("#burndown-note").render()).startswith(
            "today: 4 of 6 tasks open")
        await pilot.resize_terminal(160, 50)
        await settle(pilot)
        assert str(plot.render()) != drawn
        await keys(pilot, "v")
        assert isinstance(app.screen, SprintVelocityScreen)
        await keys(pilot, "escape")
        assert isinstance(app.screen, SprintsScreen)
        assert app.screen.highlighted_id() == S3


@run_async
async def test_retrospective_edit_and_an_action_item_becomes_a_task(
    dbs: Databases, seeded: World
) -> None:
    world = seeded
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_sprints(pilot)
        select(screen, S2)
        await keys(pilot, "w")
        view = app.screen
        assert isinstance(view, SprintRetroScreen)
        await keys(pilot, "e")
        form = app.screen
        assert isinstance(form, RetroForm)
        form.query_one("#action_items", TextArea).text = (
            "코드 리뷰 체크리스트 도입\n\n배포 전 점검표 만들기\n  회고 시간 지키기  ")
        await keys(pilot, "ctrl+s")
        assert app.screen is view
        retro = sprint(dbs, world, S2)["retrospective"]
        assert retro["action_items"] == [
            "코드 리뷰 체크리스트 도입", "배포 전 점검표 만들기", "회고 시간 지키기"]
        assert retro["what_went_well"] == ["좋은 팀워크", "빠른 배포"]

        await keys(pilot, "down", "t")  # the second item, into the next planned sprint
        made = dbs.mongo.tasks.find_one({"organization_id": world.lab,
                                         "title": "배포 전 점검표 만들기"})
        assert made is not None and made["sprint_id"] == S4
        links = sprint(dbs, world, S2)["retrospective"]["action_item_tasks"]
        assert links == [{"item": "배포 전 점검표 만들기", "task_id": str(made["_id"]),
                          "key": made["task_id"]}]
        assert message_of(app) == f"Created {made['task_id']} in 스프린트 4 · 검색."
        assert sprint(dbs, world, S4)["metrics"]["total_tasks"] == 1
        count = dbs.mongo.tasks.count_documents({"organization_id": world.lab})
        await keys(pilot, "t")  # the same item again: refused, nothing created
        assert message_of(app) == f"That action item already became {made['task_id']}."
        assert dbs.mongo.tasks.count_documents({"organization_id": world.lab}) == count


# ---------------------------------------------------------------- from the board
@run_async
async def test_the_board_moves_a_task_into_a_sprint_and_metrics_follow(
    dbs: Databases, seeded: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = seeded
    monkeypatch.setattr(BoardScreen, "_follow_changes", lambda self, *_: None)
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        app.show("board")
        await settle(pilot)
        board = app.screen
        assert isinstance(board, BoardScreen)
        assert board._select_task(str(oid(0x47)))  # TASK-0007, in the backlog
        await keys(pilot, "b")
        picker = app.screen
        assert isinstance(picker, PickScreen)
        assert [value for _, value in picker.options] == [S3, S4, "backlog"]
        await keys(pilot, *"검색", "enter")
        assert task(dbs, world, 7)["sprint_id"] == S4
        metrics = await metrics_when(pilot, dbs, world, S4, lambda m: m["total_tasks"] == 1)
        assert metrics["total_tasks"] == 1
        assert message_of(app) == "TASK-0007 is now in 스프린트 4 · 검색."
        # A move on the board: the sprint's metrics follow (no recompute by hand).
        assert board._select_task(str(oid(0x45)))  # TASK-0005, todo in sprint 3
        await keys(pilot, "greater_than_sign")
        metrics = await metrics_when(pilot, dbs, world, S3, lambda m: m["todo_tasks"] == 1)
        assert (metrics["todo_tasks"], metrics["in_progress_tasks"]) == (1, 3)
        await keys(pilot, "b")
        await keys(pilot, *"backlog", "enter")
        assert task(dbs, world, 5)["sprint_id"] is None
        metrics = await metrics_when(pilot, dbs, world, S3, lambda m: m["total_tasks"] == 5)
        assert metrics["total_tasks"] == 5


# ---------------------------------------------------------------- snapshots
def sprint_app(dbs: Databases, world: World) -> Any:
    return app_as(dbs, "minjun", world.lab)


def sprint_steps(*pressed: str) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def open_and_press(pilot: Pilot[Any]) -> None:
        await pilot.press("3")
        await settle(pilot)
        for key in pressed:
            await pilot.press(key)
            await settle(pilot)

    return snapshot_before(open_and_press)


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
@pytest.mark.parametrize(
    "view, pressed",
    [("list", ()), ("burndown", ("b",)), ("velocity", ("v",)), ("retro", ("down", "down", "w"))],
    ids=["list", "burndown", "velocity", "retro"],
)
def test_snapshot(dbs: Databases, seeded: World, snap_compare: Any, view: str,
                  pressed: tuple[str, ...], size: tuple[int, int]) -> None:
    assert snap_compare(sprint_app(dbs, seeded), terminal_size=size,
                        run_before=sprint_steps(*pressed))


def test_snapshot_burndown_no_color_80x24(
    dbs: Databases, seeded: World, snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert snap_compare(sprint_app(dbs, seeded), terminal_size=(80, 24),
                        run_before=sprint_steps("b"))
