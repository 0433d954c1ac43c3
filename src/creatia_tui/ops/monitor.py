"""What the Monitor screen asks both databases, in one place (every statement is a constant here).

A poll reads a :class:`PgSample` and a :class:`MongoSample`; :func:`pg_rates` and
:func:`mongo_rates` turn two consecutive samples into per-second figures (commits, rollbacks,
tuples written, cache-hit ratio, operations by type, network bytes) instead of counters since the
server started.

Everything a server may leave out is ``None`` ("absent" on screen), never an error:

- PostgreSQL: a role without ``pg_monitor`` sees other sessions' queries as
  ``<insufficient privilege>`` and their states as NULL; ``pg_stat_statements`` may be missing or
  not preloaded (then ``statements_hint`` says so in one sentence). Column names follow the
  server's version: ``mean_exec_time``/``total_exec_time`` from 13 (``mean_time`` before), the
  checkpointer's counters in ``pg_stat_checkpointer`` from 17 (``pg_stat_bgwriter`` before),
  ``shared_blk_read_time`` in pg_stat_statements from 17 (``blk_read_time`` before).
- MongoDB: mongos, managed services and SecantusDB leave out serverStatus sections, refuse the
  profiler or ``currentOp``; each section that fails with an OperationFailure is recorded as
  absent with its reason.

Slow-changing sections (sizes, per-collection and per-index statistics, partitions) are read on a
"full" poll only; the screen asks for one every few polls, so a 2-second refresh stays cheap.

MongoDB sizes (dbStats, collStats) are read automatically only from a real ``mongod``/``mongos``
(``serverStatus.process``), where they come from metadata. SecantusDB counts and sizes by reading
every document, under its global lock (measured: collStats ~30 µs a document, a count ~10 µs, so
tens of seconds at a million tasks, with every other operation waiting): there they are read only
when asked for (``sizes=True``; the screen's ``s`` key).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from pymongo.database import Database
from pymongo.errors import OperationFailure

SLOW_STATEMENT_MS = 100  # the seed's threshold, for pg_stat_statements and the profiler
LONG_OPERATION_S = 1  # MongoDB operations running longer than this are listed
ROW_LIMIT = 50
HIDDEN_QUERY = "<insufficient privilege>"
STATEMENTS_MISSING = (
    "pg_stat_statements is not installed: add it to shared_preload_libraries and run "
    "CREATE EXTENSION pg_stat_statements (or `creatia-tui migrate` as a superuser)."
)

# ---------------------------------------------------------------- PostgreSQL statements
PG_SERVER = """
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_s,
       current_setting('max_connections')::int AS max_connections,
       current_database() AS database,
       pg_backend_pid() AS own_pid,
       clock_timestamp() AS sampled_at
"""

# The seed's "connections by state", for the whole server: max_connections is server-wide.
PG_CONNECTIONS = """
SELECT coalesce(state, 'unknown') AS state, count(*)::int AS n
FROM pg_stat_activity
WHERE backend_type = 'client backend'
GROUP BY 1 ORDER BY 1
"""

PG_DATABASE_COUNTERS = """
SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, blks_hit, blks_read,
       pg_database_size(datname) AS size_bytes
FROM pg_stat_database WHERE datname = current_database()
"""

PG_CHECKPOINTS_17 = (
    "SELECT num_timed AS timed, num_requested AS requested FROM pg_stat_checkpointer"
)
PG_CHECKPOINTS_OLD = (
    "SELECT checkpoints_timed AS timed, checkpoints_req AS requested FROM pg_stat_bgwriter"
)

PG_TABLES = f"""
SELECT schemaname || '.' || relname AS name, pg_total_relation_size(relid) AS size_bytes,
       n_live_tup AS live_rows, seq_scan, idx_scan
FROM pg_stat_user_tables
ORDER BY pg_total_relation_size(relid) DESC, 1
LIMIT {ROW_LIMIT}
"""

PG_INDEXES = f"""
SELECT s.schemaname || '.' || s.relname AS table_name, s.indexrelname AS name, s.idx_scan,
       pg_relation_size(s.indexrelid) AS size_bytes, i.indisunique AS is_unique
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
ORDER BY s.idx_scan, pg_relation_size(s.indexrelid) DESC, 1, 2
LIMIT {ROW_LIMIT}
"""

PG_STATEMENTS_PRESENT = "SELECT to_regclass('pg_stat_statements') IS NOT NULL AS present"


def pg_statements_query(version_num: int) -> str:
    """The seed's slow-statement query with the column names of this server's version."""
    if version_num >= 130000:
        mean, total = "mean_exec_time", "total_exec_time"
    else:
        mean, total = "mean_time", "total_time"
    if version_num >= 170000:
        io_time = "shared_blk_read_time + shared_blk_write_time"
    else:
        io_time = "blk_read_time + blk_write_time"
    return f"""
SELECT queryid, query, calls, {mean} AS mean_ms, {total} AS total_ms, rows,
       {io_time} AS io_ms
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND {mean} > %s
ORDER BY {mean} DESC
LIMIT 10
"""


# Running and waiting sessions; who blocks whom comes from the lock manager (pg_blocking_pids
# reads pg_locks' wait graph); what is waited for (a relation, or a row's
# transactionid) from pg_locks itself.
PG_ACTIVITY = f"""
SELECT a.pid, a.usename AS user_name, a.datname AS database, a.application_name,
       a.state, a.wait_event_type, a.wait_event,
       extract(epoch FROM clock_timestamp() - a.query_start)::float8 AS running_s,
       left(a.query, 500) AS query,
       pg_blocking_pids(a.pid) AS blocked_by,
       (SELECT coalesce(l.relation::regclass::text, l.locktype) FROM pg_locks l
        WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) AS waiting_on
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
  AND (a.state IS DISTINCT FROM 'idle')
ORDER BY cardinality(pg_blocking_pids(a.pid)) DESC, a.query_start NULLS LAST
LIMIT {ROW_LIMIT}
"""

PG_AUDIT_PARTITIONS = """
SELECT c.relname AS name, pg_total_relation_size(c.oid) AS size_bytes,
       pg_get_expr(c.relpartbound, c.oid) AS bounds
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = to_regclass('permission_audit_logs')
ORDER BY c.relname
"""

PG_NEXT_AUDIT_PARTITION = """
SELECT format('permission_audit_logs_%s',
              to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month',
                      'YYYY_MM')) AS name
"""


# ---------------------------------------------------------------- PostgreSQL sample
@dataclass(frozen=True)
class TableStat:
    name: str
    size_bytes: int | None
    live_rows: int | None
    seq_scan: int | None
    idx_scan: int | None

    @property
    def seq_scan_ratio(self) -> float | None:
        """Share of scans that were sequential (the seed's seq_scan_ratio), in percent."""
        if self.seq_scan is None or self.idx_scan is None:
            return None
        scans = self.seq_scan + self.idx_scan
        return None if scans == 0 else 100.0 * self.seq_scan / scans


@dataclass(frozen=True)
class IndexStat:
    table_name: str
    name: str
    idx_scan: int | None
    size_bytes: int | None
    is_unique: bool

    @property
    def usage(self) -> str:
        """The seed's usage status; an unused unique index still enforces its constraint."""
        if self.idx_scan is None:
            return "absent"
        if self.idx_scan == 0:
            return "unused (keeps uniqueness)" if self.is_unique else "unused"
        return "low usage" if self.idx_scan < 100 else "good usage"


@dataclass(frozen=True)
class SlowStatement:
    queryid: int | None
    query: str | None
    calls: int
    mean_ms: float
    total_ms: float
    rows: int | None
    io_ms: float | None


@dataclass(frozen=True)
class Backend:
    pid: int
    user_name: str | None
    database: str | None
    application_name: str | None
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    running_s: float | None
    query: str | None  # None when the role may not see it
    blocked_by: tuple[int, ...]
    waiting_on: str | None

    @property
    def blocked(self) -> bool:
        return bool(self.blocked_by)


@dataclass(frozen=True)
class Partition:
    name: str
    size_bytes: int | None
    bounds: str | None


@dataclass
class PgSample:
    version_num: int
    version: str
    database: str
    own_pid: int
    sampled_at: dt.datetime
    uptime_s: float | None
    max_connections: int
    connections: dict[str, int]
    counters: dict[str, int | None]
    checkpoints: dict[str, int | None]
    full: bool
    database_size: int | None = None
    tables: list[TableStat] | None = None
    indexes: list[IndexStat] | None = None
    slow_statements: list[SlowStatement] | None = None
    statements_hint: str | None = None
    activity: list[Backend] = field(default_factory=list)
    partitions: list[Partition] | None = None
    next_partition: str | None = None
    next_partition_exists: bool | None = None
    cost_ms: float = 0.0
    # Whether running queries' text was kept (data.monitor: a platform admin's read).
    details_shown: bool = True

    @property
    def connection_total(self) -> int:
        return sum(self.connections.values())


def _rows(conn: psycopg.Connection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql, params, prepare=False).fetchall()


def sample_postgres(conn: psycopg.Connection, *, full: bool = True) -> PgSample:
    """One poll of PostgreSQL on ``conn`` (a transaction the caller commits or rolls back)."""
    started = time.perf_counter()
    server = _rows(conn, PG_SERVER)[0]
    version_num = int(server["version_num"])
    connections = {r["state"]: int(r["n"]) for r in _rows(conn, PG_CONNECTIONS)}
    counters_rows = _rows(conn, PG_DATABASE_COUNTERS)
    counters: dict[str, int | None] = dict(counters_rows[0]) if counters_rows else {}
    database_size = counters.pop("size_bytes", None)
    checkpoint_sql = PG_CHECKPOINTS_17 if version_num >= 170000 else PG_CHECKPOINTS_OLD
    checkpoints: dict[str, int | None] = dict(_rows(conn, checkpoint_sql)[0])
    activity = [
        Backend(
            pid=r["pid"], user_name=r["user_name"], database=r["database"],
            application_name=r["application_name"], state=r["state"],
            wait_event_type=r["wait_event_type"], wait_event=r["wait_event"],
            running_s=r["running_s"],
            query=None if r["query"] == HIDDEN_QUERY else r["query"],
            blocked_by=tuple(r["blocked_by"] or ()), waiting_on=r["waiting_on"],
        )
        for r in _rows(conn, PG_ACTIVITY)
    ]
    sample = PgSample(
        version_num=version_num, version=server["version"], database=server["database"],
        own_pid=server["own_pid"], sampled_at=server["sampled_at"], uptime_s=server["uptime_s"],
        max_connections=server["max_connections"], connections=connections, counters=counters,
        checkpoints=checkpoints, full=full, database_size=database_size, activity=activity,
    )
    if full:
        _sample_postgres_details(conn, sample)
    sample.cost_ms = (time.perf_counter() - started) * 1000
    return sample


def _sample_postgres_details(conn: psycopg.Connection, sample: PgSample) -> None:
    sample.tables = [TableStat(**r) for r in _rows(conn, PG_TABLES)]
    sample.indexes = [IndexStat(**r) for r in _rows(conn, PG_INDEXES)]
    sample.slow_statements, sample.statements_hint = _slow_statements(conn, sample.version_num)
    sample.partitions = [Partition(**r) for r in _rows(conn, PG_AUDIT_PARTITIONS)]
    next_name = _rows(conn, PG_NEXT_AUDIT_PARTITION)[0]["name"]
    sample.next_partition = next_name
    sample.next_partition_exists = any(p.name == next_name for p in sample.partitions)


def _slow_statements(
    conn: psycopg.Connection, version_num: int
) -> tuple[list[SlowStatement] | None, str | None]:
    if not _rows(conn, PG_STATEMENTS_PRESENT)[0]["present"]:
        return None, STATEMENTS_MISSING
    try:
        # A savepoint: the view exists but errors when the library is not preloaded, and that
        # must not abort the poll's transaction.
        with conn.transaction():
            rows = _rows(conn, pg_statements_query(version_num), (SLOW_STATEMENT_MS,))
    except psycopg.errors.ObjectNotInPrerequisiteState:
        return None, STATEMENTS_MISSING
    except psycopg.errors.InsufficientPrivilege:
        return None, "pg_stat_statements is not readable by this role (grant it pg_monitor)."
    return [
        SlowStatement(
            queryid=r["queryid"], query=None if r["query"] == HIDDEN_QUERY else r["query"],
            calls=r["calls"], mean_ms=r["mean_ms"], total_ms=r["total_ms"], rows=r["rows"],
            io_ms=r["io_ms"],
        )
        for r in rows
    ], None


@dataclass(frozen=True)
class PgRates:
    """Per-second figures between two samples; None where a counter is absent or was reset."""

    seconds: float
    commits: float | None
    rollbacks: float | None
    tuples_written: float | None
    cache_hit_ratio: float | None  # percent of block reads served from shared buffers


def _delta(new: Mapping[str, Any], old: Mapping[str, Any], key: str) -> int | None:
    a, b = new.get(key), old.get(key)
    if a is None or b is None or a < b:  # absent, or the statistics were reset
        return None
    return int(a) - int(b)


def _per_second(delta: int | None, seconds: float) -> float | None:
    return None if delta is None or seconds <= 0 else delta / seconds


def pg_rates(new: PgSample, old: PgSample | None) -> PgRates | None:
    if old is None:
        return None
    seconds = (new.sampled_at - old.sampled_at).total_seconds()
    if seconds <= 0:
        return None
    written = [_delta(new.counters, old.counters, k)
               for k in ("tup_inserted", "tup_updated", "tup_deleted")]
    hit = _delta(new.counters, old.counters, "blks_hit")
    read = _delta(new.counters, old.counters, "blks_read")
    ratio = None
    if hit is not None and read is not None and hit + read > 0:
        ratio = 100.0 * hit / (hit + read)
    return PgRates(
        seconds=seconds,
        commits=_per_second(_delta(new.counters, old.counters, "xact_commit"), seconds),
        rollbacks=_per_second(_delta(new.counters, old.counters, "xact_rollback"), seconds),
        tuples_written=None if None in written else _per_second(
            sum(w for w in written if w is not None), seconds),
        cache_hit_ratio=ratio,
    )


# ---------------------------------------------------------------- MongoDB sample
OPCOUNTER_KINDS = ("insert", "query", "update", "delete", "getmore", "command")


@dataclass(frozen=True)
class CollectionStat:
    name: str
    documents: int | None
    size_bytes: int | None
    storage_bytes: int | None
    indexes: int | None
    index_bytes: int | None


@dataclass(frozen=True)
class IndexUse:
    collection: str
    name: str
    ops: int | None
    since: dt.datetime | None

    @property
    def usage(self) -> str:
        if self.ops is None:
            return "absent"
        return "unused" if self.ops == 0 else "used"


@dataclass(frozen=True)
class Operation:
    opid: Any  # an int on mongod, "shard:number" on mongos
    op: str | None
    namespace: str | None
    running_s: float | None
    client: str | None
    description: str | None


@dataclass(frozen=True)
class ProfiledOperation:
    ts: dt.datetime | None
    op: str | None
    namespace: str | None
    millis: int | None
    summary: str | None


# serverStatus.process of the servers whose dbStats/collStats read metadata, not documents.
METADATA_SIZED = ("mongod", "mongos")


@dataclass
class MongoSample:
    sampled_at: float  # time.monotonic(): serverStatus' localTime may be absent
    version: str | None
    uptime_s: float | None
    connections_current: int | None
    connections_available: int | None
    opcounters: dict[str, int | None]
    network_in: int | None
    network_out: int | None
    network_requests: int | None
    full: bool
    database: str
    operations: list[Operation] | None = None
    absent: dict[str, str] = field(default_factory=dict)  # section -> why it is absent
    profiling_level: int | None = None
    profiling_slowms: int | None = None
    profiled: list[ProfiledOperation] | None = None
    db_stats: dict[str, int | float | None] | None = None
    collections: list[CollectionStat] | None = None
    index_usage: list[IndexUse] | None = None
    process: str | None = None
    sizes_skipped: str | None = None  # why dbStats/collStats were not read
    cost_ms: float = 0.0
    # Whether operations' descriptions and clients were kept (data.monitor: a platform admin's).
    details_shown: bool = True


def _get(document: Mapping[str, Any] | None, *path: str) -> Any:
    """document[path[0]][path[1]]…, or None where any step is missing or not a document."""
    value: Any = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _number(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _reason(exc: OperationFailure) -> str:
    message = str(exc.details.get("errmsg") if exc.details else exc) or type(exc).__name__
    return message.split(", full error:")[0]


# The commands a poll sends (the bench replays exactly these as bare driver calls).
SERVER_STATUS: dict[str, Any] = {"serverStatus": 1, "repl": 0, "metrics": 0, "locks": 0,
                                 "wiredTiger": 0, "tcmalloc": 0}
CURRENT_OP: dict[str, Any] = {"currentOp": 1, "active": True,
                              "secs_running": {"$gte": LONG_OPERATION_S}}


def sample_mongo(db: Database, *, full: bool = True, sizes: bool | None = None) -> MongoSample:
    """One poll of MongoDB; ``db`` is the execution-data database.

    ``sizes``: read dbStats and collStats on a full poll (True), never (False), or only where
    they are cheap (None: a real mongod or mongos; see the module docstring).

    Connection failures (PyMongoError other than OperationFailure) propagate: the caller turns
    them into "down". A command the server refuses makes only its own section absent."""
    started = time.perf_counter()
    admin = db.client.admin
    absent: dict[str, str] = {}
    status = admin.command(SERVER_STATUS)
    sample = MongoSample(
        sampled_at=time.monotonic(),
        version=_get(status, "version"),
        uptime_s=_number(_get(status, "uptime")),
        connections_current=_number(_get(status, "connections", "current")),
        connections_available=_number(_get(status, "connections", "available")),
        opcounters={k: _number(_get(status, "opcounters", k)) for k in OPCOUNTER_KINDS},
        network_in=_number(_get(status, "network", "bytesIn")),
        network_out=_number(_get(status, "network", "bytesOut")),
        network_requests=_number(_get(status, "network", "numRequests")),
        full=full,
        database=db.name,
        absent=absent,
        process=_get(status, "process"),
    )
    try:
        inprog = admin.command(CURRENT_OP).get("inprog") or []
        sample.operations = [_operation(op) for op in inprog
                             if (_number(op.get("secs_running")) or 0) >= LONG_OPERATION_S]
    except OperationFailure as exc:
        absent["currentOp"] = _reason(exc)
    try:
        profile = db.command("profile", -1)
        sample.profiling_level = _number(profile.get("was"))
        sample.profiling_slowms = _number(profile.get("slowms"))
        sample.profiled = [
            ProfiledOperation(
                ts=doc.get("ts"), op=doc.get("op"), namespace=doc.get("ns"),
                millis=_number(doc.get("millis")), summary=_summary(doc.get("command")),
            )
            for doc in db["system.profile"]
            .find({"millis": {"$gte": SLOW_STATEMENT_MS}}, {"ts": 1, "op": 1, "ns": 1,
                                                           "millis": 1, "command": 1})
            .sort("ts", -1)
            .limit(10)
        ]
    except OperationFailure as exc:
        absent["profiler"] = _reason(exc)
    if full:
        if sizes is None:
            process = os.path.basename(str(sample.process or "")).removesuffix(".exe")
            sizes = process in METADATA_SIZED
        if not sizes:
            sample.sizes_skipped = (
                f"this server ({sample.process or 'unknown'}) reads every document to size a "
                "collection; read sizes on request"
            )
        _sample_mongo_details(db, sample, sizes=bool(sizes))
    sample.cost_ms = (time.perf_counter() - started) * 1000
    return sample


def _sample_mongo_details(db: Database, sample: MongoSample, *, sizes: bool) -> None:
    if sizes:
        try:
            stats = db.command("dbStats")
            sample.db_stats = {k: _number(stats.get(k)) for k in (
                "collections", "objects", "dataSize", "storageSize", "indexes", "indexSize")}
        except OperationFailure as exc:
            sample.absent["dbStats"] = _reason(exc)
    collections: list[CollectionStat] = []
    usage: list[IndexUse] = []
    names = sorted(n for n in db.list_collection_names() if not n.startswith("system."))
    for name in names:
        stats: Mapping[str, Any] = {}
        if sizes:
            try:
                stats = db.command("collStats", name)
            except OperationFailure as exc:
                sample.absent["collStats"] = _reason(exc)
        collections.append(CollectionStat(
            name=name, documents=_number(stats.get("count")),
            size_bytes=_number(stats.get("size")),
            storage_bytes=_number(stats.get("storageSize")),
            indexes=_number(stats.get("nindexes")),
            index_bytes=_number(stats.get("totalIndexSize")),
        ))
        try:
            for doc in db[name].aggregate([{"$indexStats": {}}]):
                usage.append(IndexUse(
                    collection=name, name=str(doc.get("name")),
                    ops=_number(_get(doc, "accesses", "ops")),
                    since=_get(doc, "accesses", "since"),
                ))
        except OperationFailure as exc:
            sample.absent["$indexStats"] = _reason(exc)
    sample.collections = collections
    sample.index_usage = usage


def _operation(op: Mapping[str, Any]) -> Operation:
    micros = _number(op.get("microsecs_running"))
    seconds = micros / 1e6 if micros is not None else _number(op.get("secs_running"))
    return Operation(
        opid=op.get("opid"), op=op.get("op"), namespace=op.get("ns"),
        running_s=float(seconds) if seconds is not None else None,
        client=op.get("client"), description=op.get("desc"),
    )


def _summary(command: Any) -> str | None:
    if not isinstance(command, Mapping) or not command:
        return None
    first = next(iter(command))
    return f"{first} {command[first]}"[:200]


@dataclass(frozen=True)
class MongoRates:
    seconds: float
    operations: dict[str, float | None]
    network_in: float | None  # bytes per second
    network_out: float | None

    @property
    def total_operations(self) -> float | None:
        known = [v for v in self.operations.values() if v is not None]
        return sum(known) if known else None


def mongo_rates(new: MongoSample, old: MongoSample | None) -> MongoRates | None:
    if old is None:
        return None
    seconds = new.sampled_at - old.sampled_at
    if seconds <= 0:
        return None
    scalars = {"in": (new.network_in, old.network_in), "out": (new.network_out, old.network_out)}
    net = {
        k: _per_second(_delta({"v": a}, {"v": b}, "v"), seconds) for k, (a, b) in scalars.items()
    }
    return MongoRates(
        seconds=seconds,
        operations={
            k: _per_second(_delta(new.opcounters, old.opcounters, k), seconds)
            for k in OPCOUNTER_KINDS
        },
        network_in=net["in"],
        network_out=net["out"],
    )


# ---------------------------------------------------------------- formatting helpers
def human_bytes(value: int | float | None) -> str:
    if value is None:
        return "absent"
    size = float(value)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "absent"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
