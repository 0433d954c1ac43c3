"""Monitoring services: permission-checked reads of both databases and the operator's actions.

Reads need ``monitoring.read``, actions ``monitoring.manage``, checked with
:func:`~creatia_tui.data.access.require` in the caller's PostgreSQL transaction. Every action
writes its ``permission_audit_logs`` row first and then acts, in that same transaction: when the
server refuses (no such backend, no privilege to signal it, no such operation) the error rolls the
audit row back, so the log holds only what was done.

Decision: reading MongoDB's figures is checked against PostgreSQL like everything else, except
while PostgreSQL itself is down: then the permission held when the screen opened stands (the
monitor is most needed during an outage, and reading statistics changes nothing). Actions never
run without a live check.

Decision (tenancy): both servers are shared by every organization, so what another tenant's
session is doing is not an organization's business. Only a platform admin (read live, with the
permission check) sees the text of running PostgreSQL queries and the descriptions and clients
of MongoDB operations, profiled or current; everyone else with ``monitoring.read`` sees the
figures, states, durations and waits, with the text withheld (shown as hidden). The slow
statements of ``pg_stat_statements`` stay visible: they are normalised (``$1`` for every value).
Acting on the server (cancel, terminate, killOp, profiling) needs ``monitoring.manage`` *and* a
platform admin, for the same reason.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pymongo.database import Database
from pymongo.errors import OperationFailure, PyMongoError

from creatia_tui.data.access import Actor, require_standing
from creatia_tui.data.audit import ClientContext, write_audit
from creatia_tui.errors import PermissionDenied, ValidationError, one_line
from creatia_tui.ops.monitor import MongoSample, PgSample, sample_mongo, sample_postgres

READ = "monitoring.read"
MANAGE = "monitoring.manage"
PROFILING_LEVELS = (0, 1, 2)


def read_postgres(conn: psycopg.Connection, actor: Actor, *, full: bool = True) -> PgSample:
    """PostgreSQL's figures; running queries' text only for a platform admin."""
    standing = require_standing(conn, actor, READ)
    # A poll must never hang the monitor behind a lock or a huge catalog.
    conn.execute("SET LOCAL statement_timeout = '5s'")
    sample = sample_postgres(conn, full=full)
    if not standing.platform_admin:
        sample.activity = [dataclasses.replace(b, query=None) for b in sample.activity]
        sample.details_shown = False
    return sample


def may_read(conn: psycopg.Connection, actor: Actor) -> bool:
    """The check :func:`read_mongo` relies on, made on a PostgreSQL transaction; returns
    whether the actor may see other sessions' operations in full (a platform admin)."""
    return require_standing(conn, actor, READ).platform_admin


def read_mongo(
    db: Database, *, full: bool = True, sizes: bool | None = None, reveal: bool = False
) -> MongoSample:
    """MongoDB's figures; the caller has checked :func:`may_read` (see the module's decision)
    and passes what it returned as ``reveal``: without it, operations come without their
    description and client. ``sizes``: see :func:`~creatia_tui.ops.monitor.sample_mongo`."""
    sample = sample_mongo(db, full=full, sizes=sizes)
    return sample if reveal else withhold_details(sample)


def withhold_details(sample: MongoSample) -> MongoSample:
    """The sample without what other tenants' operations say (their commands and clients)."""
    if sample.operations is not None:
        sample.operations = [
            dataclasses.replace(op, description=None, client=None) for op in sample.operations
        ]
    if sample.profiled is not None:
        sample.profiled = [dataclasses.replace(op, summary=None) for op in sample.profiled]
    sample.details_shown = False
    return sample


def _require_manage(conn: psycopg.Connection, actor: Actor, what: str) -> None:
    """monitoring.manage, and a platform admin: the servers are every organization's."""
    if not require_standing(conn, actor, MANAGE).platform_admin:
        raise PermissionDenied(
            f"{what} acts on a server every organization shares; only a platform admin may "
            f"do it (permission {MANAGE})."
        )


def signal_backend(
    conn: psycopg.Connection,
    actor: Actor,
    pid: int,
    *,
    terminate: bool = False,
    client: ClientContext | None = None,
) -> None:
    """Cancel a PostgreSQL backend's query, or terminate the backend (``terminate=True``)."""
    _require_manage(conn, actor, "Terminating a backend" if terminate else "Cancelling a query")
    if not isinstance(pid, int) or pid <= 0:
        raise ValidationError("A backend is named by its process id, a positive number.")
    cur = conn.cursor(row_factory=dict_row)
    values = cur.execute(
        "SELECT usename, datname, state, left(query, 200) AS query, pg_backend_pid() AS own "
        "FROM pg_stat_activity WHERE pid = %s",
        (pid,),
    ).fetchone()
    if values is None:
        raise ValidationError(f"No PostgreSQL backend has process id {pid} (it may have ended).")
    if values["own"] == pid:
        raise ValidationError("That is this monitor's own connection.")
    verb = "terminated" if terminate else "cancelled"
    write_audit(
        conn, organization_id=actor.organization_id, user_id=actor.user_id,
        action=f"monitoring.backend_{verb}", resource_type="postgres_backend", resource_id=None,
        before={"pid": pid, "user": values["usename"], "database": values["datname"],
                "state": values["state"], "query": values["query"]},
        after={"signal": "terminate" if terminate else "cancel"},
        client=client,
    )
    function = "pg_terminate_backend" if terminate else "pg_cancel_backend"
    try:
        with conn.transaction():
            sent = cur.execute(f"SELECT {function}(%s) AS ok", (pid,)).fetchone()
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ValidationError(
            f"PostgreSQL refused to signal backend {pid}: {one_line(str(exc))} "
            "(the database role needs pg_signal_backend)."
        ) from None
    if not (sent and sent["ok"]):
        raise ValidationError(f"Backend {pid} could not be signalled (it may have ended).")


def kill_operation(
    conn: psycopg.Connection,
    actor: Actor,
    db: Database,
    opid: Any,
    *,
    client: ClientContext | None = None,
) -> None:
    """killOp on a MongoDB operation (an int opid on mongod, "shard:opid" on mongos)."""
    _require_manage(conn, actor, "Killing an operation")
    if isinstance(opid, bool) or not isinstance(opid, int | str) or opid in ("", None):
        raise ValidationError("An operation is named by its opid.")
    write_audit(
        conn, organization_id=actor.organization_id, user_id=actor.user_id,
        action="monitoring.operation_killed", resource_type="mongo_operation", resource_id=None,
        before={"opid": opid}, after={"killed": True}, client=client,
    )
    try:
        reply = db.client.admin.command("killOp", op=opid)
    except OperationFailure as exc:
        raise ValidationError(f"MongoDB refused to kill operation {opid}: "
                              f"{one_line(str(exc.details.get('errmsg') or exc))}") from None
    except PyMongoError as exc:
        raise ValidationError(f"MongoDB did not answer: {one_line(str(exc))}") from None
    if "no operation" in str(reply.get("info", "")):
        raise ValidationError(f"No MongoDB operation has opid {opid} (it may have ended).")


def set_profiling_level(
    conn: psycopg.Connection,
    actor: Actor,
    db: Database,
    level: int,
    *,
    slowms: int = 100,
    client: ClientContext | None = None,
) -> int | None:
    """Set the profiler of the execution-data database; returns the level it was at."""
    _require_manage(conn, actor, "Changing the profiling level")
    if level not in PROFILING_LEVELS:
        raise ValidationError("The profiling level is 0 (off), 1 (slow operations) or 2 (all).")
    if not isinstance(slowms, int) or slowms < 0:
        raise ValidationError("slowms is a number of milliseconds, 0 or more.")
    try:
        current = db.command("profile", -1)
    except OperationFailure as exc:
        raise ValidationError(f"This MongoDB server has no profiler here: "
                              f"{one_line(str(exc.details.get('errmsg') or exc))}") from None
    was = current.get("was")
    write_audit(
        conn, organization_id=actor.organization_id, user_id=actor.user_id,
        action="monitoring.profiling_changed", resource_type="mongo_profiler", resource_id=None,
        before={"database": db.name, "level": was, "slowms": current.get("slowms")},
        after={"database": db.name, "level": level, "slowms": slowms}, client=client,
    )
    try:
        db.command("profile", level, slowms=slowms)
    except OperationFailure as exc:
        raise ValidationError(f"MongoDB refused the profiling level: "
                              f"{one_line(str(exc.details.get('errmsg') or exc))}") from None
    return was if isinstance(was, int) else None
