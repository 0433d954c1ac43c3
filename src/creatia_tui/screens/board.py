"""The kanban board: an organization's tasks in status columns, triaged from the keyboard.

The board keeps a cursor (column, card) of its own: arrows or h/j/k/l move it, and every action
works on the card under it (``current_task``). Each column is one widget that draws its cards
as lines (widgets/task_card.py says why), so the cursor, a move or a reload changes lists and
repaints lines instead of mounting card widgets. Only what fits is fetched: each column asks for
the cards the terminal can show plus a few, and asks for more when the cursor reaches the last
one loaded, or when cards moved out leave it short. Writes go through BoardService (permission
check, optimistic ``updated_at`` check, activity log) in a thread; the card is updated in place
on success and reloaded on a conflict, so nothing someone else wrote is overwritten.

Changes made by others arrive from a TaskFeed (a change stream, or polling where the server has
none) in a background thread and are applied to the cards without moving the cursor.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, ClassVar

from textual import work
from textual.app import SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from creatia_tui.data.board import (
    BoardColumn,
    BoardService,
    MoveRecord,
    TaskConflict,
    position_between,
)
from creatia_tui.data.models import TASK_PRIORITIES, TASK_STATUSES, Task
from creatia_tui.data.saved_filters import (
    SavedFilter,
    delete_saved_filter,
    list_saved_filters,
)
from creatia_tui.data.task_filters import BUILT_IN_FILTERS, TaskFilter
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import UserError, one_line
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import ConfirmScreen, PickScreen
from creatia_tui.screens.task_forms import SaveFilterForm
from creatia_tui.widgets.task_card import CARD_ROWS, STATUS_TITLES, TaskColumn

log = logging.getLogger(__name__)

# A write's follow-up (its sprints' metrics: an aggregate over up to thousands of tasks) runs on
# one thread of its own, so the board draws the move without waiting for it; one thread keeps
# the recomputations in the order of the writes.
_FOLLOW_UP = ThreadPoolExecutor(max_workers=1, thread_name_prefix="board-follow-up")


def _after_the_write(work: Callable[[], None]) -> None:
    def logged() -> None:
        try:
            work()
        except Exception:  # a follow-up must never fail silently, nor take the app down
            log.exception("a board write's follow-up failed")

    _FOLLOW_UP.submit(logged)

UNASSIGNED_CHOICE = "-unassigned-"
BOARD_CHROME_LINES = 5  # header, filter line, message, status line, footer
IDLE_COLLECT_SECONDS = 0.1


class BoardScreen(AppScreen):
    """Columns todo, in progress, review, done (done collapsible with ``z``)."""

    READ_PERMISSION = "tasks.read"
    AUTO_FOCUS = None  # the board's own cursor takes the keys, not a focused widget
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "move": "tasks.update",
        "reorder": "tasks.update",
        "undo": "tasks.update",
        "edit": "tasks.update",
        "priority": "tasks.update",
        "log_time": "tasks.update",
        "assign": "tasks.assign",
        "new": "tasks.create",
        "delete": "tasks.delete",
        "sprint": "tasks.update",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "column(-1)", "Previous column", show=False),
        Binding("right,l", "column(1)", "Next column", show=False),
        Binding("up,k", "card(-1)", "Previous card", show=False),
        Binding("down,j", "card(1)", "Next card", show=False),
        Binding("shift+right,greater_than_sign", "move(1)", "Move ›", key_display=">"),
        Binding("shift+left,less_than_sign", "move(-1)", "Move ‹", key_display="<", show=False),
        Binding("shift+up,K", "reorder(-1)", "Move up", key_display="K", show=False),
        Binding("shift+down,J", "reorder(1)", "Move down", key_display="J", show=False),
        Binding("enter", "open", "Open", show=False),
        Binding("a", "assign", "Assign"),
        Binding("p", "priority", "Priority", show=False),
        Binding("e", "edit", "Edit", show=False),
        Binding("n", "new", "New"),
        Binding("x,delete", "delete", "Delete", key_display="x", show=False),
        Binding("t", "log_time", "Log time", show=False),
        Binding("u", "undo", "Undo move", show=False),
        Binding("f", "filter", "Filter"),
        Binding("slash", "search", "Search", key_display="/", show=False),
        Binding("z", "toggle_done", "Fold done", show=False),
        Binding("s", "save_filter", "Save filter", show=False),
        Binding("r", "reload", "Refresh", show=False),
        Binding("b", "sprint", "Sprint", show=False),
    ]

    DEFAULT_CSS = """
    BoardScreen #board-filter {
        height: 1;
        padding: 0 1;
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    BoardScreen #board-search {
        display: none;
        height: 1;
        margin: 0 1;
    }
    BoardScreen #board-search.-open {
        display: block;
    }
    BoardScreen #board {
        height: 1fr;
        padding-right: 1;
    }
    """

    def __init__(self, task_filter: TaskFilter | None = None) -> None:
        super().__init__()
        self.task_filter = task_filter or TaskFilter()
        self.columns: dict[str, BoardColumn] = {}
        self.limits: dict[str, int] = {}
        self.column_index = 0
        self.row_by_status: dict[str, int] = dict.fromkeys(TASK_STATUSES, 0)
        self.fold_done = self.task_filter.open_only
        self.last_move: MoveRecord | None = None
        self.saved_filters: list[SavedFilter] = []  # the user's own (built-ins are constants)
        self._loaded_once = False
        self.feed_mode: str | None = None  # how changes by others arrive, once the feed is open
        self._busy = False  # one write at a time: keys pressed meanwhile are refused
        self._composed = False  # on_mount ran: the columns exist
        self._early: Any = None  # the first load's outcome, when it came before on_mount
        # The first load starts now, before the screen is composed and mounted, so the reads
        # overlap that work instead of following it (~30 ms on the way from key to screen).
        self._first_load_at = utcnow()
        self._start_load(None)

    # ------------------------------------------------------------ layout
    def compose_body(self) -> Iterable[Widget]:
        yield Static("", id="board-filter", markup=False)
        search = Input(placeholder="search task id, title, description, tags (enter)",
                       id="board-search", compact=True)
        search.can_focus = False  # until / opens it
        yield search
        with Horizontal(id="board"):
            for status in TASK_STATUSES:
                yield TaskColumn(status)

    def on_mount(self) -> None:
        self._composed = True
        self._show_filter()
        early, self._early = self._early, None
        if early is not None:
            early()
        elif not self._loaded_once:
            self.say("Loading the board…")

    @property
    def service(self) -> BoardService:
        return BoardService(self.creatia.dbs, self.actor, after_commit=_after_the_write)

    @property
    def statuses(self) -> tuple[str, ...]:
        return TASK_STATUSES

    def visible_cards(self) -> int:
        # The board's height less the column title; at least a few so a tiny terminal works.
        # Before the screen is laid out (the first load): the terminal less the lines around
        # the board (header, filter line, message, status line, footer).
        height = self.query_one("#board").size.height if self._composed else 0
        height = height or (self.app.size.height - BOARD_CHROME_LINES)
        return max((height - 1) // CARD_ROWS + 1, 3)

    def _show_filter(self) -> None:
        self.query_one("#board-filter", Static).update(
            f"Showing: {self.task_filter.describe()}   (f filter · / search · ? keys)"
        )

    # ------------------------------------------------------------ loading
    def action_reload(self, note: str | None = None) -> None:
        if not self._loaded_once:
            self.say("Loading the board…")
        self._start_load(note)

    def _start_load(self, note: str | None) -> None:
        # As deep as a column was loaded: the selected card stays loaded (and selected).
        limit = max([self.visible_cards() + 4, *self.limits.values()])
        self.limits = dict.fromkeys(self.statuses, limit)
        task_filter = self.task_filter
        statuses = self.statuses
        service = self.service
        self.run_job(
            lambda: service.load_board(task_filter, statuses, limit),
            lambda columns: self._loaded(columns, note),
            failed=self._load_failed,
            group="board-load",
        )

    def _load_failed(self, sentence: str) -> None:
        if not self._composed:
            self._early = partial(self._load_failed, sentence)
            return
        self.say(sentence, error=True)

    def _loaded(self, columns: list[BoardColumn], note: str | None) -> None:
        if not self._composed:  # answered before the screen was mounted (a small board)
            self._early = partial(self._loaded, columns, note)
            return
        first = not self._loaded_once
        self._loaded_once = True
        selected = self.selected_task()
        self.columns = {column.status: column for column in columns}
        now = utcnow()
        with self.app.batch_update():
            for status in self.statuses:
                self._fill_column(status, now)
        if selected is not None:
            self._select_task(selected.id)
        self._paint_cursor()
        total = sum(c.total for c in columns)
        self.say(note or f"{total} task{'s' if total != 1 else ''} · {self.task_filter.describe()}")
        # Once this is on screen and nobody waits: collect the garbage this load made of the
        # cards (and the screen) it replaced, which the collector would otherwise walk in the
        # middle of a later key (30-140 ms pauses measured by the bench).
        self.call_after_refresh(self.set_timer, IDLE_COLLECT_SECONDS, gc.collect)
        if first:
            # Only now, and once the cards are drawn: beside the first load they would share the
            # (single-threaded) servers with it, and their threads the interpreter with the
            # drawing. The feed reports what changed since that load began: nothing is missed.
            self.call_after_refresh(self._load_saved_filters)
            self.call_after_refresh(self._follow_changes, self._first_load_at)
        self.call_after_refresh(self._refresh_stale_snapshots, columns)

    def _refresh_stale_snapshots(self, columns: list[BoardColumn]) -> None:
        """Issue 7's freshness: the people these cards show through a copy older than 5 minutes
        are checked against PostgreSQL in the background (data/maintenance.py). Its own group:
        a newer load replaces it, no key waits for it, and a failure is a log line only. A
        rewrite arrives through the live feed like anyone's change; a feed that polls does not
        see it (tasks' updated_at is not touched), so then the board loads again."""
        from creatia_tui.data.maintenance import refresh_quietly

        tasks = [task for column in columns for task in column.tasks]
        dbs, actor = self.creatia.dbs, self.actor

        def refreshed(result: Any) -> None:
            if result is not None and result.tasks_modified and self.feed_mode == "polling":
                self._start_load(None)

        self.run_job(lambda: refresh_quietly(dbs, actor, tasks), refreshed,
                     failed=lambda text: log.warning("snapshot freshness: %s", text),
                     group="board-freshness")

    def _column(self, status: str) -> TaskColumn:
        return self.query_one(f"#column-{status}", TaskColumn)

    def _fill_column(self, status: str, now: dt.datetime | None = None) -> None:
        """Hand a column its loaded tasks (none while folded) and counts; it redraws itself."""
        widget = self._column(status)
        column = self.columns.get(status, BoardColumn(status, [], 0))
        folded = status == "done" and self.fold_done
        widget.set_collapsed(folded)
        widget.set_title(len(column.tasks), column.total, folded)
        widget.set_cards([] if folded else column.tasks, now or utcnow())

    def _load_more(self, status: str) -> None:
        column = self.columns.get(status)
        if column is None or len(column.tasks) >= column.total:
            return
        limit = self.limits.get(status, 20) + self.visible_cards() * 2
        self.limits[status] = limit
        task_filter, service = self.task_filter, self.service
        self.run_job(
            lambda: service.load_board(task_filter, (status,), limit),
            lambda columns: self._more_loaded(columns[0]),
            group=f"board-more-{status}",
        )

    def _more_loaded(self, column: BoardColumn) -> None:
        selected = self.selected_task()
        self.columns[column.status] = column
        self._fill_column(column.status, utcnow())
        if selected is not None:
            self._select_task(selected.id)
        self._paint_cursor()

    # ------------------------------------------------------------ cursor
    @property
    def current_status(self) -> str:
        return self.statuses[self.column_index]

    def selected_task(self) -> Task | None:
        column = self.columns.get(self.current_status)
        if column is None or not column.tasks:
            return None
        row = min(self.row_by_status[self.current_status], len(column.tasks) - 1)
        return column.tasks[row]

    @property
    def current_task(self) -> Task | None:
        """The task under the cursor, which every key acts on (None: an empty column)."""
        return self.selected_task()

    def _select_task(self, task_id: str) -> bool:
        for index, status in enumerate(self.statuses):
            column = self.columns.get(status)
            if column is None:
                continue
            for row, task in enumerate(column.tasks):
                if task.id == task_id:
                    self.column_index = index
                    self.row_by_status[status] = row
                    return True
        return False

    def _paint_cursor(self) -> None:
        """The cursor on its column's card and that column's title; every column repaints
        only what changed (two cards and two titles at most)."""
        for index, status in enumerate(self.statuses):
            widget = self._column(status)
            current = index == self.column_index
            widget.mark_current(current)
            column = self.columns.get(status)
            has_cards = column is not None and bool(column.tasks) and not widget.collapsed
            widget.set_cursor(
                min(self.row_by_status[status], len(column.tasks) - 1)
                if current and has_cards and column is not None else None
            )

    def action_column(self, delta: int) -> None:
        count = len(self.statuses)
        index = self.column_index
        for _ in range(count):
            index = (index + delta) % count
            if not (self.statuses[index] == "done" and self.fold_done):
                break
        self.column_index = index
        self._paint_cursor()

    def action_card(self, delta: int) -> None:
        status = self.current_status
        column = self.columns.get(status)
        if column is None or not column.tasks:
            return
        row = self.row_by_status[status] + delta
        self.row_by_status[status] = max(0, min(row, len(column.tasks) - 1))
        if row >= len(column.tasks) - 2:
            self._load_more(status)
        self._paint_cursor()

    def copy_target(self) -> tuple[str, str] | None:
        task = self.selected_task()
        return ("the task key", task.task_id) if task else None

    # ------------------------------------------------------------ writes
    def _write(self, job: Any, done: Any, *, task: Task | None) -> None:
        """Run one write; on a conflict show the sentence and put the current task on the card."""
        if self._busy:
            self.say("One change at a time: the last one is still being saved.", error=True)
            return
        self._busy = True

        def finished(result: Any) -> None:
            self._busy = False
            done(result)

        def failed(sentence: str) -> None:
            self._busy = False
            self.say(sentence, error=True)

        def run() -> Any:
            try:
                return job()
            except TaskConflict as conflict:
                self.app.call_from_thread(self._conflict, task, conflict.current)
                raise

        self.run_job(run, finished, failed=failed, group="board-write", exclusive=False)

    def _conflict(self, held: Task | None, current: Task | None) -> None:
        if held is None:
            return
        if current is None:
            self._remove_task(held.id)
        else:
            self._place(current)
        self._paint_cursor()

    def _place(self, task: Task, *, select: bool = False) -> None:
        """Put a task where its status and position say (in the loaded lists), and redraw the
        columns it left and entered."""
        old_status = next(
            (s for s, c in self.columns.items() if any(t.id == task.id for t in c.tasks)), None
        )
        if old_status is not None:
            old = self.columns[old_status]
            old.tasks = [t for t in old.tasks if t.id != task.id]
            if old_status != task.status:
                old.total -= 1
            self._fill_column(old_status)
        column = self.columns.get(task.status)
        if column is None:
            self._refresh_titles()
            return
        if old_status != task.status:
            column.total += 1
        ordered = sorted([*column.tasks, task], key=lambda t: (t.position, t.id))
        index = ordered.index(task)
        unloaded_remain = len(column.tasks) + 1 < column.total
        if column.tasks and index == len(ordered) - 1 and unloaded_remain:
            # It sorts past the loaded end: the column shows it when it loads that far.
            self._refresh_titles()
            return
        column.tasks = ordered
        self._fill_column(task.status)
        if select:
            self._select_task(task.id)
        self._refresh_titles()

    def _remove_task(self, task_id: str) -> None:
        for status, column in self.columns.items():
            if any(t.id == task_id for t in column.tasks):
                column.tasks = [t for t in column.tasks if t.id != task_id]
                column.total -= 1
                self._fill_column(status)
        self._refresh_titles()

    def _refresh_titles(self) -> None:
        visible = self.visible_cards()
        for status in self.statuses:
            column = self.columns.get(status, BoardColumn(status, [], 0))
            self._column(status).set_title(
                len(column.tasks), column.total, status == "done" and self.fold_done
            )
            # Cards moved out of a column that holds more on the server: fetch its next ones,
            # so a column is never shown empty (or short) while tasks remain.
            if len(column.tasks) < visible and column.total > len(column.tasks):
                self._load_more(status)

    def action_move(self, delta: int) -> None:
        task = self.selected_task()
        if task is None:
            return
        index = TASK_STATUSES.index(task.status) + delta
        if not 0 <= index < len(TASK_STATUSES):
            self.say(f"{task.task_id} is already in {STATUS_TITLES[task.status]}.", error=True)
            return
        to_status = TASK_STATUSES[index]
        target = self.columns.get(to_status)
        last = target.tasks[-1].position if target and target.tasks else None
        # Loaded to its end: the card goes last; otherwise first, where it is seen.
        if target is not None and len(target.tasks) >= target.total:
            position = position_between(last, None)
        else:
            first = target.tasks[0].position if target and target.tasks else None
            position = position_between(None, first)
        service = self.service

        def moved(result: tuple[Task, MoveRecord]) -> None:
            moved_task, record = result
            self.last_move = record
            self._place(moved_task, select=True)
            self._paint_cursor()
            self.say(f"{moved_task.task_id} → {STATUS_TITLES[to_status]} (u undoes).")

        self._write(lambda: service.move(task, to_status, position), moved, task=task)

    def action_reorder(self, delta: int) -> None:
        task = self.selected_task()
        column = self.columns.get(self.current_status)
        if task is None or column is None:
            return
        row = column.tasks.index(task)
        target = row + delta
        if not 0 <= target < len(column.tasks):
            return
        if delta < 0:
            before = column.tasks[target - 1].position if target > 0 else None
            position = position_between(before, column.tasks[target].position)
        else:
            after = column.tasks[target + 1].position if target + 1 < len(column.tasks) else None
            position = position_between(column.tasks[target].position, after)
        service = self.service

        def moved(result: tuple[Task, MoveRecord]) -> None:
            moved_task, record = result
            self.last_move = record
            self._place(moved_task, select=True)
            self._paint_cursor()
            self.say(f"{moved_task.task_id} moved {'up' if delta < 0 else 'down'}.")

        self._write(lambda: service.move(task, task.status, position), moved, task=task)

    def action_undo(self) -> None:
        record = self.last_move
        if record is None:
            self.say("There is no move to undo.", error=True)
            return
        current = next(
            (t for c in self.columns.values() for t in c.tasks if t.id == record.task_id), None
        )
        service = self.service

        def job() -> Task:
            held = current or service.get_task(record.task_id)
            return service.undo(record, held)

        def undone(task: Task) -> None:
            self.last_move = None
            self._place(task, select=True)
            self._paint_cursor()
            self.say(f"Undone: {task.task_id} is back in {STATUS_TITLES[task.status]}.")

        self._write(job, undone, task=current)

    def _updated(self, verb: str) -> Any:
        def done(task: Task) -> None:
            self._place(task, select=True)
            self._paint_cursor()
            self.say(f"{task.task_id} {verb}.")

        return done

    def action_assign(self) -> None:
        task = self.selected_task()
        if task is None:
            return
        service = self.service

        def pick(members: Any) -> None:
            options = [("unassigned", UNASSIGNED_CHOICE)] + [
                (f"{m.name} <{m.email}>", m.user_id) for m in members
            ]

            def chosen(value: str | None) -> None:
                if value is None:
                    return
                user_id = None if value == UNASSIGNED_CHOICE else value
                self._write(lambda: service.assign(task, user_id),
                            self._updated("assigned" if user_id else "unassigned"), task=task)

            self.app.push_screen(
                PickScreen(f"Assign {task.task_id}", options,
                           task.assignee_id or UNASSIGNED_CHOICE),
                chosen,
            )

        self.run_job(service.assignable_members, pick, group="board-members")

    def action_priority(self) -> None:
        task = self.selected_task()
        if task is None:
            return
        service = self.service

        def chosen(value: str | None) -> None:
            if value is not None and value != task.priority:
                self._write(lambda: service.set_priority(task, value),
                            self._updated(f"is now {value}"), task=task)

        options = [(p, p) for p in reversed(TASK_PRIORITIES)]
        self.app.push_screen(
            PickScreen(f"Priority of {task.task_id}", options, task.priority), chosen
        )

    def action_delete(self) -> None:
        task = self.selected_task()
        if task is None:
            return
        service = self.service

        def answered(yes: bool | None) -> None:
            if not yes:
                self.say("Nothing deleted.")
                return

            def deleted(_: None) -> None:
                self._remove_task(task.id)
                self._paint_cursor()
                self.say(f"Deleted {task.task_id}.")

            self._write(lambda: service.delete(task), deleted, task=task)

        self.app.push_screen(
            ConfirmScreen(f"Delete {task.task_id} “{task.title}”? This cannot be undone.",
                          "Delete"),
            answered,
        )

    def action_new(self) -> None:
        from creatia_tui.screens.task_forms import TaskForm

        status = self.current_status if self.current_status != "done" else "todo"

        def created(task: Task | None) -> None:
            if task is not None:
                self._place(task, select=True)
                self._paint_cursor()
                self.say(f"Created {task.task_id}.")

        self.app.push_screen(TaskForm(self.service, None, status=status), created)

    def action_edit(self) -> None:
        from creatia_tui.screens.task_forms import TaskForm

        task = self.selected_task()
        if task is None:
            return
        service = self.service

        def edit(full: Task) -> None:
            self.app.push_screen(TaskForm(service, full), self._saved_form("saved"))

        self.run_job(lambda: service.get_task(task.id), edit, group="board-open")

    def _saved_form(self, verb: str) -> Any:
        def done(task: Task | None) -> None:
            if task is not None:
                self._place(task, select=True)
                self._paint_cursor()
                self.say(f"{task.task_id} {verb}.")

        return done

    def action_log_time(self) -> None:
        from creatia_tui.screens.task_forms import TimeForm

        task = self.selected_task()
        if task is None:
            return
        service = self.service

        def log_for(full: Task) -> None:
            self.app.push_screen(TimeForm(service, full), self._saved_form("time logged"))

        self.run_job(lambda: service.get_task(task.id), log_for, group="board-open")

    def action_open(self) -> None:
        from creatia_tui.screens.task_detail import TaskDetailScreen

        task = self.selected_task()
        if task is None:
            return

        def closed(changed: Task | None) -> None:
            if changed is not None:
                self._place(changed, select=True)
                self._paint_cursor()

        self.app.push_screen(TaskDetailScreen(self.service, task.id), closed)

    # ------------------------------------------------------------ filters and search
    def set_filter(self, task_filter: TaskFilter, note: str | None = None) -> None:
        self.task_filter = task_filter
        self.fold_done = task_filter.open_only or self.fold_done
        self.limits = {}  # another filter starts from one screenful again
        self._show_filter()
        self.action_reload(note)

    def action_filter(self) -> None:
        from creatia_tui.screens.task_forms import FilterScreen

        def chosen(task_filter: TaskFilter | None) -> None:
            if task_filter is not None:
                self.set_filter(task_filter)

        self.app.push_screen(FilterScreen(self.service, self.task_filter), chosen)

    def action_search(self) -> None:
        search = self.query_one("#board-search", Input)
        search.can_focus = True
        search.add_class("-open")
        search.value = self.task_filter.text or ""
        search.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "board-search":
            return
        # The search first, then closing the line: its reads are under way while Textual
        # restyles the screen and recomposes the footer for the focus that left the line.
        self.set_filter(self.task_filter.with_(text=event.value.strip() or None))
        event.input.remove_class("-open")
        event.input.can_focus = False
        self.set_focus(None)

    def key_escape(self) -> None:
        search = self.query_one("#board-search", Input)
        if search.has_focus:
            search.remove_class("-open")
            search.can_focus = False
            self.set_focus(None)

    def action_toggle_done(self) -> None:
        self.fold_done = not self.fold_done
        if self.fold_done and self.current_status == "done":
            self.column_index = TASK_STATUSES.index("review")
        self._fill_column("done", utcnow())
        self._paint_cursor()

    # ------------------------------------------------------------ saved filters
    def _load_saved_filters(self) -> None:
        actor = self.actor

        def loaded(filters: list[SavedFilter]) -> None:
            self.saved_filters = [f for f in filters if not f.built_in]

        # A failure here only leaves the palette without the user's own filters.
        self.run_db(lambda conn: list_saved_filters(conn, actor), loaded,
                    failed=lambda text: log.warning("saved filters: %s", text),
                    group="board-saved-filters")

    def action_save_filter(self) -> None:
        if self.task_filter.is_empty:
            self.say("There is no filter to save: narrow the board first (f or /).", error=True)
            return

        def saved(result: SavedFilter | None) -> None:
            if result is not None:
                self._load_saved_filters()
                self.say(f"Saved the filter {result.name!r}: ctrl+p lists it.")

        self.app.push_screen(SaveFilterForm(self.actor, self.task_filter), saved)

    def _delete_saved_filter(self, saved: SavedFilter) -> None:
        actor = self.actor
        assert saved.id is not None

        def deleted(_: None) -> None:
            self._load_saved_filters()
            self.say(f"Deleted the saved filter {saved.name!r}.")

        self.run_db(lambda conn: delete_saved_filter(conn, actor, saved.id or ""), deleted)

    def palette_commands(self) -> Iterable[SystemCommand]:
        for name, task_filter in BUILT_IN_FILTERS.items():
            yield SystemCommand(
                f"Filter: {name}", task_filter.describe(),
                partial(self.set_filter, task_filter, f"Filter: {name}"),
            )
        for saved in self.saved_filters:
            yield SystemCommand(
                f"Filter: {saved.name}", f"your saved filter · {saved.filter.describe()}",
                partial(self.set_filter, saved.filter, f"Filter: {saved.name}"),
            )
            yield SystemCommand(
                f"Delete saved filter: {saved.name}", saved.filter.describe(),
                partial(self._delete_saved_filter, saved), discover=False,
            )
        yield SystemCommand("Filter: all tasks", "clear every filter",
                            partial(self.set_filter, TaskFilter(), "Filter: all tasks"))

    # ------------------------------------------------------------ changes by others
    @work(thread=True, group="board-feed", exit_on_error=False)
    def _follow_changes(self, since: dt.datetime | None = None) -> None:
        from creatia_tui.data.task_feed import TaskFeed

        worker = get_current_worker()
        try:
            feed = TaskFeed(self.creatia.dbs, self.actor, since=since)
        except UserError as exc:
            log.warning("live board updates are off: %s", one_line(str(exc)))
            return
        self.app.call_from_thread(setattr, self, "feed_mode", feed.mode)
        try:
            while not worker.is_cancelled:
                changes = feed.next_changes(1.0)
                if changes and not worker.is_cancelled:
                    self.app.call_from_thread(self._apply_changes, changes)
        finally:
            feed.close()

    def _apply_changes(self, changes: list[Any]) -> None:
        if not self.is_attached:
            return
        selected = self.selected_task()
        for change in changes:
            if change.kind == "delete" or change.task is None:
                self._remove_task(change.task_id)
                if self.last_move and self.last_move.task_id == change.task_id:
                    self.last_move = None
            elif self._is_older(change.task):
                continue  # the echo of our own write, after a newer one of ours was shown
            elif self._shown(change.task_id) or self._matches_filter(change.task):
                self._place(change.task)
        if selected is not None:
            self._select_task(selected.id)
        self._paint_cursor()

    def _is_older(self, task: Task) -> bool:
        held = next((t for c in self.columns.values() for t in c.tasks if t.id == task.id), None)
        return bool(
            held is not None and held.updated_at and task.updated_at
            and task.updated_at < held.updated_at
        )

    def _shown(self, task_id: str) -> bool:
        return any(t.id == task_id for c in self.columns.values() for t in c.tasks)

    def _matches_filter(self, task: Task) -> bool:
        # Without a filter every task of the organization belongs on the board; with one, a
        # task the board does not show yet appears on the next refresh instead of guessing here.
        return self.task_filter.is_empty

    # ------------------------------------------------------------ sprint (issue 5)
    def action_sprint(self) -> None:
        """Move the selected task into a planned or active sprint, or to the backlog (the
        sprint service checks tasks.update and recomputes both sprints' metrics)."""
        from creatia_tui.data.sprints import SprintRecord, SprintService

        task = self.selected_task()
        if task is None:
            return
        sprints, board = SprintService(self.creatia.dbs, self.actor), self.service

        def pick(listed: list[SprintRecord]) -> None:
            open_sprints = sorted((s for s in listed if s.status != "completed"),
                                  key=lambda s: (s.status != "active", s.start_date))
            options = [(f"{s.name} ({s.status})", s.id) for s in open_sprints]
            options.append(("backlog (no sprint)", "backlog"))

            def chosen(value: str | None) -> None:
                if value is None or value == (task.sprint_id or "backlog"):
                    return
                name = next((s.name for s in open_sprints if s.id == value), "the backlog")

                def move() -> Task:
                    if value == "backlog":
                        sprints.remove_tasks(task.sprint_id or "", [task.id])
                    else:
                        sprints.add_tasks(value, [task.id])
                    return board.get_task(task.id)

                def moved(current: Task) -> None:
                    self._place(current, select=True)
                    self._paint_cursor()
                    self.say(f"{task.task_id} is now in {name}.")

                self._write(move, moved, task=task)

            self.app.push_screen(
                PickScreen(f"Sprint of {task.task_id}", options, task.sprint_id or "backlog"),
                chosen,
            )

        self.run_job(sprints.list_sprints, pick, group="board-sprints")
