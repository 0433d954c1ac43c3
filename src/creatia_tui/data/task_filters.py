"""Board filters: what a person can narrow the board to, as a MongoDB query.

A filter always sits under ``organization_id`` (the shard key's prefix and the first field of
every tasks index), so each query is one tenant's and starts with an index bound. Search is a
case-insensitive substring match (regular expression) over task_id, title, description and tags:
MongoDB's text search does not tokenise Korean, SecantusDB has no text index, and a substring
finds "대시보드" in "사용자 대시보드 개선".

Filters are plain data (``to_json``/``from_json``) so a user's saved filters can be stored.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from creatia_tui.data.models import OPEN_TASK_STATUSES, TASK_PRIORITIES
from creatia_tui.errors import ValidationError

ME = "me"
UNASSIGNED = "unassigned"
DUE_CHOICES = ("overdue", "this_week")
NO_SPRINT = "none"  # the backlog: tasks in no sprint


@dataclass(frozen=True)
class TaskFilter:
    """Every field None means "any"."""

    assignee: str | None = None  # ME, UNASSIGNED or a user id
    tag: str | None = None
    label: str | None = None
    priority: str | None = None
    due: str | None = None  # "overdue" (before now, not done) or "this_week" (now .. +7 days)
    sprint_id: str | None = None  # a sprint's id, or NO_SPRINT
    text: str | None = None  # substring of task_id, title, description or tags
    open_only: bool = False  # leave out done tasks (the board hides its done column)

    @property
    def is_empty(self) -> bool:
        return all(getattr(self, f.name) in (None, "", False) for f in fields(self))

    def with_(self, **changes: Any) -> TaskFilter:
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            key: value for key, value in asdict(self).items() if value not in (None, "", False)
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskFilter:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValidationError(f"Unknown filter field {sorted(unknown)[0]!r}.")
        values = {
            key: (bool(value) if key == "open_only" else None if value is None else str(value))
            for key, value in data.items()
        }
        return validate(cls(**values))

    def describe(self) -> str:
        """A short human line: "me · high · overdue · '대시보드'"."""
        parts = []
        if self.assignee:
            parts.append(self.assignee if self.assignee in (ME, UNASSIGNED) else "one member")
        for value in (self.priority, self.due, self.tag and f"#{self.tag}", self.label):
            if value:
                parts.append(value)
        if self.sprint_id:
            parts.append("backlog" if self.sprint_id == NO_SPRINT else "one sprint")
        if self.text:
            parts.append(repr(self.text))
        if self.open_only:
            parts.append("open")
        return " · ".join(parts) if parts else "all tasks"


def validate(task_filter: TaskFilter) -> TaskFilter:
    """The filter, or a ValidationError naming the field that cannot be right."""
    if task_filter.priority and task_filter.priority not in TASK_PRIORITIES:
        choices = ", ".join(TASK_PRIORITIES)
        raise ValidationError(
            f"Unknown priority {task_filter.priority!r}; choose one of {choices}."
        )
    if task_filter.due and task_filter.due not in DUE_CHOICES:
        raise ValidationError(
            f"Unknown due filter {task_filter.due!r}; choose overdue or this_week."
        )
    if task_filter.text is not None and len(task_filter.text) > 200:
        raise ValidationError("The search text is longer than 200 characters.")
    return task_filter


def substring(text: str) -> dict[str, Any]:
    return {"$regex": re.escape(text), "$options": "i"}


def to_query(
    organization_id: str, task_filter: TaskFilter, *, user_id: str, now: dt.datetime
) -> dict[str, Any]:
    """The MongoDB query for one organization's tasks under this filter (the board replaces the
    status clause with its column's)."""
    validate(task_filter)
    query: dict[str, Any] = {"organization_id": organization_id}
    if task_filter.assignee == ME:
        query["assignee_id"] = user_id
    elif task_filter.assignee == UNASSIGNED:
        query["assignee_id"] = None  # matches a missing field too
    elif task_filter.assignee:
        query["assignee_id"] = task_filter.assignee
    if task_filter.tag:
        query["tags"] = task_filter.tag
    if task_filter.label:
        query["labels"] = task_filter.label
    if task_filter.priority:
        query["priority"] = task_filter.priority
    if task_filter.due == "overdue":
        query["due_date"] = {"$lt": now}
        query["completed_at"] = None
    elif task_filter.due == "this_week":
        query["due_date"] = {"$gte": now, "$lt": now + dt.timedelta(days=7)}
    if task_filter.sprint_id == NO_SPRINT:
        query["sprint_id"] = None
    elif task_filter.sprint_id:
        query["sprint_id"] = task_filter.sprint_id
    text = (task_filter.text or "").strip()
    if task_filter.open_only:
        query["status"] = {"$in": list(OPEN_TASK_STATUSES)}
    if text:
        pattern = substring(text)
        query["$or"] = [
            {"task_id": pattern},
            {"title": pattern},
            {"description": pattern},
            {"tags": pattern},
        ]
    return query


# The saved filters everyone has; a user's own are stored per user (data/saved_filters.py).
BUILT_IN_FILTERS: dict[str, TaskFilter] = {
    "my open tasks": TaskFilter(assignee=ME, open_only=True),
    "overdue": TaskFilter(due="overdue"),
    "unassigned": TaskFilter(assignee=UNASSIGNED),
}
