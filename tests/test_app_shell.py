"""The shell: signing in, the organization switcher, navigation by permission, the command
palette and copying; against the real databases of conftest."""

from __future__ import annotations

from typing import Any

import psycopg
from textual.widgets import Input

from creatia_tui.app import CreatiaApp, demo_app
from creatia_tui.data.db import Databases
from creatia_tui.ops.seed import DEMO_ADMIN_EMAIL, SeedOptions, seed
from creatia_tui.screens.dialogs import SwitchOrganizationScreen
from creatia_tui.screens.home import HomeScreen
from creatia_tui.screens.members import MembersScreen
from creatia_tui.screens.organizations import OrganizationsScreen
from creatia_tui.screens.roles import RolesScreen
from creatia_tui.screens.sign_in import SignInScreen
from tests.conftest import WORLD_PASSWORD, World
from tests.tui import (
    app_as,
    audit_rows,
    press,
    run_async,
    run_from_palette,
    settle,
    snapshot_before,
)


async def type_credentials(pilot: Any, email: str, password: str) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, SignInScreen)
    screen.query_one("#email", Input).value = email
    screen.query_one("#password", Input).focus()
    await pilot.press(*password, "enter")
    await settle(pilot)


@run_async
async def test_sign_in_by_keyboard_opens_the_only_organization(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = CreatiaApp(dbs, show_latency=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, SignInScreen)
        assert app.screen.query_one("#email", Input).has_focus
        await pilot.press(*"jiho@example.com", "enter")  # enter moves to the password
        assert app.screen.query_one("#password", Input).has_focus
        await pilot.press(*WORLD_PASSWORD, "enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        session = app.session
        assert session is not None and session.current is not None
        assert session.current.id == world.lab
        assert app.sub_title == "박지호 · member"
        assert "tasks.update" in session.permissions
        assert "roles.create" not in session.permissions
    assert audit_rows(pg_dsn) == []  # signing in changes nothing


@run_async
async def test_sign_in_refusals_are_one_sentence_and_keep_the_email(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, encrypted_password, name) "
            "SELECT 'lonely@example.com', encrypted_password, '외톨이' FROM users "
            "WHERE email = 'jiho@example.com'"
        )
    app = CreatiaApp(dbs, show_latency=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, SignInScreen)
        cases = [
            ("jiho@example.com", "wrong password", "The email or password is wrong."),
            ("nobody@example.com", WORLD_PASSWORD, "The email or password is wrong."),
            ("gone@example.com", WORLD_PASSWORD,
             "This account is deactivated; ask an administrator."),
            ("lonely@example.com", WORLD_PASSWORD,
             "This account has no active membership in any organization."),
        ]
        for email, password, sentence in cases:
            await type_credentials(pilot, email, password)
            assert app.screen is screen
            assert screen.error_text == sentence
            assert screen.query_one("#email", Input).value == email
            assert screen.query_one("#password", Input).value == ""  # cleared, focused
            assert screen.query_one("#password", Input).has_focus
            assert password not in screen.error_text
        await type_credentials(pilot, "jiho@example.com", "")
        assert screen.error_text == "Type your email and password."
        assert app.session is None


@run_async
async def test_several_memberships_open_the_switcher_which_filters(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "minjun")  # no organization given: lab and acme to choose from
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        switcher = app.screen
        assert isinstance(switcher, SwitchOrganizationScreen)
        assert [c.subdomain for c in switcher.choices] == ["acme", "creatia-lab"]
        await pilot.press(*"연구소")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.session is not None and app.session.current is not None
        assert app.session.current.id == world.lab
        assert app.title == "creatia-tui · 크리에이티아 연구소"

        await pilot.press("ctrl+o")
        await settle(pilot)
        assert isinstance(app.screen, SwitchOrganizationScreen)
        await pilot.press("escape")  # nothing changes
        await settle(pilot)
        assert app.session.current.id == world.lab

        # The list opens on the current organization (lab); the arrows move it under the
        # filter: up is acme.
        await pilot.press("ctrl+o", "up", "enter")
        await settle(pilot)
        assert app.session.current.id == world.acme
        assert app.sub_title == "김민준 · member"


@run_async
async def test_switching_organization_keeps_the_screen_and_rereads_permissions(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        assert isinstance(app.screen, OrganizationsScreen)
        assert "organizations.update" in app.session.permissions  # type: ignore[union-attr]
        await pilot.press("ctrl+o", *"acme", "enter")
        await settle(pilot)
        assert isinstance(app.screen, OrganizationsScreen)
        assert "organizations.update" not in app.session.permissions  # type: ignore[union-attr]


@run_async
async def test_screens_the_user_may_not_read_are_refused_with_a_sentence(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "yuna", world.lab)  # a viewer: no audit.read
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("8")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        [note] = [n.message for n in app._notifications]
        assert note == "You may not open Audit log here (permission audit.read)."
        await pilot.press("6")
        await settle(pilot)
        assert isinstance(app.screen, MembersScreen)  # viewers read members
        await pilot.press("7")
        await settle(pilot)
        assert isinstance(app.screen, RolesScreen)


@run_async
async def test_the_palette_offers_screens_organizations_and_permitted_actions(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "yuna", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("5")
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Go to Home", "Go to Members", "Go to Roles", "Search", "Refresh"} <= titles
        assert "Go to Audit log" not in titles  # a viewer lacks audit.read
        assert "Edit" not in titles and "New" not in titles
        assert "Theme" in titles  # Textual's own commands stay
        assert "Cursor down" not in titles  # the table's keys are not actions

    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert "Switch to Acme Robotics" in titles
        assert "Switch to 크리에이티아 연구소" not in titles  # the current one
        # Run one through the palette itself, by keyboard.
        await run_from_palette(pilot, "Go to Organizations")
        assert isinstance(app.screen, OrganizationsScreen)


@run_async
async def test_copy_id_and_message_use_the_clipboard(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("0")  # the overview: the highlighted row is the current organization
        await settle(pilot)
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == world.lab
        await pilot.press("Y")
        await pilot.pause()
        assert app.clipboard == "2 organizations"


@run_async
async def test_the_demo_signs_in_its_admin(dbs: Databases, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        seed(conn, dbs.mongo, SeedOptions(users=12, tasks=20, activity=10))
    app = demo_app(dbs)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.session is not None
        assert app.session.user.email == DEMO_ADMIN_EMAIL
        assert isinstance(app.screen, SwitchOrganizationScreen)
        assert len(app.screen.choices) == 3
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, HomeScreen)
        assert app.sub_title.endswith("· platform admin")


# ---------------------------------------------------------------- snapshots
def test_snapshot_sign_in_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    app = CreatiaApp(dbs, email="jiho@example.com", password="wrong password", show_latency=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before())


def test_snapshot_sign_in_160x50(dbs: Databases, world: World, snap_compare: Any) -> None:
    app = CreatiaApp(dbs, show_latency=False)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before())


def test_snapshot_switcher_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    app = app_as(dbs, "minjun")
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before())


def test_snapshot_switcher_filtered_160x50(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    app = app_as(dbs, "root", world.lab)
    steps = snapshot_before(press("ctrl+o"), press(*"연구"))
    assert snap_compare(app, terminal_size=(160, 50), run_before=steps)
