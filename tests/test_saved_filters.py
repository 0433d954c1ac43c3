"""Saved board filters (PostgreSQL saved_filters) against the real server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import dict_row

from creatia_tui.data import users
from creatia_tui.data.access import Actor
from creatia_tui.data.saved_filters import (
    NOT_FOUND,
    delete_saved_filter,
    list_saved_filters,
    save_filter,
)
from creatia_tui.data.task_filters import BUILT_IN_FILTERS, ME, NO_SPRINT, TaskFilter
from creatia_tui.errors import PermissionDenied, ValidationError
from tests.conftest import World


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True, row_factory=dict_row) as connection:
        yield connection


def actor(conn: psycopg.Connection, user_id: str, org_id: str) -> Actor:
    user = users.get_user(conn, user_id)
    assert user is not None
    return Actor(user, org_id)


def own(conn: psycopg.Connection, who: Actor) -> list[tuple[str, TaskFilter]]:
    return [(f.name, f.filter) for f in list_saved_filters(conn, who) if not f.built_in]


def test_a_saved_filter_round_trips(world: World, conn) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    korean = TaskFilter(assignee=ME, priority="high", due="overdue", tag="프론트엔드",
                        text="대시보드", sprint_id=NO_SPRINT, open_only=True)
    saved = save_filter(conn, jiho, "  급한   내 작업 ", korean)
    assert (saved.name, saved.filter, saved.built_in) == ("급한 내 작업", korean, False)
    assert saved.id is not None and saved.updated_at is not None
    listed = list_saved_filters(conn, jiho)
    # Built-ins first, in their order, then the user's own.
    assert [(f.name, f.built_in) for f in listed[: len(BUILT_IN_FILTERS)]] == [
        (name, True) for name in BUILT_IN_FILTERS
    ]
    assert [f.filter for f in listed if f.built_in] == list(BUILT_IN_FILTERS.values())
    assert listed[len(BUILT_IN_FILTERS):] == [saved]
    row = conn.execute("SELECT filter FROM saved_filters WHERE id = %s", (saved.id,)).fetchone()
    assert row["filter"] == korean.to_json()  # "me" is stored as "me", not as jiho's id


def test_saving_under_an_existing_name_replaces_it_whatever_the_case(world, conn) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    first = save_filter(conn, jiho, "Backlog", TaskFilter(sprint_id=NO_SPRINT))
    second = save_filter(conn, jiho, "BACKLOG", TaskFilter(sprint_id=NO_SPRINT, priority="low"))
    assert second.id == first.id and second.name == "BACKLOG"
    assert own(conn, jiho) == [("BACKLOG", TaskFilter(sprint_id=NO_SPRINT, priority="low"))]
    save_filter(conn, jiho, "a first", TaskFilter(tag="ui"))
    assert [name for name, _ in own(conn, jiho)] == ["a first", "BACKLOG"]


@pytest.mark.parametrize("name", [*BUILT_IN_FILTERS, "My Open Tasks", " OVERDUE "])
def test_built_in_names_are_refused(world, conn, name) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    with pytest.raises(ValidationError, match="built-in"):
        save_filter(conn, jiho, name, TaskFilter(tag="x"))
    assert own(conn, jiho) == []


@pytest.mark.parametrize("name", ["", "   ", "가" * 101])
def test_blank_and_long_names_are_refused(world, conn, name) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    with pytest.raises(ValidationError):
        save_filter(conn, jiho, name, TaskFilter(tag="x"))
    save_filter(conn, jiho, "가" * 100, TaskFilter(tag="x"))  # the longest name is fine


def test_an_invalid_filter_is_refused(world, conn) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    with pytest.raises(ValidationError, match="priority"):
        save_filter(conn, jiho, "bad", TaskFilter(priority="someday"))
    assert own(conn, jiho) == []


def test_filters_are_each_users_own_per_organization(world, conn) -> None:
    minjun_lab = actor(conn, world.minjun, world.lab)
    minjun_acme = actor(conn, world.minjun, world.acme)
    jiho = actor(conn, world.jiho, world.lab)
    save_filter(conn, minjun_lab, "mine", TaskFilter(tag="lab"))
    save_filter(conn, minjun_acme, "mine", TaskFilter(tag="acme"))
    assert own(conn, minjun_lab) == [("mine", TaskFilter(tag="lab"))]
    assert own(conn, minjun_acme) == [("mine", TaskFilter(tag="acme"))]
    assert own(conn, jiho) == []


def test_another_users_filter_is_not_found_and_stays(world, conn) -> None:
    minjun = actor(conn, world.minjun, world.lab)  # the owner of the organization
    jiho = actor(conn, world.jiho, world.lab)
    saved = save_filter(conn, jiho, "jiho's", TaskFilter(tag="x"))
    for attempt in (saved.id, str(uuid.uuid4()), "not-a-uuid"):
        with pytest.raises(ValidationError) as excinfo:
            delete_saved_filter(conn, minjun, attempt)
        assert str(excinfo.value) == NOT_FOUND
    # Nor by the same id from another organization.
    with pytest.raises(ValidationError):
        delete_saved_filter(conn, actor(conn, world.minjun, world.acme), saved.id)
    assert own(conn, jiho) == [("jiho's", TaskFilter(tag="x"))]
    delete_saved_filter(conn, jiho, saved.id)
    assert own(conn, jiho) == []
    with pytest.raises(ValidationError, match="does not exist"):
        delete_saved_filter(conn, jiho, saved.id)


def test_a_viewer_may_save_and_delete_their_own(world, conn) -> None:
    yuna = actor(conn, world.yuna, world.lab)
    saved = save_filter(conn, yuna, "보기만", TaskFilter(assignee=ME))
    assert own(conn, yuna) == [("보기만", TaskFilter(assignee=ME))]
    delete_saved_filter(conn, yuna, saved.id)
    assert own(conn, yuna) == []


def test_strangers_and_deactivated_organizations_are_refused(world, conn) -> None:
    for user, org in ((world.bob, world.lab), (world.bob, world.dormant)):
        who = actor(conn, user, org)
        with pytest.raises(PermissionDenied):
            list_saved_filters(conn, who)
        with pytest.raises(PermissionDenied):
            save_filter(conn, who, "x", TaskFilter(tag="x"))
        with pytest.raises(PermissionDenied):
            delete_saved_filter(conn, who, str(uuid.uuid4()))
    assert conn.execute("SELECT count(*) AS n FROM saved_filters").fetchone()["n"] == 0


def test_the_table_enforces_its_rules_and_cascades(world, conn) -> None:
    jiho = actor(conn, world.jiho, world.lab)
    save_filter(conn, jiho, "one", TaskFilter(tag="x"))
    insert = (
        "INSERT INTO saved_filters (user_id, organization_id, name, filter) "
        "VALUES (%s, %s, %s, %s::jsonb)"
    )
    for name, body in (("ONE", "{}"), ("  ", "{}"), ("array", "[]")):
        with pytest.raises(psycopg.errors.IntegrityError), conn.transaction():
            conn.execute(insert, (world.jiho, world.lab, name, body))
    conn.execute("DELETE FROM users WHERE id = %s", (world.jiho,))
    assert conn.execute("SELECT count(*) AS n FROM saved_filters").fetchone()["n"] == 0
