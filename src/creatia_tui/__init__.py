"""creatia-tui: a terminal UI for Creatia operators."""

__version__ = "0.1.0"
