"""The Activity screen: activity_logs documents written by the board service and inserted in bulk,
read back page by page (keyset) and through each filter, asserted against the database; the
entry view; who may read; snapshots at 80x24 and 160x50 with Korean names and fixed times.

The screen is opened with ``switch_screen`` once sign-in has settled (the app's stack is the
blank default screen and the current one), so these tests do not depend on its navigation key.
"""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Any

import psycopg
import pytest
from bson import ObjectId
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import Static

from creatia_tui.app import Destination
from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.activity import ActivityFilter, activity_actions, read_activity
from creatia_tui.data.board import BoardService, TaskDraft
from creatia_tui.data.db import Databases
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import PermissionDenied
from creatia_tui.screens.activity import (
    PAGE_SIZE,
    WHO_WIDTH,
    ActivityEntryScreen,
    ActivityScreen,
)
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.tables import PagedTable
from tests.conftest import World
from tests.tui import (
    app_as,
    assert_down_reads_the_next_page,
    assert_pages_through,
    assert_refusals_said,
    cell_texts,
    choose,
    message_of,
    run_async,
    settle,
    shown,
    snapshot_before,
)

UTC = dt.timezone.utc
AGENT = "creatia-tui/0.1.0 (테스트 단말; TERM=xterm)"
METADATA = {"user_agent": AGENT, "ip_address": "203.0.113.7", "api_version": "v1",
            "client_type": "tui"}
ACTIONS = ("task.created", "task.assigned", "task.status_changed", "task.updated")


# ---------------------------------------------------------------- documents to read
def actor(dbs: Databases, user_id: str, organization_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, organization_id)


def log_doc(
    organization_id: str,
    user_id: str,
    action: str,
    at: dt.datetime,
    changes: dict[str, Any] | None = None,
    resource_type: str | None = "Task",
    resource_id: str | None = None,
    _id: ObjectId | None = None,
) -> dict[str, Any]:
    return {
        "_id": _id or ObjectId(),
        "organization_id": organization_id,
        "user_id": user_id,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id or str(ObjectId()),
        "changes": changes,
        "metadata": METADATA,
        "timestamp": at,
        "created_at": at,
    }


def bulk_logs(dbs: Databases, world: World, count: int = 120) -> list[dict[str, Any]]:
    """`count` entries in lab within the last hours (the server's TTL sweeps entries older than
    30 days), three to a millisecond so page boundaries fall inside ties (ordered by _id); users,
    actions, types and five tasks in turn. Plus a few of acme's, which lab never shows."""
    now = utcnow()
    people = (world.minjun, world.jiho, world.seoyeon)
    tasks = [str(ObjectId()) for _ in range(5)]
    docs = [
        log_doc(
            world.lab,
            people[n % 3],
            ACTIONS[n % len(ACTIONS)],
            now - dt.timedelta(minutes=n // 3),
            {"status": {"from": "todo", "to": "in_progress"}},
            "Task" if n % 10 else "Sprint",
            tasks[n % 5],
        )
        for n in range(count)
    ]
    acme = [log_doc(world.acme, world.bob, "task.updated", now) for _ in range(5)]
    dbs.mongo.activity_logs.insert_many(docs + acme)
    return docs


def expected(dbs: Databases, organization_id: str, **query: Any) -> list[str]:
    """The organization's entry ids, newest first, ties by _id (the server's own order)."""
    found = dbs.mongo.activity_logs.find(
        {"organization_id": organization_id, **query},
        {"_id": 1},
        sort=[("created_at", -1), ("_id", -1)],
    )
    return [str(doc["_id"]) for doc in found]


# ---------------------------------------------------------------- screen helpers
async def open_activity(pilot: Pilot[Any]) -> ActivityScreen:
    await settle(pilot)
    await pilot.app.switch_screen(ActivityScreen())
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, ActivityScreen)
    return screen


# ---------------------------------------------------------------- what a row says
@run_async
async def test_the_boards_writes_are_listed_newest_first_in_words(
    dbs: Databases, world: World
) -> None:
    board = BoardService(dbs, actor(dbs, world.minjun, world.lab))
    task = board.create(TaskDraft(title="로그인 화면 다시 그리기", priority="low"))
    task, _ = board.move(task, "in_progress", 1000.0)
    task = board.assign(task, world.jiho)
    task = board.set_priority(task, "high")
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        ids = expected(dbs, world.lab)
        assert shown(screen) == ids and len(ids) == 4
        table = screen.query_one(PagedTable)
        assert [str(c.value) for c in table.columns] == ["time", "who", "action", "what"]
        rows = [cell_texts(table, entry) for entry in ids]
        assert [(r["who"], r["action"]) for r in rows] == [
            ("김민준", "task.updated"), ("김민준", "task.assigned"),
            ("김민준", "task.status_changed"), ("김민준", "task.created"),
        ]
        assert rows[0]["what"] == "priority low → high"
        assert rows[1]["what"] == "assignee (none) → 박지호"  # a member, by name
        assert rows[2]["what"] == "status todo → in_progress"
        assert rows[3]["what"].startswith(f"{task.task_id} 로그인 화면")  # cut to the column
        # The time in UTC to the minute, as MongoDB holds it.
        newest = dbs.mongo.activity_logs.find_one({"organization_id": world.lab,
                                                   "_id": ObjectId(ids[0])})
        assert newest is not None
        assert rows[0]["time"] == newest["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        assert message_of(app) == "4 entries · end of activity"
        # The line under the table: the change, the task, the client.
        detail = str(screen.query_one("#activity-detail", Static).render())
        assert detail == f"priority low → high · Task {task.id} · from tui"


@run_async
async def test_wide_terminals_show_the_resource_the_task_key_when_known(
    dbs: Databases, world: World
) -> None:
    board = BoardService(dbs, actor(dbs, world.minjun, world.lab))
    task = board.create(TaskDraft(title="결제 오류 수정"))
    board.move(task, "review", 1000.0)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_activity(pilot)
        table = screen.query_one(PagedTable)
        assert [str(c.value) for c in table.columns] == [
            "time", "who", "action", "resource", "what",
        ]
        moved, created = (cell_texts(table, entry) for entry in shown(screen))
        assert created["resource"] == task.task_id  # the key is in a creation's changes
        assert moved["resource"] == task.id[-8:]  # else the ObjectId's distinctive tail
        assert moved["what"] == "status todo → review"


# ---------------------------------------------------------------- paging
@run_async
async def test_pages_by_keyset_with_none_missing_and_none_twice(
    dbs: Databases, world: World
) -> None:
    bulk_logs(dbs, world, 120)
    every = expected(dbs, world.lab)
    assert len(every) == 120
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_activity(pilot)
        await assert_pages_through(pilot, every, "end of activity")


@run_async
async def test_down_on_the_last_row_reads_the_next_page(dbs: Databases, world: World) -> None:
    bulk_logs(dbs, world, 60)
    every = expected(dbs, world.lab)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        await open_activity(pilot)
        await assert_down_reads_the_next_page(pilot, every, "end of activity")


# ---------------------------------------------------------------- filters
@run_async
async def test_the_user_filter_offers_active_members_and_pages_through_one_persons_entries(
    dbs: Databases, world: World
) -> None:
    bulk_logs(dbs, world, 180)  # 60 each for minjun, jiho and seoyeon
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        labels = [label for label, _ in screen.query_one("#activity-user", Choice).options]
        # Active members by name; 떠난 사람 (deactivated) and acme's bob are not offered.
        assert labels == ["anyone", "김민준", "박지호", "이서연", "최유나"]

        await choose(pilot, screen, "activity-user", world.seoyeon)
        by_seoyeon = expected(dbs, world.lab, user_id=world.seoyeon)
        assert len(by_seoyeon) == 60
        assert shown(screen) == by_seoyeon[:PAGE_SIZE]
        await pilot.press("n")
        await settle(pilot)
        assert shown(screen) == by_seoyeon
        table = screen.query_one(PagedTable)
        assert {cell_texts(table, e)["who"] for e in shown(screen)} == {"이서연"}
        assert message_of(app) == "60 entries · end of activity"

        await choose(pilot, screen, "activity-user", world.yuna)  # a viewer who did nothing
        assert shown(screen) == []
        assert message_of(app) == "No entries match these filters."

        await choose(pilot, screen, "activity-user", "")  # anyone again
        assert shown(screen) == expected(dbs, world.lab)[:PAGE_SIZE]


@run_async
async def test_the_action_and_resource_filters_alone_and_together(
    dbs: Databases, world: World
) -> None:
    bulk_logs(dbs, world, 120)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        menu = [value for _, value in screen.query_one("#activity-action", Choice).options]
        assert menu == ["", *activity_actions(dbs, actor(dbs, world.minjun, world.lab))]

        await choose(pilot, screen, "activity-action", "task.assigned")
        assigned = expected(dbs, world.lab, action="task.assigned")
        assert shown(screen) == assigned and len(assigned) == 30
        assert message_of(app) == "30 entries · end of activity"

        await choose(pilot, screen, "activity-action", "")
        await choose(pilot, screen, "activity-resource", "Sprint")
        sprints = expected(dbs, world.lab, resource_type="Sprint")
        assert shown(screen) == sprints and len(sprints) == 12

        await choose(pilot, screen, "activity-resource", "Task")
        await choose(pilot, screen, "activity-action", "task.created")
        await choose(pilot, screen, "activity-user", world.minjun)
        narrowed = expected(
            dbs, world.lab, resource_type="Task", action="task.created", user_id=world.minjun
        )
        assert shown(screen) == narrowed and 0 < len(narrowed) < 30

        await choose(pilot, screen, "activity-action", "task.deleted")  # nobody deleted anything
        assert shown(screen) == []
        assert message_of(app) == "No entries match these filters."


# ---------------------------------------------------------------- the entry view
@run_async
async def test_enter_shows_changes_and_metadata_as_json_and_o_shows_only_that_task(
    dbs: Databases, world: World
) -> None:
    bulk_logs(dbs, world, 20)
    now = utcnow()
    task = str(ObjectId())
    status = log_doc(world.lab, world.seoyeon, "task.status_changed",
                     now + dt.timedelta(seconds=1),
                     {"status": {"from": "todo", "to": "in_progress"}}, resource_id=task)
    retitled = log_doc(world.lab, world.jiho, "task.updated", now + dt.timedelta(seconds=2),
                       {"title": {"from": "결제 오류", "to": "결제 오류 수정: 카드 승인 실패"}},
                       resource_id=task)
    dbs.mongo.activity_logs.insert_many([status, retitled])
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        assert shown(screen)[:2] == [str(retitled["_id"]), str(status["_id"])]
        await pilot.press("down", "enter")
        await settle(pilot)
        entry_view = app.screen
        assert isinstance(entry_view, ActivityEntryScreen)
        body = str(entry_view.query_one("#activity-entry-body", Static).render())
        assert '"status": {\n    "from": "todo",\n    "to": "in_progress"\n  }' in body
        assert f'"user_agent": "{AGENT}"' in body  # Korean as it is, not \uXXXX
        assert '"client_type": "tui"' in body
        assert body.index("Changes") < body.index('"from"') < body.index("Metadata")
        for value in ("task.status_changed", "이서연", str(status["_id"]), world.seoyeon, task,
                      "크리에이티아 연구소", world.lab):
            assert value in body
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == str(status["_id"])
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen

        await pilot.press("up", "enter")  # the Korean title change
        await settle(pilot)
        body = str(app.screen.query_one("#activity-entry-body", Static).render())
        assert '"from": "결제 오류"' in body and '"to": "결제 오류 수정: 카드 승인 실패"' in body

        await pilot.press("o")  # only this task's activity
        await settle(pilot)
        assert app.screen is screen
        resource = screen.query_one("#activity-resource", Choice)
        assert resource.value == f"Task:{task}"
        assert resource.options[resource.index][0] == f"Task {task[-8:]}"
        assert shown(screen) == expected(dbs, world.lab, resource_type="Task", resource_id=task)
        assert shown(screen) == [str(retitled["_id"]), str(status["_id"])]
        assert message_of(app) == "2 entries · end of activity"
        assert screen.filters == ActivityFilter(resource_type="Task", resource_id=task)

        await choose(pilot, screen, "activity-resource", "")  # every resource again
        assert shown(screen) == expected(dbs, world.lab)


@run_async
async def test_y_copies_the_highlighted_entry_id(dbs: Databases, world: World) -> None:
    bulk_logs(dbs, world, 5)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        await pilot.press("down", "down", "y")
        await pilot.pause()
        assert app.clipboard == shown(screen)[2] == expected(dbs, world.lab)[2]


@run_async
async def test_r_reads_the_newest_entries_again(dbs: Databases, world: World) -> None:
    bulk_logs(dbs, world, 5)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        before = shown(screen)
        board = BoardService(dbs, actor(dbs, world.jiho, world.lab))
        board.create(TaskDraft(title="새 작업"))
        assert shown(screen) == before  # not until asked
        await pilot.press("r")
        await settle(pilot)
        assert shown(screen) == expected(dbs, world.lab)
        assert shown(screen)[1:] == before
        newest = cell_texts(screen.query_one(PagedTable), shown(screen)[0])
        assert (newest["who"], newest["action"]) == ("박지호", "task.created")
        assert message_of(app) == "6 entries · end of activity"


@run_async
async def test_long_korean_names_and_changes_are_cut_to_their_columns(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = '황보 세영 정보보안 감사 총괄 책임자' WHERE id = %s",
                     (world.seoyeon,))
    retitled = {"title": {"from": "결제 오류", "to": "결제 오류 수정: 카드 승인 실패 시 재시도"}}
    doc = log_doc(world.lab, world.seoyeon, "task.updated", utcnow(), retitled)
    dbs.mongo.activity_logs.insert_one(doc)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        table = screen.query_one(PagedTable)
        row = cell_texts(table, str(doc["_id"]))
        assert row["who"].startswith("황보") and row["who"].endswith("…")
        assert cell_len(row["who"]) <= WHO_WIDTH
        what = next(c.width for c in table.columns.values() if c.key.value == "what")
        assert row["what"].startswith("title 결제 오류 → 결제") and row["what"].endswith("…")
        assert cell_len(row["what"]) <= what
        # The whole of it is one line under the table, and in the entry view.
        detail = str(screen.query_one("#activity-detail", Static).render())
        assert "재시도" in detail
        # Every row fits the terminal: no column pushed off the right edge.
        total = sum(c.get_render_width(table) for c in table.columns.values())
        assert total <= 80 - 2


# ---------------------------------------------------------------- who may read
@run_async
async def test_a_viewer_reads_the_activity(dbs: Databases, world: World) -> None:
    bulk_logs(dbs, world, 10)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        activity = Destination("activity", "Activity", "4", ActivityScreen)
        assert app.may_open(activity) is None  # tasks.read: a viewer holds it
        screen = await open_activity(pilot)
        assert shown(screen) == expected(dbs, world.lab)
        assert message_of(app) == "10 entries · end of activity"
    page = read_activity(dbs, actor(dbs, world.yuna, world.lab))
    assert [entry.id for entry in page.entries] == expected(dbs, world.lab)


@run_async
async def test_an_outsider_cannot_read_another_organizations_activity(
    dbs: Databases, world: World
) -> None:
    """bob belongs to acme (and the deactivated dormant) only: lab is not his to choose, his
    screen shows acme's entries, and the service refuses him lab's."""
    bulk_logs(dbs, world, 10)
    app = app_as(dbs, "bob", world.lab)  # asks for lab; he cannot act there
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        session = app.session
        assert session is not None and session.current is not None
        assert session.choice(world.lab) is None
        assert session.current.id == world.acme
        screen = await open_activity(pilot)
        assert shown(screen) == expected(dbs, world.acme) and len(shown(screen)) == 5
    bob_in_lab = actor(dbs, world.bob, world.lab)
    with pytest.raises(PermissionDenied):
        read_activity(dbs, bob_in_lab)
    with pytest.raises(PermissionDenied):
        activity_actions(dbs, bob_in_lab)


@run_async
async def test_a_refusal_while_open_is_said_in_one_line(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    """yuna's membership deactivated after the screen opened: the next read says so."""
    bulk_logs(dbs, world, 60)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_activity(pilot)
        before = shown(screen)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE organization_memberships SET active = false WHERE id = %s",
                (world.memberships[(world.yuna, world.lab)],),
            )
        other_filter = partial(choose, pilot, screen, "activity-action", "task.created")
        await assert_refusals_said(pilot, before, "tasks.read", other_filter)


# ---------------------------------------------------------------- snapshots
# Fixed ids and fixed times so the pictures stay the same from day to day. The times are in
# January 2030: the server's TTL index sweeps entries whose created_at is over 30 days in the
# past, and future ones are never swept (the screen's first read has no upper bound).
SNAP_ORG = "5e1ec7ed-0000-4000-8000-00000000ac71"
HANEUL = "5e1ec7ed-0000-4000-8000-0000000000b1"
SEYEONG = "5e1ec7ed-0000-4000-8000-0000000000b2"
JIMIN = "5e1ec7ed-0000-4000-8000-0000000000b3"
SNAP_NOW = dt.datetime(2030, 1, 6, 9, 30, tzinfo=UTC)


def snap_oid(n: int) -> ObjectId:
    return ObjectId(f"5e1ec7ed{n:016x}")


def snapshot_world(dbs: Databases, pg_dsn: str) -> None:
    """An organization and three members with fixed ids, and 24 entries on four tasks with fixed
    times and ids. root (platform admin) reads it."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, subdomain, plan, active) "
            "VALUES (%s, '한빛 디자인 스튜디오', 'hanbit', 'pro', true)",
            (SNAP_ORG,),
        )
        for user_id, email, name, role in (
            (HANEUL, "haneul@example.com", "강하늘", "owner"),
            (SEYEONG, "seyeong@example.com", "황보 세영 정보보안 감사 총괄 책임자", "admin"),
            (JIMIN, "jimin@example.com", "한지민", "member"),
        ):
            conn.execute(
                "INSERT INTO users (id, email, encrypted_password, name, role, active) "
                "VALUES (%s, %s, 'x', %s, 'user', true)",
                (user_id, email, name),
            )
            conn.execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role, joined_at) "
                "VALUES (%s, %s, %s, '2026-03-02T09:00:00Z')",
                (user_id, SNAP_ORG, role),
            )
    tasks = [str(snap_oid(900 + n)) for n in range(4)]
    kinds: list[tuple[str, str, dict[str, Any] | None]] = [
        (SEYEONG, "task.status_changed", {"status": {"from": "todo", "to": "in_progress"}}),
        (HANEUL, "task.created", {"task_id": "TASK-0012", "title": "로그인 화면 다시 그리기"}),
        (HANEUL, "task.assigned", {"assignee_id": {"from": None, "to": JIMIN}}),
        (JIMIN, "task.updated", {"priority": {"from": "low", "to": "high"}}),
        (SEYEONG, "task.updated",
         {"title": {"from": "결제 오류", "to": "결제 오류 수정: 카드 승인 실패 시 재시도"}}),
        (JIMIN, "task.time_logged", {"actual_hours": {"from": 1.5, "to": 3.0}}),
        (HANEUL, "task.commented", None),
        (SEYEONG, "task.status_changed", {"status": {"from": "review", "to": "done"}}),
    ]
    docs = []
    for n in range(24):
        user_id, action, changes = kinds[n % len(kinds)]
        docs.append(log_doc(
            SNAP_ORG, user_id, action, SNAP_NOW - dt.timedelta(hours=5 * n, minutes=n),
            changes, "Task", tasks[n % 4], _id=snap_oid(n + 1),
        ))
    dbs.mongo.activity_logs.insert_many(docs)


def snapshot_app(dbs: Databases, pg_dsn: str) -> Any:
    snapshot_world(dbs, pg_dsn)
    return app_as(dbs, "root", SNAP_ORG)


async def switch_to_activity(pilot: Pilot[Any]) -> None:
    await pilot.app.switch_screen(ActivityScreen())


def test_snapshot_activity_80x24(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn)
    assert snap_compare(app, terminal_size=(80, 24),
                        run_before=snapshot_before(switch_to_activity))


def test_snapshot_activity_160x50(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn)
    assert snap_compare(app, terminal_size=(160, 50),
                        run_before=snapshot_before(switch_to_activity))


def test_snapshot_activity_entry_80x24(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn)

    async def open_entry(pilot: Pilot[Any]) -> None:
        await pilot.press("enter")  # the newest: 황보 세영's status change, todo → in_progress

    steps = snapshot_before(switch_to_activity, open_entry)
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)
