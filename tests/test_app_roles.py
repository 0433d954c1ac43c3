"""The Roles screen: pilot tests assert on the rows written (the change and its audit row) and on
nothing written when a form, the screen or the service refuses; snapshots at 80x24 and 160x50."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from creatia_tui.data.db import Databases
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.roles import RoleForm, RolesScreen
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

ROLES = (
    "SELECT id, organization_id, name, key, description, system_role, active FROM roles "
    "ORDER BY id"
)
GRANTS = "SELECT role_id, permission_id, granted FROM role_permissions ORDER BY id"
READ_ONLY = "System roles are read-only; create a dynamic role instead."


def everything(pg_dsn: str) -> tuple[Any, ...]:
    """Roles, grants, memberships and audit rows: what a refusal must leave alone."""
    return (
        table_snapshot(pg_dsn, ROLES),
        table_snapshot(pg_dsn, GRANTS),
        table_snapshot(pg_dsn, "SELECT id, role, active FROM organization_memberships ORDER BY id"),
        audit_rows(pg_dsn),
    )


def make_role(pg_dsn: str, org: str, name: str, key: str, *, holder: str | None = None) -> str:
    """A dynamic role made directly (as create_role would), optionally held by a member."""
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "INSERT INTO roles (organization_id, name, key, system_role) "
            "VALUES (%s, %s, %s, false) RETURNING id::text",
            (org, name, key),
        ).fetchone()
        assert row is not None
        conn.execute(
            "INSERT INTO role_permissions (role_id, permission_id, granted) "
            "SELECT %s, id, false FROM permissions",
            (row[0],),
        )
        if holder is not None:
            conn.execute("UPDATE organization_memberships SET role = %s WHERE id = %s",
                         (key, holder))
    return str(row[0])


def grant_of(pg_dsn: str, role_id: str, permission: str) -> bool:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT rp.granted FROM role_permissions rp JOIN permissions p "
            "ON p.id = rp.permission_id WHERE rp.role_id = %s AND p.name = %s",
            (role_id, permission),
        ).fetchone()
    assert row is not None
    return bool(row[0])


def role_row(pg_dsn: str, role_id: str) -> dict[str, Any]:
    with psycopg.connect(pg_dsn, row_factory=dict_row) as conn:
        row = conn.execute(
            "SELECT name, key, description, system_role, active FROM roles WHERE id = %s",
            (role_id,),
        ).fetchone()
    assert row is not None
    return row


def role_id_of(pg_dsn: str, org: str, key: str) -> str:
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT id::text FROM roles WHERE organization_id = %s AND key = %s", (org, key)
        ).fetchone()
    assert row is not None
    return str(row[0])


async def open_roles(pilot: Pilot[Any]) -> RolesScreen:
    await settle(pilot)
    await pilot.press("7")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, RolesScreen)
    return screen


def matrix_of(screen: RolesScreen) -> DataTable[Any]:
    return screen.query_one("#matrix", DataTable)


def move_to(screen: RolesScreen, role_id: str, permission: str) -> None:
    """Put the matrix cursor on (role, permission)."""
    grid = matrix_of(screen)
    permission_id = next(p.id for p in screen.matrix.permissions if p.name == permission)
    grid.move_cursor(row=grid.get_row_index(permission_id), column=grid.get_column_index(role_id))


def cell(screen: RolesScreen, role_id: str, permission: str) -> str:
    permission_id = next(p.id for p in screen.matrix.permissions if p.name == permission)
    return cell_texts(matrix_of(screen), permission_id)[role_id]


# ---------------------------------------------------------------- reading
@run_async
async def test_lists_roles_with_member_counts_and_the_matrix(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        role_list = screen.query_one("#role-list", DataTable)
        owner = role_id_of(pg_dsn, world.lab, "owner")
        member = role_id_of(pg_dsn, world.lab, "member")
        assert cell_texts(role_list, member) == {
            "name": "Member", "key": "member", "kind": "system", "active": "yes",
            "members": "2",  # jiho, and gone (a deactivated user whose membership is active)
            "description": "Works on tasks and sprints",
        }
        grid = matrix_of(screen)
        assert grid.row_count == 26
        assert [str(c.value) for c in grid.columns][:2] == ["permission", owner]
        assert cell(screen, owner, "organizations.manage") == "✓"
        assert cell(screen, member, "organizations.manage") == "·"
        assert message_of(app) == "4 roles · 26 permissions"


@run_async
async def test_the_role_list_and_the_matrix_follow_each_other(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        role_list = screen.query_one("#role-list", DataTable)
        grid = matrix_of(screen)
        assert grid.has_focus and grid.fixed_columns == 1
        await pilot.press("down", "right", "right", "right", "right")  # to 디자이너's column
        assert screen.current_role_id() == designer
        assert role_list.cursor_row == 4 and grid.cursor_coordinate == (1, 5)
        detail = str(screen.query_one("#cell-detail").render())
        assert detail == "디자이너 × backups.create: not granted · Take backups"
        await pilot.press("tab", "up")  # the list moves the matrix column with it
        assert grid.cursor_coordinate == (1, 4)
        assert "system role, read-only" in str(screen.query_one("#cell-detail").render())
        await pilot.press("y")
        await pilot.pause()
        assert app.clipboard == role_id_of(pg_dsn, world.lab, "viewer")


# ---------------------------------------------------------------- creating
@run_async
async def test_an_owner_creates_a_dynamic_role_with_every_permission_ungranted(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RoleForm)
        await pilot.press(*"디자이너", "tab", *"designer", "tab", *"화면 디자인 담당")
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Created 디자이너 (designer)."
        designer = role_id_of(pg_dsn, world.lab, "designer")
        assert screen.current_role_id() == designer  # the new role is highlighted
        assert cell_texts(screen.query_one("#role-list", DataTable), designer)["kind"] == "dynamic"
        assert cell(screen, designer, "tasks.read") == "·"

    assert role_row(pg_dsn, designer) == {
        "name": "디자이너", "key": "designer", "description": "화면 디자인 담당",
        "system_role": False, "active": True,
    }
    grants = table_snapshot(
        pg_dsn, f"SELECT granted, count(*) FROM role_permissions WHERE role_id = '{designer}' "
        "GROUP BY granted",
    )
    assert grants == [(False, 26)]
    [audit] = audit_rows(pg_dsn, world.lab)
    assert (audit["action"], audit["user_id"], audit["resource_id"]) == (
        "role.created", world.minjun, designer,
    )
    assert audit["changes"]["before"] is None
    assert audit["changes"]["after"]["name"] == "디자이너"
    assert audit["changes"]["after"]["key"] == "designer"


@run_async
async def test_a_bad_role_is_explained_in_the_form_and_nothing_is_written(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = everything(pg_dsn)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_roles(pilot)
        await pilot.press("n")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RoleForm)
        await pilot.press(*"디자이너", "tab", *"Designer")
        await pilot.pause()
        # Said while typing, and by the service on save.
        assert str(form.query_one("#key-hint").render()) == (
            "Start with a-z; then use only a-z, 0-9 and _."
        )
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text.startswith("The role key must start with a lowercase letter")

        form.query_one("#key", Input).value = "admin"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "admin is a system role key; choose another key."

        form.query_one("#key", Input).value = "designer"
        form.query_one("#name", Input).value = "admin"  # names are unique ignoring case
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "This organization already has a role named admin."

        form.query_one("#name", Input).value = "  "
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert form.error_text == "The role name is empty."
        assert app.screen is form
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, RolesScreen)
    assert everything(pg_dsn) == before


# ---------------------------------------------------------------- the matrix
@run_async
async def test_space_grants_then_revokes_one_permission_each_in_its_own_transaction(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    others = table_snapshot(pg_dsn, f"{GRANTS.replace('ORDER', 'WHERE role_id <> %r ORDER')}"
                            % designer)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        move_to(screen, designer, "tasks.read")
        where = matrix_of(screen).cursor_coordinate
        await pilot.press("space")
        await settle(pilot)
        assert message_of(app) == "Granted tasks.read to 디자이너."
        assert cell(screen, designer, "tasks.read") == "✓"
        assert matrix_of(screen).cursor_coordinate == where  # the cursor stays on the cell
        assert grant_of(pg_dsn, designer, "tasks.read") is True
        [granted] = audit_rows(pg_dsn, world.lab)
        assert (granted["action"], granted["user_id"], granted["resource_id"]) == (
            "role.permission_granted", world.minjun, designer,
        )
        assert granted["changes"] == {
            "before": {"permission": "tasks.read", "granted": False},
            "after": {"permission": "tasks.read", "granted": True},
        }

        await pilot.press("space")
        await settle(pilot)
        assert message_of(app) == "Revoked tasks.read from 디자이너."
        assert cell(screen, designer, "tasks.read") == "·"
        assert matrix_of(screen).cursor_coordinate == where
    assert grant_of(pg_dsn, designer, "tasks.read") is False
    actions = [a["action"] for a in audit_rows(pg_dsn, world.lab)]
    assert actions == ["role.permission_granted", "role.permission_revoked"]
    # Only that cell was ever touched.
    assert table_snapshot(
        pg_dsn, f"{GRANTS.replace('ORDER', 'WHERE role_id <> %r ORDER')}" % designer
    ) == others
    assert table_snapshot(
        pg_dsn, f"SELECT count(*) FROM role_permissions WHERE role_id = '{designer}' AND granted"
    ) == [(0,)]


@run_async
async def test_system_roles_are_read_only_and_nothing_is_written(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    before = everything(pg_dsn)
    admin = role_id_of(pg_dsn, world.lab, "admin")
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        move_to(screen, admin, "organizations.manage")
        for key in ("space", "e", "d"):
            screen.say("")
            await pilot.press(key)
            await settle(pilot)
            assert app.screen is screen  # no form, no confirmation
            assert message_of(app) == READ_ONLY
        assert cell(screen, admin, "organizations.manage") == "·"
        # On the permission column there is no role to toggle.
        matrix_of(screen).move_cursor(column=0)
        await pilot.press("space")
        await settle(pilot)
        assert message_of(app).startswith("Move to a role's column")
    assert everything(pg_dsn) == before


@run_async
async def test_an_admin_cannot_grant_a_permission_she_does_not_hold(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    before = everything(pg_dsn)
    app = app_as(dbs, "seoyeon", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        move_to(screen, designer, "organizations.manage")
        await pilot.press("space")
        await settle(pilot)
        assert message_of(app) == (
            "You cannot grant organizations.manage: you do not hold it yourself."
        )
        assert cell(screen, designer, "organizations.manage") == "·"
    assert everything(pg_dsn) == before


@run_async
async def test_a_member_is_offered_no_changes_and_pressing_the_keys_writes_nothing(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    before = everything(pg_dsn)
    app = app_as(dbs, "jiho", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        offered = {b.binding.action for b in screen.active_bindings.values() if b.enabled}
        assert {"new", "rename", "toggle", "toggle_active"}.isdisjoint(offered)
        assert "reload" in offered
        move_to(screen, designer, "tasks.read")
        await pilot.press("n", "e", "d", "space")
        await settle(pilot)
        assert app.screen is screen
        assert cell(screen, designer, "tasks.read") == "·"
    assert everything(pg_dsn) == before


# ---------------------------------------------------------------- renaming
@run_async
async def test_rename_a_dynamic_role_with_an_audit_row(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        move_to(screen, designer, "tasks.read")
        await pilot.press("e")
        await settle(pilot)
        form = app.screen
        assert isinstance(form, RoleForm)
        assert form.query_one("#name", Input).value == "디자이너"
        assert not form.query("#key")  # the key stays what it is
        form.query_one("#name", Input).value = "UI 디자이너"
        form.query_one("#description", Input).value = "화면 설계"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == "Saved UI 디자이너 (designer)."
        assert str(matrix_of(screen).columns[designer].label) == "UI 디자…"  # cut to 8 cells
        assert screen.current_role_id() == designer
    row = role_row(pg_dsn, designer)
    assert (row["name"], row["key"], row["description"]) == ("UI 디자이너", "designer", "화면 설계")
    [audit] = audit_rows(pg_dsn, world.lab)
    assert (audit["action"], audit["user_id"], audit["resource_id"]) == (
        "role.renamed", world.minjun, designer,
    )
    assert audit["changes"] == {
        "before": {"name": "디자이너", "description": None},
        "after": {"name": "UI 디자이너", "description": "화면 설계"},
    }


# ---------------------------------------------------------------- deactivating
@run_async
async def test_deactivate_an_unused_role_asks_first_then_reactivate(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer")
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        move_to(screen, designer, "tasks.read")
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)
        assert message_of(app) == "Nothing changed."
        assert role_row(pg_dsn, designer)["active"] is True
        assert audit_rows(pg_dsn, world.lab) == []

        await pilot.press("d")
        await settle(pilot)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == "Deactivated 디자이너 (designer)."
        role_list = screen.query_one("#role-list", DataTable)
        assert cell_texts(role_list, designer)["active"] == "no"
        assert role_row(pg_dsn, designer)["active"] is False

        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert message_of(app) == "Reactivated 디자이너 (designer)."
        assert cell_texts(role_list, designer)["active"] == "yes"
    assert role_row(pg_dsn, designer)["active"] is True
    deactivated, reactivated = audit_rows(pg_dsn, world.lab)
    assert (deactivated["action"], deactivated["user_id"], deactivated["resource_id"]) == (
        "role.deactivated", world.minjun, designer,
    )
    assert deactivated["changes"] == {"before": {"active": True}, "after": {"active": False}}
    assert reactivated["action"] == "role.reactivated"
    assert reactivated["changes"] == {"before": {"active": False}, "after": {"active": True}}


@run_async
async def test_a_role_with_members_is_not_deactivated_and_nothing_is_written(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    designer = make_role(pg_dsn, world.lab, "디자이너", "designer",
                         holder=world.memberships[(world.jiho, world.lab)])
    before = everything(pg_dsn)
    app = app_as(dbs, "minjun", world.lab)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_roles(pilot)
        assert cell_texts(screen.query_one("#role-list", DataTable), designer)["members"] == "1"
        move_to(screen, designer, "tasks.read")
        await pilot.press("d")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await settle(pilot)
        assert app.screen is screen
        assert message_of(app) == (
            "1 active member still has the role 디자이너; move them to another role first."
        )
    assert everything(pg_dsn) == before


# ---------------------------------------------------------------- snapshots
def test_snapshot_roles_80x24(dbs: Databases, world: World, pg_dsn: str, snap_compare: Any) -> None:
    make_role(pg_dsn, world.lab, "디자이너", "designer")
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_before(press("7")))


def test_snapshot_roles_160x50(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    make_role(pg_dsn, world.lab, "디자이너", "designer")
    make_role(pg_dsn, world.lab, "프로젝트 매니저 (외부 협력사)", "external_pm")
    app = app_as(dbs, "minjun", world.lab)
    assert snap_compare(app, terminal_size=(160, 50), run_before=snapshot_before(press("7")))


def test_snapshot_role_form_refusal_80x24(
    dbs: Databases, world: World, snap_compare: Any
) -> None:
    async def bad_key(pilot: Pilot[Any]) -> None:
        await pilot.press(*"디자이너", "tab", *"Designer", "ctrl+s")

    app = app_as(dbs, "minjun", world.lab)
    steps = snapshot_before(press("7"), press("n"), bad_key)
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)


def test_snapshot_deactivate_refused_80x24(
    dbs: Databases, world: World, pg_dsn: str, snap_compare: Any
) -> None:
    make_role(pg_dsn, world.lab, "디자이너", "designer",
              holder=world.memberships[(world.jiho, world.lab)])
    make_role(pg_dsn, world.lab, "외부 협력사 매니저", "partner")
    app = app_as(dbs, "minjun", world.lab)
    steps = snapshot_before(
        press("7"), press("down", "right", "right", "right", "right"), press("d"), press("y")
    )
    assert snap_compare(app, terminal_size=(80, 24), run_before=steps)
