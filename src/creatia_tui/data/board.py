"""The kanban board's reads and writes (MongoDB), permission-checked against PostgreSQL.

CONTRACT (the UI is written against it; the implementation fills in the bodies):

- ``BoardService(dbs, actor, client=None)``: every call first checks the actor's permission in
  PostgreSQL (``access.require``: tasks.read / tasks.create / tasks.update / tasks.assign /
  tasks.delete), so a viewer can read but not move, and an organization id the user does not
  belong to gives nothing. Every MongoDB query names ``organization_id``.
- Writes are one ``update_one`` with an optimistic check on the ``updated_at`` of the Task the
  caller holds: when someone changed the task meanwhile, nothing is written and ``TaskConflict``
  (carrying the current task, or None when it was deleted) is raised.
- Every write records an activity_logs document (client_type "tui"): ``task.status_changed``
  with changes.status.from/to exactly as the seed's example; and, in the seed's vocabulary,
  ``task.assigned`` (assignee_id from/to), ``task.updated`` (each changed field from/to, priority
  included), ``task.created``, ``task.time_logged`` (actual_hours from/to); plus ``task.moved``
  (position from/to, a reorder) and ``task.deleted``.
  completed_at is set when a task enters done and cleared when it leaves.
- Every write invalidates the organization's cached dashboards (data/cache.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.db import Databases
from creatia_tui.data.models import TASK_STATUSES, Task
from creatia_tui.data.task_filters import TaskFilter
from creatia_tui.errors import UserError

CARD_FIELDS = (
    "organization_id", "task_id", "title", "status", "priority", "position", "assignee_id",
    "assignee_snapshot", "due_date", "tags", "labels", "sprint_id", "completed_at",
    "updated_at", "created_at",
)


class TaskConflict(UserError):
    """Someone else changed (or deleted) the task since it was read; nothing was written."""

    def __init__(self, message: str, current: Task | None) -> None:
        super().__init__(message)
        self.current = current


@dataclass
class BoardColumn:
    status: str
    tasks: list[Task]  # card fields only (CARD_FIELDS), in position order, at most `limit`
    total: int  # every task of the column that matches the filter


@dataclass(frozen=True)
class MoveRecord:
    """What undo needs to put a moved card back."""

    task_id: str  # the document id
    key: str  # the human key, TASK-0042
    from_status: str
    from_position: float
    to_status: str
    to_position: float


@dataclass(frozen=True)
class MemberChoice:
    user_id: str
    name: str
    email: str


@dataclass
class TaskDraft:
    """A new task, or the editable fields of an existing one (``edit``)."""

    title: str
    description: str | None = None
    status: str = "todo"
    priority: str = "medium"
    task_type: str | None = None
    due_date: dt.datetime | None = None
    start_date: dt.datetime | None = None
    estimated_hours: float | None = None
    tags: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sprint_id: str | None = None


def position_between(before: float | None, after: float | None) -> float:
    """A position strictly between two neighbours (None: the column's start or end)."""
    if before is None and after is None:
        return 1000.0
    if before is None:
        assert after is not None
        return after - 1000.0
    if after is None:
        return before + 1000.0
    return (before + after) / 2


class BoardService:
    def __init__(
        self, dbs: Databases, actor: Actor, client: ClientContext | None = None
    ) -> None:
        self.dbs = dbs
        self.actor = actor
        self.client = client or ClientContext.current()

    # ------------------------------------------------------------ reads (tasks.read)
    def load_board(
        self,
        task_filter: TaskFilter,
        statuses: tuple[str, ...] = TASK_STATUSES,
        limit: int = 100,
    ) -> list[BoardColumn]:
        """One round trip per column (its cards and its total), each on an index."""
        raise NotImplementedError

    def get_task(self, task_id: str) -> Task:
        """The whole document; ValidationError when it is not in this organization."""
        raise NotImplementedError

    def assignable_members(self) -> list[MemberChoice]:
        """Active members of the organization with active accounts, by name."""
        raise NotImplementedError

    # ------------------------------------------------------------ writes
    def move(self, task: Task, to_status: str, position: float) -> tuple[Task, MoveRecord]:
        """Status change (tasks.update); same status means a reorder (``task.moved``)."""
        raise NotImplementedError

    def undo(self, record: MoveRecord, current: Task) -> Task:
        """Put a moved card back where it was (optimistic on ``current``)."""
        raise NotImplementedError

    def assign(self, task: Task, user_id: str | None) -> Task:
        """tasks.assign; the assignee must be an active member; sets assignee_snapshot."""
        raise NotImplementedError

    def set_priority(self, task: Task, priority: str) -> Task:
        raise NotImplementedError

    def edit(self, task: Task, draft: TaskDraft) -> Task:
        """tasks.update; writes only the fields that changed."""
        raise NotImplementedError

    def create(self, draft: TaskDraft) -> Task:
        """tasks.create; allocates the next task_id of the organization (TASK-0001 style)."""
        raise NotImplementedError

    def delete(self, task: Task) -> None:
        """tasks.delete."""
        raise NotImplementedError

    def log_time(self, task: Task, hours: float, description: str) -> Task:
        """tasks.update; 0 < hours <= 24; actual_hours += hours and remaining_hours =
        max(estimated - actual, 0) in the same update."""
        raise NotImplementedError
