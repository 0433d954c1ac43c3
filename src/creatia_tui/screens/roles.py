"""Roles: the organization's roles and the permission matrix (roles × permissions).

The role list sits on top (kind, active, members); the matrix below has one row per permission
("resource.action", fixed on the left while the role columns scroll) and one column per role,
system roles first. The two follow each other: the highlighted role in the list is the
highlighted column in the matrix, and ``e``, ``d`` and ``y`` act on it.

A cell says its state in a glyph that survives NO_COLOR ("✓" granted, "·" not), and the line
under the matrix says it in words. System roles are read-only: their cells are dim, and space,
``e`` and ``d`` on them refuse with a sentence. Space on a dynamic role's cell grants or revokes
that one permission in one transaction and updates only that cell; a refusal (a permission you do
not hold yourself, say) leaves the cell as it was. Deactivating asks first; the service refuses
while active members still hold the role.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from creatia_tui.data import roles as service
from creatia_tui.data.models import (
    SYSTEM_ROLE_KEYS,
    Permission,
    PermissionMatrix,
    Role,
    RoleSummary,
)
from creatia_tui.errors import ValidationError
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.session import Session
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

NAME_WIDTH = 20
KEY_WIDTH = 16
DESCRIPTION_WIDTH = 40
PERMISSION_WIDTH = 20  # "organizations.manage"
ROLE_WIDTH = 8  # a matrix column: "디자이너" is 8 cells
GRANTED, NOT_GRANTED = "✓", "·"
KEY_HINT = "a-z, 0-9 and _, starting with a letter"


def key_problem(key: str) -> str | None:
    """Why a role key cannot be right, said while typing (the service says it again)."""
    if key in SYSTEM_ROLE_KEYS:
        return f"{key} is a system role key; choose another key."
    if not service.KEY_PATTERN.match(key):
        return "Start with a-z; then use only a-z, 0-9 and _."
    return None


class RoleForm(FormScreen[Role]):
    """Create a dynamic role (``existing=None``) or rename one (name and description)."""

    DEFAULT_CSS = """
    RoleForm #key-hint {
        column-span: 2;
        padding-left: 13;
    }
    """

    def __init__(self, session: Session, existing: RoleSummary | None = None) -> None:
        super().__init__()
        self.session = session
        self.existing = existing

    def form_title(self) -> str:
        if self.existing is None:
            return "New role"
        return f"Rename {self.existing.name} ({self.existing.key})"

    def compose_fields(self) -> Iterable[Widget]:
        role = self.existing
        yield from field("Name", Input(role.name if role else "", id="name", compact=True))
        if role is None:
            yield from field(
                "Key", Input(id="key", compact=True, placeholder=KEY_HINT, max_length=100)
            )
            yield Static("", id="key-hint", classes="form-hint", markup=False)
        description = (role.description or "") if role else ""
        yield from field("Description", Input(description, id="description", compact=True))

    @on(Input.Changed, "#key")
    def key_changed(self, event: Input.Changed) -> None:
        problem = key_problem(event.value.strip()) if event.value else None
        self.query_one("#key-hint", Static).update(problem or "")

    def collect(self) -> Job[Role]:
        name = self.query_one("#name", Input).value
        description = self.query_one("#description", Input).value
        if not name.strip():
            raise ValidationError("The role name is empty.")
        actor, existing = self.session.actor, self.existing
        assert actor is not None
        if existing is None:
            key = self.query_one("#key", Input).value.strip()
            # The service checks the key (and says why) inside its transaction.
            return lambda conn: service.create_role(
                conn, actor, name=name, key=key, description=description
            )
        return lambda conn: service.rename_role(
            conn, actor, existing.id, name=name, description=description
        )


class RolesScreen(AppScreen):
    """The role list and the permission matrix of the current organization."""

    READ_PERMISSION = "roles.read"
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "new": "roles.create",
        "rename": "roles.update",
        "toggle": "roles.update",
        "toggle_active": "roles.delete",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle", "Toggle"),
        Binding("n", "new", "New"),
        Binding("e", "rename", "Rename"),
        Binding("d", "toggle_active", "On/off"),
        # Off the footer so ^o still fits at 80 columns; listed by ? and the palette.
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    RolesScreen #role-list {
        height: auto;
        max-height: 35%;
        /* Still scrolls sideways (left/right); the bar would cost a line at 80x24. */
        scrollbar-size-horizontal: 0;
    }
    RolesScreen #matrix {
        height: 1fr;
    }
    RolesScreen #cell-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.matrix = PermissionMatrix(roles=[], permissions=[], granted=frozenset())
        self._saving: set[tuple[str, str]] = set()  # (role id, permission id) being toggled

    def compose_body(self) -> Iterable[Widget]:
        roles: DataTable[Text] = DataTable(id="role-list", cursor_type="row", zebra_stripes=True)
        # Fixed widths, as on the organizations screen: a DataTable that sizes columns from its
        # content can draw its header before measuring and keep the labels' widths (seen in a
        # full test run under load).
        for key, label, width in (
            ("name", "Role", NAME_WIDTH), ("key", "Key", KEY_WIDTH), ("kind", "Kind", 7),
            ("active", "Active", 6), ("members", "Members", 7),
            ("description", "Description", DESCRIPTION_WIDTH),
        ):
            roles.add_column(Text(label, justify="right" if key == "members" else "left"),
                             key=key, width=width)
        yield roles
        yield DataTable(id="matrix", cursor_type="cell", fixed_columns=1)
        yield Static("", id="cell-detail", markup=False)

    def on_mount(self) -> None:
        self.grid.focus()
        self.action_reload()

    @property
    def role_list(self) -> DataTable[Text]:
        return self.query_one("#role-list", DataTable)

    @property
    def grid(self) -> DataTable[Text]:
        return self.query_one("#matrix", DataTable)

    # ------------------------------------------------------------ loading
    def action_reload(self, select: str | None = None, note: str | None = None) -> None:
        """Read the roles and the matrix again; ``note`` replaces the count on the message line."""
        actor = self.actor
        self.say("Loading…")
        self.run_db(
            lambda conn: service.permission_matrix(conn, actor),
            lambda matrix: self._loaded(matrix, select, note),
            group="roles",
        )

    def _loaded(self, matrix: PermissionMatrix, select: str | None, note: str | None) -> None:
        keep_role = select or self.current_role_id()
        keep_permission = self.current_permission_id()
        self.matrix = matrix
        role_list, grid = self.role_list, self.grid
        role_list.clear()
        for role in matrix.roles:
            role_list.add_row(
                fit(role.name, NAME_WIDTH),
                fit(role.key, KEY_WIDTH),
                Text("system" if role.system_role else "dynamic"),
                Text("yes" if role.active else "no"),
                Text(str(role.active_member_count), justify="right"),
                fit(role.description or "", DESCRIPTION_WIDTH),
                key=role.id,
            )
        grid.clear(columns=True)
        grid.add_column(Text("Permission"), width=PERMISSION_WIDTH, key="permission")
        for role in matrix.roles:
            grid.add_column(fit(role.name, ROLE_WIDTH), width=ROLE_WIDTH, key=role.id)
        for permission in matrix.permissions:
            grid.add_row(
                fit(permission.name, PERMISSION_WIDTH),
                *(self._cell(role, permission) for role in matrix.roles),
                key=permission.id,
            )
        role_ids = [role.id for role in matrix.roles]
        permission_ids = [permission.id for permission in matrix.permissions]
        row = permission_ids.index(keep_permission) if keep_permission in permission_ids else 0
        if keep_role in role_ids:
            index = role_ids.index(keep_role)
            role_list.move_cursor(row=index)
            grid.move_cursor(row=row, column=index + 1)
        elif role_ids:
            grid.move_cursor(row=row, column=1)
        roles = plural(len(matrix.roles), "role")
        self.say(note or f"{roles} · {plural(len(matrix.permissions), 'permission')}")
        self._show_detail()

    def _cell(self, role: RoleSummary, permission: Permission) -> Text:
        granted = self.matrix.is_granted(role.id, permission.id)
        return Text(
            GRANTED if granted else NOT_GRANTED,
            style="dim" if role.system_role else "",
            justify="center",
        )

    # ------------------------------------------------------------ selection
    def current_role_id(self) -> str | None:
        """The role highlighted in the list, which is also the matrix's highlighted column."""
        return highlighted_key(self.role_list)

    def current_role(self) -> RoleSummary | None:
        selected = self.current_role_id()
        return next((r for r in self.matrix.roles if r.id == selected), None)

    def current_permission_id(self) -> str | None:
        return highlighted_key(self.grid)

    def current_cell(self) -> tuple[RoleSummary, Permission] | None:
        """The (role, permission) under the matrix cursor; None on the permission column."""
        grid = self.grid
        if not grid.row_count or grid.cursor_column == 0:
            return None
        row_key, column_key = grid.coordinate_to_cell_key(grid.cursor_coordinate)
        role = next((r for r in self.matrix.roles if r.id == column_key.value), None)
        permission = next(
            (p for p in self.matrix.permissions if p.id == row_key.value), None
        )
        return (role, permission) if role and permission else None

    # The two cursors follow each other. Each handler reads the cursors as they are now, not
    # the event's (possibly older) position, so events queued by a reload cannot pull them apart.
    @on(DataTable.RowHighlighted, "#role-list")
    def role_highlighted(self) -> None:
        grid, row = self.grid, self.role_list.cursor_row
        if grid.row_count and grid.cursor_column != row + 1:
            grid.move_cursor(column=row + 1)
        self._show_detail()

    @on(DataTable.RowSelected, "#role-list")
    def role_selected(self) -> None:
        self.grid.focus()

    @on(DataTable.CellHighlighted, "#matrix")
    def cell_highlighted(self) -> None:
        column, role_list = self.grid.cursor_column, self.role_list
        if column > 0 and role_list.cursor_row != column - 1:
            role_list.move_cursor(row=column - 1)
        self._show_detail()

    def _show_detail(self) -> None:
        text = ""
        cell = self.current_cell()
        if cell is not None:
            role, permission = cell
            granted = self.matrix.is_granted(role.id, permission.id)
            parts = [f"{role.name} × {permission.name}: {'granted' if granted else 'not granted'}"]
            if role.system_role:
                parts.append("system role, read-only")
            if not role.active:
                parts.append("role deactivated")
            if permission.description:
                parts.append(permission.description)
            text = " · ".join(parts)
        else:
            role = self.current_role()
            if role is not None:
                text = (f"{role.name} ({role.key}) · "
                        f"{'system role, read-only' if role.system_role else 'dynamic role'} · "
                        f"{plural(role.active_member_count, 'active member')}")
        self.query_one("#cell-detail", Static).update(text)

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.current_role_id()
        return ("the role id", selected) if selected else None

    # ------------------------------------------------------------ the matrix
    def action_toggle(self) -> None:
        cell = self.current_cell()
        if cell is None:
            self.say("Move to a role's column (right arrow) to toggle its permission.",
                     error=True)
            return
        role, permission = cell
        if role.system_role:
            self.say(service.READ_ONLY, error=True)
            return
        pair = (role.id, permission.id)
        if pair in self._saving:
            self.say("That cell is still being saved.", error=True)
            return
        granted = not self.matrix.is_granted(role.id, permission.id)
        actor = self.actor
        self._saving.add(pair)

        def done(_changed: bool) -> None:
            self._saving.discard(pair)
            self._set_cell(role, permission, granted)
            verb = "Granted" if granted else "Revoked"
            self.say(f"{verb} {permission.name} {'to' if granted else 'from'} {role.name}.")

        def failed(text: str) -> None:
            self._saving.discard(pair)
            self.say(text, error=True)

        # Not exclusive: each toggle is its own transaction, and none cancels another's result.
        self.run_db(
            lambda conn: service.set_permission(conn, actor, role.id, permission.id, granted),
            done, failed=failed, group="toggle", exclusive=False,
        )

    def _set_cell(self, role: RoleSummary, permission: Permission, granted: bool) -> None:
        pair = (role.id, permission.id)
        matrix = self.matrix
        self.matrix = PermissionMatrix(
            roles=matrix.roles,
            permissions=matrix.permissions,
            granted=matrix.granted | {pair} if granted else matrix.granted - {pair},
        )
        grid = self.grid
        if role.id in grid.columns and permission.id in grid.rows:
            grid.update_cell(permission.id, role.id, self._cell(role, permission))
        self._show_detail()

    # ------------------------------------------------------------ role changes
    def _writable_role(self) -> RoleSummary | None:
        role = self.current_role()
        if role is None:
            self.say("There is no role here yet.", error=True)
            return None
        if role.system_role:
            self.say(service.READ_ONLY, error=True)
            return None
        return role

    def _saved(self, result: Role | None, verb: str) -> None:
        if result is None:
            return
        self.action_reload(select=result.id, note=f"{verb} {result.name} ({result.key}).")

    def action_new(self) -> None:
        self.app.push_screen(RoleForm(self.session), lambda role: self._saved(role, "Created"))

    def action_rename(self) -> None:
        role = self._writable_role()
        if role is None:
            return
        self.app.push_screen(
            RoleForm(self.session, role), lambda saved: self._saved(saved, "Saved")
        )

    def action_toggle_active(self) -> None:
        role = self._writable_role()
        if role is None:
            return
        actor = self.actor
        active = not role.active
        if active:
            question = f"Reactivate {role.name}? It can be given to members again."
        else:
            question = (
                f"Deactivate {role.name}? It can no longer be given to members; "
                "anyone who holds it must be moved to another role first."
            )

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing changed.")
                return
            change = service.reactivate_role if active else service.deactivate_role
            self.run_db(
                lambda conn: change(conn, actor, role.id),
                lambda saved: self._saved(saved, "Reactivated" if active else "Deactivated"),
            )

        self.app.push_screen(
            ConfirmScreen(question, "Reactivate" if active else "Deactivate"), answered
        )
