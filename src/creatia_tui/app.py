"""The Textual application: a header with who is signed in, the home screen, a footer of keys.

The app is handed an open :class:`~creatia_tui.data.db.Databases` and does not close it: whoever
opened it (the command line, a test) owns it. Every database call runs in a thread worker, so a
slow or dead server never freezes the keyboard.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from creatia_tui.data.db import Databases
from creatia_tui.screens.home import HomeScreen

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


class CreatiaApp(App[None]):
    """creatia-tui. ``show_latency=False`` keeps the status line free of per-run timings."""

    TITLE = TITLE
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        dbs: Databases,
        *,
        user_email: str | None = None,
        show_latency: bool = True,
    ) -> None:
        super().__init__()
        self.dbs = dbs
        self.user_email = user_email
        self.show_latency = show_latency
        self.sub_title = user_email or "not signed in"

    def get_default_screen(self) -> Screen:
        return HomeScreen(self.dbs, show_latency=self.show_latency)

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
