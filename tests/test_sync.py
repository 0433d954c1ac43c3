"""User snapshot sync against the real servers: NOTIFY/LISTEN in real time, catch-up after a
worker was down, duplicate notifications, and the batch sync of 10,000 users.

Each test has its own PostgreSQL and MongoDB databases (conftest), so renaming and deleting the
world's people here changes nothing another test sees.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from creatia_tui.data.db import Databases
from creatia_tui.data.tasks import utcnow
from creatia_tui.ops import sync
from tests.conftest import World

DEADLINE = 3.0  # the target is 1 s; the deadline leaves room for a loaded 2-core CI machine


def new_task(org: str, n: int, **extra: Any) -> dict[str, Any]:
    now = utcnow()
    doc = {
        "organization_id": org,
        "task_id": f"TASK-{n:04d}",
        "title": f"동기화 작업 {n}",
        "status": "todo",
        "priority": "medium",
        "position": n * 1000.0,
        "tags": [],
        "labels": [],
        "time_entries": [],
        "created_at": now,
        "updated_at": now,
    }
    doc.update(extra)
    return doc


def wait_for(check: Callable[[], bool], deadline: float = DEADLINE) -> float:
    """Poll until check() holds; the seconds it took (fails after the deadline)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > deadline:
            pytest.fail(f"not reached within {deadline} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def listener(dbs: Databases) -> Iterator[sync.SnapshotListener]:
    """A listener running in a thread, as the worker runs it."""
    stop = threading.Event()
    running = sync.SnapshotListener(dbs)
    running.ensure_connected()

    def loop() -> None:
        while not stop.is_set():
            running.run(stop.is_set, max_seconds=1.0)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(5)
    running.close()


def snapshot(dbs: Databases, user_id: str) -> dict[str, Any] | None:
    return dbs.mongo.user_snapshots.find_one({"user_id": user_id})


def assignee_name(dbs: Databases, org: str, task_id: str) -> str | None:
    doc = dbs.mongo.tasks.find_one({"organization_id": org, "task_id": task_id})
    assert doc is not None
    return (doc.get("assignee_snapshot") or {}).get("name")


def test_rename_email_change_and_delete_reach_mongodb(
    dbs: Databases, world: World, pg_dsn: str, listener: sync.SnapshotListener
) -> None:
    # Tasks as the board writes them: a snapshot copied at assignment (no hash).
    def held(user_id: str, name: str) -> dict[str, Any]:
        return {"user_id": user_id, "name": name, "email": None, "synced_at": utcnow()}

    dbs.mongo.tasks.insert_many(
        [
            new_task(
                world.lab,
                1,
                assignee_id=world.jiho,
                assignee_snapshot=held(world.jiho, "박지호"),
                reviewer_id=world.seoyeon,
                reviewer_snapshot=held(world.seoyeon, "이서연"),
            ),
            new_task(world.lab, 2, assignee_id=world.jiho, status="done"),
            new_task(world.acme, 3, assignee_id=world.bob, reviewer_id=world.minjun),
        ]
    )

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET name = name || ' (QA)' WHERE id IN (%s, %s)",
            (world.jiho, world.minjun),
        )
        renamed = wait_for(
            lambda: (
                assignee_name(dbs, world.lab, "TASK-0002") == "박지호 (QA)"
                and (snapshot(dbs, world.jiho) or {}).get("name") == "박지호 (QA)"
            )
        )
        assert renamed < DEADLINE
        assert assignee_name(dbs, world.lab, "TASK-0001") == "박지호 (QA)"
        acme = dbs.mongo.tasks.find_one({"organization_id": world.acme, "task_id": "TASK-0003"})
        assert acme is not None and acme["reviewer_snapshot"]["name"] == "김민준 (QA)"

        conn.execute(
            "UPDATE users SET email = 'jiho.park@example.com' WHERE id = %s", (world.jiho,)
        )
        wait_for(lambda: (snapshot(dbs, world.jiho) or {}).get("email") == "jiho.park@example.com")

        conn.execute("DELETE FROM users WHERE id = %s", (world.jiho,))
        wait_for(lambda: (snapshot(dbs, world.jiho) or {}).get("deleted") is True)
        gone = dbs.mongo.tasks.find_one({"organization_id": world.lab, "task_id": "TASK-0001"})
        assert gone is not None
        assert gone["assignee_id"] == world.jiho  # the task keeps who it was
        assert gone["assignee_snapshot"]["name"] == "박지호 (QA) (former member)"
        assert gone["assignee_snapshot"]["former_member"] is True
        assert gone["assignee_snapshot"]["email"] == "jiho.park@example.com"
        # Nothing else moved: the reviewer on that task is untouched.
        assert gone["reviewer_snapshot"]["name"] == "이서연"
    assert listener.stats.notifications >= 3


def test_a_change_that_touches_no_snapshot_field_sends_nothing(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("LISTEN user_snapshot_changes")
        before = conn.execute(
            "SELECT updated_at FROM users WHERE id = %s", (world.yuna,)
        ).fetchone()
        with psycopg.connect(pg_dsn, autocommit=True) as other:
            other.execute("UPDATE users SET provider = 'github' WHERE id = %s", (world.yuna,))
            other.execute("UPDATE users SET department = '연구' WHERE id = %s", (world.yuna,))
        payloads = [n.payload for n in conn.notifies(timeout=0.5, stop_after=5)]
        after = conn.execute("SELECT updated_at FROM users WHERE id = %s", (world.yuna,)).fetchone()
    assert payloads == [f'{{"id" : "{world.yuna}", "op" : "update"}}']
    assert before is not None and after is not None and after[0] > before[0]


def test_duplicate_notifications_change_nothing(
    dbs: Databases, world: World, pg_dsn: str, listener: sync.SnapshotListener
) -> None:
    dbs.mongo.tasks.insert_one(new_task(world.lab, 1, assignee_id=world.seoyeon))
    sync.batch_sync(dbs)
    before_snapshot = snapshot(dbs, world.seoyeon)
    before_task = dbs.mongo.tasks.find_one({"organization_id": world.lab})
    seen = listener.stats.notifications
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute(
                "SELECT pg_notify('user_snapshot_changes', %s)",
                (f'{{"id": "{world.seoyeon}", "op": "update"}}',),
            )
        conn.execute("SELECT pg_notify('user_snapshot_changes', 'not json')")
    wait_for(lambda: listener.stats.notifications >= seen + 4)
    time.sleep(0.1)  # the burst's sync runs after its notifications are counted
    assert snapshot(dbs, world.seoyeon) == before_snapshot
    assert dbs.mongo.tasks.find_one({"organization_id": world.lab}) == before_task
    # The sync itself is idempotent too, called directly.
    again = sync.sync_user_ids(dbs, [world.seoyeon, world.seoyeon])
    assert (again.snapshots_written, again.tasks_modified, again.unchanged) == (0, 0, 1)


def test_stopped_worker_catches_up_on_start(dbs: Databases, world: World, pg_dsn: str) -> None:
    dbs.mongo.tasks.insert_many(
        [
            new_task(world.lab, 1, assignee_id=world.yuna),
            new_task(world.lab, 2, assignee_id=world.gone),
        ]
    )
    first = sync.catch_up(dbs)  # never synced: everybody
    assert first.snapshots_written == 7
    mark = sync.load_watermark(dbs.mongo)
    assert mark.updated_at > sync.EPOCH

    # The worker is down: changes, a new user, a deletion.
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = '최유나 팀장' WHERE id = %s", (world.yuna,))
        conn.execute("DELETE FROM users WHERE id = %s", (world.gone,))
        conn.execute(
            "INSERT INTO users (email, encrypted_password, name) "
            "VALUES ('new@example.com', 'x', '새 사람')"
        )
    started = sync.SnapshotListener(dbs)
    try:
        assert started.ensure_connected()  # connects, LISTENs, catches up
    finally:
        started.close()
    assert snapshot(dbs, world.yuna)["name"] == "최유나 팀장"  # type: ignore[index]
    assert snapshot(dbs, world.gone)["deleted"] is True  # type: ignore[index]
    assert dbs.mongo.user_snapshots.count_documents({"email": "new@example.com"}) == 1
    assert assignee_name(dbs, world.lab, "TASK-0001") == "최유나 팀장"
    assert assignee_name(dbs, world.lab, "TASK-0002") == "떠난 사람 (former member)"
    assert sync.load_watermark(dbs.mongo).updated_at > mark.updated_at

    again = sync.catch_up(dbs)  # the overlap re-reads, and writes nothing
    assert (again.snapshots_written, again.deleted, again.tasks_modified) == (0, 0, 0)


def test_batch_sync_of_10000_users(dbs: Databases, world: World, pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, encrypted_password, name, department) "
            "SELECT 'bulk' || i || '@example.com', 'x', '사용자 ' || i, 'dept ' || (i % 7) "
            "FROM generate_series(1, 10000) AS i"
        )
    first = sync.batch_sync(dbs, batch_size=1000)
    assert first.snapshots_written == 10_007
    assert dbs.mongo.user_snapshots.count_documents({}) == 10_007

    nothing = sync.batch_sync(dbs, batch_size=1000)
    assert (nothing.snapshots_written, nothing.unchanged) == (0, 10_007)

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE users SET name = name || ' 님' WHERE email LIKE 'bulk%%' "
            "AND (substring(email from 5)::text ~ '^[0-9]+0@')"
        )
        conn.execute("DELETE FROM users WHERE email = 'bulk7@example.com'")
    some = sync.batch_sync(dbs, batch_size=300)
    assert some.snapshots_written == 1000
    assert some.deleted == 1
    assert dbs.mongo.user_snapshots.count_documents({"name": "사용자 10 님"}) == 1


def test_the_content_hash_computed_here_is_postgresqls(dbs: Databases, pg_dsn: str) -> None:
    """sync.content_hash (the seed's) against USER_SELECT's, on awkward values."""
    people = [
        ("김민준 \"팀장\"", "quote@example.com", None, "개발\\팀", "tab\there", True),
        ("line\nbreak \u0001 \u007f é 😀", "ctrl@example.com", "https://a.example/x?y=1&z=</", None,
         "", False),
        (None, "nulls@example.com", None, None, None, True),
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name, email, avatar, department, position, active in people:
            conn.execute(
                "INSERT INTO users (email, encrypted_password, name, avatar_url, department, "
                "position, active) VALUES (%s, 'x', %s, %s, %s, %s, %s)",
                (email, name, avatar, department, position, active),
            )
        ids = [
            row[0]
            for row in conn.execute(
                "SELECT id::text FROM users WHERE email = ANY(%s)", ([p[1] for p in people],)
            )
        ]
    with dbs.pg() as conn:
        users = sync.read_users(conn, ids)
    assert len(users) == 3
    for user in users:
        assert user.content_hash == sync.content_hash(
            user.name, user.email, user.avatar_url, user.department, user.position, user.active
        ), user.email


def test_a_screen_refreshes_the_stale_snapshots_it_shows(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    from creatia_tui.data.access import Actor
    from creatia_tui.data.maintenance import refresh_shown_snapshots
    from creatia_tui.data.models import Task
    from creatia_tui.data.users import get_user

    sync.batch_sync(dbs)
    old = utcnow().replace(year=2025)
    stale = {"user_id": world.jiho, "name": "박지호", "email": "jiho@example.com",
             "synced_at": old}
    dbs.mongo.tasks.insert_one(new_task(world.lab, 1, assignee_id=world.jiho,
                                        assignee_snapshot=stale))
    # The name changed while no worker ran (no listener here).
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE users SET name = '박지호 책임' WHERE id = %s", (world.jiho,))
    dbs.mongo.user_snapshots.update_one({"user_id": world.jiho}, {"$set": {"synced_at": old}})
    with dbs.pg() as conn:
        user = get_user(conn, world.seoyeon)
    assert user is not None
    shown = [Task.from_document(dbs.mongo.tasks.find_one({"organization_id": world.lab}))]
    result = refresh_shown_snapshots(dbs, Actor(user, world.lab), shown)
    assert (result.snapshots_written, result.tasks_modified) == (1, 1)
    assert assignee_name(dbs, world.lab, "TASK-0001") == "박지호 책임"
    fresh = [Task.from_document(dbs.mongo.tasks.find_one({"organization_id": world.lab}))]
    assert refresh_shown_snapshots(dbs, Actor(user, world.lab), fresh).users == 0


def test_the_listener_reconnects_and_catches_up(
    dbs: Databases, world: World, pg_dsn: str, listener: sync.SnapshotListener
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query = 'LISTEN user_snapshot_changes'"
        ).fetchall()
        assert killed == [(True,)]
        # Changed while the listener has no connection: the catch-up on reconnect brings it.
        conn.execute("UPDATE users SET name = '이서연 팀장' WHERE id = %s", (world.seoyeon,))
        wait_for(lambda: (snapshot(dbs, world.seoyeon) or {}).get("name") == "이서연 팀장", 10)
    wait_for(lambda: listener.stats.reconnects >= 1)  # counted once its catch-up returned
