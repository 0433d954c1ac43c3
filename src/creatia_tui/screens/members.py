"""Members of the current organization: search, add, create, change role, (de)activate.

The list shows every membership, active ones first, with the person's name, email, role, whether
the membership is active and the day they joined. The highlighted row's detail line says the rest
(the role's key, whether the account itself is deactivated).

Every change goes through :mod:`creatia_tui.data.admin`, which checks the permission, refuses
what must not happen (the last active owner demoted or removed, a role that grants what the actor
lacks, a member who outranks the actor, a duplicate member, an unknown email, a weak password)
and writes the change with its audit row in one transaction. A refusal is one sentence in the
form, or on the message line, and nothing is written.

The role picker offers the organization's active roles (read with the list; ``roles.read``).
An actor who may not read roles gets the four system roles, and the service still decides.
The typed password goes to the service and nowhere else: not to a message, not to the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import psycopg
from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from creatia_tui.data import admin
from creatia_tui.data.access import Actor
from creatia_tui.data.models import SYSTEM_ROLE_KEYS, MemberRow, Membership, User
from creatia_tui.data.roles import list_roles
from creatia_tui.errors import PermissionDenied, ValidationError
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

NAME_WIDTH = 20
EMAIL_WIDTH = 28
ROLE_WIDTH = 14


@dataclass(frozen=True)
class RoleOption:
    key: str
    name: str


# When the actor may not read roles: the roles every organization has.
SYSTEM_ROLES = tuple(RoleOption(key, key.capitalize()) for key in SYSTEM_ROLE_KEYS)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    # Dropped when the table would not fit the terminal; the detail line still says it.
    optional: bool = False


COLUMNS = (
    Column("name", "Name"),
    Column("email", "Email"),
    Column("role", "Role"),
    Column("active", "Active"),
    Column("joined", "Joined", optional=True),
)


def display_name(member: MemberRow) -> str:
    return member.name or member.email


def joined(member: MemberRow) -> str:
    return member.joined_at.strftime("%Y-%m-%d") if member.joined_at else "-"


def cells_for(member: MemberRow) -> dict[str, Text]:
    return {
        "name": fit(display_name(member), NAME_WIDTH),
        "email": fit(member.email, EMAIL_WIDTH),
        "role": fit(member.role_name, ROLE_WIDTH),
        "active": Text("yes" if member.active else "no"),
        "joined": Text(joined(member)),
    }


def column_widths(rows: Sequence[dict[str, Text]]) -> dict[str, int]:
    """Each column's content width in cells: its widest cell or its label."""
    return {
        c.key: max([len(c.label), *(row[c.key].cell_len for row in rows)]) for c in COLUMNS
    }


def columns_that_fit(widths: dict[str, int], width: int, padding: int) -> list[Column]:
    """All columns when they fit in ``width`` cells, otherwise only the required ones."""
    scrollbar = 2
    if sum(widths[c.key] + 2 * padding for c in COLUMNS) + scrollbar <= width:
        return list(COLUMNS)
    return [c for c in COLUMNS if not c.optional]


def describe(member: MemberRow) -> str:
    parts = [
        display_name(member),
        member.email,
        f"{member.role_name} ({member.role_key})",
        "active" if member.active else "inactive",
        f"joined {joined(member)}",
    ]
    if not member.user_active:
        parts.append("account deactivated: cannot sign in")
    return " · ".join(parts)


def role_choice(
    roles: Sequence[RoleOption], current: str | None = None, *, id: str = "role"
) -> Choice:
    return Choice([(role.name, role.key) for role in roles], current, id=id)


def default_role(roles: Sequence[RoleOption]) -> str | None:
    keys = [role.key for role in roles]
    return "member" if "member" in keys else (keys[0] if keys else None)


# ---------------------------------------------------------------- forms
class AddMemberForm(FormScreen[Membership]):
    """Add an existing user by email."""

    SAVE_LABEL = "Add"

    def __init__(self, actor: Actor, organization: str, roles: Sequence[RoleOption]) -> None:
        super().__init__()
        self.actor = actor
        self.organization = organization
        self.roles = list(roles)
        self.email = ""  # as typed, for the note after saving

    def form_title(self) -> str:
        return f"Add an existing user to {self.organization}"

    def compose_fields(self) -> Iterable[Widget]:
        yield from field("Email", Input(id="email", compact=True, placeholder="name@example.com"))
        yield from field("Role", role_choice(self.roles, default_role(self.roles)))

    def collect(self) -> Job[Membership]:
        email = self.query_one("#email", Input).value.strip()
        role = self.query_one("#role", Choice).value
        if not email:
            raise ValidationError("The email is empty.")
        self.email = email
        actor = self.actor
        return lambda conn: admin.add_member_by_email(conn, actor, email, role)


class CreateMemberForm(FormScreen[tuple[User, Membership]]):
    """Create an account and make it a member, in one transaction."""

    SAVE_LABEL = "Create"

    def __init__(self, actor: Actor, organization: str, roles: Sequence[RoleOption]) -> None:
        super().__init__()
        self.actor = actor
        self.organization = organization
        self.roles = list(roles)

    def form_title(self) -> str:
        return f"Create a user and add them to {self.organization}"

    def compose_fields(self) -> Iterable[Widget]:
        yield from field("Email", Input(id="email", compact=True, placeholder="name@example.com"))
        yield from field("Name", Input(id="name", compact=True))
        yield from field("Password", Input(id="password", compact=True, password=True))
        yield from field("Role", role_choice(self.roles, default_role(self.roles)))

    def collect(self) -> Job[tuple[User, Membership]]:
        email = self.query_one("#email", Input).value.strip()
        name = self.query_one("#name", Input).value
        password = self.query_one("#password", Input).value
        role = self.query_one("#role", Choice).value
        if not email:
            raise ValidationError("The email is empty.")
        actor = self.actor
        return lambda conn: admin.create_user_and_add_member(
            conn, actor, email=email, name=name, password=password, role=role
        )


class ChangeRoleForm(FormScreen[Membership]):
    """Pick another role for a member; the current one is preselected."""

    SAVE_LABEL = "Change"

    def __init__(self, actor: Actor, member: MemberRow, roles: Sequence[RoleOption]) -> None:
        super().__init__()
        self.actor = actor
        self.member = member
        self.roles = list(roles)
        if member.role_key not in {role.key for role in self.roles}:
            # A deactivated role still held: keep it, so saving unchanged changes nothing.
            self.roles.insert(0, RoleOption(member.role_key, f"{member.role_name} (deactivated)"))

    def form_title(self) -> str:
        return f"Change the role of {display_name(self.member)}"

    def compose_fields(self) -> Iterable[Widget]:
        yield from field("Member", Static(self.member.email, markup=False))
        yield from field("Role", role_choice(self.roles, self.member.role_key))

    def on_mount(self) -> None:
        self.query_one("#role", Choice).focus()

    def collect(self) -> Job[Membership]:
        role = self.query_one("#role", Choice).value
        actor, membership_id = self.actor, self.member.membership_id
        return lambda conn: admin.change_member_role(conn, actor, membership_id, role)


# ---------------------------------------------------------------- the screen
def _load(
    conn: psycopg.Connection[Any], actor: Actor, search: str | None
) -> tuple[list[MemberRow], list[RoleOption] | None]:
    members = admin.list_members(conn, actor, search)
    try:
        roles = [RoleOption(r.key, r.name) for r in list_roles(conn, actor) if r.active]
    except PermissionDenied:
        roles = None  # the role picker falls back to the system roles
    return members, roles


class MembersScreen(AppScreen):
    """The current organization's members, with search."""

    READ_PERMISSION = "members.read"
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "add": "members.create",
        "create": "members.create",
        "change_role": "members.update",
        # Reactivating needs members.update instead: see check_action.
        "toggle_active": "members.delete",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("a", "add", "Add"),
        Binding("c", "create", "New user"),
        Binding("e", "change_role", "Role"),
        Binding("d", "toggle_active", "On/off"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    MembersScreen #member-search-row {
        height: 1;
        padding: 0 1;
    }
    MembersScreen #member-search-row Static {
        width: auto;
        color: $text-muted;
    }
    MembersScreen #member-search {
        width: 1fr;
    }
    MembersScreen #member-table {
        height: 1fr;
    }
    MembersScreen #member-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.members: list[MemberRow] = []
        self.roles: list[RoleOption] | None = None
        self._loaded_once = False

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="member-search-row"):
            yield Static("Search ")
            yield Input(placeholder="name or email (/ to search, enter to list)",
                        id="member-search", compact=True)
        yield DataTable(id="member-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="member-detail", markup=False)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#member-table", DataTable)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "toggle_active" and self.members and self.creatia.session is not None:
            member = self.highlighted()
            if member is not None and not member.active:
                return self.session.may("members.update")
        return super().check_action(action, parameters)

    @property
    def assignable_roles(self) -> list[RoleOption]:
        return list(self.roles) if self.roles is not None else list(SYSTEM_ROLES)

    # ------------------------------------------------------------ loading
    def action_reload(self, select: str | None = None, note: str | None = None) -> None:
        """Read the list again; ``note`` replaces the count on the message line."""
        search = self.query_one("#member-search", Input).value.strip() or None
        actor = self.actor
        self.say("Loading…")
        self.run_db(
            lambda conn: _load(conn, actor, search),
            lambda loaded: self._loaded(*loaded, select, note),
            group="members",
        )

    def _loaded(
        self,
        members: list[MemberRow],
        roles: list[RoleOption] | None,
        select: str | None,
        note: str | None,
    ) -> None:
        self._loaded_once = True
        self.members = members
        self.roles = roles
        self._fill_table(select)
        search = self.query_one("#member-search", Input).value.strip()
        found = plural(len(members), "member")
        self.say(note or (f"{found} matching {search!r}" if search else found))

    def _fill_table(self, select: str | None = None) -> None:
        table = self.table
        keep = select or self.highlighted_id()
        rows = {m.membership_id: cells_for(m) for m in self.members}
        widths = column_widths(list(rows.values()))
        # The screen's width, not the table's: on a resize the table is laid out after this runs.
        columns = columns_that_fit(widths, self.size.width, table.cell_padding)
        with self.app.batch_update():
            # Widths given, not measured by the table when idle: a frame drawn before that
            # measurement would stay cached (and drawn under a form) with the labels' widths.
            table.clear(columns=True)
            for column in columns:
                table.add_column(Text(column.label), key=column.key, width=widths[column.key])
            for membership_id, cells in rows.items():
                table.add_row(*(cells[c.key] for c in columns), key=membership_id)
            if keep in rows:
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def on_resize(self) -> None:
        if self._loaded_once:
            self._fill_table()

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        return highlighted_key(self.table)

    def highlighted(self) -> MemberRow | None:
        selected = self.highlighted_id()
        return next((m for m in self.members if m.membership_id == selected), None)

    def _show_detail(self) -> None:
        member = self.highlighted()
        self.query_one("#member-detail", Static).update(describe(member) if member else "")
        self.refresh_bindings()  # d needs another permission on an inactive member

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return ("the membership id", selected) if selected else None

    # ------------------------------------------------------------ search
    def action_search(self) -> None:
        self.query_one("#member-search", Input).focus()

    @on(Input.Submitted, "#member-search")
    def search_submitted(self) -> None:
        self.action_reload()
        self.table.focus()

    def key_escape(self) -> None:
        if self.query_one("#member-search", Input).has_focus:
            self.table.focus()

    # ------------------------------------------------------------ changes
    def _role_name(self, key: str) -> str:
        for role in self.assignable_roles:
            if role.key == key:
                return role.name
        return next((m.role_name for m in self.members if m.role_key == key), key)

    def _changed(self, membership: Membership, note: str) -> None:
        """Show the change; when it was the user's own membership, read their permissions
        again (the keys on offer follow them)."""
        self.action_reload(select=membership.id, note=note)
        session = self.session
        if membership.user_id == session.user.id and session.current is not None:
            self.creatia.reload_organizations()
            self.app.notify(note, timeout=5)
            current = replace(session.current, role=membership.role)
            self.creatia.select_organization(current)

    def action_add(self) -> None:
        org = self.session.current
        assert org is not None

        form = AddMemberForm(self.actor, org.name, self.assignable_roles)

        def saved(membership: Membership | None) -> None:
            if membership is not None:
                role = self._role_name(membership.role)
                self.action_reload(
                    select=membership.id, note=f"Added {form.email.lower()} as {role}."
                )

        self.app.push_screen(form, saved)

    def action_create(self) -> None:
        org = self.session.current
        assert org is not None

        def saved(result: tuple[User, Membership] | None) -> None:
            if result is None:
                return
            user, membership = result
            role = self._role_name(membership.role)
            self.action_reload(
                select=membership.id,
                note=f"Created {user.name or user.email} ({user.email}) as {role}.",
            )

        self.app.push_screen(CreateMemberForm(self.actor, org.name, self.assignable_roles), saved)

    def action_change_role(self) -> None:
        member = self.highlighted()
        if member is None:
            return

        def saved(membership: Membership | None) -> None:
            if membership is None:
                return
            if membership.role == member.role_key:
                self.say("Nothing changed.")
                return
            name = display_name(member)
            self._changed(membership, f"{name} is now {self._role_name(membership.role)}.")

        self.app.push_screen(ChangeRoleForm(self.actor, member, self.assignable_roles), saved)

    def action_toggle_active(self) -> None:
        member = self.highlighted()
        if member is None:
            return
        actor, membership_id = self.actor, member.membership_id
        name = display_name(member)
        org = self.session.current.name if self.session.current else "this organization"
        if member.active:
            question = (
                f"Deactivate the membership of {name} ({member.email})? They can no longer act "
                f"in {org}; their account stays."
            )
            yes = "Deactivate"
            note = f"Deactivated the membership of {name}."

            def job(conn: psycopg.Connection[Any]) -> Membership:
                return admin.deactivate_member(conn, actor, membership_id)
        else:
            question = (
                f"Reactivate the membership of {name} ({member.email}) as {member.role_name}? "
                f"They can act in {org} again."
            )
            yes = "Reactivate"
            note = f"Reactivated {name} as {member.role_name}."

            def job(conn: psycopg.Connection[Any]) -> Membership:
                return admin.reactivate_member(conn, actor, membership_id)

        def answered(confirmed: bool | None) -> None:
            if not confirmed:
                self.say("Nothing changed.")
                return
            self.run_db(job, lambda membership: self._changed(membership, note))

        self.app.push_screen(ConfirmScreen(question, yes), answered)
