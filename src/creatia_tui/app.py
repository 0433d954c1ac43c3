"""The Textual application: sign-in, the organization switcher, navigation and the palette.

The app is handed an open :class:`~creatia_tui.data.db.Databases` and does not close it: whoever
opened it (the command line, a test) owns it. Every database call runs in a thread worker, so a
slow or dead server never freezes the keyboard.

Navigation: a digit opens each screen (NAVIGATION: 1 Home, 2 Board, 3 Sprints, 4 Activity,
5 Organizations, 6 Members, 7 Roles, 8 Audit log, 9 Monitor, 0 Overview; Backups and Workers
from the command palette; a fresh screen each time, so it shows the database
as it is now); ctrl+o switches organization; ctrl+p opens
the command palette, which lists the screens, the organizations and every action of the current
screen that the signed-in user may run, besides Textual's own commands (themes, keys, quit).
Copying (``y`` on a row's id, ``Y`` on the message line) uses OSC 52, so it reaches the
clipboard of the terminal the person sits at, over SSH too; inside tmux it needs
``set -g set-clipboard on``.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from creatia_tui.data.access import OrganizationChoice, organizations_for
from creatia_tui.data.db import Databases
from creatia_tui.data.models import User
from creatia_tui.errors import UserError, one_line
from creatia_tui.screens.base import AppScreen, unexpected
from creatia_tui.screens.dialogs import SwitchOrganizationScreen
from creatia_tui.screens.sign_in import SignInScreen
from creatia_tui.session import Session
from creatia_tui.textual_fixes import apply as apply_textual_fixes

log = logging.getLogger(__name__)
apply_textual_fixes()

TITLE = "creatia-tui"


class HelpScreen(ModalScreen[None]):
    """The keys of the screen it was opened from; escape closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > Vertical {
        width: 60;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    HelpScreen #help-title {
        text-style: bold;
        width: 1fr;
    }
    HelpScreen VerticalScroll {
        height: auto;
        max-height: 18;
    }
    HelpScreen #help-hint {
        color: $text-muted;
    }
    """

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        width = max((len(key) for key, _ in self.keys), default=0)
        lines = [
            Content.assemble((key.ljust(width), "bold $accent"), "  ", description)
            for key, description in self.keys
        ]
        with Vertical():
            yield Static("Keys", id="help-title")
            # Focusable so the arrow keys scroll it when the list is taller than the terminal.
            with VerticalScroll(can_focus=True):
                yield Static(Content("\n").join(lines), id="help-keys")
            yield Static("escape closes this help", id="help-hint")


@dataclass(frozen=True)
class Destination:
    """A screen reachable from anywhere: by its digit key and from the command palette."""

    name: str
    title: str
    key: str
    screen: type[AppScreen]


# (digit, name, title) of every screen reachable from anywhere, in key order. The digits are
# all spoken for; a screen with key "" is reached from the command palette only.
NAVIGATION: tuple[tuple[str, str, str], ...] = (
    ("1", "home", "Home"),
    ("2", "board", "Board"),
    ("3", "sprints", "Sprints"),
    ("4", "activity", "Activity"),
    ("5", "organizations", "Organizations"),
    ("6", "members", "Members"),
    ("7", "roles", "Roles"),
    ("8", "audit", "Audit log"),
    ("9", "monitor", "Monitor"),
    ("0", "overview", "Overview"),
    ("", "backups", "Backups"),
    ("", "workers", "Workers"),
)


def destinations() -> list[Destination]:
    # Imported here: the screens import the app module for type hints.
    from creatia_tui.screens.activity import ActivityScreen
    from creatia_tui.screens.audit import AuditScreen
    from creatia_tui.screens.backups import BackupsScreen
    from creatia_tui.screens.board import BoardScreen
    from creatia_tui.screens.home import HomeScreen
    from creatia_tui.screens.members import MembersScreen
    from creatia_tui.screens.monitor import MonitorScreen
    from creatia_tui.screens.organizations import OrganizationsScreen
    from creatia_tui.screens.overview import OverviewScreen
    from creatia_tui.screens.roles import RolesScreen
    from creatia_tui.screens.sprints import SprintsScreen
    from creatia_tui.screens.workers import WorkersScreen

    classes: dict[str, type[AppScreen]] = {
        "home": HomeScreen,
        "board": BoardScreen,
        "sprints": SprintsScreen,
        "activity": ActivityScreen,
        "organizations": OrganizationsScreen,
        "members": MembersScreen,
        "roles": RolesScreen,
        "audit": AuditScreen,
        "monitor": MonitorScreen,
        "overview": OverviewScreen,
        "backups": BackupsScreen,
        "workers": WorkersScreen,
    }
    return [Destination(name, title, key, classes[name]) for key, name, title in NAVIGATION]


class CreatiaApp(App[None]):
    """creatia-tui.

    ``email``/``password`` sign in on start (the demo does this for the demo admin);
    ``organization_id`` picks the organization to start in when the user may act there.
    ``show_latency=False`` keeps the status line free of per-run timings (snapshot tests).
    """

    TITLE = TITLE
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+o", "switch_organization", "Org", key_display="^o"),
        Binding("Y", "copy_message", "Copy message", show=False),
        # One digit per screen; the palette lists them by name too.
        *(Binding(key, f"go('{name}')", f"Go to {title}", show=False)
          for key, name, title in NAVIGATION if key),
    ]

    def __init__(
        self,
        dbs: Databases,
        *,
        email: str | None = None,
        password: str | None = None,
        organization_id: str | None = None,
        show_latency: bool = True,
    ) -> None:
        super().__init__()
        self.dbs = dbs
        self.show_latency = show_latency
        self.session: Session | None = None
        self._email = email or ""
        self._password = password
        self._start_organization = organization_id
        self.sub_title = "not signed in"
        self._gc_frozen = False

    def on_mount(self) -> None:
        # Pushed over the blank default screen, not returned by get_default_screen: Textual
        # cannot switch away from the default screen, and every later screen replaces this one.
        self.push_screen(SignInScreen(self._email, self._password))

    def on_unmount(self) -> None:
        if self._gc_frozen:  # what was frozen at sign-in may be collected again
            gc.unfreeze()

    # ------------------------------------------------------------ signing in
    def signed_in(self, user: User, choices: list[OrganizationChoice]) -> None:
        """Called by the sign-in screen: open the organization, or ask which one."""
        self.session = Session(user, choices)
        self._update_titles()
        wanted = self._start_organization
        start = next((c for c in choices if c.id == wanted), None)
        if start is None and len(choices) == 1:
            start = choices[0]
        if start is not None:
            self.select_organization(start)
        elif choices:
            self.show("home")
            self.action_switch_organization()
        else:  # a platform admin on an empty installation: create the first organization
            self.show("organizations")

    def select_organization(self, choice: OrganizationChoice) -> None:
        self._load_permissions(choice)

    @work(thread=True, exclusive=True, group="organization", exit_on_error=False)
    def _load_permissions(self, choice: OrganizationChoice) -> None:
        session = self.session
        assert session is not None
        try:
            with self.dbs.pg() as conn:
                # Kept as the data layer's read grant too (access decision 3): the board
                # opened next needs no permission read of its own.
                actor = session.actor_for(choice.id)
                permissions = self.dbs.read_grants.read(conn, actor).permissions
        except UserError as exc:
            self.call_from_thread(self.notify, one_line(str(exc)), severity="error")
            return
        except Exception as exc:
            log.exception("reading the permissions failed")
            self.call_from_thread(self.notify, unexpected(exc), severity="error")
            return
        self.call_from_thread(self._organization_loaded, choice, permissions)

    def reload_organizations(self) -> None:
        """Read the user's organization choices again (after one was created or deactivated)."""
        self._reload_choices()

    @work(thread=True, exclusive=True, group="organization-choices", exit_on_error=False)
    def _reload_choices(self) -> None:
        session = self.session
        assert session is not None
        try:
            with self.dbs.pg() as conn:
                choices = organizations_for(conn, session.user)
        except Exception:  # the next reload tries again; the list on screen stays as it was
            log.warning("reading the organization choices failed", exc_info=True)
            return
        self.call_from_thread(setattr, session, "organizations", choices)

    def _organization_loaded(self, choice: OrganizationChoice, permissions: frozenset[str]) -> None:
        if not self._gc_frozen:
            # What is alive once signed in (modules, styles, the session) lives as long as the
            # app: keep it out of the collector's full passes, which otherwise walk it inside
            # the time from a key to the screen (~50 ms a pass on the board). Thawed on exit.
            gc.freeze()
            self._gc_frozen = True
        session = self.session
        assert session is not None
        session.current = choice
        session.permissions = permissions
        self._update_titles()
        # Reopen the screen in use for the new organization (home after signing in).
        current = self.screen if isinstance(self.screen, AppScreen) else None
        name = next(
            (d.name for d in destinations() if current is not None and type(current) is d.screen),
            "home",
        )
        self.show(name)

    def _update_titles(self) -> None:
        session = self.session
        if session is None:
            self.title, self.sub_title = TITLE, "not signed in"
            return
        self.title = f"{TITLE} · {session.current.name}" if session.current else TITLE
        role = session.role_label
        self.sub_title = session.user.display_name + (f" · {role}" if role else "")

    # ------------------------------------------------------------ navigation
    def destination(self, name: str) -> Destination:
        return next(d for d in destinations() if d.name == name)

    def may_open(self, destination: Destination) -> str | None:
        """Why the signed-in user cannot open a screen, or None when they can."""
        session = self.session
        if session is None:
            return "Sign in first."
        screen_class = destination.screen
        if screen_class.NEEDS_ORGANIZATION and session.current is None:
            return "Choose an organization first (ctrl+o)."
        if screen_class.PLATFORM_ADMIN_ONLY and not session.user.is_platform_admin:
            return f"Only a platform admin may open {destination.title}."
        permission = screen_class.READ_PERMISSION
        if permission and not session.may(permission):
            return f"You may not open {destination.title} here (permission {permission})."
        return None

    def show(self, name: str) -> None:
        destination = self.destination(name)
        refusal = self.may_open(destination)
        if refusal:
            self.notify(refusal, severity="error")
            return
        # Replace, not push: the stack stays one screen deep, and escape never surprises.
        while isinstance(self.screen, ModalScreen):
            self.pop_screen()
        self.switch_screen(destination.screen())

    def action_go(self, name: str) -> None:
        self.show(name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Nothing to navigate to before sign-in.
        return not (action in ("go", "switch_organization") and self.session is None)

    def action_switch_organization(self) -> None:
        session = self.session
        if session is None or isinstance(self.screen, SwitchOrganizationScreen):
            return
        current = session.current.id if session.current else None

        def chosen(choice: OrganizationChoice | None) -> None:
            if choice is not None:
                self.select_organization(choice)

        self.push_screen(SwitchOrganizationScreen(session.organizations, current), chosen)

    # ------------------------------------------------------------ clipboard
    def copy_text(self, text: str, what: str) -> None:
        """Copy to the clipboard of the terminal the person sits at (OSC 52, works over SSH)."""
        self.copy_to_clipboard(text)
        self.notify(f"Copied {what} to the clipboard.", timeout=3)

    def action_copy_message(self) -> None:
        screen = self.screen
        text = screen.message_text if isinstance(screen, AppScreen) else ""
        if text:
            self.copy_text(text, "the message")
        else:
            self.notify("There is no message to copy.", severity="warning", timeout=3)

    # ------------------------------------------------------------ command palette
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        session = self.session
        if session is None:
            return
        for destination in destinations():
            if self.may_open(destination) is None:
                yield SystemCommand(
                    f"Go to {destination.title}",
                    f"Open the {destination.title} screen"
                    + (f" (key {destination.key})" if destination.key else ""),
                    partial(self.show, destination.name),
                )
        for choice in session.organizations:
            if session.current is None or choice.id != session.current.id:
                yield SystemCommand(
                    f"Switch to {choice.name}",
                    f"Act in {choice.name} ({choice.subdomain})",
                    partial(self.select_organization, choice),
                    discover=False,
                )
        if isinstance(screen, AppScreen):
            yield from screen.palette_commands()
        # The current screen's own actions, as far as the user may run them.
        for active in screen.active_bindings.values():
            # The screen's own keys; the focused widget's (cursor moves) would only be noise.
            if active.node is not screen or not active.enabled or not active.binding.description:
                continue
            yield SystemCommand(
                active.binding.description,
                f"{type(screen).__name__.removesuffix('Screen')} · key "
                f"{self.get_key_display(active.binding)}",
                partial(self._run_binding, active.node, active.binding.action),
            )

    def _run_binding(self, node: Any, action: str) -> None:
        self.call_later(self.run_action, action, node)

    def help_keys(self) -> list[tuple[str, str]]:
        """(keys, description) for every active binding of the current screen, footer's first."""
        by_description: dict[str, list[str]] = {}
        shown: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not binding.description or not active.enabled:
                continue
            keys = by_description.setdefault(binding.description, [])
            display = self.get_key_display(binding)
            if display not in keys:
                # The key the footer shows comes first: "q / ^q", not "^q / q".
                keys.insert(0 if binding.show else len(keys), display)
            if binding.show:
                shown.add(binding.description)
        ordered = sorted(by_description, key=lambda d: d not in shown)
        return [(" / ".join(by_description[d]), d) for d in ordered]

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_keys()))


def demo_app(dbs: Databases) -> CreatiaApp:
    """The app as `creatia-tui demo` opens it: signed in as the seeded demo admin (the seed's
    demo password, typed for the user), with the organization switcher open."""
    from creatia_tui.ops.seed import DEMO_ADMIN_EMAIL, SeedOptions

    return CreatiaApp(dbs, email=DEMO_ADMIN_EMAIL, password=SeedOptions().demo_password)
