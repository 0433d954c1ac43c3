"""The app shell and the home screen, against the real PostgreSQL and MongoDB of conftest.

Pilot tests assert on what the databases hold; snapshot tests pin the layout at 80x24 and 160x50
(latency is hidden with ``show_latency=False``: it is the only text that varies per run).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Coroutine, Iterator
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
from creatia_tui.screens.home import NAME_WIDTH, HomeScreen
from creatia_tui.widgets.status_line import ServiceHealth, StatusLine, render_status

LONG_KOREAN_NAME = "크리에이티아 연구소 플랫폼 운영팀"  # 33 cells: wider than the column
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/none"
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)


# ---------------------------------------------------------------- test data
def add_org(pg_dsn: str, name: str, subdomain: str, plan: str = "free", active: bool = True) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO organizations (name, subdomain, plan, active) "
            "VALUES (%s, %s, %s, %s) RETURNING id::text",
            (name, subdomain, plan, active),
        ).fetchone()
    assert row is not None
    return str(row[0])


def add_user(pg_dsn: str, email: str, name: str) -> str:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO users (email, encrypted_password, name) VALUES (%s, 'x', %s) "
            "RETURNING id::text",
            (email, name),
        ).fetchone()
    assert row is not None
    return str(row[0])


def add_member(pg_dsn: str, user_id: str, org_id: str, active: bool = True) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organization_memberships (user_id, organization_id, role, active) "
            "VALUES (%s, %s, 'member', %s)",
            (user_id, org_id, active),
        )


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


@dataclasses.dataclass
class Seeded:
    lab: str
    acme: str
    dormant: str


@pytest.fixture
def seeded(dbs: Databases, pg_dsn: str) -> Seeded:
    lab = add_org(pg_dsn, LONG_KOREAN_NAME, "creatia-lab", "enterprise")
    acme = add_org(pg_dsn, "Acme Robotics", "acme", "team")
    dormant = add_org(pg_dsn, "휴면 조직", "dormant", active=False)
    minjun = add_user(pg_dsn, "minjun@example.com", "김민준")
    seoyeon = add_user(pg_dsn, "seoyeon@example.com", "이서연")
    jiho = add_user(pg_dsn, "jiho@example.com", "박지호")
    for user in (minjun, seoyeon, jiho):
        add_member(pg_dsn, user, lab)
    add_member(pg_dsn, minjun, acme)
    add_member(pg_dsn, jiho, dormant, active=False)  # inactive: not counted
    add_tasks(dbs, lab, "LAB", todo=3, in_progress=2, review=1, done=4)
    add_tasks(dbs, acme, "ACME", todo=1, done=2)
    return Seeded(lab, acme, dormant)


@pytest.fixture
def unreachable_dbs(settings: Settings) -> Iterator[Databases]:
    """PostgreSQL on a closed port; MongoDB still up."""
    broken = Databases(dataclasses.replace(settings, pg_dsn=UNREACHABLE_PG))
    yield broken
    broken.close()


# ---------------------------------------------------------------- helpers
def run_async(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async pilot test in its own event loop (the project has no asyncio plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


async def settle(pilot: Pilot[Any]) -> None:
    """Let the workers finish and their messages reach the widgets."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def table_of(app: CreatiaApp) -> DataTable[Any]:
    return app.screen.query_one("#organizations", DataTable)


def row_of(table: DataTable[Any], org_id: str) -> dict[str, str]:
    values = table.get_row(org_id)
    return {
        str(key.value): str(getattr(value, "plain", value))
        for key, value in zip(table.columns, values, strict=True)
    }


def text_of(app: CreatiaApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


# ---------------------------------------------------------------- pilot tests
@run_async
async def test_home_lists_organizations_with_counts_from_both_databases(
    dbs: Databases, seeded: Seeded
) -> None:
    app = CreatiaApp(dbs, user_email="minjun@example.com")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.title == "creatia-tui"
        assert app.sub_title == "minjun@example.com"
        table = table_of(app)
        assert table.row_count == 3
        assert not table.loading

        lab = row_of(table, seeded.lab)
        assert lab["members"] == "3"
        assert (lab["todo"], lab["in_progress"], lab["review"], lab["done"]) == ("3", "2", "1", "4")
        assert lab["active"] == "yes"
        # The long Korean name is cut to the column's cells with an ellipsis, not wrapped.
        assert lab["name"].endswith("…")
        assert lab["name"].startswith("크리에이티아 연구소")
        assert cell_len(lab["name"]) <= NAME_WIDTH

        acme = row_of(table, seeded.acme)
        assert (acme["name"], acme["members"], acme["todo"], acme["done"]) == (
            "Acme Robotics",
            "1",
            "1",
            "2",
        )
        dormant = row_of(table, seeded.dormant)
        assert (dormant["active"], dormant["members"], dormant["todo"]) == ("no", "0", "0")

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
        table.move_cursor(row=table.get_row_index(seeded.lab))
        await pilot.pause()
        detail = text_of(app, "#home-detail")
        assert LONG_KOREAN_NAME in detail
        assert "creatia-lab" in detail and "enterprise" in detail
        assert "6 open of 10 tasks" in detail
        assert text_of(app, "#home-message") == "3 organizations"


@run_async
async def test_wide_terminal_shows_every_column(dbs: Databases, seeded: Seeded) -> None:
    app = CreatiaApp(dbs)
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(pilot)
        table = table_of(app)
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
        lab = row_of(table, seeded.lab)
        assert (lab["subdomain"], lab["plan"]) == ("creatia-lab", "enterprise")
        assert app.sub_title == "not signed in"


@run_async
async def test_refresh_reads_the_databases_again(
    dbs: Databases, seeded: Seeded, pg_dsn: str
) -> None:
    app = CreatiaApp(dbs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        table = table_of(app)
        table.move_cursor(row=table.get_row_index(seeded.acme))
        assert table.row_count == 3

        design = add_org(pg_dsn, "디자인 스튜디오", "design", "team")
        add_member(pg_dsn, add_user(pg_dsn, "seojun@example.com", "최서준"), design)
        add_tasks(dbs, design, "DES", review=2)
        add_tasks(dbs, seeded.acme, "ACME2", in_progress=5)

        await pilot.press("r")
        await settle(pilot)
        assert table.row_count == 4
        new = row_of(table, design)
        assert (new["name"], new["members"], new["review"], new["todo"]) == (
            "디자인 스튜디오",
            "1",
            "2",
            "0",
        )
        assert row_of(table, seeded.acme)["in_progress"] == "5"
        # The rows were rebuilt (a new organization), the cursor stayed on the same one.
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        assert row_key.value == seeded.acme

        # A refresh where only counts move updates cells in place.
        add_tasks(dbs, seeded.lab, "LAB2", done=1)
        await pilot.press("r")
        await settle(pilot)
        assert row_of(table, seeded.lab)["done"] == "5"
        assert table.row_count == 4


@run_async
async def test_help_opens_with_question_mark_and_closes_with_escape(
    dbs: Databases, seeded: Seeded
) -> None:
    app = CreatiaApp(dbs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        keys = dict((d, k) for k, d in app.screen.keys)
        assert keys["Refresh"] == "r"
        assert keys["Quit"].startswith("q")
        assert keys["Help"] == "?"
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


@run_async
async def test_q_quits(dbs: Databases) -> None:
    app = CreatiaApp(dbs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


@run_async
async def test_status_line_reports_both_databases_up(dbs: Databases) -> None:
    app = CreatiaApp(dbs)
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
    app = CreatiaApp(unreachable_dbs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        message = app.screen.query_one("#home-message", Static)
        text = str(message.render())
        assert message.has_class("-error")
        assert text.startswith("PostgreSQL at 127.0.0.1:1/none is unavailable:")
        assert "\n" not in text and "Traceback" not in text
        assert table_of(app).row_count == 0
        assert not table_of(app).loading

        status = app.screen.query_one(StatusLine)
        line = status.render().plain
        assert "PostgreSQL ● down" in line and "MongoDB ● up" in line

        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)
        # Still answering the keyboard: q quits cleanly.
        await pilot.press("q")
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
async def _loaded(pilot: Pilot[Any]) -> None:
    await settle(pilot)


def test_snapshot_home_80x24(dbs: Databases, seeded: Seeded, snap_compare: Any) -> None:
    app = CreatiaApp(dbs, user_email="minjun@example.com", show_latency=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded)


def test_snapshot_home_160x50(dbs: Databases, seeded: Seeded, snap_compare: Any) -> None:
    app = CreatiaApp(dbs, user_email="minjun@example.com", show_latency=False)
    assert snap_compare(app, terminal_size=(160, 50), run_before=_loaded)


def test_snapshot_home_no_color_80x24(
    dbs: Databases, seeded: Seeded, snap_compare: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = CreatiaApp(dbs, user_email="minjun@example.com", show_latency=False)
    assert app.no_color
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded)


def test_snapshot_help_80x24(dbs: Databases, seeded: Seeded, snap_compare: Any) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    app = CreatiaApp(dbs, show_latency=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=open_help)


def test_snapshot_unreachable_postgres_80x24(unreachable_dbs: Databases, snap_compare: Any) -> None:
    app = CreatiaApp(unreachable_dbs, show_latency=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=_loaded)
