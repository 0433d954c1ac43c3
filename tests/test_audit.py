"""The audit screen's reads: keyset pages, filters, partitions, permissions (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from creatia_tui.data.access import Actor
from creatia_tui.data.audit import (
    AUDIT_ACTIONS,
    AuditCursor,
    AuditFilter,
    AuditRow,
    audit_actors,
    audit_months,
    read_audit,
    read_audit_query,
)
from creatia_tui.data.organizations import add_membership, create_organization
from creatia_tui.data.users import create_user, get_user
from creatia_tui.errors import PermissionDenied, ValidationError

UTC = dt.timezone.utc


@pytest.fixture
def conn(pg_dsn: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def people(conn: psycopg.Connection) -> dict[str, Any]:
    org = create_organization(conn, name="크리에이티아 랩", subdomain="lab")
    other = create_organization(conn, name="Acme", subdomain="acme")
    made: dict[str, Any] = {"org": org.id, "other": other.id}
    for key, organization, role in (
        ("owner", org.id, "owner"),
        ("member", org.id, "member"),
        ("former", org.id, "admin"),
        ("stranger", other.id, "owner"),
    ):
        user = create_user(
            conn, email=f"{key}@example.com", name=f"{key} 김", password="password-123"
        )
        add_membership(conn, organization_id=organization, user_id=user.id, role=role)
        made[key] = user
    conn.execute(
        "UPDATE organization_memberships SET active = false WHERE user_id = %s",
        (made["former"].id,),
    )
    made["root"] = create_user(
        conn, email="root@example.com", name="Root", password="password-123", admin=True
    )
    made["loner"] = create_user(
        conn, email="loner@example.com", name="Loner", password="password-123"
    )
    return made


def actor(conn: psycopg.Connection, people: dict[str, Any], key: str, org: str = "org") -> Actor:
    user = get_user(conn, people[key].id)
    assert user is not None
    return Actor(user=user, organization_id=people[org])


def insert_rows(
    conn: psycopg.Connection,
    organization_id: str,
    rows: list[tuple[str, str, dt.datetime]],  # (user_id, action, created_at)
) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in rows]
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO permission_audit_logs "
            "(id, organization_id, user_id, action, resource_type, changes, created_at) "
            "VALUES (%s, %s, %s, %s, 'Role', '{}'::jsonb, %s)",
            [
                (row_id, organization_id, user, action, at)
                for row_id, (user, action, at) in zip(ids, rows, strict=True)
            ],
        )
    return ids


def ensure_month(conn: psycopg.Connection, month: dt.date) -> str:
    row = conn.execute("SELECT ensure_audit_log_partition(%s)", (month,)).fetchone()
    assert row is not None
    return str(row[0])


def read_all(
    conn: psycopg.Connection, who: Actor, filters: AuditFilter, limit: int
) -> list[AuditRow]:
    entries: list[AuditRow] = []
    cursor: AuditCursor | None = None
    for _ in range(1000):
        page = read_audit(conn, who, filters, cursor, limit)
        assert len(page.entries) <= limit
        entries.extend(page.entries)
        if page.next_cursor is None:
            return entries
        assert len(page.entries) == limit
        cursor = page.next_cursor
    raise AssertionError("paging did not end")


def expected_order(conn: psycopg.Connection, organization_id: str, where: str = "") -> list[str]:
    """Every row id of the organization, newest first, ties by id (the server's own order)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(
            "SELECT id::text FROM permission_audit_logs WHERE organization_id = %s "
            f"{where} ORDER BY created_at DESC, id DESC",
            (organization_id,),
        ).fetchall()
    return [row[0] for row in rows]


def partitions_in_plan(conn: psycopg.Connection, sql: str, params: dict[str, Any]) -> set[str]:
    """Audit-log partitions the plan of `sql` still holds, read from EXPLAIN (FORMAT JSON)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute("EXPLAIN (FORMAT JSON) " + sql, params, prepare=False).fetchone()
    assert row is not None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    found: set[str] = set()

    def visit(node: dict[str, Any]) -> None:
        relation = node.get("Relation Name", "")
        if relation.startswith("permission_audit_logs"):
            found.add(relation)
        # JSON shows "Subplans Removed" on every Append; non-zero would mean run-time pruning.
        assert node.get("Subplans Removed", 0) == 0, "pruned at run time, not when planned"
        for child in node.get("Plans", []):
            visit(child)

    visit(plan[0]["Plan"])
    return found


# ---------------------------------------------------------------- paging


def test_paging_returns_every_row_once_in_order_with_ties(conn, people) -> None:
    owner = people["owner"].id
    now = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    rows = []
    for n in range(130):
        # Groups of 13 rows share one instant: only the id can order them.
        at = now - dt.timedelta(seconds=n // 13)
        rows.append((owner, AUDIT_ACTIONS[n % len(AUDIT_ACTIONS)], at))
    insert_rows(conn, people["org"], rows)
    insert_rows(conn, people["other"], rows[:20])  # another tenant's rows never show
    who = actor(conn, people, "owner")
    for limit in (1, 7, 13, 50, 129, 130, 131):
        seen = [e.id for e in read_all(conn, who, AuditFilter(), limit)]
        assert len(seen) == len(set(seen)) == 130, limit
        assert seen == expected_order(conn, people["org"]), limit


def test_a_page_carries_the_actor_and_the_row(conn, people) -> None:
    at = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
    ghost = str(uuid.uuid4())  # no such user: the audit log has no foreign key
    insert_rows(
        conn,
        people["org"],
        [(people["member"].id, "membership.created", at), (ghost, "role.created", at)],
    )
    page = read_audit(conn, actor(conn, people, "owner"), AuditFilter())
    assert page.next_cursor is None
    by_user = {e.user_id: e for e in page.entries}
    member = by_user[people["member"].id]
    assert (member.actor_email, member.actor_name) == ("member@example.com", "member 김")
    assert member.action == "membership.created" and member.organization_id == people["org"]
    assert member.resource_type == "Role" and member.changes == {}
    assert by_user[ghost].actor_email is None and by_user[ghost].actor_name is None


def test_page_size_is_bounded(conn, people) -> None:
    who = actor(conn, people, "owner")
    for limit in (0, 501):
        with pytest.raises(ValidationError, match="1 to 500"):
            read_audit(conn, who, AuditFilter(), limit=limit)


# ---------------------------------------------------------------- filters


def test_actor_and_action_filters_page_through_their_rows_only(conn, people) -> None:
    owner, member = people["owner"].id, people["member"].id
    start = dt.datetime.now(UTC) - dt.timedelta(hours=2)
    rows = [
        (
            owner if n % 3 else member,
            "role.renamed" if n % 4 == 0 else "membership.role_changed",
            start + dt.timedelta(seconds=n // 2),
        )
        for n in range(90)
    ]
    insert_rows(conn, people["org"], rows)
    who = actor(conn, people, "owner")

    by_member = read_all(conn, who, AuditFilter(actor_id=member), 4)
    assert [e.id for e in by_member] == expected_order(
        conn, people["org"], f"AND user_id = '{member}'"
    )
    assert {e.actor_email for e in by_member} == {"member@example.com"}

    renamed = read_all(conn, who, AuditFilter(action="role.renamed"), 4)
    assert [e.id for e in renamed] == expected_order(
        conn, people["org"], "AND action = 'role.renamed'"
    )
    assert len(renamed) == 23

    both = read_all(conn, who, AuditFilter(actor_id=member, action="role.renamed"), 2)
    assert [e.id for e in both] == expected_order(
        conn, people["org"], f"AND user_id = '{member}' AND action = 'role.renamed'"
    )
    assert both and all(e.user_id == member and e.action == "role.renamed" for e in both)

    assert read_audit(conn, who, AuditFilter(action="no.such_action")).entries == []
    assert read_audit(conn, who, AuditFilter(actor_id=people["loner"].id)).entries == []


def test_month_filter_splits_at_utc_month_boundaries(conn, people) -> None:
    # A session in Seoul (UTC+9) must not move the boundary: partitions are UTC months.
    conn.execute("SET TimeZone = 'Asia/Seoul'")
    for month in (dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)):
        ensure_month(conn, month)
    owner = people["owner"].id
    last_of_january = dt.datetime(2025, 1, 31, 23, 59, 59, 999000, tzinfo=UTC)
    first_of_february = dt.datetime(2025, 2, 1, tzinfo=UTC)
    first_of_january = dt.datetime(2025, 1, 1, tzinfo=UTC)
    last_of_february = dt.datetime(2025, 3, 1, tzinfo=UTC) - dt.timedelta(microseconds=1)
    jan_last, feb_first, jan_first, feb_last = insert_rows(
        conn,
        people["org"],
        [
            (owner, "role.created", last_of_january),
            (owner, "role.created", first_of_february),
            (owner, "role.created", first_of_january),
            (owner, "role.created", last_of_february),
        ],
    )
    with conn.cursor(row_factory=tuple_row) as cur:
        homes = dict(
            cur.execute(
                "SELECT id::text, tableoid::regclass::text FROM permission_audit_logs"
            ).fetchall()
        )
    assert homes[jan_last] == homes[jan_first] == "permission_audit_logs_2025_01"
    assert homes[feb_first] == homes[feb_last] == "permission_audit_logs_2025_02"

    who = actor(conn, people, "owner")
    january = read_all(conn, who, AuditFilter(month=dt.date(2025, 1, 17)), 1)
    february = read_all(conn, who, AuditFilter(month=dt.date(2025, 2, 1)), 1)
    assert [e.id for e in january] == [jan_last, jan_first]
    assert [e.id for e in february] == [feb_last, feb_first]
    assert read_audit(conn, who, AuditFilter(month=dt.date(2025, 3, 1))).entries == []
    # A month filter with an actor and an action too.
    assert [
        e.id
        for e in read_audit(
            conn, who, AuditFilter(dt.date(2025, 2, 1), owner, "role.created")
        ).entries
    ] == [feb_last, feb_first]


def test_rows_in_the_default_partition_are_found(conn, people) -> None:
    owner = people["owner"].id
    long_ago = dt.datetime(2019, 6, 15, 12, tzinfo=UTC)  # no partition for June 2019
    recent = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
    old_id, new_id = insert_rows(
        conn,
        people["org"],
        [(owner, "organization.created", long_ago), (owner, "role.created", recent)],
    )
    with conn.cursor(row_factory=tuple_row) as cur:
        home = cur.execute(
            "SELECT tableoid::regclass::text FROM permission_audit_logs WHERE id = %s", (old_id,)
        ).fetchone()
    assert home == ("permission_audit_logs_default",)
    who = actor(conn, people, "owner")
    assert [e.id for e in read_all(conn, who, AuditFilter(), 1)] == [new_id, old_id]
    june = read_audit(conn, who, AuditFilter(month=dt.date(2019, 6, 1)))
    assert [e.id for e in june.entries] == [old_id]
    assert dt.date(2019, 6, 1) not in audit_months(conn, who)  # a month needs a partition


# ---------------------------------------------------------------- permissions


def audit_reads_in_transaction(conn: psycopg.Connection) -> int:
    """Scans of audit-log partitions so far in this transaction (the server's own counters)."""
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT coalesce(sum(seq_scan + idx_scan), 0) FROM pg_stat_xact_user_tables "
            "WHERE relname LIKE 'permission_audit_logs%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("key", "org"),
    [
        ("member", "org"),  # the member role lacks audit.read
        ("former", "org"),  # an admin whose membership was deactivated
        ("stranger", "org"),  # owner of another organization, passing this one's id
        ("loner", "org"),  # no membership anywhere
    ],
)
def test_read_audit_is_refused_without_audit_read(conn, people, key, org) -> None:
    insert_rows(conn, people["org"], [(people["owner"].id, "role.created", dt.datetime.now(UTC))])
    who = actor(conn, people, key, org)
    with conn.transaction():
        for call in (
            lambda: read_audit(conn, who, AuditFilter()),
            lambda: audit_months(conn, who),
            lambda: audit_actors(conn, who),
        ):
            with pytest.raises(PermissionDenied, match=r"audit\.read") as excinfo:
                call()
            assert "\n" not in str(excinfo.value)
        assert audit_reads_in_transaction(conn) == 0
    with conn.transaction():  # the control: an allowed read does show in the counters
        assert read_audit(conn, actor(conn, people, "owner"), AuditFilter()).entries
        assert audit_reads_in_transaction(conn) > 0


def test_platform_admins_and_owners_may_read(conn, people) -> None:
    insert_rows(conn, people["org"], [(people["owner"].id, "role.created", dt.datetime.now(UTC))])
    for key in ("owner", "root"):
        assert len(read_audit(conn, actor(conn, people, key), AuditFilter()).entries) == 1
    # The stranger reads their own organization's log, which is empty.
    assert read_audit(conn, actor(conn, people, "stranger", "other"), AuditFilter()).entries == []


# ---------------------------------------------------------------- filter menus


def test_audit_months_lists_partitioned_months_newest_first(conn, people) -> None:
    ensure_month(conn, dt.date(2024, 11, 1))
    ensure_month(conn, dt.date(2025, 2, 1))
    months = audit_months(conn, actor(conn, people, "owner"))
    this_month = dt.datetime.now(UTC).date().replace(day=1)
    assert months[0] == this_month  # the months migrate makes ahead are left out
    assert months == sorted(months, reverse=True)
    assert {dt.date(2024, 11, 1), dt.date(2025, 2, 1)} <= set(months)
    assert all(m.day == 1 and m <= this_month for m in months)


def test_audit_actors_are_members_past_and_present_and_platform_admins(conn, people) -> None:
    found = audit_actors(conn, actor(conn, people, "owner"))
    emails = [a.email for a in found]
    assert set(emails) == {
        "owner@example.com",
        "member@example.com",
        "former@example.com",
        "root@example.com",
    }
    assert {a.id for a in found} >= {people["owner"].id, people["former"].id}
    assert [a.name for a in found] == sorted(a.name for a in found)


# ---------------------------------------------------------------- plans


def test_a_month_filter_plans_exactly_one_partition(conn, people) -> None:
    for month in (dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)):
        ensure_month(conn, month)
    # With the planner's statistics for rows like the app's, not an empty table.
    insert_rows(
        conn,
        people["org"],
        [
            (people["owner"].id, "role.created", dt.datetime(2025, m, 3, tzinfo=UTC))
            for m in (1, 2, 3)
            for _ in range(20)
        ],
    )
    conn.execute("ANALYZE permission_audit_logs")
    cases = [
        AuditFilter(month=dt.date(2025, 2, 1)),
        AuditFilter(month=dt.date(2025, 2, 1), actor_id=people["owner"].id),
        AuditFilter(month=dt.date(2025, 2, 1), action="role.created"),
    ]
    for filters in cases:
        sql, params = read_audit_query(people["org"], filters, None, 50)
        assert partitions_in_plan(conn, sql, params) == {"permission_audit_logs_2025_02"}
        cursor = AuditCursor(dt.datetime(2025, 2, 3, tzinfo=UTC), str(uuid.uuid4()))
        sql, params = read_audit_query(people["org"], filters, cursor, 50)
        assert partitions_in_plan(conn, sql, params) == {"permission_audit_logs_2025_02"}


def test_a_cursor_prunes_the_partitions_newer_than_it(conn, people) -> None:
    for month in (dt.date(2025, 1, 1), dt.date(2025, 2, 1), dt.date(2025, 3, 1)):
        ensure_month(conn, month)
    cursor = AuditCursor(dt.datetime(2025, 2, 10, tzinfo=UTC), str(uuid.uuid4()))
    sql, params = read_audit_query(people["org"], AuditFilter(), cursor, 50)
    planned = partitions_in_plan(conn, sql, params)
    # February and older, and the DEFAULT partition (it may hold any older month); nothing
    # after February, though migrate made this month's partition and the next two.
    assert {"permission_audit_logs_2025_01", "permission_audit_logs_2025_02"} <= planned
    assert "permission_audit_logs_2025_03" not in planned
    newer = {p for p in planned if p != "permission_audit_logs_default" and p[-7:] > "2025_02"}
    assert newer == set()
    sql, params = read_audit_query(people["org"], AuditFilter(), None, 50)
    assert "permission_audit_logs_2025_03" in partitions_in_plan(conn, sql, params)
