"""The permission audit log (PostgreSQL, partitioned by month).

Every write goes through :func:`write_audit` on the caller's connection, inside the same
transaction as the change it records. Reading pages by keyset on (created_at, id), never OFFSET,
so the thousandth page costs what the first does.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from creatia_tui import __version__
from creatia_tui.data.models import AuditLogEntry


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
        agent = (
            f"creatia-tui/{__version__} ({socket.gethostname()}; {tty}; TERM={terminal}{tmux})"
        )
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
                organization_id, user_id, action, resource_type, resource_id,
                Jsonb({"before": before, "after": after}), client.ip_address,
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
    """One page, newest first; returns the rows and the cursor for the next page (or None)."""
    clauses = ["organization_id = %(org)s"]
    params: dict[str, Any] = {"org": organization_id, "limit": limit + 1}
    if month is not None:
        # A literal month range lets the planner prune to one partition.
        start = dt.datetime(month.year, month.month, 1, tzinfo=dt.timezone.utc)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        clauses.append("created_at >= %(start)s AND created_at < %(end)s")
        params.update(start=start, end=end)
    if actor_id:
        clauses.append("user_id = %(actor)s")
        params["actor"] = actor_id
    if action:
        clauses.append("action = %(action)s")
        params["action"] = action
    if after is not None:
        clauses.append("(created_at, id) < (%(after_at)s, %(after_id)s::uuid)")
        params.update(after_at=after.created_at, after_id=after.id)
    sql = (
        f"SELECT {AUDIT_COLUMNS} FROM permission_audit_logs WHERE {' AND '.join(clauses)} "
        "ORDER BY created_at DESC, id DESC LIMIT %(limit)s"
    )
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sql, params).fetchall()
    entries = [AuditLogEntry(**row) for row in rows[:limit]]
    next_cursor = (
        AuditCursor(entries[-1].created_at, entries[-1].id) if len(rows) > limit else None
    )
    return entries, next_cursor
