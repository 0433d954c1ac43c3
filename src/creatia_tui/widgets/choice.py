"""A one-line choice among a few values: left/right (or space) step through them.

Smaller than Textual's Select (one line, no overlay), so a form still fits at 80x24, and it
reads the same under NO_COLOR: the brackets mark it, not a colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.content import Content
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget


class Choice(Widget, can_focus=True):
    """``options`` are (label, value); ``value`` is the chosen value."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right,space", "step(1)", "Next", show=False),
        Binding("left", "step(-1)", "Previous", show=False),
    ]

    DEFAULT_CSS = """
    Choice {
        height: 1;
        width: 1fr;
        background: $boost;
    }
    Choice:focus {
        background: $primary 30%;
        text-style: bold;
    }
    """

    index: reactive[int] = reactive(0)

    class Changed(Message):
        def __init__(self, choice: Choice, value: str) -> None:
            super().__init__()
            self.choice = choice
            self.value = value

    def __init__(
        self,
        options: Sequence[tuple[str, str]],
        value: str | None = None,
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.options = list(options)
        values = [v for _, v in self.options]
        self.set_reactive(Choice.index, values.index(value) if value in values else 0)

    @property
    def value(self) -> str:
        return self.options[self.index][1] if self.options else ""

    def render(self) -> Content:
        if not self.options:
            return Content("(none)")
        label = self.options[self.index][0]
        position = f"  {self.index + 1}/{len(self.options)}"
        return Content.assemble("◀ ", label, " ▶", (position, "dim"))

    def action_step(self, delta: int) -> None:
        if self.options:
            self.index = (self.index + delta) % len(self.options)
            self.post_message(self.Changed(self, self.value))
