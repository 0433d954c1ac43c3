"""PostgreSQL migrations: numbered SQL files, applied in order, each in its own transaction.

The runner holds a session advisory lock while it works, so two `migrate` runs (two operators, a
worker starting beside the TUI) never apply the same file twice. A file that changed after it was
applied is refused: migrations are history, a fix is a new file.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psycopg
from psycopg.rows import tuple_row

from creatia_tui.errors import UserError, one_line

log = logging.getLogger(__name__)

# "creatia" as a bigint: one constant every creatia-tui process agrees on.
MIGRATION_LOCK_KEY = 0x637265617469610A
MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


def schema_dir() -> Path:
    """schema/ beside the source tree (editable install) or inside the wheel."""
    packaged = resources.files("creatia_tui") / "schema"
    if packaged.is_dir():
        return Path(str(packaged))
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "schema"
        if (candidate / "postgres").is_dir():
            return candidate
    raise UserError("The schema folder is missing from this installation.")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(folder: Path | None = None) -> list[Migration]:
    folder = folder or schema_dir() / "postgres"
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise UserError(f"Migration file name {path.name} is not NNNN_name.sql.")
        found.append(Migration(match["version"], match["name"], path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise UserError("Two migration files share a version number.")
    return found


@dataclass
class MigrationReport:
    applied: list[str]
    already: list[str]
    partitions: list[str]


def migrate_postgres(conn: psycopg.Connection, folder: Path | None = None) -> MigrationReport:
    """Apply pending migrations on an autocommit connection; idempotent."""
    migrations = load_migrations(folder)
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
    try:
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
              version    VARCHAR(16) PRIMARY KEY,
              name       TEXT NOT NULL,
              checksum   CHAR(64) NOT NULL,
              applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """
        )
        done = {
            row[0]: row[1]
            for row in conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        }
        applied, already = [], []
        for migration in migrations:
            label = f"{migration.version}_{migration.name}"
            if migration.version in done:
                if done[migration.version].strip() != migration.checksum:
                    raise UserError(
                        f"Migration {label} changed after it was applied; add a new migration "
                        "instead of editing an applied one."
                    )
                already.append(label)
                continue
            try:
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
            except psycopg.Error as exc:
                raise UserError(f"Migration {label} failed: {one_line(str(exc))}") from exc
            log.info("applied migration %s", label)
            applied.append(label)
        partitions = ensure_audit_partitions(conn)
        return MigrationReport(applied, already, partitions)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


def ensure_audit_partitions(conn: psycopg.Connection, months_ahead: int = 2) -> list[str]:
    """This month's and the next months' audit-log partitions (UTC); safe to call often."""
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT to_regprocedure('ensure_audit_log_partitions(integer)') IS NOT NULL")
        if not cur.fetchone()[0]:  # type: ignore[index]
            return []  # a migrations folder without the audit log (the runner's own tests)
        rows = cur.execute(
            "SELECT ensure_audit_log_partitions(%s::int)", (months_ahead,)
        ).fetchall()
    if not conn.autocommit:
        conn.commit()
    return [row[0] for row in rows]
