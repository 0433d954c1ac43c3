"""The Organizations screen: pilot tests assert on the rows written (the change and its audit
row) and on nothing written when a form or the service refuses; snapshots at 80x24 and 160x50."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, TextArea

from creatia_tui.data.db import Databases
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.organizations import OrganizationForm, OrganizationsScreen
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

ORGS = "SELECT id, name, subdomain, plan, active, settings FROM organizations ORDER BY id"


def org_row(pg_dsn: str, org_id: str) -> dict[str, Any]:
    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT name, subdomain, plan, active, settings FROM organizations WHERE id = %s",
            (org_id,),
        ).fetchone()
    assert row is not None
    return row


async def open_organizations(pilot: Pilot[Any]) -> OrganizationsScreen:
    await settle(pilot)
    await pilot.press("5")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, OrganizationsScreen)
    return screen


def select_row(screen: OrganizationsScreen, org_id: str) -> None:
    table = screen.query_one("#org-table", DataTable)
    table.move_cursor(row=table.get_row_index(org_id))


def fill(form: OrganizationForm, **values: str) -> None:
    for name, value in values.items():
        if name == "settings":
            form.query_one("#settings", TextArea).text = value
        else:
            form.query_one(f"#{name}", Input).value = value


@run_async
async def test_lists_what_the_user_may_read_with_member_counts(
    dbs: Databases, world: World
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        table = screen.query_one("#org-table", DataTable)
        assert sorted(str(k.value) for k in table.rows) == sorted([world.lab, world.acme])
        lab = cell_texts(table, world.lab)
        assert (lab["name"], lab["subdomain"], lab["plan"], lab["members"]) == (
            "크리에이티아 연구소", "creatia-lab", "enterprise", "5",
        )
        assert message_of(app) == "2 organizations"


@run_async
async def test_search_matches_name_or_subdomain(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        await pilot.press("slash", *"연구", "enter")
        await settle(pilot)
        table = screen.query_one("#org-table", DataTable)
        assert [str(k.value) for k in table.rows] == [world.lab]
        screen.query_one("#org-search", Input).value = "dorm"
        await pilot.press("slash", "enter")
        await settle(pilot)
        assert [str(k.value) for k in table.rows] == [world.dormant]
        assert message_of(app) == "1 organization matching 'dorm'"


@run_async
async def test_a_platform_admin_creates_an_organization_and_becomes_its_owner(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, OrganizationForm)
        await pilot.press(*"디자인 스튜디오", "tab", *"design")
        await pilot.press("tab", "right")  # plan: free -> pro
        fill(form, settings='{"timezone": "Asia/Seoul"}')
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Created 디자인 스튜디오 (design)."

    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        org = conn.execute(
            "SELECT id::text AS id, name, plan, active, settings FROM organizations "
            "WHERE subdomain = 'design'"
        ).fetchone()
        assert org is not None
        assert (org["name"], org["plan"], org["active"]) == ("디자인 스튜디오", "pro", True)
        assert org["settings"] == {"timezone": "Asia/Seoul"}
        owner = conn.execute(
            "SELECT user_id::text AS user_id, role FROM organization_memberships "
            "WHERE organization_id = %s",
            (org["id"],),
        ).fetchall()
        assert owner == [{"user_id": world.root, "role": "owner"}]
    created = audit_rows(pg_dsn, org["id"])[0]
    assert created["action"] == "organization.created"
    assert created["user_id"] == world.root
    assert created["changes"]["before"] is None
    assert created["changes"]["after"]["subdomain"] == "design"
    assert created["user_agent"].startswith("creatia-tui/")


@run_async
async def test_a_bad_subdomain_is_explained_and_nothing_is_written(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = table_snapshot(pg_dsn, ORGS)
    audit_before = audit_rows(pg_dsn)
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_organizations(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, OrganizationForm)
        fill(form, name="새 조직", subdomain="-bad-")
        await pilot.pause()
        # Said while typing, and again on save.
        assert "cannot start or end with a hyphen" in str(
            form.query_one("#subdomain-hint").render()
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "The subdomain cannot start or end with a hyphen."

        fill(form, subdomain="acme")  # taken: refused by the service, inside its transaction
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert form.error_text == "The subdomain acme is already taken."

        fill(form, subdomain="new-org", settings="{not json")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text.startswith("The settings are not valid JSON:")
        # What was typed is still there.
        assert form.query_one("#name", Input).value == "새 조직"
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, OrganizationsScreen)
    assert table_snapshot(pg_dsn, ORGS) == before
    assert audit_rows(pg_dsn) == audit_before


@run_async
async def test_an_owner_edits_name_plan_and_settings_with_an_audit_row(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        select_row(screen, world.lab)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, OrganizationForm)
        assert form.query_one("#name", Input).value == "크리에이티아 연구소"
        fill(form, name="크리에이티아 랩", settings='{"locale": "ko-KR"}')
        form.query_one("#plan").action_step(-1)  # enterprise -> pro
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Saved 크리에이티아 랩 (creatia-lab)."
        assert cell_texts(screen.query_one("#org-table", DataTable), world.lab)["name"] == (
            "크리에이티아 랩"
        )
    row = org_row(pg_dsn, world.lab)
    assert (row["name"], row["plan"]) == ("크리에이티아 랩", "pro")
    assert row["settings"] == {"locale": "ko-KR"}
    [audit] = audit_rows(pg_dsn, world.lab)
    assert audit["action"] == "organization.updated"
    assert audit["user_id"] == world.minjun
    assert audit["changes"]["before"]["name"] == "크리에이티아 연구소"
    assert audit["changes"]["after"]["name"] == "크리에이티아 랩"
    assert audit["changes"]["after"]["plan"] == "pro"
    assert "subdomain" not in audit["changes"]["after"]  # unchanged fields are left out


@run_async
async def test_a_refusal_from_the_service_shows_in_the_form_and_writes_nothing(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    """minjun owns lab (so the key is offered) but is only a member of acme."""
    before = table_snapshot(pg_dsn, ORGS)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        select_row(screen, world.acme)
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, OrganizationForm)
        fill(form, name="Acme Takeover")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is form
        assert "organizations.update" in form.error_text
        assert form.error_text.count(".") >= 1 and "\n" not in form.error_text
    assert table_snapshot(pg_dsn, ORGS) == before
    assert audit_rows(pg_dsn) == []


@run_async
async def test_a_member_is_not_offered_edit_or_deactivate(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = table_snapshot(pg_dsn, ORGS)
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        offered = {b.binding.action for b in screen.active_bindings.values()}
        assert "edit" not in offered and "toggle_active" not in offered and "new" not in offered
        await pilot.press("e", "d", "n")
        await settle(pilot)
        assert app.screen is screen
    assert table_snapshot(pg_dsn, ORGS) == before
    assert audit_rows(pg_dsn) == []


@run_async
async def test_deactivate_asks_first_and_writes_the_change_and_its_audit_row(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "bob", world.acme)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        select_row(screen, world.acme)
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert org_row(pg_dsn, world.acme)["active"] is True
        assert message_of(app) == "Nothing changed."

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == "Deactivated Acme Robotics (acme)."
    assert org_row(pg_dsn, world.acme)["active"] is False
    [audit] = audit_rows(pg_dsn, world.acme)
    assert audit["action"] == "organization.deactivated"
    assert audit["changes"] == {"before": {"active": True}, "after": {"active": False}}


@run_async
async def test_a_platform_admin_reactivates(dbs: Databases, world: World, pg_dsn: str) -> None:
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        select_row(screen, world.dormant)
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert cell_texts(screen.query_one("#org-table", DataTable), world.dormant)["active"] == (
            "yes"
        )
    assert org_row(pg_dsn, world.dormant)["active"] is True
    assert [a["action"] for a in audit_rows(pg_dsn, world.dormant)] == ["organization.reactivated"]


@run_async
async def test_y_copies_the_highlighted_id(dbs: Databases, world: World) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_organizations(pilot)
        select_row(screen, world.acme)
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == world.acme


# ---------------------------------------------------------------- snapshots
def test_snapshot_organizations_80x24(dbs: Databases, world: World, snap_compare: Any) -> None:
    app = app_as(dbs, "root", world.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("5")))


def test_snapshot_organizations_160x50(dbs: Databases, world: World, snap_compare: Any) -> None:
    app = app_as(dbs, "root", world.lab)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before(press("5")))


def test_snapshot_organization_form_refusal_80x24(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    async def bad_subdomain(pilot: Pilot[Any]) -> None:
        await pilot.press(*"디자인 스튜디오", "tab", *"Design", "ctrl+s")

    app = app_as(dbs, "root", world.lab)
    steps = snapshot_before(press("5"), press("n"), bad_subdomain)
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_snapshot_deactivate_confirmation_80x24(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(
        app, terminal_size=(80, 24), run_before=snapshot_before(press("5"), press("d"))
    )
