"""Read grants (access decision 3): the board opens on a standing read at most 15 s ago.

A grant stands in for the board's permission read only while it is young, holds the
permission and no permission change was written in this process since; the status line's
PostgreSQL check reads it again. Writes always check inside their own transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from creatia_tui.data import admin, users
from creatia_tui.data.access import GRANT_MAX_AGE_S, Actor, ReadGrants, permissions_changed
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.board import BoardService, TaskDraft
from creatia_tui.data.db import Databases
from creatia_tui.data.task_filters import TaskFilter
from creatia_tui.errors import PermissionDenied
from tests.conftest import World

CLIENT = ClientContext(ip_address="192.0.2.45", user_agent="creatia-tui/test (grants)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(dbs: Databases) -> Clock:
    clock = Clock()
    dbs.read_grants = ReadGrants(clock=clock)
    return clock


@pytest.fixture
def pg_requests(dbs: Databases, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the connections the code under test takes from the pool (each is at least one
    PostgreSQL round trip)."""
    taken: list[int] = []
    real_pg = dbs.pg

    @contextlib.contextmanager
    def counting_pg() -> Iterator[Any]:
        taken.append(1)
        with real_pg() as conn:
            yield conn

    monkeypatch.setattr(dbs, "pg", counting_pg)
    return taken


def actor(dbs: Databases, user_id: str, org_id: str) -> Actor:
    with dbs.pg() as conn:
        user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


def deactivate_membership_elsewhere(pg_dsn: str, membership_id: str) -> None:
    """What another process (or psql) does: nothing in this process hears of it."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "UPDATE organization_memberships SET active = false WHERE id = %s", (membership_id,)
        )


def test_a_young_grant_opens_the_board_without_a_postgresql_read(
    world: World, dbs: Databases, clock: Clock, pg_requests: list[int]
) -> None:
    jiho = BoardService(dbs, actor(dbs, world.jiho, world.lab), CLIENT)
    pg_requests.clear()
    jiho.load_board(TaskFilter())
    assert len(pg_requests) == 1  # no grant yet: the check, kept as the grant
    jiho.load_board(TaskFilter())
    assert len(pg_requests) == 1
    clock.now += GRANT_MAX_AGE_S + 0.1
    jiho.load_board(TaskFilter())
    assert len(pg_requests) == 2  # too old: read again


def test_a_change_made_elsewhere_holds_until_the_grant_is_read_again(
    world: World, dbs: Databases, pg_dsn: str, clock: Clock
) -> None:
    jiho = BoardService(dbs, actor(dbs, world.jiho, world.lab), CLIENT)
    jiho.load_board(TaskFilter())
    deactivate_membership_elsewhere(pg_dsn, world.memberships[(world.jiho, world.lab)])
    jiho.load_board(TaskFilter())  # within 15 s of the read: the grant stands
    with pytest.raises(PermissionDenied):  # a write checks in its own transaction
        jiho.create(TaskDraft(title="새 작업"))
    dbs.check_pg()  # the status line's check reads every grant again
    with pytest.raises(PermissionDenied):
        jiho.load_board(TaskFilter())


def test_an_old_grant_is_not_trusted(
    world: World, dbs: Databases, pg_dsn: str, clock: Clock
) -> None:
    jiho = BoardService(dbs, actor(dbs, world.jiho, world.lab), CLIENT)
    jiho.load_board(TaskFilter())
    deactivate_membership_elsewhere(pg_dsn, world.memberships[(world.jiho, world.lab)])
    clock.now += GRANT_MAX_AGE_S + 0.1
    with pytest.raises(PermissionDenied):
        jiho.load_board(TaskFilter())


def test_a_permission_change_made_here_voids_every_grant_at_once(
    world: World, dbs: Databases, clock: Clock
) -> None:
    jiho = BoardService(dbs, actor(dbs, world.jiho, world.lab), CLIENT)
    jiho.load_board(TaskFilter())
    owner = actor(dbs, world.minjun, world.lab)
    with dbs.pg() as conn:
        admin.deactivate_member(conn, owner, world.memberships[(world.jiho, world.lab)], CLIENT)
    with pytest.raises(PermissionDenied):
        jiho.load_board(TaskFilter())


def test_a_refusal_is_never_kept_as_a_reason_to_refuse(
    world: World, dbs: Databases, pg_dsn: str, clock: Clock
) -> None:
    bob = BoardService(dbs, actor(dbs, world.bob, world.lab), CLIENT)
    with pytest.raises(PermissionDenied):
        bob.load_board(TaskFilter())
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO organization_memberships (user_id, organization_id, role, active)"
            " VALUES (%s, %s, 'member', true)",
            (world.bob, world.lab),
        )
    bob.load_board(TaskFilter())  # read again at once, not refused from memory


def test_the_status_check_reads_grants_in_use_and_drops_forgotten_ones(
    world: World, dbs: Databases, clock: Clock
) -> None:
    jiho = actor(dbs, world.jiho, world.lab)
    with dbs.pg() as conn:
        dbs.read_grants.read(conn, jiho)
    with dbs.connect_pg(autocommit=True) as conn:
        assert dbs.read_grants.refresh(conn) == 1
    assert dbs.read_grants.held(jiho, "tasks.read")
    permissions_changed()
    assert not dbs.read_grants.held(jiho, "tasks.read")
    dbs.check_pg()
    assert dbs.read_grants.held(jiho, "tasks.read")
    clock.now += 301
    with dbs.connect_pg(autocommit=True) as conn:
        assert dbs.read_grants.refresh(conn) == 0
    assert not dbs.read_grants.held(jiho, "tasks.read")
