"""Live changes of one organization's tasks, for an open board (others' moves within 2 seconds).

A board opens a :class:`TaskFeed` once its first load is in (beside the load it would share the
single-threaded server with it), with ``since`` set to when that load began, so what changed
meanwhile is reported too (read once by ``updated_at``); it then calls
:meth:`TaskFeed.next_changes` in a loop from a thread worker; each call blocks up to its timeout
and returns what changed, or ``[]``. ``close()`` ends it, from any thread.

Two ways, chosen per feed:

1. A change stream, when the server has them. On SecantusDB 0.7 (the embedded server, which
   reports a one-node replica set) this is what runs, and a stream resumed with its resume token
   after a server restart replays what happened while it was down. The server hands an event
   over ~15 ms after it commits; ``next_changes`` returns it ~0.3 s after the write (measured
   here: median 308 ms), because once it holds a change it reads on until a read comes back
   empty, and an empty read waits ``maxAwaitTimeMS`` (300 ms): a burst (a bulk move) arrives
   as one list, one change per task. The stream is opened on the database with
   ``full_document="updateLookup"`` and one ``$match``: ``ns.coll`` is tasks, and
   ``fullDocument.organization_id`` is this organization (inserts, updates, replaces), or the
   event is a delete. A delete carries only its ``documentKey`` (``_id``; on a sharded
   collection the shard key too, so other organizations' deletes are filtered out there), so
   every delete is reported and the board ignores ids it does not show. Why the database and not
   ``db.tasks.watch``: the shard-key guard in the tests (tests/shard_key_monitor.py) takes an
   aggregate on tasks whose first stage is not a ``$match`` naming organization_id as a query
   broadcast to every shard; a change stream is opened on every shard whatever its filter, so
   the rule does not fit it, and a database stream filtered on ``ns.coll`` is the same stream
   without the false alarm. Idle, a stream costs one ``getMore`` every 300 ms, which the
   server answers as soon as an event arrives.
2. Polling, when opening a change stream fails with a server error (a standalone mongod:
   "The $changeStream stage is only supported on replica sets"), or when asked
   (``force_polling=True``): every second, the organization's tasks whose ``updated_at`` is at or
   after the watermark (the newest ``updated_at`` seen) minus 5 seconds, on
   ``idx_tasks_org_updated`` (every writer sets ``updated_at``; the board service does). The
   5-second overlap catches writers whose clocks lag or whose write committed after a newer
   one; a task is reported again only when its ``updated_at`` changed. Polling does not see
   deletes (nothing is left to read): a deleted card stays until the board reloads. A feed
   that fell back keeps polling until it is closed; the next feed tries a change stream again.
   Measured here: median 630 ms, at most 1 s.

Errors: a network error or a server restart never raises out of ``next_changes``: it is logged,
the stream is dropped and reopened from its resume token after a backoff (0.5 s doubling to 15
s), and the call returns ``[]``. When the server no longer has the token's history, the stream
is reopened from now and the tasks changed since the last good read are read once by
``updated_at``, so updates are not lost (deletes in that gap are).

The permission to read tasks (``tasks.read``) is checked once, when the feed opens.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from pymongo import ASCENDING
from pymongo.change_stream import ChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from creatia_tui.data.access import Actor, require
from creatia_tui.data.db import Databases
from creatia_tui.data.models import Task
from creatia_tui.data.tasks import utcnow
from creatia_tui.errors import one_line

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
OVERLAP = dt.timedelta(seconds=5)
MAX_AWAIT_MS = 300
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 15.0
# The resume token's point is gone from the server's history: reopen from now and catch up.
# CappedPositionLost, InvalidResumeToken, ChangeStreamFatalError, ChangeStreamHistoryLost.
HISTORY_LOST = {136, 260, 280, 286}
WATCHED = ("insert", "update", "replace", "delete")

Mode = Literal["change_stream", "polling"]


@dataclass(frozen=True)
class TaskChange:
    kind: Literal["upsert", "delete"]
    task_id: str  # the document id (Task.id)
    task: Task | None  # the whole task for an upsert, None for a delete


def _coalesce(changes: list[TaskChange]) -> list[TaskChange]:
    """One change per task, the last one, in the order of each task's last change."""
    last: dict[str, TaskChange] = {}
    for change in changes:
        last.pop(change.task_id, None)
        last[change.task_id] = change
    return list(last.values())


class TaskFeed:
    def __init__(
        self, dbs: Databases, actor: Actor, *, force_polling: bool = False,
        since: dt.datetime | None = None,
    ) -> None:
        """``since``: a feed opened after the reader's own read (the board's first load) also
        reports the tasks changed since that read began, so nothing falls between the two."""
        with dbs.pg() as conn:
            require(conn, actor, "tasks.read")
        self.organization_id = actor.organization_id
        self._db = dbs.mongo
        self._mode: Mode = "polling" if force_polling else "change_stream"
        self._stream: ChangeStream | None = None
        self._resume_token: Any = None
        self._ever_opened = False
        self._last_good = utcnow()  # when the stream last answered (catch-up point)
        self._catch_up_from: dt.datetime | None = None if since is None else since - OVERLAP
        self._watermark = utcnow() if since is None else since
        self._seen: dict[str, dt.datetime] = {}
        self._next_poll = 0.0
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._closed = False
        self._busy = threading.Lock()
        if self._mode == "change_stream":
            with self._busy:
                self._open_stream()

    # ------------------------------------------------------------ public
    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def closed(self) -> bool:
        return self._closed

    def next_changes(self, timeout_seconds: float = 1.0) -> list[TaskChange]:
        """What changed since the last call, waiting up to `timeout_seconds` for something.

        Never raises for a database error (see the module docstring): returns ``[]``."""
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        if self._closed:
            return []
        with self._busy:
            try:
                if self._mode == "change_stream":
                    return self._from_stream(deadline)
                return self._from_polls(deadline)
            finally:
                if self._closed:
                    self._drop_stream()

    def close(self) -> None:
        """Stop the feed; safe from any thread and more than once."""
        self._closed = True
        if self._busy.acquire(blocking=False):  # else the running next_changes closes it
            try:
                self._drop_stream()
            finally:
                self._busy.release()

    def __enter__(self) -> TaskFeed:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------ change stream
    def _pipeline(self) -> list[dict[str, Any]]:
        return [
            {
                "$match": {
                    "ns.coll": "tasks",
                    "operationType": {"$in": list(WATCHED)},
                    "$or": [
                        {"fullDocument.organization_id": self.organization_id},
                        {
                            "operationType": "delete",
                            "documentKey.organization_id": {"$in": [self.organization_id, None]},
                        },
                    ],
                }
            }
        ]

    def _open_stream(self) -> bool:
        """Open (or resume) the stream; False when it is not open now."""
        try:
            self._stream = self._db.watch(
                self._pipeline(),
                full_document="updateLookup",
                max_await_time_ms=MAX_AWAIT_MS,
                resume_after=self._resume_token,
            )
        except OperationFailure as exc:
            if self._resume_token is not None and exc.code in HISTORY_LOST:
                log.warning(
                    "task feed: the change stream cannot resume (%s); reopening from now",
                    one_line(str(exc)),
                )
                self._resume_token = None
                self._catch_up_from = self._last_good - OVERLAP
                return self._open_stream()
            if not self._ever_opened:
                log.info(
                    "task feed: no change streams on this server (%s); polling every %.0f s",
                    one_line(str(exc)), POLL_SECONDS,
                )
                self._mode = "polling"
                return False
            self._failed(exc)
            return False
        except PyMongoError as exc:
            self._failed(exc)
            return False
        if self._resume_token is None and self._ever_opened:
            # Reopened from now after a stream without a token: read what the gap changed.
            self._catch_up_from = self._last_good - OVERLAP
        self._resume_token = self._stream.resume_token or self._resume_token
        self._ever_opened = True
        return True

    def _failed(self, exc: BaseException) -> None:
        """Log a transient error, drop the stream and wait before the next attempt."""
        log.warning(
            "task feed: %s; retrying in %.1f s", one_line(str(exc)), self._backoff
        )
        self._drop_stream()
        self._retry_at = time.monotonic() + self._backoff * random.uniform(0.8, 1.2)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    def _drop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(PyMongoError):  # the server is gone; so is the cursor
                stream.close()

    def _wait_until(self, moment: float, deadline: float) -> bool:
        """Sleep until `moment` if that is before the deadline; False when it is not."""
        now = time.monotonic()
        if moment <= now:
            return True
        time.sleep(max(0.0, min(moment, deadline) - now))
        return moment <= deadline

    def _from_stream(self, deadline: float) -> list[TaskChange]:
        if not self._wait_until(self._retry_at, deadline):
            return []
        if self._stream is None and not self._open_stream():
            if self._mode == "polling":
                return self._from_polls(deadline)
            return []
        changes: list[TaskChange] = []
        stream = self._stream
        assert stream is not None
        try:
            if self._catch_up_from is not None:
                changes += self._changed_since(self._catch_up_from)
                self._catch_up_from = None
            while not self._closed:
                event = stream.try_next()
                self._resume_token = stream.resume_token
                if event is not None:
                    change = self._to_change(event)
                    if change is not None:
                        changes.append(change)
                    continue
                self._last_good = utcnow()
                self._backoff = BACKOFF_FIRST
                if changes or time.monotonic() >= deadline:
                    break
                if not stream.alive:  # invalidated (the database was dropped): start again
                    self._drop_stream()
                    break
        except PyMongoError as exc:
            # The last position the stream reached (the driver moves it only past what it read).
            self._resume_token = stream.resume_token or self._resume_token
            self._failed(exc)
        return _coalesce(changes)

    def _to_change(self, event: dict[str, Any]) -> TaskChange | None:
        operation = event.get("operationType")
        key = event.get("documentKey") or {}
        if operation == "delete" and "_id" in key:
            return TaskChange("delete", str(key["_id"]), None)
        document = event.get("fullDocument")
        if document and document.get("organization_id") == self.organization_id:
            task = Task.from_document(document)
            return TaskChange("upsert", task.id, task)
        return None  # an update whose task was deleted before the lookup: its delete follows

    # ------------------------------------------------------------ polling
    def _changed_since(self, since: dt.datetime) -> list[TaskChange]:
        """Tasks whose updated_at is at or after `since` that were not reported at that time."""
        cursor = self._db.tasks.find(
            {"organization_id": self.organization_id, "updated_at": {"$gte": since}}
        ).sort([("updated_at", ASCENDING), ("_id", ASCENDING)])
        changes = []
        for document in cursor:
            task = Task.from_document(document)
            stamp = document["updated_at"]
            if self._seen.get(task.id) == stamp:
                continue
            self._seen[task.id] = stamp
            changes.append(TaskChange("upsert", task.id, task))
            # A writer whose clock runs ahead must not hide the others' changes.
            self._watermark = max(self._watermark, min(stamp, utcnow()))
        horizon = self._watermark - OVERLAP
        self._seen = {key: stamp for key, stamp in self._seen.items() if stamp >= horizon}
        return changes

    def _from_polls(self, deadline: float) -> list[TaskChange]:
        while not self._closed:
            if not self._wait_until(max(self._next_poll, self._retry_at), deadline):
                return []
            self._next_poll = time.monotonic() + POLL_SECONDS
            try:
                changes = self._changed_since(self._watermark - OVERLAP)
            except PyMongoError as exc:
                self._failed(exc)
                return []
            self._backoff = BACKOFF_FIRST
            if changes or time.monotonic() >= deadline:
                return changes
        return []
