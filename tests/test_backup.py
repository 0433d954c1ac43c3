"""Backups against the real servers, the real pg_dump/pg_restore and the real gpg.

The module's own small databases (tests/backup_world.py) are backed up once; the tests read,
verify and restore that archive.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import tarfile
import threading
import uuid
from pathlib import Path
from typing import Any

import bson
import psycopg
import pymongo
import pytest
from bson import json_util

from creatia_tui.ops import backup as backup_module
from creatia_tui.ops.backup import (
    BackupCancelled,
    BackupError,
    Progress,
    apply_retention,
    last_good_backup_age,
    list_backups,
    run_scheduled_backup,
    take_backup,
)
from creatia_tui.ops.restore import (
    confirmation_phrase,
    read_manifest,
    restore_backup,
    verify_backup,
)
from creatia_tui.secret_store import SecretStore
from tests.backup_world import (
    PASSPHRASE,
    SMALL_SEED,
    Source,
    _settings,
    source_fixture,  # noqa: F401  (the module's `source` fixture)
)
from tests.conftest import ServerInfo, scratch_database


def _decrypt(
    archive: Path, into: Path, passphrase: str = PASSPHRASE
) -> subprocess.CompletedProcess:
    """Plain `gpg -d`, as a person would run it (the passphrase on stdin)."""
    tarball = into / "plain.tar.gz"
    result = subprocess.run(
        ["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
         "--no-symkey-cache", "-o", str(tarball), "-d", str(archive)],
        input=passphrase.encode(), capture_output=True, check=False,
    )
    if result.returncode == 0:
        with tarfile.open(tarball) as tar:
            tar.extractall(into, filter="data")
    return result


# ---------------------------------------------------------------- the archive
def test_the_archive_opens_with_plain_gpg_and_holds_what_the_manifest_says(
    source: Source, tmp_path: Path
) -> None:
    archive = source.result.path
    assert archive.parent == source.folder
    assert archive.name.startswith("creatia-backup-") and archive.name.endswith(".tar.gz.gpg")
    assert [b.path for b in list_backups(source.folder)] == [archive]
    assert not [p for p in source.folder.iterdir() if p.name.startswith(".")]  # no temp names
    assert PASSPHRASE.encode() not in archive.read_bytes()

    assert _decrypt(archive, tmp_path).returncode == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == source.result.manifest
    for name, part in manifest["parts"].items():
        data = (tmp_path / name).read_bytes()
        assert len(data) == part["size"]
        assert hashlib.sha256(data).hexdigest() == part["sha256"]

    db = source.raw[source.settings.mongo_db]
    mongo = manifest["mongo"]
    assert mongo["database"] == source.settings.mongo_db
    assert set(mongo["collections"]) == set(db.list_collection_names())
    for name, info in mongo["collections"].items():
        with (tmp_path / "mongo" / mongo["database"] / f"{name}.bson").open("rb") as fh:
            documents = list(bson.decode_file_iter(fh))
        assert len(documents) == info["count"] == db[name].count_documents({})
        assert {d["_id"] for d in documents} == set(db[name].distinct("_id"))
        metadata = json_util.loads(  # mongodump's canonical extended JSON
            (tmp_path / "mongo" / mongo["database"] / f"{name}.metadata.json").read_text())
        assert metadata["collectionName"] == name
        assert {i["name"] for i in metadata["indexes"]} == {
            i["name"] for i in db[name].list_indexes()}
        assert metadata["options"].get("validator") == db[name].options().get("validator")
    assert mongo["collections"]["tasks"]["count"] == SMALL_SEED.tasks + 2  # the orphans too

    pg = manifest["postgres"]
    assert pg["server_version"].startswith("18")
    assert "(PostgreSQL) 18" in pg["pg_dump"]
    assert pg["tables"]["public.organizations"] == SMALL_SEED.orgs
    assert pg["tables"]["public.users"] >= SMALL_SEED.users
    dump = tmp_path / "postgres" / f"{pg['database']}.dump"
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    assert manifest["created_at"].endswith("Z")
    assert manifest["mongo"]["server_version"]


def test_progress_reports_collections_and_bytes(source: Source) -> None:
    phases = {p.phase for p in source.progress}
    assert {"postgres", "mongo", "packing"} <= phases
    mongo = [p for p in source.progress if p.phase == "mongo"]
    total = len(source.result.manifest["mongo"]["collections"])
    assert mongo[-1].collections_done == mongo[-1].collections_total == total
    packing = [p for p in source.progress if p.phase == "packing"]
    assert packing[-1].bytes_done == packing[-1].bytes_total == sum(
        p["size"] for p in source.result.manifest["parts"].values())


def test_read_manifest_decrypts_only_the_manifest(source: Source) -> None:
    assert read_manifest(source.result.path, PASSPHRASE) == source.result.manifest


# ---------------------------------------------------------------- verify and restore
def test_verify_restores_into_scratch_databases_and_drops_them(source: Source) -> None:
    report = verify_backup(source.settings, source.result.path)
    assert report.ok, report.summary()
    assert any(c.what == "collection tasks" for c in report.checks)
    assert any(c.what == "table public.organizations" for c in report.checks)
    assert report.mongo_database not in source.raw.list_database_names()
    with psycopg.connect(source.settings.pg_dsn or "") as conn:
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s",
                            (report.postgres_database,)).fetchone() == (0,)


def _pg_digest(dsn: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        tables = [r[0] for r in conn.execute(backup_module.TABLES_SQL).fetchall()]
        return {
            t: conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                f"FROM {t} x").fetchone()
            for t in tables
        }


def _mongo_digest(db: pymongo.database.Database) -> dict[str, list[bytes]]:
    return {
        name: sorted(bson.encode(d) for d in db[name].find({}))
        for name in db.list_collection_names()
    }


def test_restore_round_trip_gives_back_the_original_data(
    source: Source, servers: ServerInfo, pg_template: str
) -> None:
    """Restore into another pair of databases: every row and document equals the original."""
    original_pg = _pg_digest(source.settings.pg_dsn or "")
    original_mongo = _mongo_digest(source.raw[source.settings.mongo_db])
    indexes = {n: sorted(i["name"] for i in source.raw[source.settings.mongo_db][n].list_indexes())
               for n in original_mongo}
    target_mongo = f"creatia_test_rt_{uuid.uuid4().hex[:10]}"
    with scratch_database(servers) as empty_dsn:
        target = _settings(empty_dsn, servers.mongo_uri, target_mongo, source.home)
        # Something to be replaced: a collection of the backup with other documents in it.
        source.raw[target_mongo].tasks.insert_one({"_id": "stale", "title": "replaced"})
        try:
            with pytest.raises(BackupError, match="confirm by naming them exactly"):
                restore_backup(target, source.result.path, confirm="yes")
            assert list(source.raw[target_mongo].tasks.find()) == [
                {"_id": "stale", "title": "replaced"}]

            report = restore_backup(target, source.result.path,
                                    confirm=confirmation_phrase(target))
            assert report.ok, report.summary()
            assert _pg_digest(empty_dsn) == original_pg
            # The snapshot sync's digest is not trusted after a restore (ops/sync.py).
            with psycopg.connect(empty_dsn) as conn:
                assert conn.execute("SELECT count(*) FROM user_snapshot_digest_epoch"
                                    ).fetchone() == (0,)
            restored = source.raw[target_mongo]
            assert _mongo_digest(restored) == original_mongo
            assert {n: sorted(i["name"] for i in restored[n].list_indexes())
                    for n in original_mongo} == indexes
        finally:
            source.raw.drop_database(target_mongo)


# ---------------------------------------------------------------- errors
def test_a_wrong_passphrase_is_one_sentence(source: Source, tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="wrong passphrase") as excinfo:
        read_manifest(source.result.path, "not the passphrase")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(BackupError, match="wrong passphrase"):
        verify_backup(source.settings, source.result.path, passphrase="nope",
                      workdir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the extraction folder is gone


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_archive_is_refused(source: Source, tmp_path: Path, damage: str) -> None:
    data = bytearray(source.result.path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) * 2 // 3]
    else:
        data[len(data) // 2] ^= 0xFF
    broken = tmp_path / "broken" / source.result.path.name
    broken.parent.mkdir()
    broken.write_bytes(bytes(data))
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(BackupError, match=r"is corrupted|truncated") as exc:
        verify_backup(source.settings, broken, workdir=work)
    assert "\n" not in str(exc.value)
    assert source.result.path.name in str(exc.value)
    assert list(work.iterdir()) == []


def test_retention_deletes_old_backups_but_never_the_last_good_one(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.timezone.utc)

    def make(days_ago: float) -> Path:
        stamp = (now - dt.timedelta(days=days_ago)).strftime(backup_module.TIME_FORMAT)
        path = tmp_path / f"creatia-backup-{stamp}.tar.gz.gpg"
        path.write_bytes(b"x")
        return path

    old = [make(40), make(31)]
    only = apply_retention(tmp_path, 30, now)
    assert only == [old[0]] and old[1].exists()  # the newest (31 days old) stays: the last one
    recent = make(2)
    kept = make(29)
    other = tmp_path / "notes.txt"
    other.write_text("not a backup")
    assert apply_retention(tmp_path, 30, now) == [old[1]]
    assert {p.name for p in tmp_path.iterdir()} == {recent.name, kept.name, "notes.txt"}


def test_schedule_skips_while_the_last_backup_is_young(source: Source) -> None:
    outcome = run_scheduled_backup(source.settings)
    assert not outcome.ran and "skipped" in outcome.reason
    age = last_good_backup_age(source.settings)
    assert age is not None and age < dt.timedelta(hours=1)
    later = source.result.path.stat()  # nothing new was written
    assert [b.path for b in list_backups(source.folder)] == [source.result.path]
    assert later.st_size == source.result.size


def test_cancel_leaves_nothing_behind(source: Source, tmp_path: Path) -> None:
    cancel = threading.Event()

    def progress(p: Progress) -> None:
        if p.phase == "mongo" and p.collections_done >= 1:
            cancel.set()

    with pytest.raises(BackupCancelled, match="cancelled"):
        take_backup(source.settings, folder=tmp_path, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_schedule_backs_up_when_the_last_backup_is_older_than_the_interval(
    source: Source, tmp_path: Path
) -> None:
    stale = tmp_path / "creatia-backup-20200101T000000Z.tar.gz.gpg"
    stale.write_bytes(b"from long ago")
    age = last_good_backup_age(source.settings, folder=tmp_path)
    assert age is not None and age > backup_module.HEALTH_WARN_AFTER
    outcome = run_scheduled_backup(source.settings, folder=tmp_path)
    assert outcome.ran and outcome.result is not None
    # The new backup succeeded, so the 2020 one went (older than 30 days, not the newest).
    assert [b.path for b in list_backups(tmp_path)] == [outcome.result.path]
    age = last_good_backup_age(source.settings, folder=tmp_path)
    assert age is not None and age < dt.timedelta(minutes=10)


def test_no_secret_reaches_a_child_process_argv_or_environment(
    source: Source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every child (pg_dump, gpg) is recorded as started: the passphrase and the database
    password are in none of their argv or environments."""
    store = SecretStore(source.settings.locations.secrets_file)
    store.set("pg-password", "pg-secret-한글-42")  # the test server trusts; libpq still sends it
    started: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    class Recording(real_popen):  # type: ignore[misc, valid-type]
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            started.append(([str(a) for a in args], dict(kwargs.get("env") or os.environ)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(backup_module.subprocess, "Popen", Recording)
    try:
        take_backup(source.settings, folder=tmp_path)
    finally:
        store.delete("pg-password")
    tools = {Path(argv[0]).name for argv, _ in started}
    assert {"pg_dump", "gpg"} <= tools
    for argv, env in started:
        text = " ".join(argv) + " " + " ".join(env.values())
        assert PASSPHRASE not in text and "pg-secret-한글-42" not in text
    [pg_env] = [e for a, e in started if "--format=custom" in a]
    assert not Path(pg_env["PGPASSFILE"]).exists()  # removed once pg_dump ended
