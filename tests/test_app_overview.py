"""The app shell and the home screen, against the real PostgreSQL and MongoDB of conftest.

Pilot tests assert on what the databases hold; snapshot tests pin the layout at 80x24 and 160x50
(latency is hidden with ``show_latency=False``: it is the only text that varies per run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from creatia_tui.app import CreatiaApp, HelpScreen
from creatia_tui.config import Settings
from creatia_tui.data.db import Databases
from creatia_tui.screens.home import HomeScreen
from creatia_tui.screens.overview import NAME_WIDTH, OverviewScreen
from creatia_tui.screens.sign_in import SignInScreen
from creatia_tui.widgets.status_line import ServiceHealth, StatusLine, render_status
from tests.conftest import World
from tests.tui import app_as, cell_texts, message_of, press, run_async, settle, snapshot_before

LONG_KOREAN_NAME = "크리에이티아 연구소 플랫폼 운영팀"  # 33 cells: wider than the column
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/none"
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- test data
def add_tasks(dbs: Databases, org_id: str, prefix: str, **counts: int) -> None:
    docs: list[dict[str, Any]] = []
    for status, count in counts.items():
        for _ in range(count):
            n = len(docs) + 1
            docs.append(
                {
                    "organization_id": org_id,
                    "task_id": f"{prefix}-{n}",
                    "title": f"작업 {n}",
                    "status": status,
                    "position": float(n),
                    "created_at": BASE_TIME + timedelta(minutes=n),
                    "updated_at": BASE_TIME + timedelta(minutes=n),
                }
            )
    dbs.mongo.tasks.insert_many(docs)


@pytest.fixture
def seeded(dbs: Databases, world: World, pg_dsn: str) -> World:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE organizations SET name = %s WHERE id = %s", (LONG_KOREAN_NAME, world.lab)
        )
    add_tasks(dbs, world.lab, "LAB", todo=3, in_progress=2, review=1, done=4)
    add_tasks(dbs, world.acme, "ACME", todo=1, done=2)
    return world


@pytest.fixture
def unreachable_dbs(settings: Settings) -> Iterator[Databases]:
    """PostgreSQL on a closed port; MongoDB still up."""
    broken = Databases(dataclasses.replace(settings, pg_dsn=UNREACHABLE_PG))
    yield broken
    broken.close()


# ---------------------------------------------------------------- helpers
async def open_overview(pilot: Pilot[Any]) -> None:
    await settle(pilot)
    await pilot.press("0")
    await settle(pilot)


def table_of(app: CreatiaApp) -> DataTable[Any]:
    return app.screen.query_one("#organizations", DataTable)


def text_of(app: CreatiaApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


# ---------------------------------------------------------------- pilot tests
@run_async
async def test_home_lists_the_users_organizations_with_counts_from_both_databases(
    dbs: Databases, seeded: World
) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_overview(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert app.title == f"creatia-tui · {LONG_KOREAN_NAME}"
        assert app.sub_title == "김민준 · owner"
        table = table_of(app)
        # minjun belongs to lab and acme; the deactivated organization is not his.
        assert sorted(str(k.value) for k in table.rows) == sorted([seeded.lab, seeded.acme])
        assert not table.loading

        lab = cell_texts(table, seeded.lab)
        assert lab["members"] == "5"
        assert (lab["todo"], lab["in_progress"], lab["review"], lab["done"]) == ("3", "2", "1", "4")
        assert lab["active"] == "yes"
        # The long Korean name is cut to the column's cells with an ellipsis, not wrapped.
        assert lab["name"].endswith("…")
        assert lab["name"].startswith("크리에이티아 연구소")
        assert cell_len(lab["name"]) <= NAME_WIDTH

        acme = cell_texts(table, seeded.acme)
        assert (acme["name"], acme["members"], acme["todo"], acme["done"]) == (
            "Acme Robotics",
            "2",
            "1",
            "2",
        )
        # At 80 columns the table drops subdomain and plan; the detail line names them.
        assert [str(k.value) for k in table.columns] == [
            "name",
            "active",
            "members",
            "todo",
            "in_progress",
            "review",
            "done",
        ]
        # The cursor starts on the organization the user acts in.
        detail = text_of(app, "#home-detail")
        assert LONG_KOREAN_NAME in detail
        assert "creatia-lab" in detail and "enterprise" in detail
        assert "6 open of 10 tasks" in detail
        assert message_of(app) == "2 organizations"


@run_async
async def test_a_platform_admin_sees_every_organization(dbs: Databases, seeded: World) -> None:
    app = app_as(dbs, "root", seeded.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        await open_overview(pilot)
        table = table_of(app)
        assert table.row_count == 3
        dormant = cell_texts(table, seeded.dormant)
        assert (dormant["active"], dormant["members"], dormant["todo"]) == ("no", "1", "0")
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == [
            "Organization",
            "Subdomain",
            "Plan",
            "Active",
            "Members",
            "Todo",
            "In progress",
            "Review",
            "Done",
        ]
        lab = cell_texts(table, seeded.lab)
        assert (lab["subdomain"], lab["plan"]) == ("creatia-lab", "enterprise")
        assert app.sub_title == "관리자 · platform admin"


@run_async
async def test_enter_on_a_row_switches_organization(dbs: Databases, seeded: World) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_overview(pilot)
        table = table_of(app)
        table.move_cursor(row=table.get_row_index(seeded.acme))
        await pilot.press("enter")
        await settle(pilot)
        session = app.session
        assert session is not None and session.current is not None
        assert session.current.id == seeded.acme
        assert app.sub_title == "김민준 · member"
        assert "roles.create" not in session.permissions  # a member in acme
        assert app.title == "creatia-tui · Acme Robotics"


@run_async
async def test_refresh_reads_the_databases_again(
    dbs: Databases, seeded: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_overview(pilot)
        table = table_of(app)
        table.move_cursor(row=table.get_row_index(seeded.acme))
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO organization_memberships (user_id, organization_id) "
                "VALUES (%s, %s)",
                (seeded.jiho, seeded.acme),
            )
        add_tasks(dbs, seeded.acme, "ACME2", in_progress=5)

        await pilot.press("r")
        await settle(pilot)
        acme = cell_texts(table, seeded.acme)
        assert (acme["members"], acme["in_progress"]) == ("3", "5")
        # Only counts moved: the cells were updated in place, the cursor stayed.
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        assert row_key.value == seeded.acme
        assert table.row_count == 2


@run_async
async def test_help_opens_with_question_mark_and_closes_with_escape(
    dbs: Databases, seeded: World
) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = dict((d, k) for k, d in app.screen.keys)
        assert keys["Refresh"] == "r"
        assert keys["Quit"].startswith("q")
        assert keys["Help"] == "?"
        assert keys["Go to Members"] == "6" and keys["Go to Audit log"] == "8"
        assert keys["Org"] == "^o"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


@run_async
async def test_q_quits(dbs: Databases, seeded: World) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


@run_async
async def test_status_line_reports_both_databases_up(dbs: Databases, seeded: World) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    app.show_latency = True
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        status = app.screen.query_one(StatusLine)
        line = status.render().plain
        assert "PostgreSQL ● up" in line and "MongoDB ● up" in line
        assert line.count(" ms") == 2
        assert all(s.up and s.latency_ms is not None for s in status.services)
        # The next poll is armed only now that this one has finished.
        assert status._timer is not None
        assert not [w for w in app.workers if w.node is status and not w.is_finished]


@run_async
async def test_unreachable_postgres_shows_one_line_error_and_app_keeps_running(
    unreachable_dbs: Databases,
) -> None:
    app = CreatiaApp(unreachable_dbs, email="minjun@example.com", password="whatever1")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        text = app.screen.error_text
        assert text.startswith("PostgreSQL at 127.0.0.1:1/none is unavailable:")
        assert "\n" not in text and "Traceback" not in text
        assert "whatever1" not in text

        status = app.screen.query_one(StatusLine)
        line = status.render().plain
        assert "PostgreSQL ● down" in line and "MongoDB ● up" in line
        # Still answering the keyboard: ctrl+q quits cleanly.
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


def test_a_long_reason_does_not_hide_the_other_database() -> None:
    heads = []
    for service in (
        ServiceHealth("PostgreSQL", up=False, error="x" * 200),
        ServiceHealth("MongoDB", up=True, latency_ms=2.4),
    ):
        widget = StatusLine.__new__(StatusLine)
        widget.show_latency = True
        heads.append(widget._head(service))
    line = render_status(heads, ["PostgreSQL is unavailable: " + "x" * 200, None], 80)
    assert line.cell_length <= 80
    assert line.plain.startswith("PostgreSQL ● down: PostgreSQL is unavailable: x")
    assert line.plain.endswith("MongoDB ● up 2 ms")
    assert "…" in line.plain


# ---------------------------------------------------------------- snapshots
def test_snapshot_overview_80x24(dbs: Databases, seeded: World, snap_compare: Any) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("0")))


def test_snapshot_overview_160x50(dbs: Databases, seeded: World, snap_compare: Any) -> None:
    app = app_as(dbs, "root", seeded.lab)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before(press("0")))


def test_snapshot_overview_no_color_80x24(
    dbs: Databases, seeded: World, snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = app_as(dbs, "minjun", seeded.lab)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("0")))


def test_snapshot_help_80x24(dbs: Databases, seeded: World, snap_compare: Any) -> None:
    app = app_as(dbs, "minjun", seeded.lab)
    assert snap_compare(
        app, terminal_size=(80, 24), run_before=snapshot_before(press("question_mark"))
    )


def test_snapshot_unreachable_postgres_80x24(unreachable_dbs: Databases, snap_compare: Any) -> None:
    app = CreatiaApp(
        unreachable_dbs, email="minjun@example.com", password="whatever1", show_latency=False
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before())
