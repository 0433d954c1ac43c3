"""Work-arounds for Textual bugs that cost the app time; each names its Textual issue.

Applied once, when ``creatia_tui.app`` is imported (:func:`apply`), so every screen and test runs
with them.

- `Textual #6665 <https://github.com/Textualize/textual/issues/6665>`_:
  ``StylesCache.get_inner_outer`` is an ``functools.lru_cache`` on an *instance* method, so the
  cache keys hold ``self``: up to 1,024 widgets' StylesCache objects (with every Strip they
  rendered) stay alive after their widgets are gone. On the board (issue 4) each opening left
  ~47,000 objects behind and the collector's full passes grew from 56 ms to 270 ms after a few
  openings. Its body never reads ``self``: the fix caches on the two colours alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

_applied = False


def _fix_styles_cache_leak() -> None:
    from textual._styles_cache import StylesCache

    original = getattr(StylesCache.get_inner_outer, "__wrapped__", None)
    if original is None:  # a Textual that fixed it (no lru_cache on the method any more)
        return

    @lru_cache(1024)
    def inner_outer(base_background: Any, background: Any) -> Any:
        return original(None, base_background, background)

    def get_inner_outer(self: Any, base_background: Any, background: Any) -> Any:
        return inner_outer(base_background, background)

    StylesCache.get_inner_outer = get_inner_outer  # type: ignore[method-assign]


def apply() -> None:
    """Apply every fix (once)."""
    global _applied
    if _applied:
        return
    _applied = True
    _fix_styles_cache_leak()
