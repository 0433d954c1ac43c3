"""DataTable helpers: the highlighted row's key, and a table that asks for its next page."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable


def highlighted_key(table: DataTable[Any]) -> str | None:
    """The key of the row under the cursor, or None when the table is empty."""
    if not table.row_count:
        return None
    row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
    return str(row_key.value)


class PagedTable(DataTable[Text]):
    """A DataTable that asks for the next page when the cursor would go past its last row.

    Down or pagedown on the last row posts :class:`PastEnd` instead of doing nothing; the screen
    reads the next page and appends it. Enter (``select_cursor``) is in the footer as "Detail".
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "select_cursor", "Detail"),
    ]

    class PastEnd(Message):
        """Down or pagedown on the last row."""

    def _at_last_row(self) -> bool:
        return self.row_count > 0 and self.cursor_row >= self.row_count - 1

    def action_cursor_down(self) -> None:
        if self._at_last_row():
            self.post_message(self.PastEnd())
        else:
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if self._at_last_row():
            self.post_message(self.PastEnd())
        else:
            super().action_page_down()
