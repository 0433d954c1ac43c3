"""The Members screen: pilot tests assert on the rows written (the membership or user and its
audit row) and on nothing written when a form or the service refuses; snapshots at 80x24 and
160x50 with the Korean names of the world fixture."""

from __future__ import annotations

import json
import logging
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from creatia_tui.app import CreatiaApp
from creatia_tui.data.db import Databases
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.members import (
    AddMemberForm,
    ChangeRoleForm,
    CreateMemberForm,
    MembersScreen,
)
from creatia_tui.widgets.choice import Choice
from tests.conftest import World
from tests.tui import (
    app_as,
    audit_rows,
    cell_texts,
    message_of,
    press,
    run_async,
    settle,
    snapshot_before,
    table_snapshot,
)

MEMBERSHIPS = (
    "SELECT id, organization_id, user_id, role, active, joined_at "
    "FROM organization_memberships ORDER BY id"
)
USERS = "SELECT id, email, name, encrypted_password, active FROM users ORDER BY id"
NEW_PASSWORD = "violet-lantern-42"
CHANGES = ("a", "c", "e", "d")


def membership_row(pg_dsn: str, membership_id: str) -> dict[str, Any]:
    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT user_id::text AS user_id, organization_id::text AS organization_id, role, "
            "active FROM organization_memberships WHERE id = %s",
            (membership_id,),
        ).fetchone()
    assert row is not None
    return row


def unchanged(pg_dsn: str) -> tuple[list[Any], list[Any], list[Any]]:
    return table_snapshot(pg_dsn, MEMBERSHIPS), table_snapshot(pg_dsn, USERS), audit_rows(pg_dsn)


async def open_members(pilot: Pilot[Any]) -> MembersScreen:
    await settle(pilot)
    await pilot.press("6")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, MembersScreen)
    return screen


def table_of(screen: MembersScreen) -> DataTable[Any]:
    return screen.query_one("#member-table", DataTable)


def select_row(screen: MembersScreen, membership_id: str) -> None:
    table = table_of(screen)
    table.move_cursor(row=table.get_row_index(membership_id))


def detail_of(screen: MembersScreen) -> str:
    return str(screen.query_one("#member-detail", Static).render())


async def open_form(pilot: Pilot[Any], key: str, kind: type[Any]) -> Any:
    await pilot.press(key)
    await settle(pilot)
    form = pilot.app.screen
    assert isinstance(form, kind)
    return form


def offered(screen: MembersScreen) -> set[str]:
    return {b.binding.action for b in screen.active_bindings.values() if b.enabled}


# ---------------------------------------------------------------- the list
@run_async
async def test_lists_members_with_role_active_and_joined(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        table = table_of(screen)
        lab = {m for (user, org), m in world.memberships.items() if org == world.lab}
        assert {str(k.value) for k in table.rows} == lab
        minjun = cell_texts(table, world.memberships[(world.minjun, world.lab)])
        assert minjun == {
            "name": "김민준", "email": "minjun@example.com", "role": "Owner",
            "active": "yes", "joined": "2026-03-02",
        }
        assert message_of(app) == "5 members"
        select_row(screen, world.memberships[(world.gone, world.lab)])
        await pilot.pause()
        assert detail_of(screen) == (
            "떠난 사람 · gone@example.com · Member (member) · active · joined 2026-03-02 · "
            "account deactivated: cannot sign in"
        )


@run_async
async def test_the_joined_column_is_dropped_when_80_columns_are_too_few(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET name = %s, email = %s WHERE id = %s",
            ("박지호 선임 연구원 (플랫폼 운영팀)", "jiho.park.platform.research@example.com",
             world.jiho),
        )
    jiho = world.memberships[(world.jiho, world.lab)]
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        assert [str(c.value) for c in table_of(screen).columns] == [
            "name", "email", "role", "active",
        ]
        cells = cell_texts(table_of(screen), jiho)
        assert cells["name"].endswith("…") and cells["email"].endswith("…")
        select_row(screen, jiho)
        await pilot.pause()
        assert "joined 2026-03-02" in detail_of(screen)
        await pilot.resize_terminal(160, 50)
        await settle(pilot)
        assert [str(c.value) for c in table_of(screen).columns][-1] == "joined"
        assert table_of(screen).get_row_index(jiho) == table_of(screen).cursor_row


@run_async
async def test_search_matches_name_or_email(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        await pilot.press("slash", *"서연", "enter")
        await settle(pilot)
        assert [str(k.value) for k in table_of(screen).rows] == [
            world.memberships[(world.seoyeon, world.lab)]
        ]
        assert message_of(app) == "1 member matching '서연'"
        screen.query_one("#member-search", Input).value = "jiho@"
        await pilot.press("slash", "enter")
        await settle(pilot)
        assert [str(k.value) for k in table_of(screen).rows] == [
            world.memberships[(world.jiho, world.lab)]
        ]


@run_async
async def test_y_copies_the_membership_id(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        select_row(screen, world.memberships[(world.jiho, world.lab)])
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == world.memberships[(world.jiho, world.lab)]


# ---------------------------------------------------------------- adding
@run_async
async def test_an_owner_adds_an_existing_user_by_email(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        form = await open_form(pilot, "a", AddMemberForm)
        assert form.query_one("#role", Choice).value == "member"
        await pilot.press(*"Bob@Example.com", "tab", "left")  # member -> admin
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Added bob@example.com as Admin."
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute(
                "SELECT id::text FROM organization_memberships "
                "WHERE user_id = %s AND organization_id = %s",
                (world.bob, world.lab),
            ).fetchone()
        assert row is not None
        new_id = row[0]
        assert screen.highlighted_id() == new_id
        assert cell_texts(table_of(screen), new_id)["role"] == "Admin"
    assert membership_row(pg_dsn, new_id)["role"] == "admin"
    assert membership_row(pg_dsn, new_id)["active"] is True
    [audit] = audit_rows(pg_dsn, world.lab)
    assert (audit["action"], audit["user_id"], audit["resource_id"]) == (
        "membership.created", world.minjun, new_id,
    )
    assert audit["changes"]["before"] is None
    assert audit["changes"]["after"]["role"] == "admin"
    assert audit["changes"]["after"]["user_id"] == world.bob


@run_async
async def test_adding_an_unknown_email_or_a_member_is_refused_in_the_form(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = unchanged(pg_dsn)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_members(pilot)
        form = await open_form(pilot, "a", AddMemberForm)
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "The email is empty."
        await pilot.press(*"nobody@example.com", "enter")
        await settle(pilot)
        assert app.screen is form
        assert form.error_text == (
            "No user has the email nobody@example.com; create the user instead."
        )
        form.query_one("#email", Input).value = "jiho@example.com"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "jiho@example.com is already a member of this organization."
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)
    assert unchanged(pg_dsn) == before


@run_async
async def test_an_owner_creates_a_user_and_adds_them(
    dbs: Databases, world: World, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        form = await open_form(pilot, "c", CreateMemberForm)
        assert form.query_one("#password", Input).password is True
        await pilot.press(*"hana@example.com", "tab", *"정하나", "tab", *NEW_PASSWORD)
        await pilot.press("tab", "right")  # member -> viewer
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Created 정하나 (hana@example.com) as Viewer."
        shown = screen.highlighted()
        assert shown is not None and shown.email == "hana@example.com"

    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        user = conn.execute(
            "SELECT id::text AS id, name, encrypted_password, active FROM users "
            "WHERE email = 'hana@example.com'"
        ).fetchone()
        assert user is not None
        membership = conn.execute(
            "SELECT id::text AS id, role, active FROM organization_memberships "
            "WHERE user_id = %s AND organization_id = %s",
            (user["id"], world.lab),
        ).fetchone()
    assert (user["name"], user["active"]) == ("정하나", True)
    assert NEW_PASSWORD not in user["encrypted_password"]
    assert membership is not None and (membership["role"], membership["active"]) == (
        "viewer", True,
    )
    audits = audit_rows(pg_dsn, world.lab)
    assert [(a["action"], a["user_id"], a["resource_id"]) for a in audits] == [
        ("user.created", world.minjun, user["id"]),
        ("membership.created", world.minjun, membership["id"]),
    ]
    assert NEW_PASSWORD not in json.dumps(audits, default=str)
    assert user["encrypted_password"] not in json.dumps(audits, default=str)
    assert NEW_PASSWORD not in caplog.text


@run_async
async def test_creating_with_a_weak_password_or_a_taken_email_writes_nothing(
    dbs: Databases, world: World, pg_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = unchanged(pg_dsn)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_members(pilot)
        form = await open_form(pilot, "c", CreateMemberForm)
        await pilot.press(*"hana@example.com", "tab", *"정하나", "tab", *"short7", "enter")
        await settle(pilot)
        assert app.screen is form
        assert form.error_text == "The password is too short; use at least 8 characters."
        form.query_one("#password", Input).value = NEW_PASSWORD
        form.query_one("#email", Input).value = "bob@example.com"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == (
            "A user with the email bob@example.com already exists; add them by email instead."
        )
        form.query_one("#email", Input).value = "not-an-email"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "'not-an-email' is not a valid email address."
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)
        assert NEW_PASSWORD not in message_of(app)
    assert unchanged(pg_dsn) == before
    assert NEW_PASSWORD not in caplog.text and "short7" not in caplog.text


# ---------------------------------------------------------------- changing
@run_async
async def test_an_owner_changes_a_role_with_the_current_one_preselected(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    jiho = world.memberships[(world.jiho, world.lab)]
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        select_row(screen, jiho)
        form = await open_form(pilot, "e", ChangeRoleForm)
        assert form.query_one("#role", Choice).value == "member"
        await pilot.press("ctrl+s")  # unchanged: nothing to write
        await settle(pilot)
        assert message_of(app) == "Nothing changed."
        assert audit_rows(pg_dsn) == []

        await open_form(pilot, "e", ChangeRoleForm)
        await pilot.press("left", "ctrl+s")  # member -> admin
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "박지호 is now Admin."
        assert cell_texts(table_of(screen), jiho)["role"] == "Admin"
    assert membership_row(pg_dsn, jiho)["role"] == "admin"
    [audit] = audit_rows(pg_dsn, world.lab)
    assert (audit["action"], audit["user_id"], audit["resource_id"]) == (
        "membership.role_changed", world.minjun, jiho,
    )
    assert audit["changes"] == {"before": {"role": "member"}, "after": {"role": "admin"}}


@run_async
async def test_deactivate_and_reactivate_ask_first_and_are_audited(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    jiho = world.memberships[(world.jiho, world.lab)]
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        select_row(screen, jiho)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert message_of(app) == "Nothing changed."
        assert membership_row(pg_dsn, jiho)["active"] is True

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == "Deactivated the membership of 박지호."
        assert cell_texts(table_of(screen), jiho)["active"] == "no"
        assert membership_row(pg_dsn, jiho)["active"] is False
        assert screen.highlighted_id() == jiho  # it moved down the list; the cursor followed

        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert "Reactivate" in str(app.screen.query_one(".dialog-title", Static).render())
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == "Reactivated 박지호 as Member."
        assert cell_texts(table_of(screen), jiho)["active"] == "yes"
    assert membership_row(pg_dsn, jiho)["active"] is True
    audits = audit_rows(pg_dsn, world.lab)
    assert [(a["action"], a["user_id"], a["resource_id"]) for a in audits] == [
        ("membership.deactivated", world.minjun, jiho),
        ("membership.reactivated", world.minjun, jiho),
    ]
    assert audits[0]["changes"] == {"before": {"active": True}, "after": {"active": False}}
    assert audits[1]["changes"] == {
        "before": {"active": False, "role": "member"},
        "after": {"active": True, "role": "member"},
    }


@run_async
async def test_the_last_owner_can_neither_be_demoted_nor_deactivated(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = unchanged(pg_dsn)
    minjun = world.memberships[(world.minjun, world.lab)]
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        select_row(screen, minjun)
        form = await open_form(pilot, "e", ChangeRoleForm)
        await pilot.press("right", "ctrl+s")  # owner -> admin
        await settle(pilot)
        assert app.screen is form
        assert form.error_text == "The last active owner cannot be demoted; add another first."
        await pilot.press("escape")
        await settle(pilot)

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "The last active owner cannot be removed; add another first."
        assert cell_texts(table_of(screen), minjun)["active"] == "yes"
    assert unchanged(pg_dsn) == before


@run_async
async def test_an_admin_cannot_make_an_owner_nor_touch_one(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = unchanged(pg_dsn)
    app = app_as(dbs, "seoyeon", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        select_row(screen, world.memberships[(world.jiho, world.lab)])
        form = await open_form(pilot, "e", ChangeRoleForm)
        await pilot.press("left", "left", "ctrl+s")  # member -> admin -> owner
        await settle(pilot)
        assert app.screen is form
        assert form.error_text.startswith(
            "You cannot assign the role Owner: it grants permissions you do not hold ("
        )
        await pilot.press("escape")
        await settle(pilot)

        form = await open_form(pilot, "a", AddMemberForm)
        await pilot.press(*"bob@example.com", "tab", "left", "left", "ctrl+s")
        await settle(pilot)
        assert form.error_text.startswith("You cannot assign the role Owner")
        await pilot.press("escape")
        await settle(pilot)

        select_row(screen, world.memberships[(world.minjun, world.lab)])
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app).startswith(
            "You cannot deactivate a member whose role Owner grants permissions you do not hold"
        )
    assert unchanged(pg_dsn) == before


@run_async
async def test_a_viewer_is_not_offered_changes_and_pressing_them_changes_nothing(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = unchanged(pg_dsn)
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        keys = offered(screen)
        assert {"add", "create", "change_role", "toggle_active"}.isdisjoint(keys)
        assert {"search", "reload", "copy_id"} <= keys
        select_row(screen, world.memberships[(world.jiho, world.lab)])
        await pilot.press(*CHANGES)
        await settle(pilot)
        assert app.screen is screen
        await pilot.press("y")  # a ConfirmScreen, had one opened, would take this as yes
        await settle(pilot)
    assert unchanged(pg_dsn) == before


@run_async
async def test_without_roles_read_the_picker_offers_the_system_roles(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        # From every role, so giving the member role is no escalation for seoyeon.
        conn.execute(
            "UPDATE role_permissions SET granted = false "
            "WHERE role_id IN (SELECT id FROM roles WHERE organization_id = %s) "
            "AND permission_id = (SELECT id FROM permissions WHERE name = 'roles.read')",
            (world.lab,),
        )
    app = app_as(dbs, "seoyeon", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        assert message_of(app) == "5 members"
        form = await open_form(pilot, "a", AddMemberForm)
        assert [v for _, v in form.query_one("#role", Choice).options] == [
            "owner", "admin", "member", "viewer",
        ]
        await pilot.press(*"bob@example.com", "ctrl+s")
        await settle(pilot)
        assert app.screen is screen, form.error_text
        assert message_of(app) == "Added bob@example.com as Member."
    [audit] = audit_rows(pg_dsn, world.lab)
    assert (audit["action"], audit["changes"]["after"]["role"]) == ("membership.created", "member")


@run_async
async def test_demoting_oneself_takes_the_keys_away(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    seoyeon = world.memberships[(world.seoyeon, world.lab)]
    app = app_as(dbs, "seoyeon", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_members(pilot)
        assert "change_role" in offered(screen)
        select_row(screen, seoyeon)
        await open_form(pilot, "e", ChangeRoleForm)
        await pilot.press("right", "ctrl+s")  # admin -> member
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, MembersScreen)
        assert {"add", "create", "change_role", "toggle_active"}.isdisjoint(offered(screen))
        assert app.session is not None and app.session.current is not None
        assert app.session.current.role == "member"
    assert membership_row(pg_dsn, seoyeon)["role"] == "member"
    assert [a["action"] for a in audit_rows(pg_dsn, world.lab)] == ["membership.role_changed"]


# ---------------------------------------------------------------- snapshots
def members_app(dbs: Databases, world: World) -> CreatiaApp:
    return app_as(dbs, "minjun", world.lab)


def test_snapshot_members_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    assert snap_compare(
        members_app(dbs, world), terminal_size=(80, 24), run_before=snapshot_before(press("6"))
    )


def test_snapshot_members_160x50(dbs: Databases, world: World, snap_compare: Any) -> None:
    assert snap_compare(
        members_app(dbs, world), terminal_size=(160, 50), run_before=snapshot_before(press("6"))
    )


async def weak_password(pilot: Pilot[Any]) -> None:
    await pilot.press(*"hana@example.com", "tab", *"정하나", "tab", *"short7", "ctrl+s")


def test_snapshot_create_form_refusal_80x24(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    steps = snapshot_before(press("6"), press("c"), weak_password)
    assert snap_compare(members_app(dbs, world), terminal_size=(80, 24), run_before=steps)


def test_snapshot_create_form_refusal_160x50(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    steps = snapshot_before(press("6"), press("c"), weak_password)
    assert snap_compare(members_app(dbs, world), terminal_size=(160, 50), run_before=steps)
