"""The permission audit log (PostgreSQL, partitioned by month).

Every write goes through :func:`write_audit` on the caller's connection, inside the same
transaction as the change it records. Reading pages by keyset on (created_at, id), never OFFSET,
so the thousandth page costs what the first does.

The audit screen reads through :func:`read_audit` (permission ``audit.read``), with its filter
menus from :func:`audit_months` and :func:`audit_actors`. How a page query stays fast at millions
of rows across monthly partitions:

- every filter is a column of one of the partitioned table's indexes, (organization_id,
  created_at DESC, id DESC) and the same with user_id or action before created_at, so a page is an
  index range read of ``limit + 1`` rows in each partition left (an actor and an action together
  read the actor's rows and skip the other actions);
- month bounds and the cursor's time are sent as timestamptz values, and a cursor also adds
  ``created_at <= cursor.created_at`` beside the row comparison, so the planner drops the
  partitions outside them while planning (they are not even locked or opened);
- page queries are never server-side prepared (``prepare=False``): each one is planned with its
  values. A generic plan would hold every partition and prune at run time, and would choose its
  index for an average organization rather than this one;
- users are joined after the LIMIT, for the page's rows only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from creatia_tui import __version__
from creatia_tui.data.access import Actor, permissions_changed, require
from creatia_tui.data.models import AuditLogEntry
from creatia_tui.errors import ValidationError


@dataclass(frozen=True)
class ClientContext:
    """Where a change came from: the SSH client's address and the terminal it was made in."""

    ip_address: str | None
    user_agent: str

    @classmethod
    def current(cls) -> ClientContext:
        ip = None
        ssh = os.environ.get("SSH_CLIENT") or os.environ.get("SSH_CONNECTION")
        if ssh:
            candidate = ssh.split()[0]
            try:
                ip = str(ipaddress.ip_address(candidate))
            except ValueError:
                ip = None
        terminal = os.environ.get("TERM", "unknown")
        tmux = " tmux" if os.environ.get("TMUX") else ""
        try:
            tty = os.ttyname(0)
        except OSError:
            tty = "no tty"
        agent = f"creatia-tui/{__version__} ({socket.gethostname()}; {tty}; TERM={terminal}{tmux})"
        return cls(ip_address=ip, user_agent=agent)


AUDIT_COLUMNS = (
    "id::text AS id, organization_id::text AS organization_id, user_id::text AS user_id, "
    "action, resource_type, resource_id::text AS resource_id, changes, "
    "host(ip_address) AS ip_address, user_agent, created_at"
)


def write_audit(
    conn: psycopg.Connection,
    *,
    organization_id: str,
    user_id: str,
    action: str,
    resource_type: str | None,
    resource_id: str | None,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    client: ClientContext | None = None,
) -> str:
    client = client or ClientContext.current()
    # Every change to who may do what writes this row: the grants this process keeps for board
    # reads (access decision 3) are void from here on.
    permissions_changed()
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            """
        INSERT INTO permission_audit_logs
          (organization_id, user_id, action, resource_type, resource_id, changes,
           ip_address, user_agent)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        RETURNING id::text
        """,
            (
                organization_id,
                user_id,
                action,
                resource_type,
                resource_id,
                Jsonb({"before": before, "after": after}),
                client.ip_address,
                client.user_agent,
            ),
        ).fetchone()
    assert row is not None
    return str(row[0])


@dataclass(frozen=True)
class AuditCursor:
    """The last row of a page: the next page starts strictly after it."""

    created_at: dt.datetime
    id: str


# The actions the services write (the audit screen's action menu).
AUDIT_ACTIONS: tuple[str, ...] = (
    "organization.created",
    "organization.updated",
    "organization.deactivated",
    "organization.reactivated",
    "user.created",
    "membership.created",
    "membership.reactivated",
    "membership.role_changed",
    "membership.deactivated",
    "role.created",
    "role.renamed",
    "role.deactivated",
    "role.reactivated",
    "role.permission_granted",
    "role.permission_revoked",
    "monitoring.backend_cancelled",
    "monitoring.backend_terminated",
    "monitoring.operation_killed",
    "monitoring.profiling_changed",
    "consistency.repaired",
    "backup.created",
    "backup.restored",
)

MAX_PAGE = 500
PARTITION_NAME = re.compile(r"^permission_audit_logs_(\d{4})_(\d{2})$")


@dataclass(frozen=True)
class AuditFilter:
    """What the audit screen shows: one month (UTC), one actor, one action; None = any."""

    month: dt.date | None = None
    actor_id: str | None = None
    action: str | None = None


@dataclass
class AuditRow(AuditLogEntry):
    """An audit entry with who made it (None for a user that no longer exists)."""

    actor_email: str | None = None
    actor_name: str | None = None


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditRow]
    next_cursor: AuditCursor | None  # None on the last page


@dataclass(frozen=True)
class AuditActor:
    id: str
    email: str
    name: str | None


def month_bounds(month: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants [start, end) of the month holding `month` (the partitions' bounds)."""
    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.timezone.utc)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


def _page_query(
    organization_id: str, filters: AuditFilter, after: AuditCursor | None, limit: int
) -> tuple[str, dict[str, Any]]:
    """WHERE ... ORDER BY ... LIMIT for one page (limit + 1 rows, to know if more follow)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationError(f"An audit page holds 1 to {MAX_PAGE} rows, not {limit}.")
    clauses = ["organization_id = %(org)s"]
    params: dict[str, Any] = {"org": organization_id, "limit": limit + 1}
    if filters.month is not None:
        # Literal timestamptz bounds: the planner keeps the month's partition only.
        start, end = month_bounds(filters.month)
        clauses.append("created_at >= %(start)s AND created_at < %(end)s")
        params.update(start=start, end=end)
    if filters.actor_id:
        clauses.append("user_id = %(actor)s")
        params["actor"] = filters.actor_id
    if filters.action:
        clauses.append("action = %(action)s")
        params["action"] = filters.action
    if after is not None:
        if after.created_at.tzinfo is None:
            raise ValueError("an audit cursor's created_at must be timezone-aware")
        # The row comparison positions the index scan; the plain bound beside it is what lets
        # the planner drop the partitions newer than the cursor (it cannot prune on a row).
        clauses.append(
            "created_at <= %(after_at)s AND (created_at, id) < (%(after_at)s, %(after_id)s::uuid)"
        )
        params.update(after_at=after.created_at, after_id=after.id)
    sql = f"WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    return sql, params


def _next_cursor(rows: list[Any], limit: int) -> AuditCursor | None:
    if len(rows) <= limit:
        return None
    last = rows[limit - 1]
    return AuditCursor(last.created_at, last.id)


def page_audit(
    conn: psycopg.Connection,
    organization_id: str,
    *,
    after: AuditCursor | None = None,
    month: dt.date | None = None,
    actor_id: str | None = None,
    action: str | None = None,
    limit: int = 50,
) -> tuple[list[AuditLogEntry], AuditCursor | None]:
    """One page, newest first; returns the rows and the cursor for the next page (or None).

    No permission check: for callers that have made one. The audit screen uses read_audit.
    """
    where, params = _page_query(organization_id, AuditFilter(month, actor_id, action), after, limit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {AUDIT_COLUMNS} FROM permission_audit_logs {where}", params, prepare=False
        ).fetchall()
    entries = [AuditLogEntry(**row) for row in rows]
    return entries[:limit], _next_cursor(entries, limit)


# The LIMIT 1 keeps the users look-up a subquery run per page row (by primary key): without it
# the planner flattens the join and may hash the whole users table for 50 rows.
READ_AUDIT_SQL = """
SELECT a.id::text AS id, a.organization_id::text AS organization_id, a.user_id::text AS user_id,
       a.action, a.resource_type, a.resource_id::text AS resource_id, a.changes,
       host(a.ip_address) AS ip_address, a.user_agent, a.created_at,
       u.email AS actor_email, u.name AS actor_name
FROM (SELECT * FROM permission_audit_logs {where}) AS a
LEFT JOIN LATERAL (SELECT email, name FROM users WHERE users.id = a.user_id LIMIT 1) AS u ON true
ORDER BY a.created_at DESC, a.id DESC
"""


def read_audit_query(
    organization_id: str, filters: AuditFilter, after: AuditCursor | None = None, limit: int = 50
) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one read_audit page (for EXPLAIN in tests and the bench).

    Run it unprepared (``prepare=False``) as read_audit does: see the module docstring.
    """
    where, params = _page_query(organization_id, filters, after, limit)
    return READ_AUDIT_SQL.format(where=where), params


def read_audit(
    conn: psycopg.Connection,
    actor: Actor,
    filters: AuditFilter | None = None,
    after: AuditCursor | None = None,
    limit: int = 50,
) -> AuditPage:
    """One page of the actor's organization's audit log, newest first (``audit.read``).

    Pass the page's ``next_cursor`` as `after` for the next one, with the same filters. Without
    a month filter the page also holds the rows of the DEFAULT partition (months that had no
    partition when they were written).
    """
    require(conn, actor, "audit.read")
    sql, params = read_audit_query(actor.organization_id, filters or AuditFilter(), after, limit)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params, prepare=False).fetchall()
    entries = [AuditRow(**row) for row in rows]
    return AuditPage(entries[:limit], _next_cursor(entries, limit))


def audit_months(conn: psycopg.Connection, actor: Actor) -> list[dt.date]:
    """First days of the months that have a partition, newest first, up to this month (UTC).

    The month menu of the audit screen: a partition is there for every month since the log
    began (plus the months ahead that migrate makes, left out here). Rows caught by the DEFAULT
    partition belong to no month in this list; they show when no month is chosen.
    """
    require(conn, actor, "audit.read")
    with conn.cursor(row_factory=tuple_row) as cur:
        names = cur.execute(
            """
            SELECT c.relname
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'permission_audit_logs'::regclass
            """
        ).fetchall()
    this_month = dt.datetime.now(dt.timezone.utc).date().replace(day=1)
    months = []
    for (name,) in names:
        match = PARTITION_NAME.match(name)
        if match:
            month = dt.date(int(match[1]), int(match[2]), 1)
            if month <= this_month:
                months.append(month)
    return sorted(months, reverse=True)


def audit_actors(conn: psycopg.Connection, actor: Actor) -> list[AuditActor]:
    """Who may appear in the organization's log: its members, past and present, and the active
    platform admins (who act without a membership); by name, then email."""
    require(conn, actor, "audit.read")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT u.id::text AS id, u.email, u.name
            FROM organization_memberships m JOIN users u ON u.id = m.user_id
            WHERE m.organization_id = %(org)s
            UNION
            SELECT u.id::text, u.email, u.name FROM users u WHERE u.role = 'admin' AND u.active
            ORDER BY name NULLS LAST, email
            """,
            {"org": actor.organization_id},
        ).fetchall()
    return [AuditActor(**row) for row in rows]
