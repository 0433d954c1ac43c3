"""Connections to the real servers, and what a person sees when they fail."""

from __future__ import annotations

import pytest

from creatia_tui.config import Locations, Settings
from creatia_tui.data.db import Databases, make_mongo_client, pg_conninfo_for
from creatia_tui.data.overview import organization_overview
from creatia_tui.errors import ConfigurationError, DatabaseUnavailable
from creatia_tui.ops.local_servers import free_port
from tests.shard_key_monitor import ShardKeyMonitor


def _settings(home, pg: str | None, mongo: str | None) -> Settings:
    return Settings(pg_dsn=pg, mongo_uri=mongo,
                    locations=Locations.from_env({"CREATIA_HOME": str(home)}))


def test_both_databases_answer(dbs: Databases) -> None:
    dbs.check()
    with dbs.pg() as conn:
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert dbs.mongo.name == dbs.settings.mongo_db


def test_mongo_datetimes_are_timezone_aware(dbs: Databases) -> None:
    import datetime as dt

    at = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    dbs.mongo.user_snapshots.insert_one({"user_id": "u1", "synced_at": at})
    doc = dbs.mongo.user_snapshots.find_one({"user_id": "u1"})
    assert doc is not None and doc["synced_at"] == at and doc["synced_at"].tzinfo is not None


def test_a_malformed_dsn_is_one_clear_sentence() -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL DSN is not valid") as excinfo:
        pg_conninfo_for("host=db password=hunter22 = = nonsense")
    assert "hunter22" not in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_a_malformed_uri_is_one_clear_sentence() -> None:
    with pytest.raises(ConfigurationError, match="MongoDB URI is not valid"):
        make_mongo_client("mongo://nowhere")


def test_an_unreachable_postgres_names_the_target_without_the_password(home) -> None:
    port = free_port()
    dsn = f"postgresql://alice:hunter22@127.0.0.1:{port}/creatia"
    dbs = Databases(_settings(home, dsn, "mongodb://127.0.0.1:1"))
    with pytest.raises(DatabaseUnavailable) as excinfo:
        dbs.check_pg()
    message = str(excinfo.value)
    assert f"127.0.0.1:{port}/creatia" in message
    assert "hunter22" not in message
    assert "\n" not in message


def test_an_unreachable_mongo_is_one_sentence(home) -> None:
    port = free_port()
    dbs = Databases(_settings(home, "postgresql://x@127.0.0.1:1/x",
                              f"mongodb://bob:hunter22@127.0.0.1:{port}/"))
    dbs.mongo_options = {"serverSelectionTimeoutMS": 300}
    with pytest.raises(DatabaseUnavailable) as excinfo:
        dbs.check_mongo()
    message = str(excinfo.value)
    assert f"127.0.0.1:{port}" in message and "hunter22" not in message
    assert "\n" not in message and "Topology" not in message
    dbs.close()


def test_missing_settings_say_how_to_give_them(home) -> None:
    with pytest.raises(ConfigurationError, match="CREATIA_PG_DSN"):
        Databases.from_settings(_settings(home, None, "mongodb://x"))
    with pytest.raises(ConfigurationError, match="CREATIA_MONGO_URI"):
        Databases.from_settings(_settings(home, "postgresql://x/y", None))


def test_the_password_comes_from_the_secret_store_not_the_dsn(pg_dsn: str, home) -> None:
    from creatia_tui.secret_store import SecretStore

    locations = Locations.from_env({"CREATIA_HOME": str(home)})
    SecretStore(locations.secrets_file).set("pg-password", "only-in-the-store")
    settings = Settings(pg_dsn=pg_dsn, mongo_uri="mongodb://127.0.0.1:1", locations=locations)
    dbs = Databases.from_settings(settings)
    assert dbs.pg_password == "only-in-the-store"
    assert "only-in-the-store" not in settings.pg_dsn
    # trust auth on the embedded server ignores the password; the connection still works
    dbs.check_pg()
    dbs.close()


def test_the_overview_reads_both_databases(dbs: Databases) -> None:
    with dbs.pg() as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, subdomain) VALUES ('크리에이티아 랩', 'lab') "
            "RETURNING id::text AS id"
        ).fetchone()["id"]
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    dbs.mongo.tasks.insert_many([
        {"organization_id": org, "task_id": f"TASK-{i}", "title": "제목", "status": status,
         "position": i, "created_at": now, "updated_at": now}
        for i, status in enumerate(["todo", "todo", "done"])
    ])
    [row] = organization_overview(dbs)
    assert row.name == "크리에이티아 랩"
    assert row.task_counts == {"todo": 2, "done": 1}
    assert row.open_tasks == 2 and row.total_tasks == 3


def test_the_shard_key_monitor_catches_a_query_without_organization_id(dbs: Databases) -> None:
    """The session-wide guard is only worth something if it can fail."""
    import pymongo

    monitor = ShardKeyMonitor()
    client: pymongo.MongoClient = pymongo.MongoClient(
        dbs.settings.mongo_uri, event_listeners=[monitor]
    )
    try:
        db = client[dbs.settings.mongo_db]
        db.tasks.find_one({"organization_id": "o1", "status": "todo"})
        db.tasks.count_documents({"organization_id": "o1"})
        assert monitor.violations == []
        db.tasks.find_one({"assignee_id": "u1"})
        db.activity_logs.update_many({"user_id": "u1"}, {"$set": {"x": 1}})
        db.sprints.aggregate([{"$group": {"_id": "$status"}}])
        assert len(monitor.violations) == 3
    finally:
        client.close()


def test_a_pooled_connection_to_a_dead_server_says_why(home) -> None:
    port = free_port()
    dbs = Databases(_settings(home, f"postgresql://postgres@127.0.0.1:{port}/x", "mongodb://x"))
    try:
        with pytest.raises(DatabaseUnavailable) as excinfo, dbs.pg():
            pass
    finally:
        dbs.close()
    message = str(excinfo.value)
    assert f"127.0.0.1:{port}/x is unavailable" in message
    assert "couldn't get a connection" not in message
