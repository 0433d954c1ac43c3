"""The kanban board's reads and writes (MongoDB), permission-checked against PostgreSQL.

- ``BoardService(dbs, actor, client=None)``: every call first checks the actor's permission in
  PostgreSQL (``access.require``: tasks.read / tasks.create / tasks.update / tasks.assign /
  tasks.delete), so a viewer can read but not move, and an organization id the user does not
  belong to gives nothing (``load_board`` checks beside its first read and returns nothing
  unless the check passes). Every MongoDB query names ``organization_id``.
- Writes are one ``update_one`` with an optimistic check on the ``updated_at`` of the Task the
  caller holds: when someone changed the task meanwhile, nothing is written and ``TaskConflict``
  (carrying the current task, or None when it was deleted) is raised.
- Every write records an activity_logs document (client_type "tui"): ``task.status_changed``
  with changes.status.from/to exactly as the seed's example; and, in the seed's vocabulary,
  ``task.assigned`` (assignee_id from/to), ``task.updated`` (each changed field from/to, priority
  included), ``task.created``, ``task.time_logged`` (actual_hours from/to); plus ``task.moved``
  (position from/to, a reorder) and ``task.deleted``.
  completed_at is set when a task enters done and cleared when it leaves.
- The change and its activity document are one multi-document transaction (where the
  deployment has them: a replica set, which SecantusDB reports itself as, or a mongos), so a
  failure between the two leaves neither; once committed, the organization's cached dashboards
  are invalidated (data/cache.py).

How the queries are shaped (measured on SecantusDB 0.7, 40,000 tasks, 4,000 per organization):

- A column is one aggregate: ``$match {organization_id, status}``, then a second ``$match`` with
  the rest of the filter, ``$sort {position, _id}`` and ``$facet`` (the first ``limit`` cards
  and the count). MongoDB merges adjacent ``$match`` stages before planning, so for mongod this
  is the single filter. SecantusDB plans only the leading ``$match`` (a rule-based planner that
  gives up on a filter holding ``$or`` or a field beyond an index's leading keys), so keeping the
  tenant-and-column prefix alone there is what keeps every board and search query on an index:
  ~40-55 ms a column whatever the filter, against 115-790 ms with one merged ``$match`` (a
  collection scan) and 220-1,960 ms for a find plus a count.
- Writes use ``update_one`` with ``_id`` first in the filter and build the returned Task from
  the held one: ``find_one_and_update`` costs ~500 ms on SecantusDB's tasks collection (the
  command seems to scan it) against ~2-8 ms, and SecantusDB looks an ``_id``-first filter up
  by key but walks the whole organization for an ``organization_id``-first one (~1.5 ms
  against ~100 ms).
- A write is one PostgreSQL query and three MongoDB round trips: the update, the activity
  document (both in the transaction, plus its commit), the cache invalidation. Assign adds
  the member check (PostgreSQL) and the user's snapshot; create adds the column's end and the
  key (``task_counters``, one document per organization, started from the highest TASK-n on
  first use: three more round trips once); an edit that changes the status or the sprint adds
  the column's end or the sprint check; a conflict adds the read of the current task.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import math
import re
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg
from bson import ObjectId
from bson.errors import InvalidId
from psycopg.rows import dict_row
from pymongo import DESCENDING, ReturnDocument
from pymongo.client_session import ClientSession
from pymongo.errors import ConnectionFailure, DuplicateKeyError, PyMongoError

from creatia_tui.data.access import Actor, judge, require
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.cache import invalidate_organization
from creatia_tui.data.db import Databases
from creatia_tui.data.models import (
    OPEN_TASK_STATUSES,
    TASK_PRIORITIES,
    TASK_STATUSES,
    Task,
    TimeEntry,
)
from creatia_tui.data.task_filters import TaskFilter, to_query
from creatia_tui.data.tasks import ActivityRepository, SnapshotRepository, utcnow
from creatia_tui.errors import UserError, ValidationError, one_line

log = logging.getLogger(__name__)

CARD_FIELDS = (
    "organization_id", "task_id", "title", "status", "priority", "position", "assignee_id",
    "assignee_snapshot", "due_date", "tags", "labels", "sprint_id", "completed_at",
    "updated_at", "created_at",
)

TITLE_MAX = 500
DESCRIPTION_MAX = 20_000
TASK_TYPE_MAX = 50
TAG_MAX = 50  # characters of one tag or label
TAGS_MAX = 20  # tags (and labels) on one task
MAX_HOURS = 24.0
TIME_DESCRIPTION_MAX = 500
KEY_PREFIX = "TASK-"
KEY_DIGITS = 18  # the most digits a key's number may have ($toLong must hold it)
RESOURCE_TYPE = "Task"
NOT_HERE = "That task is not in this organization."


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


# ---------------------------------------------------------------- query shapes
def format_key(number: int) -> str:
    """TASK-0042: four digits at least, more when the number needs them."""
    return f"{KEY_PREFIX}{number:04d}"


def board_filter(
    organization_id: str, task_filter: TaskFilter, *, user_id: str, now: dt.datetime
) -> dict[str, Any]:
    """The filter's clauses other than the organization and the status (a column sets it)."""
    query = to_query(organization_id, task_filter, user_id=user_id, now=now)
    query.pop("organization_id")
    query.pop("status", None)
    return query


def column_pipeline(
    organization_id: str, status: str, rest: dict[str, Any], limit: int
) -> list[dict[str, Any]]:
    """One column's cards and total in one aggregate (see the module's notes on its shape)."""
    pipeline: list[dict[str, Any]] = [
        {"$match": {"organization_id": organization_id, "status": status}}
    ]
    if rest:
        pipeline.append({"$match": rest})
    pipeline += [
        {"$sort": {"position": 1, "_id": 1}},
        {
            "$facet": {
                "cards": [{"$limit": limit}, {"$project": dict.fromkeys(CARD_FIELDS, 1)}],
                "total": [{"$count": "n"}],
            }
        },
    ]
    return pipeline


def highest_key_pipeline(organization_id: str) -> list[dict[str, Any]]:
    """The organization's highest TASK-n by number, not by text (TASK-999 < TASK-1000)."""
    # The range is the TASK- prefix on idx_tasks_org_task_id ("." follows "-"); the pattern,
    # in its own stage for SecantusDB's planner (see the module's notes), keeps TASK-<digits>.
    prefix_range = {"$gte": KEY_PREFIX, "$lt": KEY_PREFIX[:-1] + chr(ord(KEY_PREFIX[-1]) + 1)}
    return [
        {"$match": {"organization_id": organization_id, "task_id": prefix_range}},
        {"$match": {"task_id": {"$regex": f"^{KEY_PREFIX}[0-9]{{1,{KEY_DIGITS}}}$"}}},
        {
            "$group": {
                "_id": None,
                "top": {"$max": {"$toLong": {"$substrCP": ["$task_id", len(KEY_PREFIX), 64]}}},
            }
        },
    ]


# ---------------------------------------------------------------- validation
def _object_id(task_id: str) -> ObjectId:
    try:
        return ObjectId(task_id)
    except (InvalidId, TypeError):
        raise ValidationError(NOT_HERE) from None


def _number(value: Any) -> float | None:
    """A finite float, or None when the value is not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _moment(value: Any, what: str) -> dt.datetime | None:
    """A date as MongoDB keeps it: UTC, whole milliseconds (a naive value is taken as UTC)."""
    if value is None:
        return None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"The {what} is not a date.")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def _words(values: Any, what: str) -> list[str]:
    """Tags or labels: trimmed, blank ones dropped, duplicates dropped, bounded."""
    if values is None:
        return []
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValidationError(f"The {what}s must be a list of words.")
    cleaned = list(dict.fromkeys(v.strip() for v in values if v.strip()))
    for value in cleaned:
        if len(value) > TAG_MAX:
            raise ValidationError(
                f"The {what} {value[:20]!r}… is longer than {TAG_MAX} characters."
            )
    if len(cleaned) > TAGS_MAX:
        raise ValidationError(f"A task can have at most {TAGS_MAX} {what}s.")
    return cleaned


def _optional_text(value: Any, what: str, limit: int) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"The {what} must be text.")
    value = value.strip()
    if len(value) > limit:
        raise ValidationError(f"The {what} is longer than {limit} characters.")
    return value or None


def _check_priority(priority: Any) -> None:
    if priority not in TASK_PRIORITIES:
        raise ValidationError(
            f"Unknown priority {priority!r}; choose one of {', '.join(TASK_PRIORITIES)}."
        )


def _check_status(status: Any) -> None:
    if status not in TASK_STATUSES:
        raise ValidationError(
            f"Unknown status {status!r}; choose one of {', '.join(TASK_STATUSES)}."
        )


def clean_draft(draft: TaskDraft) -> dict[str, Any]:
    """The draft's fields as they would be stored, or a ValidationError (one sentence)."""
    title = draft.title.strip() if isinstance(draft.title, str) else ""
    if not title:
        raise ValidationError("The title is empty.")
    if len(title) > TITLE_MAX:
        raise ValidationError(f"The title is longer than {TITLE_MAX} characters.")
    _check_status(draft.status)
    if draft.priority is not None:
        _check_priority(draft.priority)
    estimate = None
    if draft.estimated_hours is not None:
        estimate = _number(draft.estimated_hours)
        if estimate is None:
            raise ValidationError("The estimate must be a number of hours.")
        if estimate < 0:
            raise ValidationError("The estimate cannot be negative.")
    due_date = _moment(draft.due_date, "due date")
    start_date = _moment(draft.start_date, "start date")
    if due_date is not None and start_date is not None and due_date < start_date:
        raise ValidationError("The due date is before the start date.")
    sprint_id = _optional_text(draft.sprint_id, "sprint", 64)
    return {
        "title": title,
        "description": _optional_text(draft.description, "description", DESCRIPTION_MAX),
        "status": draft.status,
        "priority": draft.priority,
        "task_type": _optional_text(draft.task_type, "task type", TASK_TYPE_MAX),
        "due_date": due_date,
        "start_date": start_date,
        "estimated_hours": estimate,
        "tags": _words(draft.tags, "tag"),
        "labels": _words(draft.labels, "label"),
        "sprint_id": sprint_id,
    }


def remaining(estimated: float | None, actual: float | None) -> float | None:
    if estimated is None:
        return None
    return max(round(estimated - (actual or 0.0), 4), 0.0)


class _IncompleteTask(Exception):
    """The held task is the current version but lacks fields the write computes from (a card);
    the write is redone from the whole document."""

    def __init__(self, current: Task) -> None:
        super().__init__("incomplete task")
        self.current = current


ASSIGNABLE_MEMBERS = """
SELECT u.id::text AS user_id, coalesce(u.name, u.email) AS name, u.email
FROM organization_memberships m
JOIN users u ON u.id = m.user_id AND u.active
WHERE m.organization_id = %(org)s AND m.active
ORDER BY lower(coalesce(u.name, u.email)), u.email, u.id
"""

ASSIGNEE = """
SELECT u.id::text AS user_id, u.name, u.email, u.avatar_url, u.active,
       EXISTS (SELECT 1 FROM organization_memberships m
               WHERE m.user_id = u.id AND m.organization_id = %(org)s AND m.active) AS member
FROM users u
WHERE u.id = %(user)s
"""

UUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")



_TRANSACTIONS: dict[int, bool] = {}


def _has_transactions(dbs: Databases) -> bool:
    """Whether the MongoDB deployment runs multi-document transactions (asked once per client):
    a replica set member (SecantusDB reports one) or a mongos."""
    client = dbs.mongo_client
    known = _TRANSACTIONS.get(id(client))
    if known is None:
        hello = client.admin.command("hello")
        known = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
        _TRANSACTIONS[id(client)] = known
    return known

class BoardService:
    def __init__(
        self,
        dbs: Databases,
        actor: Actor,
        client: ClientContext | None = None,
        *,
        after_commit: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.dbs = dbs
        self.actor = actor
        self.client = client or ClientContext.current()
        self._session: ClientSession | None = None  # the open write transaction, if any
        # Runs follow-up work (sprint metrics) once a write has committed. By default at once, in
        # the caller's thread; the board hands in a background runner so a move is drawn without
        # waiting for a 2,000-task sprint's aggregate (the metrics still follow within 2 s).
        self._after_commit = after_commit or (lambda work: work())

    # ------------------------------------------------------------ plumbing
    @property
    def _org(self) -> str:
        return self.actor.organization_id

    def _require(self, permission: str, *, keep_grant: bool = False) -> None:
        """The permission check in one round trip: its one SELECT in autocommit, without the
        BEGIN and COMMIT of a transaction of its own (the MongoDB work that follows is not in
        it anyway). `keep_grant`: keep what it read as the actor's read grant (a refusal too:
        only a grant that holds a permission is ever trusted)."""
        with self.dbs.pg() as conn:
            conn.autocommit = True
            try:
                if keep_grant:
                    judge(self.dbs.read_grants.read(conn, self.actor), permission)
                else:
                    require(conn, self.actor, permission)
            finally:
                with contextlib.suppress(psycopg.Error):  # a broken connection: the pool drops it
                    conn.autocommit = False

    @contextlib.contextmanager
    def _mongo(self) -> Iterator[None]:
        """Driver errors as one sentence: an unreachable server, or a refused command."""
        try:
            yield
        except ConnectionFailure as exc:
            raise self.dbs.mongo_error(exc) from exc
        except PyMongoError as exc:
            raise UserError(f"MongoDB refused the request: {one_line(str(exc))}") from exc

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The change and its activity document commit together: one multi-document
        transaction where the deployment has them (a replica set or mongos; a standalone server
        writes them one after the other). Once committed, the organization's cached dashboards
        are dropped, so a rebuild can only read the committed change."""
        if _has_transactions(self.dbs):
            with self.dbs.mongo_client.start_session() as session, session.start_transaction():
                self._session = session
                try:
                    yield
                finally:
                    self._session = None
        else:
            yield
        invalidate_organization(self.dbs.mongo, self._org)

    def _find(self, task_id: str) -> Task | None:
        # _id first: SecantusDB then looks the key up instead of walking the organization.
        doc = self.dbs.mongo.tasks.find_one(
            {"_id": _object_id(task_id), "organization_id": self._org}
        )
        return Task.from_document(doc) if doc else None

    @staticmethod
    def _stamp(task: Task | None = None) -> dt.datetime:
        """The new updated_at, always later than the held one (so an old copy stays old)."""
        now = utcnow()
        if task is not None and task.updated_at is not None and now <= task.updated_at:
            now = task.updated_at + dt.timedelta(milliseconds=1)
        return now

    def _conflict(self, task: Task, *, partial_ok: bool = False) -> Exception:
        current = self._find(task.id)
        if current is None:
            return TaskConflict(
                f"{task.task_id} was deleted by someone else; it is gone from the board.", None
            )
        if partial_ok and current.updated_at == task.updated_at:
            return _IncompleteTask(current)
        return TaskConflict(
            f"{task.task_id} was changed by someone else; the card was reloaded.", current
        )

    def _update(
        self,
        task: Task,
        now: dt.datetime,
        values: dict[str, Any],
        *,
        push: dict[str, Any] | None = None,
        guard: tuple[str, ...] = (),
    ) -> None:
        """One optimistic update_one of the held version (and of the `guard` fields' values
        the change was computed from); TaskConflict when it is not the current one."""
        query: dict[str, Any] = {
            "_id": _object_id(task.id),
            "organization_id": self._org,
            "updated_at": task.updated_at,
        }
        for name in guard:
            query[name] = getattr(task, name)
        update: dict[str, Any] = {"$set": {**values, "updated_at": now}}
        if push:
            update["$push"] = push
        result = self.dbs.mongo.tasks.update_one(query, update, session=self._session)
        if result.matched_count == 0:
            raise self._conflict(task, partial_ok=bool(guard))

    def _record(
        self, action: str, task_id: str, changes: dict[str, Any] | None, now: dt.datetime
    ) -> None:
        """The activity document, in the write's transaction (see _writing)."""
        ActivityRepository(self.dbs.mongo).record(
            organization_id=self._org,
            user_id=self.actor.user_id,
            action=action,
            resource_type=RESOURCE_TYPE,
            resource_id=task_id,
            changes=changes,
            user_agent=self.client.user_agent,
            ip_address=self.client.ip_address,
            at=now,
            session=self._session,
        )

    def _column_end(self, status: str) -> float:
        last = self.dbs.mongo.tasks.find_one(
            {"organization_id": self._org, "status": status},
            {"position": 1},
            sort=[("position", DESCENDING), ("_id", DESCENDING)],
        )
        return position_between(last.get("position") if last else None, None)

    def _check_sprint(self, sprint_id: str) -> None:
        try:
            oid = ObjectId(sprint_id)
        except (InvalidId, TypeError):
            raise ValidationError("That sprint is not in this organization.") from None
        if self.dbs.mongo.sprints.find_one({"_id": oid, "organization_id": self._org}) is None:
            raise ValidationError("That sprint is not in this organization.")

    def _sprints_changed(self, *sprint_ids: str | None) -> None:
        """After a committed write: the metrics of the sprints the task was and is in follow it
        (issue 5; one aggregate and one update each, data/sprints.py). The task's change stands
        when this fails; the sprint's next change or a reader's recompute catches up."""
        from creatia_tui.data.sprints import recompute_metrics  # sprints imports this module

        changed = list(dict.fromkeys(s for s in sprint_ids if s))
        if not changed:
            return
        mongo, org = self.dbs.mongo, self._org

        def recompute() -> None:
            for sprint_id in changed:
                try:
                    recompute_metrics(mongo, org, sprint_id)
                except PyMongoError:
                    log.warning("recomputing the metrics of sprint %s failed", sprint_id,
                                exc_info=True)

        self._after_commit(recompute)

    # ------------------------------------------------------------ reads (tasks.read)
    def load_board(
        self,
        task_filter: TaskFilter,
        statuses: tuple[str, ...] = TASK_STATUSES,
        limit: int = 100,
    ) -> list[BoardColumn]:
        """One round trip per column (its cards and its total), each on an index.

        The permission check (PostgreSQL) runs beside the first column's read instead of before
        it, off the path of the answer; nothing read is returned unless it passes, and a refusal
        seen early stops the reading. A grant read at most 15 s ago that holds tasks.read
        stands in for the check (``access`` decision 3): then the columns' reads are the only
        round trips."""
        for status in statuses:
            _check_status(status)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValidationError("A column shows at least one card.")
        rest = board_filter(self._org, task_filter, user_id=self.actor.user_id, now=utcnow())
        columns = []
        with ThreadPoolExecutor(1, thread_name_prefix="board-permission") as beside:
            allowed: Future[None] = Future()
            if self.dbs.read_grants.held(self.actor, "tasks.read"):
                allowed.set_result(None)
            else:
                # In this thread's context, so whoever watches the calls (the bench) sees its
                # origin.
                allowed = beside.submit(
                    contextvars.copy_context().run, self._require, "tasks.read", keep_grant=True
                )
            with self._mongo():
                for status in statuses:
                    if allowed.done():
                        allowed.result()  # a refusal raises here, before the next read
                    if task_filter.open_only and status not in OPEN_TASK_STATUSES:
                        columns.append(BoardColumn(status, [], 0))
                        continue
                    rows = list(self.dbs.mongo.tasks.aggregate(
                        column_pipeline(self._org, status, rest, limit)))
                    row = rows[0] if rows else {"cards": [], "total": []}
                    total = int(row["total"][0]["n"]) if row["total"] else 0
                    cards = [Task.from_document(doc) for doc in row["cards"]]
                    columns.append(BoardColumn(status, cards, total))
            allowed.result()
        return columns

    def get_task(self, task_id: str) -> Task:
        """The whole document; ValidationError when it is not in this organization."""
        self._require("tasks.read")
        with self._mongo():
            task = self._find(task_id)
        if task is None:
            raise ValidationError(NOT_HERE)
        return task

    def assignable_members(self) -> list[MemberChoice]:
        """Active members of the organization with active accounts, by name."""
        with self.dbs.pg() as conn:
            require(conn, self.actor, "tasks.read")
            with conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(ASSIGNABLE_MEMBERS, {"org": self._org}).fetchall()
        return [MemberChoice(**row) for row in rows]

    # ------------------------------------------------------------ writes
    def move(self, task: Task, to_status: str, position: float) -> tuple[Task, MoveRecord]:
        """Status change (tasks.update); same status means a reorder (``task.moved``)."""
        self._require("tasks.update")
        return self._move(task, to_status, position)

    def undo(self, record: MoveRecord, current: Task) -> Task:
        """Put a moved card back where it was (optimistic on ``current``)."""
        self._require("tasks.update")
        if current.id != record.task_id:
            raise ValidationError(f"That undo belongs to {record.key}, not {current.task_id}.")
        moved, _ = self._move(current, record.from_status, record.from_position)
        return moved

    def _move(self, task: Task, to_status: str, position: float) -> tuple[Task, MoveRecord]:
        _check_status(to_status)
        target = _number(position)
        if target is None:
            raise ValidationError("The position must be a number.")
        record = MoveRecord(task.id, task.task_id, task.status, task.position, to_status, target)
        if to_status == task.status and target == task.position:
            return task, record
        now = self._stamp(task)
        values: dict[str, Any] = {"position": target}
        completed_at = task.completed_at
        if to_status != task.status:
            values["status"] = to_status
            if to_status == "done":
                completed_at = values["completed_at"] = now
            elif task.status == "done":
                completed_at = values["completed_at"] = None
            action = "task.status_changed"
            changes = {"status": {"from": task.status, "to": to_status}}
        else:
            action = "task.moved"
            changes = {"position": {"from": task.position, "to": target}}
        with self._mongo(), self._writing():
            self._update(task, now, values)
            self._record(action, task.id, changes, now)
        if to_status != task.status:
            self._sprints_changed(task.sprint_id)
        moved = replace(
            task, status=to_status, position=target, completed_at=completed_at, updated_at=now
        )
        return moved, record

    def assign(self, task: Task, user_id: str | None) -> Task:
        """tasks.assign; the assignee must be an active member; sets assignee_snapshot."""
        with self.dbs.pg() as conn:
            require(conn, self.actor, "tasks.assign")
            if user_id == task.assignee_id:
                return task
            person = None
            if user_id is not None:
                if not isinstance(user_id, str) or not UUID_PATTERN.match(user_id):
                    raise ValidationError(
                        f"{user_id!r} is not an active member of this organization."
                    )
                with conn.cursor(row_factory=dict_row) as cur:
                    person = cur.execute(ASSIGNEE, {"org": self._org, "user": user_id}).fetchone()
                if person is None or not person["member"] or not person["active"]:
                    who = (person and (person["name"] or person["email"])) or user_id
                    raise ValidationError(f"{who} is not an active member of this organization.")
        now = self._stamp(task)
        snapshot = None
        with self._mongo(), self._writing():
            if person is not None:
                synced = SnapshotRepository(self.dbs.mongo).get(person["user_id"])
                source = synced.to_document() if synced else {**person, "synced_at": now}
                snapshot = {
                    key: source.get(key)
                    for key in ("user_id", "name", "email", "avatar_url", "synced_at")
                }
            self._update(task, now, {"assignee_id": user_id, "assignee_snapshot": snapshot})
            self._record(
                "task.assigned",
                task.id,
                {"assignee_id": {"from": task.assignee_id, "to": user_id}},
                now,
            )
        return replace(task, assignee_id=user_id, assignee_snapshot=snapshot, updated_at=now)

    def set_priority(self, task: Task, priority: str) -> Task:
        self._require("tasks.update")
        _check_priority(priority)
        if priority == task.priority:
            return task
        now = self._stamp(task)
        with self._mongo(), self._writing():
            self._update(task, now, {"priority": priority})
            self._record(
                "task.updated", task.id, {"priority": {"from": task.priority, "to": priority}}, now
            )
        return replace(task, priority=priority, updated_at=now)

    def edit(self, task: Task, draft: TaskDraft) -> Task:
        """tasks.update; writes only the fields that changed."""
        self._require("tasks.update")
        wanted = clean_draft(draft)
        try:
            return self._edit(task, wanted)
        except _IncompleteTask as exc:
            return self._edit(exc.current, wanted, retry=False)

    def _edit(self, task: Task, wanted: dict[str, Any], retry: bool = True) -> Task:
        changed = {name: value for name, value in wanted.items() if getattr(task, name) != value}
        if not changed:
            return task
        now = self._stamp(task)
        values = dict(changed)
        guard: tuple[str, ...] = ()
        with self._mongo(), self._writing():
            if changed.get("sprint_id"):
                self._check_sprint(changed["sprint_id"])
            if "status" in changed:
                values["position"] = self._column_end(changed["status"])
                if changed["status"] == "done":
                    values["completed_at"] = now
                elif task.status == "done":
                    values["completed_at"] = None
            if "estimated_hours" in changed:
                values["remaining_hours"] = remaining(changed["estimated_hours"], task.actual_hours)
                guard = ("actual_hours",)  # the remainder is computed from it
            try:
                self._update(task, now, values, guard=guard)
            except _IncompleteTask as exc:
                if retry:
                    raise
                raise TaskConflict(
                    f"{task.task_id} was changed by someone else; the card was reloaded.",
                    exc.current,
                ) from None
            diff = {name: {"from": getattr(task, name), "to": new} for name, new in changed.items()}
            self._record("task.updated", task.id, diff, now)
        if changed.keys() & {"status", "estimated_hours", "sprint_id"}:
            self._sprints_changed(task.sprint_id, values.get("sprint_id", task.sprint_id))
        return replace(task, **values, updated_at=now)

    def create(self, draft: TaskDraft) -> Task:
        """tasks.create; allocates the next task_id of the organization (TASK-0001 style)."""
        self._require("tasks.create")
        wanted = clean_draft(draft)
        with self._mongo():
            if wanted["sprint_id"]:
                self._check_sprint(wanted["sprint_id"])
            position = self._column_end(wanted["status"])
            now = self._stamp()
            doc: dict[str, Any] = {
                "organization_id": self._org,
                "task_id": "",
                **wanted,
                "position": position,
                "created_by_id": self.actor.user_id,
                "assignee_id": None,
                "assignee_snapshot": None,
                "actual_hours": 0.0,
                "remaining_hours": remaining(wanted["estimated_hours"], 0.0),
                "time_entries": [],
                "completed_at": now if wanted["status"] == "done" else None,
                "created_at": now,
                "updated_at": now,
            }
            for attempt in (1, 2):
                doc["task_id"] = format_key(self._next_number())
                try:
                    with self._writing():
                        self.dbs.mongo.tasks.insert_one(doc, session=self._session)
                        task = Task.from_document(doc)
                        self._record(
                            "task.created", task.id,
                            {"task_id": task.task_id, "title": task.title}, now,
                        )
                    break
                except DuplicateKeyError:
                    # The key was taken outside the counter (an import, a seed): catch up once.
                    doc.pop("_id", None)
                    if attempt == 2:
                        raise UserError(
                            "Could not allocate a task key; someone else is adding tasks with "
                            "the same keys. Try again."
                        ) from None
                    self._sync_counter()
        self._sprints_changed(task.sprint_id)
        return task

    def _next_number(self) -> int:
        """The organization's next key number, atomically (task_counters: one document per
        organization, {_id: organization_id, organization_id, next})."""
        counters = self.dbs.mongo.task_counters
        for _ in range(3):
            doc = counters.find_one_and_update(
                {"_id": self._org, "organization_id": self._org},
                {"$inc": {"next": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if doc is not None:
                return int(doc["next"]) - 1
            self._sync_counter()
        raise UserError("Could not allocate a task key; try again.")

    def _sync_counter(self) -> None:
        """Start (or catch up) the counter after the highest key the organization holds."""
        rows = list(self.dbs.mongo.tasks.aggregate(highest_key_pipeline(self._org)))
        top = int(rows[0]["top"] or 0) if rows else 0
        query = {"_id": self._org, "organization_id": self._org}
        try:
            self.dbs.mongo.task_counters.update_one(
                query, {"$max": {"next": top + 1}}, upsert=True
            )
        except DuplicateKeyError:  # another create started it at the same moment
            self.dbs.mongo.task_counters.update_one(query, {"$max": {"next": top + 1}})

    def delete(self, task: Task) -> None:
        """tasks.delete."""
        self._require("tasks.delete")
        with self._mongo(), self._writing():
            result = self.dbs.mongo.tasks.delete_one(
                {
                    "_id": _object_id(task.id),
                    "organization_id": self._org,
                    "updated_at": task.updated_at,
                },
                session=self._session,
            )
            if result.deleted_count == 0:
                raise self._conflict(task)
            self._record(
                "task.deleted",
                task.id,
                {"task_id": task.task_id, "title": task.title},
                self._stamp(),
            )
        self._sprints_changed(task.sprint_id)

    def log_time(self, task: Task, hours: float, description: str) -> Task:
        """tasks.update; 0 < hours <= 24; actual_hours += hours and remaining_hours =
        max(estimated - actual, 0) in the same update."""
        self._require("tasks.update")
        amount = _number(hours)
        if amount is None or not 0 < amount <= MAX_HOURS:
            raise ValidationError(
                f"Log more than 0 and at most {MAX_HOURS:g} hours at a time, not {hours!r}."
            )
        text = _optional_text(description, "description", TIME_DESCRIPTION_MAX)
        try:
            return self._log_time(task, amount, text)
        except _IncompleteTask as exc:
            return self._log_time(exc.current, amount, text, retry=False)

    def _log_time(
        self, task: Task, hours: float, description: str | None, retry: bool = True
    ) -> Task:
        now = self._stamp(task)
        actual = round((task.actual_hours or 0.0) + hours, 4)
        left = remaining(task.estimated_hours, actual)
        entry = {
            "user_id": self.actor.user_id,
            "hours": hours,
            "description": description,
            "logged_at": now,
        }
        with self._mongo(), self._writing():
            try:
                self._update(
                    task,
                    now,
                    {"actual_hours": actual, "remaining_hours": left},
                    push={"time_entries": entry},
                    # Computed from the held hours: a card that lacks them must not write.
                    guard=("actual_hours", "estimated_hours"),
                )
            except _IncompleteTask as exc:
                if retry:
                    raise
                raise TaskConflict(
                    f"{task.task_id} was changed by someone else; the card was reloaded.",
                    exc.current,
                ) from None
            self._record(
                "task.time_logged",
                task.id,
                {"actual_hours": {"from": task.actual_hours, "to": actual}},
                now,
            )
        self._sprints_changed(task.sprint_id)
        return replace(
            task,
            actual_hours=actual,
            remaining_hours=left,
            time_entries=[*task.time_entries, TimeEntry(**entry)],
            updated_at=now,
        )
