"""Sprint charts drawn with plotext (textual-plotext): the burndown and the velocity.

Both are readable without colour: every series has its own marker character (ideal ``.``,
remaining ``*``, scope added ``+``, today a vertical rule; completed ``#`` bars, committed
``o``); the screens name them in the line under the chart (plotext's own legend would sit on
the top left of the plot, where a burndown starts). Labels inside the plot are ASCII only, because
plotext counts every character as one cell (a Korean name would shift the axes); names are
shown by the screen around the chart, cut with ``fit``.

The figure is rebuilt from the data at every render, at the widget's size, so a resize redraws
it (and the x ticks thin out on a narrow terminal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from creatia_tui.data.burndown import BurndownPoint

IDEAL_MARKER = "."
REMAINING_MARKER = "*"
SCOPE_MARKER = "+"
COMPLETED_MARKER = "#"
COMMITTED_MARKER = "o"
TICK_WIDTH = 8  # cells one x tick label ("03-02") needs with its gap


BURNDOWN_KEY = (f"{REMAINING_MARKER} remaining · {IDEAL_MARKER} ideal · {SCOPE_MARKER} scope added"
                " · │ today")
VELOCITY_KEY = f"{COMPLETED_MARKER} completed hours · {COMMITTED_MARKER} committed hours"


def nice_scale(top: float) -> tuple[float, list[float]]:
    """A round upper bound at or above ``top`` and 3-5 evenly spaced ticks from 0 to it."""
    if not top > 0:
        top = 1.0
    raw = top / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(top / step - 1e-9)
    return step * count, [step * i for i in range(count + 1)]


def _y_axis(plt: Plot, top: float) -> None:
    bound, ticks = nice_scale(top)
    plt.ylim(0, bound)
    plt.yticks(ticks, [f"{value:g}" for value in ticks])


def _ticks(days: Sequence[str], width: int) -> tuple[list[int], list[str]]:
    """Day numbers and MM-DD labels, thinned to fit ``width`` cells (first and last kept)."""
    n = len(days)
    if n == 0:
        return [], []
    room = max(width // TICK_WIDTH, 2)
    step = max(1, -(-n // room))
    picked = list(range(0, n, step))
    if picked[-1] != n - 1:
        # The last day takes the place of the last tick rather than a place beside it: two
        # labels closer than a step nearly touch, and plotext thins those differently from run
        # to run.
        if len(picked) > 1:
            picked[-1] = n - 1
        else:
            picked.append(n - 1)
    return [i + 1 for i in picked], [days[i][5:] for i in picked]


class BurndownPlot(PlotextPlot):
    """Remaining work per day against the ideal line; ``mode`` "hours" or "tasks"."""

    DEFAULT_CSS = """
    BurndownPlot {
        height: 1fr;
        min-height: 8;
    }
    """

    mode: reactive[str] = reactive("hours")

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.days: list[str] = []
        self.ideal: list[float] = []
        self.ideal_tasks: list[float] = []
        self.points: list[BurndownPoint] = []
        self.today: str | None = None
        self.start_hours = 0.0
        self._version = 0  # bumped by show(): the cached figure is stale
        self._drawn: tuple[Any, RenderableType] | None = None

    def show(
        self,
        days: Sequence[str],
        ideal_hours: Sequence[tuple[str, float]],
        ideal_tasks: Sequence[tuple[str, float]],
        points: Sequence[BurndownPoint],
        today: str | None,
        capacity_hours: float = 0.0,
    ) -> None:
        """The sprint's days, the ideal lines (one value per day), the points (closed days and
        today's live one) and today's date when it is a day of the sprint."""
        self.days = list(days)
        self.ideal = [value for _, value in ideal_hours]
        self.ideal_tasks = [value for _, value in ideal_tasks]
        self.points = list(points)
        self.today = today
        self.start_hours = capacity_hours
        self._version += 1
        self.refresh()

    def remaining(self, point: BurndownPoint) -> float | None:
        if self.mode == "tasks":
            return None if point.remaining_tasks is None else float(point.remaining_tasks)
        return point.remaining_hours

    def added(self, point: BurndownPoint) -> float:
        value = point.added_tasks if self.mode == "tasks" else point.added_hours
        return float(value or 0)

    def _draw(self) -> None:
        # A fresh figure each time: plotext keeps state between builds (a build at another size
        # can drop a tick label from the next one), which made the same data draw differently.
        self._plot = plt = Plot()
        n = len(self.days)
        if n == 0:
            return
        index = {day: i + 1 for i, day in enumerate(self.days)}
        # The ideal line starts at the capacity before day 1 (x = 0) and reaches 0 at the end
        # of day n; the service gives the ends of the days (day i: capacity * (n - i) / n).
        ideal = self.ideal_tasks if self.mode == "tasks" else self.ideal
        start = ideal[0] * n / (n - 1) if n > 1 and len(ideal) == n else self.start_hours
        if n == 1 and self.mode == "tasks":
            start = float(self.points[0].scope_tasks or 0) if self.points else 0.0
        plt.plot([0, *range(1, n + 1)], [start, *ideal], marker=IDEAL_MARKER)
        shown = [(index[p.date], self.remaining(p)) for p in self.points if p.date in index]
        xs = [x for x, y in shown if y is not None]
        ys = [y for _, y in shown if y is not None]
        if xs:
            plt.plot(xs, ys, marker=REMAINING_MARKER)
        scope = [(index[p.date], self.remaining(p)) for p in self.points
                 if p.date in index and self.added(p) > 0 and self.remaining(p) is not None]
        if scope:
            plt.scatter([x for x, _ in scope], [y for _, y in scope], marker=SCOPE_MARKER)
        if self.today in index:
            plt.vline(index[self.today], "orange")
        _y_axis(plt, max([start, *ideal, *ys, 1.0]))
        plt.xlim(0, n + 0.5)
        ticks, labels = _ticks(self.days, max(self.size.width - 8, 10))
        plt.xticks(ticks, labels)

    def render(self) -> RenderableType:
        if not self.days:
            return Text("")  # nothing read yet: no empty axes drawn first
        # A repaint with the same data and size (a footer or message update) reuses the figure.
        key = (self.size, self.mode, self._version, self.app.theme)
        if self._drawn is None or self._drawn[0] != key:
            self._draw()
            self._drawn = (key, super().render())
        return self._drawn[1]

    def watch_mode(self) -> None:
        self.refresh()


class VelocityPlot(PlotextPlot):
    """Completed hours per sprint (bars) and the hours committed (points), oldest first; the
    sprints are numbered 1..n on the x axis (the screen lists their names)."""

    DEFAULT_CSS = """
    VelocityPlot {
        height: 1fr;
        min-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.completed: list[float] = []
        self.committed: list[float] = []

    def show(self, completed: Sequence[float], committed: Sequence[float]) -> None:
        self.completed = list(completed)
        self.committed = list(committed)
        self.refresh()

    def _draw(self) -> None:
        # A fresh figure each time: plotext keeps state between builds (a build at another size
        # can drop a tick label from the next one), which made the same data draw differently.
        self._plot = plt = Plot()
        n = len(self.completed)
        if n == 0:
            return
        xs = list(range(1, n + 1))
        plt.bar(xs, self.completed, marker=COMPLETED_MARKER, width=0.4)
        plt.scatter(xs, self.committed, marker=COMMITTED_MARKER)
        _y_axis(plt, max([*self.completed, *self.committed, 1.0]))
        plt.xlim(0.4, n + 0.6)
        plt.xticks(xs, [str(x) for x in xs])

    def render(self) -> RenderableType:
        self._draw()
        return super().render()

