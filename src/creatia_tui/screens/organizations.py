"""Placeholder: replaced by the real screen."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget
from textual.widgets import Static

from creatia_tui.screens.base import AppScreen


class OrganizationsScreen(AppScreen):
    READ_PERMISSION = "organizations.read"

    def compose_body(self) -> Iterable[Widget]:
        yield Static("Not built yet.")
