"""Small modal dialogs: a yes/no confirmation and the organization switcher."""

from __future__ import annotations

from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from creatia_tui.data.access import OrganizationChoice
from creatia_tui.widgets.text import fit

DIALOG_CSS = """
{name} {{
    align: center middle;
}}
{name} > Vertical {{
    width: 64;
    max-width: 100%;
    height: auto;
    max-height: 100%;
    border: round $primary;
    background: $surface;
    padding: 0 1;
}}
{name} .dialog-title {{
    text-style: bold;
    width: 1fr;
    margin-bottom: 1;
}}
{name} .dialog-hint {{
    color: $text-muted;
}}
"""


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y (or enter on Yes) / n / escape."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="ConfirmScreen") + """
    ConfirmScreen Horizontal {
        height: auto;
        margin-top: 1;
    }
    ConfirmScreen Button {
        width: 1fr;
        margin: 0 1;
    }
    """

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.question, classes="dialog-title", markup=False)
            with Horizontal():
                yield Button(f"{self.yes} (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class PickScreen(ModalScreen[Any]):
    """Pick one value from a list (organization, assignee, priority…); typing filters it.

    ``options`` are (label, value); ``result_for(value)`` comes back (the value itself unless a
    subclass maps it), None on escape. At most LIMIT rows are listed: typing narrows the rest.
    """

    LIMIT = 200

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("down", "move(1)", "Next", show=False),
        Binding("up", "move(-1)", "Previous", show=False),
    ]

    DEFAULT_CSS = DIALOG_CSS.format(name="PickScreen") + """
    PickScreen OptionList {
        height: auto;
        max-height: 14;
    }
    """

    def __init__(
        self,
        title: str,
        options: list[tuple[str, str]],
        current: str | None = None,
        placeholder: str = "type to filter",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.options = options
        self.current = current
        self.placeholder = placeholder

    def result_for(self, value: str) -> Any:
        return value

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Input(placeholder=self.placeholder, id="filter")
            yield OptionList(id="choices")
            yield Static("enter chooses · escape cancels", classes="dialog-hint")

    def on_mount(self) -> None:
        self._fill("")
        self.query_one("#filter", Input).focus()

    def _fill(self, text: str) -> None:
        needle = text.strip().casefold()
        options = self.query_one("#choices", OptionList)
        options.clear_options()
        highlight = 0
        shown = [(label, value) for label, value in self.options if needle in label.casefold()]
        for index, (label, value) in enumerate(shown[: self.LIMIT]):
            marker = "● " if value == self.current else "  "
            options.add_option(Option(fit(marker + label, 58), id=value))
            if value == self.current:
                highlight = index
        if len(shown) > self.LIMIT:
            options.add_option(
                Option(f"… {len(shown) - self.LIMIT} more: type to narrow", disabled=True)
            )
        if shown:
            options.highlighted = highlight

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#filter")
    def choose_highlighted(self) -> None:
        options = self.query_one("#choices", OptionList)
        if options.highlighted is not None:
            self._choose(options.get_option_at_index(options.highlighted).id)

    @on(OptionList.OptionSelected)
    def chosen(self, event: OptionList.OptionSelected) -> None:
        self._choose(event.option.id)

    def _choose(self, value: str | None) -> None:
        if value is not None:
            self.dismiss(self.result_for(value))

    def action_move(self, delta: int) -> None:
        options = self.query_one("#choices", OptionList)
        if delta > 0:
            options.action_cursor_down()
        else:
            options.action_cursor_up()


class SwitchOrganizationScreen(PickScreen):
    """Pick the organization to act in; typing filters by name or subdomain."""

    def __init__(self, choices: list[OrganizationChoice], current: str | None = None) -> None:
        options = [
            (f"{c.name} ({c.subdomain})" + (f" · {c.role}" if c.role else ""), c.id)
            for c in choices
        ]
        super().__init__("Switch organization", options, current,
                         placeholder="filter by name or subdomain")
        self.choices = choices

    def result_for(self, value: str) -> OrganizationChoice | None:
        return next((c for c in self.choices if c.id == value), None)
