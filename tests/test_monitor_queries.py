"""Monitoring queries and actions against the real servers (PostgreSQL 18, SecantusDB).

The same PostgreSQL checks run on Debian's PostgreSQL 15 in test_monitor_pg15.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from creatia_tui.data import monitor as service
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import ClientContext
from creatia_tui.data.db import Databases
from creatia_tui.data.users import get_user
from creatia_tui.errors import PermissionDenied, ValidationError
from creatia_tui.ops import monitor
from creatia_tui.ops.monitor import (
    IndexStat,
    MongoSample,
    Operation,
    PgSample,
    ProfiledOperation,
    human_bytes,
    human_duration,
    mongo_rates,
    pg_rates,
    sample_mongo,
    sample_postgres,
)
from tests.conftest import World

CLIENT = ClientContext(ip_address="192.0.2.9", user_agent="creatia-tui/test (monitor)")


def actor(dbs: Databases, user_id: str, org: str) -> Actor:
    with dbs.pg() as conn:
        user = get_user(conn, user_id)
    assert user is not None
    return Actor(user, org)


def audit_actions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(
            "SELECT action FROM permission_audit_logs ORDER BY created_at")]


def check_postgres_sample(dsn: str) -> PgSample:
    """What every PostgreSQL version must show (run on 18 here and on 15 in the PG 15 test)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT ensure_audit_log_partitions(1)")
        conn.execute("SELECT count(*) FROM users")  # a sequential scan to count
    with psycopg.connect(dsn) as conn:
        first = sample_postgres(conn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n in range(3):
            conn.execute(
                "INSERT INTO users (email, encrypted_password, name) VALUES (%s, 'x', %s)",
                (f"m{n}-{uuid.uuid4().hex[:6]}@example.com", f"모니터 {n}"),
            )
        # Two statements over the seed's 100 ms, for pg_stat_statements.
        conn.execute("SELECT pg_sleep(0.12)")
        conn.execute("SELECT pg_sleep(0.12)")
    time.sleep(0.05)
    with psycopg.connect(dsn) as conn:
        second = sample_postgres(conn)

    assert second.version_num >= 130000 and second.version
    assert second.uptime_s and second.uptime_s > 0
    assert second.max_connections > 0 and second.connection_total >= 1
    assert second.database_size and second.database_size > 0
    assert second.checkpoints.keys() == {"timed", "requested"}
    rates = pg_rates(second, first)
    assert rates is not None and rates.seconds > 0
    assert rates.commits is not None and rates.commits > 0
    assert rates.tuples_written is not None and rates.tuples_written > 0
    assert rates.cache_hit_ratio is None or 0 <= rates.cache_hit_ratio <= 100
    tables = {t.name: t for t in second.tables or []}
    assert "public.users" in tables and tables["public.users"].size_bytes
    assert tables["public.users"].seq_scan_ratio is not None
    indexes = second.indexes or []
    assert indexes and any(i.usage.startswith("unused") for i in indexes)
    names = [p.name for p in second.partitions or []]
    assert "permission_audit_logs_default" in names
    assert second.next_partition in names and second.next_partition_exists is True
    if second.statements_hint is None:
        slow = second.slow_statements or []
        assert any("pg_sleep" in (s.query or "") and s.mean_ms > 100 for s in slow)
    return second


def test_postgres_panels_show_real_values(pg_dsn: str) -> None:
    sample = check_postgres_sample(pg_dsn)
    assert sample.version_num >= 180000
    assert sample.statements_hint is None  # the embedded server preloads pg_stat_statements


def test_a_missing_pg_stat_statements_gives_a_plain_hint(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS pg_stat_statements")
        sample = sample_postgres(conn)
    assert sample.slow_statements is None
    assert sample.statements_hint and "shared_preload_libraries" in sample.statements_hint


@pytest.fixture
def blocked_pair(pg_dsn: str) -> Iterator[tuple[int, int, list[BaseException | None]]]:
    """A session holding a row lock and a second one waiting for it (in a thread)."""
    holder = psycopg.connect(pg_dsn)
    holder.execute("SELECT id FROM permissions ORDER BY id LIMIT 1 FOR UPDATE")
    holder_pid = holder.info.backend_pid
    outcome: list[BaseException | None] = []
    waiter = psycopg.connect(pg_dsn)
    waiter_pid = waiter.info.backend_pid

    def wait() -> None:
        try:
            waiter.execute(
                "UPDATE permissions SET description = description "
                "WHERE id = (SELECT id FROM permissions ORDER BY id LIMIT 1)")
            outcome.append(None)
        except psycopg.Error as exc:
            outcome.append(exc)

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    with psycopg.connect(pg_dsn, autocommit=True) as probe:
        for _ in range(100):
            row = probe.execute("SELECT cardinality(pg_blocking_pids(%s))", (waiter_pid,))
            if row.fetchone()[0]:  # type: ignore[index]
                break
            time.sleep(0.05)
    yield holder_pid, waiter_pid, outcome
    holder.close()
    thread.join(5)
    waiter.close()


def test_blocked_queries_are_shown_and_a_manager_can_cancel_and_terminate(
    dbs: Databases, world: World, pg_dsn: str, blocked_pair: tuple[int, int, list[Any]]
) -> None:
    holder_pid, waiter_pid, outcome = blocked_pair
    owner = actor(dbs, world.minjun, world.lab)
    root = actor(dbs, world.root, world.lab)  # a platform admin
    with dbs.pg() as conn:
        sample = service.read_postgres(conn, root, full=False)
        owners_sample = service.read_postgres(conn, owner, full=False)
    backends = {b.pid: b for b in sample.activity}
    assert backends[waiter_pid].blocked_by == (holder_pid,)
    assert backends[waiter_pid].waiting_on in ("permissions", "transactionid", "tuple")
    assert "UPDATE permissions" in (backends[waiter_pid].query or "")
    assert backends[holder_pid].state == "idle in transaction"
    # An organization's owner sees the same sessions, but not what another tenant runs.
    owners_view = {b.pid: b for b in owners_sample.activity}
    assert owners_view[waiter_pid].blocked_by == (holder_pid,)
    assert owners_view[waiter_pid].query is None and not owners_sample.details_shown
    assert sample.details_shown

    # A viewer may not even read; a member reads but may not cancel; nor may an organization's
    # owner, who holds monitoring.manage, on a server every organization shares.
    viewer, member = actor(dbs, world.yuna, world.lab), actor(dbs, world.jiho, world.lab)
    with pytest.raises(PermissionDenied, match=r"monitoring\.read"), dbs.pg() as conn:
        service.read_postgres(conn, viewer)
    with pytest.raises(PermissionDenied, match=r"monitoring\.manage"), dbs.pg() as conn:
        service.signal_backend(conn, member, waiter_pid, client=CLIENT)
    with pytest.raises(PermissionDenied, match=r"only a platform admin"), dbs.pg() as conn:
        service.signal_backend(conn, owner, waiter_pid, terminate=True, client=CLIENT)
    assert outcome == [] and audit_actions(pg_dsn) == []
    owner = root

    with dbs.pg() as conn:
        service.signal_backend(conn, owner, waiter_pid, client=CLIENT)
    for _ in range(100):
        if outcome:
            break
        time.sleep(0.05)
    assert isinstance(outcome[0], psycopg.errors.QueryCanceled)
    with dbs.pg() as conn:
        service.signal_backend(conn, owner, holder_pid, terminate=True, client=CLIENT)
    assert audit_actions(pg_dsn) == [
        "monitoring.backend_cancelled", "monitoring.backend_terminated"]
    # A backend that is gone is refused in one sentence, and audits nothing.
    with pytest.raises(ValidationError, match="No PostgreSQL backend"), dbs.pg() as conn:
        for _ in range(50):
            if not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (holder_pid,)
            ).fetchone():
                break
            time.sleep(0.05)
        service.signal_backend(conn, owner, holder_pid, client=CLIENT)
    assert len(audit_actions(pg_dsn)) == 2


@pytest.fixture
def monitor_role(pg_dsn: str) -> Iterator[tuple[str, str]]:
    """A DSN for a LOGIN role holding only pg_monitor, and one for a role without it."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"watcher_{suffix}", f"nobody_{suffix}")
    params = conninfo.conninfo_to_dict(pg_dsn)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f"CREATE ROLE {name} LOGIN")
            conn.execute(f'GRANT CONNECT ON DATABASE "{params["dbname"]}" TO {name}')
        conn.execute(f"GRANT pg_monitor TO {names[0]}")
    yield tuple(conninfo.make_conninfo("", **{**params, "user": n}) for n in names)  # type: ignore[misc]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in names:
            conn.execute(f"DROP OWNED BY {name}")
            conn.execute(f"DROP ROLE {name}")


def test_a_pg_monitor_role_sees_everything_and_a_plain_role_sees_it_absent(
    pg_dsn: str, monitor_role: tuple[str, str], blocked_pair: tuple[int, int, list[Any]]
) -> None:
    watcher, nobody = monitor_role
    _, waiter_pid, _ = blocked_pair
    with psycopg.connect(watcher) as conn:
        seen = sample_postgres(conn)
    assert seen.database_size and seen.statements_hint is None
    assert {b.pid: b for b in seen.activity}[waiter_pid].query
    with psycopg.connect(nobody) as conn:
        hidden = sample_postgres(conn)
    backend = {b.pid: b for b in hidden.activity}.get(waiter_pid)
    # Another role's session: PostgreSQL hides its query and its state from a plain role.
    assert backend is None or backend.query is None
    assert hidden.slow_statements is None or all(
        s.query is None or "pg_sleep" not in s.query for s in hidden.slow_statements)


def test_mongo_panels_show_real_values_and_rates(dbs: Databases) -> None:
    dbs.mongo["tasks"].count_documents({"organization_id": "x"})
    first = sample_mongo(dbs.mongo)
    dbs.mongo["tasks"].find_one({"organization_id": "x"})
    second = sample_mongo(dbs.mongo)
    assert second.version and second.uptime_s is not None
    assert second.connections_current and second.connections_current >= 1
    assert second.profiling_level in (0, 1, 2) and second.profiled == []
    assert second.operations is not None  # SecantusDB answers currentOp
    # SecantusDB sizes by reading every document: not in a poll, only on request.
    assert second.process == "secantus" and second.sizes_skipped and second.db_stats is None
    names = {c.name: c for c in second.collections or []}
    assert "tasks" in names and names["tasks"].documents is None
    sized = sample_mongo(dbs.mongo, sizes=True)
    assert sized.db_stats and sized.db_stats["collections"] and sized.sizes_skipped is None
    assert {c.name: c for c in sized.collections or []}["tasks"].documents == 0
    assert any(u.collection == "tasks" and u.name == "_id_" for u in second.index_usage or [])
    rates = mongo_rates(second, first)
    assert rates is not None and rates.total_operations and rates.total_operations > 0


def test_profiling_changes_only_through_the_service_with_an_audit_row(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    member, owner = actor(dbs, world.jiho, world.lab), actor(dbs, world.minjun, world.lab)
    with pytest.raises(PermissionDenied, match=r"monitoring\.manage"), dbs.pg() as conn:
        service.set_profiling_level(conn, member, dbs.mongo, 1, client=CLIENT)
    with pytest.raises(PermissionDenied, match=r"only a platform admin"), dbs.pg() as conn:
        service.set_profiling_level(conn, owner, dbs.mongo, 1, client=CLIENT)
    owner = actor(dbs, world.root, world.lab)
    with pytest.raises(ValidationError, match="profiling level"), dbs.pg() as conn:
        service.set_profiling_level(conn, owner, dbs.mongo, 5, client=CLIENT)
    assert dbs.mongo.command("profile", -1)["was"] == 0 and audit_actions(pg_dsn) == []
    with dbs.pg() as conn:
        assert service.set_profiling_level(conn, owner, dbs.mongo, 1, client=CLIENT) == 0
    assert dbs.mongo.command("profile", -1)["was"] == 1
    assert sample_mongo(dbs.mongo, full=False).profiling_level == 1
    with dbs.pg() as conn:
        service.set_profiling_level(conn, owner, dbs.mongo, 0, client=CLIENT)
    assert audit_actions(pg_dsn) == ["monitoring.profiling_changed"] * 2


def test_killing_an_operation_that_is_gone_audits_nothing(
    dbs: Databases, world: World, pg_dsn: str
) -> None:
    owner, member = actor(dbs, world.minjun, world.lab), actor(dbs, world.jiho, world.lab)
    with pytest.raises(PermissionDenied), dbs.pg() as conn:
        service.kill_operation(conn, member, dbs.mongo, 987654, client=CLIENT)
    with pytest.raises(PermissionDenied, match=r"only a platform admin"), dbs.pg() as conn:
        service.kill_operation(conn, owner, dbs.mongo, 987654, client=CLIENT)
    owner = actor(dbs, world.root, world.lab)
    with pytest.raises(ValidationError, match="No MongoDB operation"), dbs.pg() as conn:
        service.kill_operation(conn, owner, dbs.mongo, 987654, client=CLIENT)
    assert audit_actions(pg_dsn) == []


# ---------------------------------------------------------------- absent fields (pure logic)
def test_absent_server_status_sections_are_none_never_an_error() -> None:
    assert monitor._get({"a": {"b": 1}}, "a", "b") == 1
    assert monitor._get({"a": 3}, "a", "b") is None
    assert monitor._get(None, "x") is None
    assert monitor._number(True) is None and monitor._number(2.0) == 2
    old = MongoSample(0.0, None, None, None, None, {"insert": None}, None, None, None, False, "d")
    new = MongoSample(2.0, None, None, None, None, {"insert": 4}, 10, None, None, False, "d")
    rates = mongo_rates(new, old)
    assert rates is not None
    assert rates.operations["insert"] is None and rates.network_in is None
    assert rates.total_operations is None
    # A counter reset (server restart) gives "absent", not a negative rate.
    reset = MongoSample(4.0, None, None, None, None, {"insert": 1}, 5, None, None, False, "d")
    assert mongo_rates(reset, new).operations["insert"] is None  # type: ignore[union-attr]


def test_operations_shorter_than_a_second_and_helpers() -> None:
    op = monitor._operation({"opid": 7, "op": "query", "microsecs_running": 2_500_000})
    assert op.running_s == 2.5
    assert monitor._operation({"opid": "s1:7"}).running_s is None
    assert IndexStat("t", "i", 0, 10, True).usage == "unused (keeps uniqueness)"
    assert IndexStat("t", "i", None, None, False).usage == "absent"
    assert human_bytes(None) == "absent" and human_bytes(2048) == "2.0 kB"
    assert human_duration(None) == "absent" and human_duration(3700) == "1h 1m"


@pytest.mark.parametrize(("version", "mean", "io"), [
    (120000, "mean_time", "blk_read_time"),
    (150000, "mean_exec_time", "blk_read_time"),
    (180000, "mean_exec_time", "shared_blk_read_time"),
])
def test_statement_columns_follow_the_version(version: int, mean: str, io: str) -> None:
    sql = monitor.pg_statements_query(version)
    assert f"{mean} AS mean_ms" in sql and f"{io} +" in sql


def test_other_tenants_operations_are_described_to_platform_admins_only(
    dbs: Databases, world: World
) -> None:
    root, owner = actor(dbs, world.root, world.lab), actor(dbs, world.minjun, world.lab)
    with dbs.pg() as conn:
        assert service.may_read(conn, root) is True
        assert service.may_read(conn, owner) is False
        service.set_profiling_level(conn, root, dbs.mongo, 2, slowms=0, client=CLIENT)
    try:
        dbs.mongo.tasks.find_one({"organization_id": world.acme, "title": "다른 조직의 비밀"})
        shown = service.read_mongo(dbs.mongo, full=True, reveal=True)
        withheld = service.read_mongo(dbs.mongo, full=True, reveal=False)
    finally:
        with dbs.pg() as conn:
            service.set_profiling_level(conn, root, dbs.mongo, 0, client=CLIENT)
    assert shown.details_shown and not withheld.details_shown
    assert all(op.description is None and op.client is None for op in withheld.operations or [])
    assert all(p.summary is None for p in withheld.profiled or [])
    if shown.profiled:  # where the server keeps a profile, the admin reads what ran
        assert any(p.summary for p in shown.profiled)


def test_withheld_details_leave_the_figures() -> None:
    sample = MongoSample(
        sampled_at=0.0, version="7.0", uptime_s=1.0, connections_current=1,
        connections_available=9, opcounters={}, network_in=None, network_out=None,
        network_requests=None, full=True, database="creatia_logs",
        operations=[Operation(7, "query", "creatia_logs.tasks", 2.5, "10.0.0.9:5000",
                              "find {organization_id: 'acme', title: '비밀'}")],
        profiled=[ProfiledOperation(None, "query", "creatia_logs.tasks", 120,
                                    "find {title: '비밀'}")],
    )
    service.withhold_details(sample)
    assert sample.operations == [Operation(7, "query", "creatia_logs.tasks", 2.5, None, None)]
    assert sample.profiled == [ProfiledOperation(None, "query", "creatia_logs.tasks", 120, None)]
    assert not sample.details_shown
