"""Fixtures: real servers for the whole session, a clean database for every test.

The embedded PostgreSQL and SecantusDB start once per session on free ports in a temp dir,
unless CREATIA_TEST_PG_DSN and CREATIA_TEST_MONGO_URI point at servers to use instead (the
PostgreSQL role needs CREATEDB). Each test gets its own PostgreSQL database, cloned from a migrated
template, and its own MongoDB database with collections, validators and indexes applied.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymongo
import pytest
from psycopg import conninfo

from creatia_tui.config import Locations, Settings
from creatia_tui.data.db import Databases
from creatia_tui.data.migrations import migrate_postgres
from creatia_tui.data.mongo_schema import migrate_mongo
from tests.shard_key_monitor import ShardKeyMonitor

TEMPLATE_DB = "creatia_test_template"


@dataclass
class ServerInfo:
    pg_dsn: str  # maintenance database (CREATE/DROP DATABASE)
    mongo_uri: str


def _with_dbname(dsn: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return conninfo.make_conninfo("", **params)


@pytest.fixture(scope="session")
def servers() -> Iterator[ServerInfo]:
    pg = os.environ.get("CREATIA_TEST_PG_DSN")
    mongo = os.environ.get("CREATIA_TEST_MONGO_URI")
    if pg and mongo:
        yield ServerInfo(pg, mongo)
        return
    from creatia_tui.ops.local_servers import LocalServers

    # Not under tmp_path_factory: pytest deletes all but its last three basetemp folders when a
    # session starts, which pulls the data dir from under a concurrent session's servers.
    root = Path(tempfile.mkdtemp(prefix="creatia-test-servers-"))
    local = LocalServers(root / "local")
    state = local.start()
    try:
        yield ServerInfo(_with_dbname(state.pg_dsn, "postgres"), state.mongo_uri)
    finally:
        local.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(servers: ServerInfo) -> str:
    """A migrated database that every test's database is cloned from."""
    with psycopg.connect(servers.pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    with psycopg.connect(_with_dbname(servers.pg_dsn, TEMPLATE_DB), autocommit=True) as conn:
        migrate_postgres(conn)
    return TEMPLATE_DB


@contextlib.contextmanager
def scratch_database(servers: ServerInfo, template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (a copy of `template` when given), dropped afterwards."""
    name = f"creatia_test_{uuid.uuid4().hex[:12]}"
    clause = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(servers.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{clause}')
    try:
        yield _with_dbname(servers.pg_dsn, name)
    finally:
        with psycopg.connect(servers.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(servers: ServerInfo, pg_template: str) -> Iterator[str]:
    with scratch_database(servers, pg_template) as dsn:
        yield dsn


@pytest.fixture
def empty_pg_dsn(servers: ServerInfo) -> Iterator[str]:
    """A database with no migrations applied, for migration tests."""
    with scratch_database(servers) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def shard_key_monitor() -> Iterator[ShardKeyMonitor]:
    """Watches every command the project's code sends through the `dbs` fixture."""
    monitor = ShardKeyMonitor()
    yield monitor


@pytest.fixture(scope="session", autouse=True)
def _shard_key_guard(shard_key_monitor: ShardKeyMonitor) -> Iterator[None]:
    yield
    if shard_key_monitor.violations:
        pytest.fail(
            "queries on sharded collections without organization_id:\n"
            + "\n".join(shard_key_monitor.violations[:20]),
            pytrace=False,
        )


@pytest.fixture
def raw_mongo(servers: ServerInfo) -> Iterator[pymongo.MongoClient]:
    """An unmonitored client, for tests that poke at the server as an administrator would."""
    client: pymongo.MongoClient = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    yield client
    client.close()


@pytest.fixture
def mongo_db_name(servers: ServerInfo, raw_mongo: pymongo.MongoClient) -> Iterator[str]:
    name = f"creatia_test_{uuid.uuid4().hex[:12]}"
    migrate_mongo(raw_mongo[name])
    yield name
    raw_mongo.drop_database(name)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """CREATIA_HOME in a temp dir, with no keyring backend (as on an SSH ops host)."""
    root = tmp_path / "home"
    monkeypatch.setenv("CREATIA_HOME", str(root))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    for name in ("CREATIA_PG_DSN", "CREATIA_MONGO_URI", "CREATIA_MONGO_DB"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def settings(pg_dsn: str, servers: ServerInfo, mongo_db_name: str, home: Path) -> Settings:
    return Settings(
        pg_dsn=pg_dsn,
        mongo_uri=servers.mongo_uri,
        mongo_db=mongo_db_name,
        locations=Locations.from_env({"CREATIA_HOME": str(home)}),
    )


@pytest.fixture
def dbs(settings: Settings, shard_key_monitor: ShardKeyMonitor) -> Iterator[Databases]:
    databases = Databases(settings, mongo_options={"event_listeners": [shard_key_monitor]})
    yield databases
    databases.close()


# ---------------------------------------------------------------- a small tenant world
WORLD_PASSWORD = "correct horse 9"


@functools.cache
def _world_password_hash() -> str:
    # One argon2 hash for every world user: hashing per user would cost a second per test.
    from creatia_tui.data.passwords import hash_password

    return hash_password(WORLD_PASSWORD)


WORLD_EMAILS = {
    "root": "root@creatia.local",
    "minjun": "minjun@example.com",
    "seoyeon": "seoyeon@example.com",
    "jiho": "jiho@example.com",
    "yuna": "yuna@example.com",
    "bob": "bob@example.com",
    "gone": "gone@example.com",
}


@dataclass
class World:
    """Two organizations with Korean names, one deactivated, and a user for every role.

    Every user's password is WORLD_PASSWORD.
    """

    lab: str  # 크리에이티아 연구소 (creatia-lab): owner minjun, admin seoyeon, member jiho,
    #            viewer yuna
    acme: str  # Acme Robotics (acme): owner bob, member minjun
    dormant: str  # 휴면 조직 (dormant), deactivated: owner bob
    root: str  # platform admin, no membership
    minjun: str
    seoyeon: str
    jiho: str
    yuna: str
    bob: str
    gone: str  # a deactivated user, member of lab
    memberships: dict[tuple[str, str], str]  # (user id, org id) -> membership id


@pytest.fixture
def world(pg_dsn: str) -> World:
    people = {
        "root": ("관리자", "admin", True),
        "minjun": ("김민준", "user", True),
        "seoyeon": ("이서연", "user", True),
        "jiho": ("박지호", "user", True),
        "yuna": ("최유나", "user", True),
        "bob": ("Bob Stone", "user", True),
        "gone": ("떠난 사람", "user", False),
    }
    ids: dict[str, str] = {}
    memberships: dict[tuple[str, str], str] = {}
    with psycopg.connect(pg_dsn) as conn:
        for key, (name, role, active) in people.items():
            row = conn.execute(
                "INSERT INTO users (email, encrypted_password, name, role, active) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING id::text",
                (WORLD_EMAILS[key], _world_password_hash(), name, role, active),
            ).fetchone()
            assert row is not None
            ids[key] = row[0]
        orgs = {
            "lab": ("크리에이티아 연구소", "creatia-lab", "enterprise", True),
            "acme": ("Acme Robotics", "acme", "pro", True),
            "dormant": ("휴면 조직", "dormant", "free", False),
        }
        for key, (name, subdomain, plan, active) in orgs.items():
            row = conn.execute(
                "INSERT INTO organizations (name, subdomain, plan, active) "
                "VALUES (%s, %s, %s, %s) RETURNING id::text",
                (name, subdomain, plan, active),
            ).fetchone()
            assert row is not None
            ids[key] = row[0]
        for user, org, role in (
            ("minjun", "lab", "owner"),
            ("seoyeon", "lab", "admin"),
            ("jiho", "lab", "member"),
            ("yuna", "lab", "viewer"),
            ("gone", "lab", "member"),
            ("bob", "acme", "owner"),
            ("minjun", "acme", "member"),
            ("bob", "dormant", "owner"),
        ):
            row = conn.execute(
                "INSERT INTO organization_memberships (user_id, organization_id, role, joined_at) "
                "VALUES (%s, %s, %s, '2026-03-02T09:00:00Z') RETURNING id::text",
                (ids[user], ids[org], role),
            ).fetchone()
            assert row is not None
            memberships[(ids[user], ids[org])] = row[0]
    return World(memberships=memberships, **ids)
