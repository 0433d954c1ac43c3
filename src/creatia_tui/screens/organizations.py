"""Organizations: search, create (platform admins), edit, deactivate and reactivate.

The list holds what the signed-in user may read: every organization for a platform admin,
otherwise those where they hold organizations.read. Each change acts *in* the highlighted
organization, so the service checks the user's permission there (not in the organization they
happen to be working in) and writes the audit row there, in the same transaction.

Deactivating asks first and says what it means: members can no longer act in it, and only a
platform admin can reactivate it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static, TextArea

from creatia_tui.data import admin
from creatia_tui.data.models import Organization, OrganizationListing
from creatia_tui.data.organizations import PLANS, parse_settings, subdomain_problem
from creatia_tui.errors import ValidationError
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen
from creatia_tui.screens.forms import FormScreen, Job, field
from creatia_tui.session import Session
from creatia_tui.widgets.choice import Choice
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

NAME_WIDTH = 26
SUBDOMAIN_WIDTH = 20


class OrganizationForm(FormScreen[Organization]):
    """Create (``existing=None``, platform admins) or edit an organization."""

    DEFAULT_CSS = """
    OrganizationForm #subdomain-hint {
        column-span: 2;
        padding-left: 13;
    }
    """

    def __init__(self, session: Session, existing: OrganizationListing | None = None) -> None:
        super().__init__()
        self.session = session
        self.existing = existing

    def form_title(self) -> str:
        if self.existing is None:
            return "New organization"
        return f"Edit {self.existing.name}"

    def compose_fields(self) -> Iterable[Widget]:
        org = self.existing
        yield from field("Name", Input(org.name if org else "", id="name", compact=True))
        yield from field(
            "Subdomain",
            Input(org.subdomain if org else "", id="subdomain", compact=True,
                  placeholder="lowercase letters, digits, hyphens"),
        )
        yield Static("", id="subdomain-hint", classes="form-hint", markup=False)
        yield from field(
            "Plan",
            Choice([(plan, plan) for plan in PLANS], org.plan if org else "free", id="plan"),
        )
        settings = json.dumps(org.settings, ensure_ascii=False, indent=2) if org else "{}"
        yield from field("Settings", TextArea(settings, id="settings", language=None))

    @on(Input.Changed, "#subdomain")
    def subdomain_changed(self, event: Input.Changed) -> None:
        # Said while typing, so the reason is there before saving.
        problem = subdomain_problem(event.value) if event.value else None
        self.query_one("#subdomain-hint", Static).update(problem or "")

    def collect(self) -> Job[Organization]:
        name = self.query_one("#name", Input).value
        subdomain = self.query_one("#subdomain", Input).value.strip()
        plan = self.query_one("#plan", Choice).value
        settings = parse_settings(self.query_one("#settings", TextArea).text)
        problem = subdomain_problem(subdomain)
        if problem:
            raise ValidationError(problem)
        if not name.strip():
            raise ValidationError("The organization name is empty.")
        user, existing = self.session.user, self.existing
        if existing is None:
            return lambda conn: admin.create_organization(
                conn, user, name=name, subdomain=subdomain, plan=plan, settings=settings
            )
        actor = self.session.actor_for(existing.id)
        return lambda conn: admin.update_organization(
            conn, actor, name=name, subdomain=subdomain, plan=plan, settings=settings
        )


class OrganizationsScreen(AppScreen):
    """Every organization the user may read, with search."""

    READ_PERMISSION = None  # the list itself is filtered by the service
    NEEDS_ORGANIZATION = False
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "edit": "organizations.update",
        "toggle_active": "organizations.manage",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "new", "New"),
        Binding("e", "edit", "Edit"),
        Binding("d", "toggle_active", "On/off"),
        Binding("r", "reload", "Refresh"),
    ]

    DEFAULT_CSS = """
    OrganizationsScreen #org-search-row {
        height: 1;
        padding: 0 1;
    }
    OrganizationsScreen #org-search-row Static {
        width: auto;
        color: $text-muted;
    }
    OrganizationsScreen #org-search {
        width: 1fr;
    }
    OrganizationsScreen #org-table {
        height: 1fr;
    }
    OrganizationsScreen #org-detail {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.organizations: list[OrganizationListing] = []

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="org-search-row"):
            yield Static("Search ")
            yield Input(placeholder="name or subdomain (/ to search, enter to list)",
                        id="org-search", compact=True)
        table: DataTable[Text] = DataTable(id="org-table", cursor_type="row", zebra_stripes=True)
        # Fixed widths: a DataTable that sizes columns from its content can draw a frame before
        # measuring and keep the labels' widths (seen under load).
        for key, label, width in (
            ("name", "Organization", NAME_WIDTH), ("subdomain", "Subdomain", SUBDOMAIN_WIDTH),
            ("plan", "Plan", 10), ("active", "Active", 6), ("members", "Members", 7),
        ):
            table.add_column(Text(label, justify="right" if key == "members" else "left"),
                             key=key, width=width)
        yield table
        yield Static("", id="org-detail", markup=False)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "new":
            return self.creatia.session is not None and self.session.user.is_platform_admin
        return super().check_action(action, parameters)

    def on_mount(self) -> None:
        self.table.focus()
        self.action_reload()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#org-table", DataTable)

    # ------------------------------------------------------------ loading
    def action_reload(self, select: str | None = None, note: str | None = None) -> None:
        """Read the list again; ``note`` replaces the count on the message line."""
        search = self.query_one("#org-search", Input).value.strip() or None
        user = self.session.user
        self.say("Loading…")
        self.run_db(
            lambda conn: admin.list_organizations(conn, user, search),
            lambda rows: self._loaded(rows, select, note),
            group="organizations",
        )

    def _loaded(
        self, organizations: list[OrganizationListing], select: str | None, note: str | None
    ) -> None:
        self.organizations = organizations
        table = self.table
        keep = select or self.highlighted_id()
        if keep is None and self.session.current is not None:
            keep = self.session.current.id
        table.clear()
        for org in organizations:
            table.add_row(
                fit(org.name, NAME_WIDTH),
                fit(org.subdomain, SUBDOMAIN_WIDTH),
                Text(org.plan),
                Text("yes" if org.active else "no"),
                Text(str(org.active_member_count), justify="right"),
                key=org.id,
            )
        if keep in {org.id for org in organizations}:
            table.move_cursor(row=table.get_row_index(keep))
        search = self.query_one("#org-search", Input).value.strip()
        found = plural(len(organizations), "organization")
        self.say(note or (f"{found} matching {search!r}" if search else found))
        self._show_detail()

    # ------------------------------------------------------------ selection
    def highlighted_id(self) -> str | None:
        return highlighted_key(self.table)

    def highlighted(self) -> OrganizationListing | None:
        selected = self.highlighted_id()
        return next((o for o in self.organizations if o.id == selected), None)

    def _show_detail(self) -> None:
        org = self.highlighted()
        text = ""
        if org is not None:
            settings = json.dumps(org.settings, ensure_ascii=False)
            text = (f"{org.name} · {org.subdomain} · {org.plan} · "
                    f"{'active' if org.active else 'inactive'} · settings {settings}")
        self.query_one("#org-detail", Static).update(text)

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def on_data_table_row_selected(self) -> None:
        org = self.highlighted()
        choice = self.session.choice(org.id) if org else None
        if choice is None:
            self.say("You are not a member of that organization.", error=True)
            return
        self.creatia.select_organization(choice)

    def copy_target(self) -> tuple[str, str] | None:
        selected = self.highlighted_id()
        return ("the organization id", selected) if selected else None

    # ------------------------------------------------------------ search
    def action_search(self) -> None:
        self.query_one("#org-search", Input).focus()

    @on(Input.Submitted, "#org-search")
    def search_submitted(self) -> None:
        self.action_reload()
        self.table.focus()

    def key_escape(self) -> None:
        if self.query_one("#org-search", Input).has_focus:
            self.table.focus()

    # ------------------------------------------------------------ changes
    def _saved(self, result: Organization | None, verb: str) -> None:
        if result is None:
            return
        self.creatia.reload_organizations()
        self.action_reload(select=result.id, note=f"{verb} {result.name} ({result.subdomain}).")

    def action_new(self) -> None:
        self.app.push_screen(
            OrganizationForm(self.session), lambda org: self._saved(org, "Created")
        )

    def action_edit(self) -> None:
        org = self.highlighted()
        if org is None:
            return
        self.app.push_screen(
            OrganizationForm(self.session, org), lambda saved: self._saved(saved, "Saved")
        )

    def action_toggle_active(self) -> None:
        org = self.highlighted()
        if org is None:
            return
        actor = self.session.actor_for(org.id)
        active = not org.active
        if active:
            question = f"Reactivate {org.name}? Its members can act in it again."
        else:
            question = (
                f"Deactivate {org.name}? Its members can no longer act in it, "
                "and only a platform admin can reactivate it."
            )

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing changed.")
                return
            self.run_db(
                lambda conn: admin.set_organization_active(conn, actor, active),
                lambda saved: self._saved(saved, "Reactivated" if active else "Deactivated"),
            )

        self.app.push_screen(
            ConfirmScreen(question, "Reactivate" if active else "Deactivate"), answered
        )


