"""The audit screen's pages at 5,000,000 audit rows over 24 monthly partitions.

Loads --rows audit rows (default 5,000,000) into the partitioned permission_audit_logs: the
current month and the 23 before it (partitions made by the schema's ensure_audit_log_partition),
an equal share of rows each, across --orgs organizations; one big organization holds a fifth of
the rows (1,000,000 at the default) written by --actors members. A few rows (--default-rows) are
dated before the oldest partition, so they sit in the DEFAULT partition as they would after a
gap. Then it times read_audit (permission check, page query, actor join: what the screen waits
for) for the big organization, first page and the next page from its cursor, with no filter and
with each filter, and a deep page reached by keyset; median and p95 over --repeat calls each,
cycling through months, actors and actions. Target: every page under 50 ms. Last, EXPLAIN
(ANALYZE, BUFFERS) shows how many partitions a month-filtered and a cursor page read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from bench.run import BenchTarget
from creatia_tui.data.access import Actor
from creatia_tui.data.audit import (
    AUDIT_ACTIONS,
    AuditCursor,
    AuditFilter,
    audit_actors,
    audit_months,
    read_audit,
    read_audit_query,
)
from creatia_tui.data.users import get_user

TARGET_MS = 50.0
MONTHS = 24
PAGE = 50


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=5_000_000, help="audit rows (default 5M)")
    parser.add_argument("--orgs", type=int, default=200, help="organizations (default 200)")
    parser.add_argument(
        "--actors", type=int, default=300, help="members of the big organization (default 300)"
    )
    parser.add_argument(
        "--default-rows",
        type=int,
        default=5_000,
        help="rows older than the oldest partition, in the DEFAULT partition (default 5,000)",
    )
    parser.add_argument("--repeat", type=int, default=200, help="calls per measurement")
    parser.add_argument(
        "--deep-page", type=int, default=200, help="page number of the deep page (default 200)"
    )


def month_starts(now: dt.datetime, count: int) -> list[dt.datetime]:
    """First instants (UTC) of this month and the count - 1 before it, oldest first."""
    first = now.astimezone(dt.timezone.utc).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    starts = [first]
    for _ in range(count - 1):
        starts.append((starts[-1] - dt.timedelta(days=1)).replace(day=1))
    return starts[::-1]


# One month's rows, in created_at order (the primary key is appended to, not split). Row k of
# the whole load decides the organization (every fifth row: the big one), the actor and the
# action with a hash of k, so filters cut across months evenly.
LOAD_SQL = """
INSERT INTO permission_audit_logs
  (organization_id, user_id, action, resource_type, resource_id, changes, ip_address,
   user_agent, created_at)
SELECT
  CASE WHEN big THEN %(big)s::uuid ELSE (%(small)s::uuid[])[1 + small_org] END,
  CASE WHEN big THEN (%(actors)s::uuid[])[1 + (h1 %% %(n_actors)s)]
       ELSE (%(users)s::uuid[])[1 + (small_org * 13 + h1 %% 10) %% %(n_users)s] END,
  (%(actions)s::text[])[1 + (h2 %% %(n_actions)s)],
  'Role', gen_random_uuid(),
  jsonb_build_object('before', jsonb_build_object('granted', false),
                     'after', jsonb_build_object('granted', true, 'n', k)),
  '10.20.30.40'::inet, 'creatia-tui/bench (bench-host; /dev/pts/1; TERM=xterm-256color)',
  %(start)s::timestamptz + (%(end)s::timestamptz - %(start)s::timestamptz)
                           * ((k - %(lo)s + 0.5) / %(count)s)
FROM (
  SELECT k, k %% 5 = 0 AS big, (k / 5) %% %(n_small)s AS small_org,
         hashint8extended(k, 1) & 9223372036854775807 AS h1,
         hashint8extended(k, 2) & 9223372036854775807 AS h2
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS k
) AS g
"""


def _uuids(conn: psycopg.Connection, sql: str, *params: Any) -> list[str]:
    with conn.cursor(row_factory=tuple_row) as cur:
        return [str(row[0]) for row in cur.execute(sql, params).fetchall()]


def _small_memberships(conn: psycopg.Connection, small: list[str], users: list[str]) -> None:
    conn.execute(
        "INSERT INTO organization_memberships (organization_id, user_id, role) "
        "SELECT o.id, (%(users)s::uuid[])[1 + ((o.n - 1) * 13 + j) %% %(n_users)s], "
        "       CASE WHEN j = 0 THEN 'owner' ELSE 'member' END "
        "FROM unnest(%(small)s::uuid[]) WITH ORDINALITY AS o(id, n), generate_series(0, 9) AS j",
        {"users": users, "n_users": len(users), "small": small},
    )


def load(conn: psycopg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    """Users, organizations, memberships, partitions and audit rows; returns what was made."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    n_users = max(args.actors, 1_000)
    conn.execute(
        "INSERT INTO users (email, encrypted_password, name) "
        "SELECT format('bench-%%s@example.com', lpad(n::text, 5, '0')), 'x', "
        "format('Bench Person %%s', n) FROM generate_series(1, %s) AS n",
        (n_users,),
    )
    users = _uuids(conn, "SELECT id FROM users WHERE email LIKE 'bench-%%' ORDER BY email")
    conn.execute(
        "INSERT INTO organizations (name, subdomain) "
        "SELECT format('Bench Org %%s', n), format('bench-%%s', n) "
        "FROM generate_series(0, %s) AS n",
        (args.orgs - 1,),
    )
    orgs = _uuids(
        conn, "SELECT id FROM organizations WHERE subdomain LIKE 'bench-%%' ORDER BY name"
    )
    big, small = orgs[0], orgs[1:] or orgs[:1]
    actors = users[: args.actors]
    # The big organization: the first actor is its owner (the one who reads the log).
    conn.execute(
        "INSERT INTO organization_memberships (organization_id, user_id, role) "
        "SELECT %s, u, CASE WHEN n = 1 THEN 'owner' WHEN n <= 5 THEN 'admin' ELSE 'member' END "
        "FROM unnest(%s::uuid[]) WITH ORDINALITY AS a(u, n)",
        (big, actors),
    )
    # Each small organization: the ten users its rows are written by (see LOAD_SQL).
    _small_memberships(conn, small, users)
    timings["users, organizations, memberships"] = time.perf_counter() - started

    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    starts = month_starts(now, MONTHS)
    started = time.perf_counter()
    for start in starts:
        conn.execute("SELECT ensure_audit_log_partition(%s::date)", (start.date(),))
    timings["partitions"] = time.perf_counter() - started

    # Secondary indexes off during the load, rebuilt after it from their own definitions.
    with conn.cursor(row_factory=tuple_row) as cur:
        index_defs = cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE schemaname = current_schema() AND tablename = 'permission_audit_logs' "
            "AND indexname LIKE 'idx_%%' ORDER BY indexname"
        ).fetchall()
    for name, _ in index_defs:
        conn.execute(f'DROP INDEX "{name}"')

    main_rows = args.rows - args.default_rows
    per_month = main_rows // MONTHS
    bounds = [*starts[1:], now]
    params: dict[str, Any] = {
        "big": big,
        "small": small,
        "n_small": len(small),
        "actors": actors,
        "n_actors": len(actors),
        "users": users,
        "n_users": len(users),
        "actions": list(AUDIT_ACTIONS),
        "n_actions": len(AUDIT_ACTIONS),
    }
    started = time.perf_counter()
    k = 0
    for index, (start, end) in enumerate(zip(starts, bounds, strict=True)):
        count = per_month + (main_rows - per_month * MONTHS if index == MONTHS - 1 else 0)
        conn.execute(
            LOAD_SQL,
            {**params, "start": start, "end": end, "lo": k, "hi": k + count - 1, "count": count},
        )
        k += count
        if index % 6 == 5 or index == MONTHS - 1:
            print(
                f"  loaded {k:,} rows ({index + 1} months) "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
    if args.default_rows:
        # Two months before the oldest partition: no partition, so the DEFAULT one.
        old_end = starts[0]
        old_start = (old_end - dt.timedelta(days=40)).replace(day=1)
        conn.execute(
            LOAD_SQL,
            {
                **params,
                "start": old_start,
                "end": old_end,
                "lo": k,
                "hi": k + args.default_rows - 1,
                "count": args.default_rows,
            },
        )
        k += args.default_rows
    timings["audit rows (primary key only)"] = time.perf_counter() - started

    started = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '512MB'")
    for _, definition in index_defs:
        # pg_indexes spells a partitioned index "ON ONLY parent": that alone is an empty,
        # invalid parent index. Without ONLY it is built on every partition.
        conn.execute(definition.replace(" ON ONLY ", " ON ", 1))
    timings[f"{len(index_defs)} secondary indexes"] = time.perf_counter() - started
    started = time.perf_counter()
    conn.execute("VACUUM (ANALYZE) permission_audit_logs")
    conn.execute("ANALYZE users, organizations, organization_memberships, roles, role_permissions")
    timings["VACUUM ANALYZE"] = time.perf_counter() - started
    with conn.cursor(row_factory=tuple_row) as cur:
        invalid = cur.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_inherits h ON h.inhrelid = i.indrelid "
            "WHERE h.inhparent = 'permission_audit_logs'::regclass AND NOT i.indisvalid"
        ).fetchone()
        parents = cur.execute(
            "SELECT count(*) FROM pg_index WHERE indrelid = 'permission_audit_logs'::regclass "
            "AND NOT indisvalid"
        ).fetchone()
    assert invalid == (0,) and parents == (0,), "an audit index was not rebuilt on every partition"
    return {
        "big": big,
        "small": small[0],
        "actors": actors,
        "rows": k,
        "timings": timings,
        "months": starts,
    }


# ---------------------------------------------------------------- measuring


def _ms(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return (time.perf_counter() - started) * 1000, result


def _stats(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95, ordered[-1]


class Results:
    def __init__(self) -> None:
        self.rows: list[tuple[str, list[float], int]] = []

    def add(self, name: str, samples: list[float], rows: int) -> None:
        self.rows.append((name, samples, rows))
        median, p95, worst = _stats(samples)
        flag = "" if p95 < TARGET_MS else f"  OVER {TARGET_MS:.0f} ms"
        print(
            f"  {name:<40} median {median:6.2f} ms  p95 {p95:6.2f} ms  max {worst:6.2f} ms"
            f"  ({len(samples)} calls, {rows} rows/page){flag}",
            flush=True,
        )

    def met(self) -> bool:
        return all(_stats(samples)[1] < TARGET_MS for _, samples, _ in self.rows)


def measure_pages(
    conn: psycopg.Connection,
    actor: Actor,
    name: str,
    make: Callable[[int], AuditFilter],
    repeat: int,
    results: Results,
) -> None:
    """First page and the page after it, for `repeat` filters from make(i)."""
    first: list[float] = []
    second: list[float] = []
    rows = 0
    for i in range(repeat):
        filters = make(i)
        ms, page = _ms(lambda f=filters: read_audit(conn, actor, f, limit=PAGE))
        first.append(ms)
        rows = max(rows, len(page.entries))
        if page.next_cursor is not None:
            ms, _ = _ms(lambda f=filters, c=page.next_cursor: read_audit(conn, actor, f, c, PAGE))
            second.append(ms)
    results.add(f"{name}: first page", first, rows)
    if second:
        results.add(f"{name}: next page", second, PAGE)


def walk(
    conn: psycopg.Connection, actor: Actor, filters: AuditFilter, pages: int
) -> tuple[list[float], AuditCursor | None, int]:
    """Page through by keyset towards page `pages` (or the last page, if that comes first).

    Returns the time of each page read, the cursor that opens the page reached, and its number.
    """
    cursor: AuditCursor | None = None
    times: list[float] = []
    for _ in range(pages - 1):
        ms, page = _ms(lambda c=cursor: read_audit(conn, actor, filters, c, PAGE))
        times.append(ms)
        if page.next_cursor is None:
            return times, cursor, len(times)
        cursor = page.next_cursor
    return times, cursor, len(times) + 1


def measure_deep(
    conn: psycopg.Connection,
    actor: Actor,
    name: str,
    filters: AuditFilter,
    page_no: int,
    repeat: int,
    results: Results,
) -> tuple[AuditCursor | None, int]:
    walk_times, cursor, reached = walk(conn, actor, filters, page_no)
    median, p95, _ = _stats(walk_times)
    print(
        f"  walked {len(walk_times)} pages by keyset to page {reached}"
        f"{' (the last)' if reached < page_no else ''}: median {median:.2f} ms, "
        f"p95 {p95:.2f} ms a page; total {sum(walk_times):.0f} ms",
        flush=True,
    )
    if cursor is None:
        return None, 1
    samples = []
    rows = 0
    for _ in range(repeat):
        ms, page = _ms(lambda: read_audit(conn, actor, filters, cursor, PAGE))
        samples.append(ms)
        rows = len(page.entries)
    results.add(f"{name}: page {reached}", samples, rows)
    return cursor, reached


def plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """Which audit partitions a plan holds, which ran, and what was pruned at run time."""
    partitions: dict[str, int] = {}
    removed = 0

    def visit(node: dict[str, Any]) -> None:
        nonlocal removed
        relation = node.get("Relation Name", "")
        if relation.startswith("permission_audit_logs"):
            partitions[relation] = partitions.get(relation, 0) + int(node.get("Actual Loops", 0))
        removed += int(node.get("Subplans Removed", 0))
        for child in node.get("Plans", []):
            visit(child)

    visit(plan["Plan"])
    return {
        "in plan": sorted(partitions),
        "executed": sorted(name for name, loops in partitions.items() if loops),
        "removed at run time": removed,
        "shared hit": plan["Plan"].get("Shared Hit Blocks", 0),
        "shared read": plan["Plan"].get("Shared Read Blocks", 0),
        "planning ms": plan.get("Planning Time", 0.0),
        "execution ms": plan.get("Execution Time", 0.0),
    }


def explain(
    conn: psycopg.Connection,
    label: str,
    organization_id: str,
    filters: AuditFilter,
    after: AuditCursor | None,
    total_partitions: int,
) -> None:
    sql, params = read_audit_query(organization_id, filters, after, PAGE)
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params, prepare=False
        ).fetchone()
    assert row is not None
    data = row[0] if isinstance(row[0], list) else json.loads(row[0])
    summary = plan_summary(data[0])
    print(
        f"  {label}: {len(summary['in plan'])} of {total_partitions} partitions planned, "
        f"{len(summary['executed'])} scanned, {summary['removed at run time']} removed at run "
        f"time; buffers hit {summary['shared hit']} read {summary['shared read']}; planning "
        f"{summary['planning ms']:.2f} ms, execution {summary['execution ms']:.2f} ms",
        flush=True,
    )
    names = summary["executed"]
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} .. {names[-1]}"
    print(f"    scanned: {shown}", flush=True)


def read_all_count(conn: psycopg.Connection, organization_id: str) -> int:
    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT count(*) FROM permission_audit_logs WHERE organization_id = %s",
            (organization_id,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def run(args: argparse.Namespace, target: BenchTarget) -> int:
    if args.rows < MONTHS * 100 or args.orgs < 2 or args.actors < 1:
        raise SystemExit("--rows must be at least 2,400, --orgs at least 2, --actors at least 1")
    print(
        f"audit: {args.rows:,} rows over {MONTHS} monthly partitions, {args.orgs} organizations "
        f"(one with a fifth of the rows), {args.actors} actors in the big one; "
        f"{args.default_rows:,} rows in the DEFAULT partition",
        flush=True,
    )
    with target.pg_connect(autocommit=True) as conn:
        started = time.perf_counter()
        made = load(conn, args)
        load_seconds = time.perf_counter() - started
        print(f"loaded {made['rows']:,} rows in {load_seconds:.1f} s:", flush=True)
        for phase, seconds in made["timings"].items():
            print(f"  {phase}: {seconds:.1f} s", flush=True)
        with conn.cursor(row_factory=tuple_row) as cur:
            big_rows, partitions, size = cur.execute(
                "SELECT (SELECT count(*) FROM permission_audit_logs WHERE organization_id = %s), "
                "(SELECT count(*) FROM pg_inherits "
                " WHERE inhparent = 'permission_audit_logs'::regclass), "
                "pg_size_pretty((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
                " WHERE inhparent = 'permission_audit_logs'::regclass))",
                (made["big"],),
            ).fetchone()  # type: ignore[misc]
        print(
            f"big organization: {big_rows:,} rows; {partitions} partitions (with DEFAULT and "
            f"the months ahead), {size} with indexes",
            flush=True,
        )

        owner = get_user(conn, made["actors"][0])
        assert owner is not None
        actor = Actor(user=owner, organization_id=made["big"])
        months = audit_months(conn, actor)
        actors = [a.id for a in audit_actors(conn, actor)]
        ms_months, _ = _ms(lambda: audit_months(conn, actor))
        ms_actors, members = _ms(lambda: audit_actors(conn, actor))
        print(
            f"filter menus: audit_months {ms_months:.2f} ms ({len(months)} months), "
            f"audit_actors {ms_actors:.2f} ms ({len(members)} people)",
            flush=True,
        )
        # Warm up: the first calls pay for catalog caches and cold pages.
        for filters in (AuditFilter(), AuditFilter(month=months[0])):
            read_audit(conn, actor, filters, limit=PAGE)

        results = Results()
        print(f"read_audit, {PAGE} rows a page, big organization:", flush=True)
        repeat = args.repeat
        n_actions = len(AUDIT_ACTIONS)
        measure_pages(conn, actor, "no filter", lambda i: AuditFilter(), repeat, results)
        measure_pages(
            conn,
            actor,
            "month",
            lambda i: AuditFilter(month=months[i % len(months)]),
            repeat,
            results,
        )
        measure_pages(
            conn,
            actor,
            "actor",
            lambda i: AuditFilter(actor_id=actors[i % len(actors)]),
            repeat,
            results,
        )
        measure_pages(
            conn,
            actor,
            "action",
            lambda i: AuditFilter(action=AUDIT_ACTIONS[i % n_actions]),
            repeat,
            results,
        )
        measure_pages(
            conn,
            actor,
            "actor + action",
            lambda i: AuditFilter(
                actor_id=actors[(i * 7) % len(actors)], action=AUDIT_ACTIONS[(i * 11) % n_actions]
            ),
            repeat,
            results,
        )
        measure_pages(
            conn,
            actor,
            "month + actor + action",
            lambda i: AuditFilter(
                month=months[i % len(months)],
                actor_id=actors[(i * 7) % len(actors)],
                action=AUDIT_ACTIONS[(i * 11) % n_actions],
            ),
            repeat,
            results,
        )
        oldest = months[-1]
        deep_pages = []
        for label, filters, page_no, calls in (
            ("no filter", AuditFilter(), args.deep_page, repeat),
            (f"month {oldest:%Y-%m}", AuditFilter(month=oldest), args.deep_page, repeat),
            ("no filter", AuditFilter(), args.deep_page * 10, max(20, repeat // 4)),
            # Three-quarters of the way back (about 18 months at the default size).
            ("no filter", AuditFilter(), args.deep_page * 75, max(20, repeat // 4)),
        ):
            cursor, reached = measure_deep(conn, actor, label, filters, page_no, calls, results)
            if cursor is not None:
                deep_pages.append((f"{label}, page {reached} (cursor)", filters, cursor))
        # A small organization (its owner is the same person): the planner picks other paths
        # for an organization that is not a fifth of every partition.
        small_actor = Actor(user=owner, organization_id=made["small"])
        small_rows = read_all_count(conn, made["small"])
        print(f"small organization ({small_rows:,} rows):", flush=True)
        measure_pages(
            conn, small_actor, "small org, no filter", lambda i: AuditFilter(), repeat, results
        )
        measure_pages(
            conn,
            small_actor,
            "small org, action",
            lambda i: AuditFilter(action=AUDIT_ACTIONS[i % n_actions]),
            repeat,
            results,
        )

        total_partitions = int(partitions)
        print("EXPLAIN (ANALYZE, BUFFERS) of the page query (read_audit's SQL, unprepared):")
        explain(conn, "no filter, first page", made["big"], AuditFilter(), None, total_partitions)
        explain(
            conn,
            f"month {months[1]:%Y-%m}, first page",
            made["big"],
            AuditFilter(month=months[1]),
            None,
            total_partitions,
        )
        for label, filters, cursor in deep_pages:
            explain(conn, label, made["big"], filters, cursor, total_partitions)
    verdict = "every page under" if results.met() else "NOT every page under"
    print(f"{verdict} {TARGET_MS:.0f} ms at p95")
    return 0 if results.met() else 1
