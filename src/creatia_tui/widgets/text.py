"""Text measured in terminal cells: Korean characters take two cells, ASCII one."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text


def fit(text: str, width: int) -> Text:
    """One line at most ``width`` cells, cut with an ellipsis (measured in cells, not chars).

    A Text, not a str, also keeps DataTable from reading "[" in a name as markup.
    """
    if cell_len(text) <= width:
        return Text(text, no_wrap=True, end="")
    kept, used = [], 0
    for char in text:
        used += cell_len(char)
        if used > width - 1:  # one cell for the ellipsis
            break
        kept.append(char)
    # Built by hand rather than with Text.truncate, which pads a split wide character with a
    # space and leaves "플 …" instead of "플…".
    return Text("".join(kept).rstrip() + "…", no_wrap=True, end="")


def plural(count: int, noun: str) -> str:
    """"1 entry", "2 entries", "3 organizations"."""
    if count == 1:
        return f"{count} {noun}"
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return f"{count} {noun[:-1]}ies"
    return f"{count} {noun}s"
