"""The Audit log screen: rows written by the real services and by bulk inserts, read back page by
page (keyset) and through each filter, asserted against the database; the detail view; the
viewer's refusal; snapshots at 80x24 and 160x50 with Korean actor names and fixed timestamps."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from rich.cells import cell_len
from textual.pilot import Pilot
from textual.widgets import Static

from creatia_tui.data import admin, roles
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import AuditFilter, ClientContext, read_audit
from creatia_tui.data.db import Databases
from creatia_tui.data.users import get_user
from creatia_tui.errors import PermissionDenied
from creatia_tui.screens.audit import (
    ACTOR_WIDTH,
    PAGE_SIZE,
    AuditEntryScreen,
    AuditScreen,
)
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.tables import PagedTable
from tests.conftest import WORLD_EMAILS, World
from tests.tui import (
    app_as,
    assert_down_reads_the_next_page,
    assert_pages_through,
    assert_refusals_said,
    cell_texts,
    choose,
    message_of,
    press,
    run_async,
    settle,
    shown,
    snapshot_before,
)

UTC = dt.timezone.utc
CLIENT = ClientContext(
    ip_address="203.0.113.7", user_agent="creatia-tui/test (테스트 단말; TERM=xterm)"
)
SEPTEMBER = dt.date(2026, 9, 1)
OCTOBER = dt.date(2026, 10, 1)


# ---------------------------------------------------------------- rows to read
@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


def actor(conn: psycopg.Connection, user_id: str, organization_id: str) -> Actor:
    user = get_user(conn, user_id)
    assert user is not None
    return Actor(user, organization_id)


def ensure_month(conn: psycopg.Connection, month: dt.date) -> None:
    conn.execute("SELECT ensure_audit_log_partition(%s)", (month,))


def service_changes(conn: psycopg.Connection, world: World) -> None:
    """Three changes in lab through the services, each writing its audit row."""
    minjun = actor(conn, world.minjun, world.lab)
    seoyeon = actor(conn, world.seoyeon, world.lab)
    admin.update_organization(conn, minjun, name="크리에이티아 랩", client=CLIENT)
    admin.change_member_role(
        conn, seoyeon, world.memberships[(world.jiho, world.lab)], "viewer", client=CLIENT
    )
    roles.create_role(conn, minjun, name="디자이너", key="designer", client=CLIENT)


def insert_rows(
    conn: psycopg.Connection,
    organization_id: str,
    rows: list[tuple[str, str, dt.datetime]],  # (user_id, action, created_at)
) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in rows]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO permission_audit_logs (id, organization_id, user_id, action, "
            "resource_type, resource_id, changes, ip_address, user_agent, created_at) "
            "VALUES (%s, %s, %s, %s, 'Role', gen_random_uuid(), %s, '198.51.100.4', "
            "'bulk', %s)",
            [
                (row_id, organization_id, user, action,
                 Jsonb({"before": {"name": "이전"}, "after": {"name": "이후"}}), at)
                for row_id, (user, action, at) in zip(ids, rows, strict=True)
            ],
        )
    return ids


def bulk_rows(conn: psycopg.Connection, world: World, count: int = 120) -> list[str]:
    """`count` rows in October 2026, three to a timestamp (ties are ordered by id)."""
    ensure_month(conn, OCTOBER)
    start = dt.datetime(2026, 10, 20, 12, tzinfo=UTC)
    people = [world.minjun, world.seoyeon, world.jiho]
    return insert_rows(
        conn,
        world.lab,
        [
            (people[i % 3], "role.renamed", start - dt.timedelta(seconds=i // 3))
            for i in range(count)
        ],
    )


def expected(
    conn: psycopg.Connection, organization_id: str, where: str = "", **params: Any
) -> list[str]:
    """The organization's entry ids, newest first, ties by id (the server's own order)."""
    rows = conn.execute(
        "SELECT id::text FROM permission_audit_logs WHERE organization_id = %(org)s "
        f"{where} ORDER BY created_at DESC, id DESC",
        {"org": organization_id, **params},
    ).fetchall()
    return [row[0] for row in rows]


# ---------------------------------------------------------------- screen helpers
async def open_audit(pilot: Pilot[Any]) -> AuditScreen:
    await settle(pilot)
    await pilot.press("8")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, AuditScreen)
    return screen


# ---------------------------------------------------------------- listing and paging
@run_async
async def test_the_services_rows_are_listed_newest_first_with_names_and_resources(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        ids = expected(conn, world.lab)
        assert shown(screen) == ids and len(ids) == 3
        table = screen.query_one(PagedTable)
        role, member, org = (cell_texts(table, entry) for entry in ids)
        assert (role["actor"], role["action"], role["resource"]) == (
            "김민준", "role.created", "Role",
        )
        assert (member["actor"], member["action"], member["resource"]) == (
            "이서연", "membership.role_changed", "Membership",
        )
        assert (org["actor"], org["action"]) == ("김민준", "organization.updated")
        # The time in UTC, to the second, as the database holds it.
        at = conn.execute(
            "SELECT created_at FROM permission_audit_logs WHERE id = %s", (ids[0],)
        ).fetchone()[0]
        assert role["time"] == at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        assert message_of(app) == "3 entries · end of log"
        # The line under the table says what changed and where from.
        detail = str(screen.query_one("#audit-detail", Static).render())
        assert detail.startswith('new ') and "from 203.0.113.7" in detail
        # At 80 columns the optional columns give way.
        assert [str(c.value) for c in table.columns] == ["time", "actor", "action", "resource"]


@run_async
async def test_wide_terminals_show_resource_id_address_and_client(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        screen = await open_audit(pilot)
        table = screen.query_one(PagedTable)
        assert [str(c.value) for c in table.columns] == [
            "time", "actor", "action", "resource", "resource_id", "ip", "client",
        ]
        newest = cell_texts(table, shown(screen)[0])
        role_id = conn.execute("SELECT id::text FROM roles WHERE key = 'designer'").fetchone()[0]
        assert newest["resource_id"] == role_id[:8]
        assert newest["ip"] == "203.0.113.7"
        assert newest["client"].startswith("creatia-tui/test")


@run_async
async def test_pages_by_keyset_with_no_duplicates_and_none_missing(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    bulk_rows(conn, world, 120)
    every = expected(conn, world.lab)
    assert len(every) == 123
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_audit(pilot)
        await assert_pages_through(pilot, every, "end of log")


@run_async
async def test_down_on_the_last_row_reads_the_next_page(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    bulk_rows(conn, world, 60)
    every = expected(conn, world.lab)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(160, 50)) as pilot:
        await open_audit(pilot)
        await assert_down_reads_the_next_page(pilot, every, "end of log")


# ---------------------------------------------------------------- filters
@run_async
async def test_the_month_filter_shows_one_month(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    ensure_month(conn, SEPTEMBER)
    ensure_month(conn, OCTOBER)
    september = [(world.minjun, "role.renamed", dt.datetime(2026, 9, d, 8, tzinfo=UTC))
                 for d in (3, 17, 30)]
    october = [(world.seoyeon, "role.renamed", dt.datetime(2026, 10, d, 8, tzinfo=UTC))
               for d in (1, 2)]
    insert_rows(conn, world.lab, september + october)
    # The last instant of September (UTC) is September's; the first of October is not.
    insert_rows(conn, world.lab, [
        (world.jiho, "role.renamed", dt.datetime(2026, 9, 30, 23, 59, 59, 999999, tzinfo=UTC)),
        (world.jiho, "role.renamed", dt.datetime(2026, 10, 1, tzinfo=UTC)),
    ])
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        assert len(shown(screen)) == 7
        labels = [label for label, _ in screen.query_one("#audit-month", Choice).options]
        assert labels[0] == "all" and {"2026-09", "2026-10"} <= set(labels)
        assert labels[1:] == sorted(labels[1:], reverse=True)

        await choose(pilot, screen, "audit-month", SEPTEMBER.isoformat())
        in_september = "AND created_at >= '2026-09-01Z' AND created_at < '2026-10-01Z'"
        assert shown(screen) == expected(conn, world.lab, in_september)
        assert len(shown(screen)) == 4
        assert message_of(app) == "4 entries · end of log"

        await choose(pilot, screen, "audit-month", OCTOBER.isoformat())
        in_october = "AND created_at >= '2026-10-01Z' AND created_at < '2026-11-01Z'"
        assert shown(screen) == expected(conn, world.lab, in_october)
        assert len(shown(screen)) == 3

        await choose(pilot, screen, "audit-month", "")  # back to every month
        assert shown(screen) == expected(conn, world.lab)


@run_async
async def test_the_actor_filter_shows_one_persons_changes_across_pages(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    bulk_rows(conn, world, 150)  # 50 each for minjun, seoyeon and jiho
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        menu = screen.query_one("#audit-actor", Choice)
        labels = [label for label, _ in menu.options]
        # Members past and present (떠난 사람 is deactivated) and the platform admin.
        assert labels[0] == "anyone"
        assert {"김민준", "이서연", "박지호", "최유나", "떠난 사람", "관리자"} <= set(labels)

        await choose(pilot, screen, "audit-actor", world.seoyeon)
        by_seoyeon = expected(conn, world.lab, "AND user_id = %(who)s", who=world.seoyeon)
        assert len(by_seoyeon) == 51  # 50 bulk rows and the role change
        assert shown(screen) == by_seoyeon[:PAGE_SIZE]
        assert message_of(app) == "50 entries · more: n"
        await pilot.press("n")
        await settle(pilot)
        assert shown(screen) == by_seoyeon
        table = screen.query_one(PagedTable)
        assert {cell_texts(table, e)["actor"] for e in shown(screen)} == {"이서연"}

        await choose(pilot, screen, "audit-actor", world.yuna)  # never changed anything
        assert shown(screen) == []
        assert message_of(app) == "No entries match these filters."


@run_async
async def test_the_action_filter_and_filters_together(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    bulk_rows(conn, world, 30)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        await choose(pilot, screen, "audit-action", "membership.role_changed")
        changed = expected(conn, world.lab, "AND action = 'membership.role_changed'")
        assert shown(screen) == changed and len(changed) == 1
        assert message_of(app) == "1 entry · end of log"

        await choose(pilot, screen, "audit-action", "role.renamed")
        assert shown(screen) == expected(conn, world.lab, "AND action = 'role.renamed'")
        await choose(pilot, screen, "audit-actor", world.jiho)
        jiho_renamed = expected(
            conn, world.lab, "AND action = 'role.renamed' AND user_id = %(who)s", who=world.jiho
        )
        assert shown(screen) == jiho_renamed and len(jiho_renamed) == 10
        await choose(pilot, screen, "audit-action", "organization.updated")
        assert shown(screen) == []  # jiho did not edit the organization


# ---------------------------------------------------------------- detail, copy, refresh
@run_async
async def test_enter_shows_the_entry_whole_with_korean_before_and_after(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    updated = expected(conn, world.lab, "AND action = 'organization.updated'")[0]
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        table = screen.query_one(PagedTable)
        table.move_cursor(row=table.get_row_index(updated))
        await pilot.press("enter")
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, AuditEntryScreen)
        body = str(detail.query_one("#audit-entry-body", Static).render())
        assert '"name": "크리에이티아 연구소"' in body  # before, Korean as it is
        assert '"name": "크리에이티아 랩"' in body  # after
        assert body.index("Before") < body.index("연구소") < body.index("After")
        for value in (
            "organization.updated", "203.0.113.7", CLIENT.user_agent, updated, world.minjun,
            world.lab, "김민준 <minjun@example.com>",
        ):
            assert value in body
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == updated
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is screen


@run_async
async def test_y_copies_the_highlighted_entry_id(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        await pilot.press("down", "y")
        await pilot.pause()
        assert app.clipboard == shown(screen)[1]


@run_async
async def test_r_reads_the_newest_entries_again(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        before = shown(screen)
        roles.create_role(
            conn, actor(conn, world.minjun, world.lab), name="검토자", key="reviewer",
            client=CLIENT,
        )
        assert shown(screen) == before  # not until asked
        await pilot.press("r")
        await settle(pilot)
        assert shown(screen) == expected(conn, world.lab)
        assert shown(screen)[1:] == before
        newest = cell_texts(screen.query_one(PagedTable), shown(screen)[0])
        assert newest["action"] == "role.created"
        assert message_of(app) == "4 entries · end of log"


@run_async
async def test_long_korean_names_are_cut_to_the_column(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    conn.execute(
        "UPDATE users SET name = '황보 세영 정보보안 감사 총괄 책임자' WHERE id = %s",
        (world.seoyeon,),
    )
    service_changes(conn, world)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        table = screen.query_one(PagedTable)
        [changed] = expected(conn, world.lab, "AND action = 'membership.role_changed'")
        name = cell_texts(table, changed)["actor"]
        assert name.endswith("…") and name.startswith("황보 세영")
        assert cell_len(name) <= ACTOR_WIDTH


# ---------------------------------------------------------------- refusals
@run_async
async def test_a_viewer_cannot_open_the_audit_log(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    service_changes(conn, world)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("8")
        await settle(pilot)
        assert not isinstance(app.screen, AuditScreen)
    yuna = actor(conn, world.yuna, world.lab)
    with pytest.raises(PermissionDenied, match=r"audit\.read"):
        read_audit(conn, yuna, AuditFilter())


@run_async
async def test_a_refusal_while_open_is_said_in_one_line(
    dbs: Databases, world: World, conn: psycopg.Connection
) -> None:
    """audit.read taken away after the screen opened: the next read says so."""
    service_changes(conn, world)
    bulk_rows(conn, world, 60)
    app = app_as(dbs, "seoyeon", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_audit(pilot)
        before = shown(screen)
        conn.execute(
            "UPDATE organization_memberships SET role = 'viewer' WHERE id = %s",
            (world.memberships[(world.seoyeon, world.lab)],),
        )
        other_filter = partial(choose, pilot, screen, "audit-action", "role.created")
        await assert_refusals_said(pilot, before, "audit.read", other_filter)


# ---------------------------------------------------------------- snapshots
SNAP_ORG = "5e1ec7ed-0000-4000-8000-00000000a0d1"
HANEUL = "5e1ec7ed-0000-4000-8000-0000000000a1"
SEYEONG = "5e1ec7ed-0000-4000-8000-0000000000a2"


def snap_id(n: int) -> str:
    return f"5e1ec7ed-0000-4000-8000-{n:012d}"


def snapshot_world(pg_dsn: str, world: World) -> None:
    """An organization and two actors with fixed ids, and 24 entries with fixed timestamps, so
    the detail view's ids are stable too. root (platform admin) reads it."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organizations (id, name, subdomain, plan, active) "
            "VALUES (%s, '한빛 디자인 스튜디오', 'hanbit', 'pro', true)",
            (SNAP_ORG,),
        )
        for user_id, email, name in (
            (HANEUL, "haneul@example.com", "강하늘"),
            (SEYEONG, "seyeong@example.com", "황보 세영 정보보안 감사 총괄 책임자"),
        ):
            conn.execute(
                "INSERT INTO users (id, email, encrypted_password, name, role, active) "
                "VALUES (%s, %s, 'x', %s, 'user', true)",
                (user_id, email, name),
            )
        for user_id, role in ((HANEUL, "owner"), (SEYEONG, "admin"), (world.minjun, "member")):
            conn.execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role, joined_at) "
                "VALUES (%s, %s, %s, '2026-03-02T09:00:00Z')",
                (user_id, SNAP_ORG, role),
            )
        ensure_month(conn, OCTOBER)
        kinds = [
            (HANEUL, "organization.updated", "Organization", SNAP_ORG,
             {"name": "한빛 스튜디오"}, {"name": "한빛 디자인 스튜디오"}),
            (SEYEONG, "membership.role_changed", "Membership", snap_id(901),
             {"role": "member"}, {"role": "admin"}),
            (HANEUL, "role.created", "Role", snap_id(902),
             None, {"key": "designer", "name": "디자이너", "description": "시안과 검토"}),
            (world.minjun, "role.permission_granted", "Role", snap_id(902),
             {"tasks.update": False}, {"tasks.update": True}),
            (SEYEONG, "membership.created", "Membership", snap_id(903),
             None, {"role": "viewer", "email": "yuna@example.com"}),
            (world.root, "organization.reactivated", "Organization", SNAP_ORG,
             {"active": False}, {"active": True}),
        ]
        start = dt.datetime(2026, 10, 28, 9, 30, tzinfo=UTC)
        for n in range(24):
            user_id, action, kind, resource, before, after = kinds[n % len(kinds)]
            conn.execute(
                "INSERT INTO permission_audit_logs (id, organization_id, user_id, action, "
                "resource_type, resource_id, changes, ip_address, user_agent, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    snap_id(n + 1), SNAP_ORG, user_id, action, kind, resource,
                    Jsonb({"before": before, "after": after}),
                    "203.0.113.7" if n % 2 else "2001:db8::42",
                    "creatia-tui/0.1.0 (ops-1; /dev/pts/3; TERM=xterm-256color tmux)",
                    start - dt.timedelta(hours=7 * n, minutes=n),
                ),
            )


def snapshot_app(dbs: Databases, pg_dsn: str, world: World) -> Any:
    snapshot_world(pg_dsn, world)
    assert WORLD_EMAILS["root"]
    return app_as(dbs, "root", SNAP_ORG)


def test_snapshot_audit_80x24(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn, world)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("8")))


def test_snapshot_audit_160x50(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn, world)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before(press("8")))


def test_snapshot_audit_entry_80x24(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn, world)
    steps = snapshot_before(press("8"), press("down", "down"), press("enter"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_snapshot_audit_filtered_by_actor_160x50(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    app = snapshot_app(dbs, pg_dsn, world)
    # The actor menu: anyone, 강하늘, 관리자 (root), 김민준, 황보 세영…; the filter keeps focus.
    steps = snapshot_before(press("8"), press("f", "tab", "right", "right", "right", "right"))
    assert snap_compare(app, terminal_size=(160, 50), run_before=steps)
