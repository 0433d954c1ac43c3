"""The Backups screen: a platform admin takes, verifies and restores a backup by keyboard (the
databases really change back); an organization owner is refused and nothing is written;
snapshots of the list and of the restore confirmation at 80x24 and 160x50."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import psycopg
import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from creatia_tui.data.db import Databases
from creatia_tui.errors import PermissionDenied
from creatia_tui.ops import backup as backup_module
from creatia_tui.ops.backup import list_backups, require_backup_access
from creatia_tui.ops.restore import confirmation_phrase
from creatia_tui.screens import backups as backups_screen
from creatia_tui.screens.backups import BackupsScreen, RestoreConfirmScreen
from creatia_tui.secret_store import SecretStore
from tests.conftest import World
from tests.tui import (
    app_as,
    audit_rows,
    message_of,
    press,
    run_async,
    run_from_palette,
    settle,
    snapshot_before,
)

PASSPHRASE = "화면 passphrase 42"
SNAPSHOT_FOLDER = Path("/tmp/creatia-tui-test-backups-snapshot")
FROZEN_NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def passphrase(dbs: Databases) -> str:
    SecretStore(dbs.settings.locations.secrets_file).set("backup-passphrase", PASSPHRASE)
    return PASSPHRASE


async def open_backups(pilot: Pilot[Any]) -> BackupsScreen:
    """Through the command palette, by keyboard (the screen has no digit)."""
    await settle(pilot)
    await run_from_palette(pilot, "Go to Backups")
    screen = pilot.app.screen
    assert isinstance(screen, BackupsScreen)
    return screen


def organizations(pg_dsn: str) -> list[str]:
    with psycopg.connect(pg_dsn) as conn:
        return [r[0] for r in conn.execute("SELECT subdomain FROM organizations ORDER BY 1")]


@run_async
async def test_a_platform_admin_backs_up_verifies_and_restores(
    dbs: Databases, world: World, pg_dsn: str, passphrase: str, raw_mongo: Any
) -> None:
    folder = dbs.settings.locations.data_dir / "backups"
    before = organizations(pg_dsn)
    # Through an unmonitored client: these test-only reads and writes skip the shard key.
    tasks = raw_mongo[dbs.settings.mongo_db].tasks
    tasks.insert_one(
        {"_id": "before", "organization_id": world.lab, "task_id": "T-1", "title": "전"},
        bypass_document_validation=True)
    app = app_as(dbs, "root", world.lab)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await open_backups(pilot)
        assert message_of(app) == "0 backups, newest first"

        # x right after b: the job stops at its next check and leaves nothing behind.
        await pilot.press("b", "x")
        await settle(pilot)
        assert "cancelled; nothing partial was kept" in message_of(app)
        assert list(folder.iterdir()) == []

        await pilot.press("b")
        await settle(pilot)
        [made] = list_backups(folder)
        assert message_of(app).startswith(f"Wrote {made.name} (")
        assert screen.query_one(DataTable).row_count == 1
        assert not screen.query_one("#backup-job").has_class("-running")
        created = [r for r in audit_rows(pg_dsn) if r["action"] == "backup.created"]
        assert [r["changes"]["after"]["file"] for r in created] == [made.name]

        # Changes after the backup, which the restore must undo.
        with psycopg.connect(pg_dsn) as conn:
            conn.execute("INSERT INTO organizations (name, subdomain) VALUES ('나중', 'later')")
        tasks.insert_one(
            {"_id": "after", "organization_id": world.lab, "task_id": "T-2", "title": "후"},
            bypass_document_validation=True)

        await pilot.press("v")
        await settle(pilot)
        assert "all match the manifest" in message_of(app)

        # A wrong confirmation restores nothing.
        await pilot.press("R")
        await settle(pilot)
        assert isinstance(app.screen, RestoreConfirmScreen)
        await pilot.press(*"yes", "enter")
        await settle(pilot)
        assert "do not match" in message_of(app)
        assert "later" in organizations(pg_dsn)

        await pilot.press("R")
        await settle(pilot)
        phrase = confirmation_phrase(dbs.settings)
        app.screen.query_one(Input).value = phrase  # typing 50 characters adds nothing
        await pilot.press("enter")
        await settle(pilot)
        assert message_of(app).startswith(f"Restored {made.name} into ")
        assert "all match the manifest" in message_of(app)
    assert organizations(pg_dsn) == before
    assert sorted(d["_id"] for d in tasks.find({}, {"_id": 1})) == ["before"]
    # backup.created was written after the dump's snapshot, so the restore took it away too.
    assert [r["action"] for r in audit_rows(pg_dsn) if r["action"].startswith("backup.")] == [
        "backup.restored"]


@run_async
async def test_an_organization_owner_is_refused_and_nothing_is_written(
    dbs: Databases, world: World, pg_dsn: str, passphrase: str
) -> None:
    folder = dbs.settings.locations.data_dir / "backups"
    app = app_as(dbs, "minjun", world.lab)  # owner of lab, holds backups.*, not a platform admin
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        refusal = "Only a platform admin may open Backups."
        assert app.may_open(app.destination("backups")) == refusal  # so not in the palette
        app.show("backups")
        await settle(pilot)
        assert not isinstance(app.screen, BackupsScreen)
        # Had it been opened anyway (an older session, say), it offers nothing either.
        screen = BackupsScreen()
        await app.push_screen(screen)
        await settle(pilot)
        assert "only a platform admin" in message_of(app)
        assert screen.check_action("backup", ()) is False
        await pilot.press("b", "v", "R")
        await settle(pilot)
        assert isinstance(app.screen, BackupsScreen)
    assert not folder.exists()
    assert audit_rows(pg_dsn) == []
    with psycopg.connect(pg_dsn) as conn, pytest.raises(PermissionDenied, match="platform admin"):
        require_backup_access(conn, world.minjun, "backups.create")
    with psycopg.connect(pg_dsn) as conn:
        require_backup_access(conn, world.root, "backups.create")


# ---------------------------------------------------------------- snapshots
def _synthetic_backup(folder: Path, stamp: str, tasks: int, tables: int) -> None:
    """A real encrypted archive holding only a fixed manifest: the same bytes (so the same size)
    every run, unlike a real dump."""
    manifest = {
        "format": backup_module.FORMAT,
        "created_at": stamp,
        "postgres": {"server_version": "18.1", "database": "creatia", "pg_dump": "18.1",
                     "tables": {f"public.t{i}": i * 10 for i in range(tables)}},
        "mongo": {"server_version": "7.0.0", "database": "creatia_logs", "tool": "raw",
                  "collections": {"tasks": {"count": tasks, "digest": "0" * 64, "indexes": 3},
                                  "sprints": {"count": 4, "digest": "0" * 64, "indexes": 1}}},
        "parts": {},
    }
    data = json.dumps(manifest, sort_keys=True).encode()
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz, tarfile.open(
        fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT
    ) as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    name = folder / f"creatia-backup-{stamp}.tar.gz.gpg"
    with backup_module.passphrase_pipe(PASSPHRASE) as fd:
        subprocess.run(
            backup_module.gpg_command("gpg", fd, "--symmetric", "--cipher-algo", "AES256",
                                      "--compress-algo", "none", "--output", str(name)),
            input=raw.getvalue(), pass_fds=(fd,), check=True, capture_output=True,
        )


@pytest.fixture
def snapshot_backups(
    dbs: Databases, passphrase: str, monkeypatch: pytest.MonkeyPatch
) -> Databases:
    import shutil

    shutil.rmtree(SNAPSHOT_FOLDER, ignore_errors=True)
    SNAPSHOT_FOLDER.mkdir(parents=True)
    _synthetic_backup(SNAPSHOT_FOLDER, "20261126T030000Z", 1_000_000, 14)
    _synthetic_backup(SNAPSHOT_FOLDER, "20261125T030000Z", 998_765, 14)
    (SNAPSHOT_FOLDER / "creatia-backup-20261124T030000Z.tar.gz.gpg").write_bytes(b"not gpg")
    config = dbs.settings.locations.config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[backup]\ndir = "{SNAPSHOT_FOLDER}"\nretention_days = 30\n')
    monkeypatch.setattr(backups_screen, "utcnow", lambda: FROZEN_NOW)
    yield dbs
    shutil.rmtree(SNAPSHOT_FOLDER, ignore_errors=True)


async def _palette_to_backups(pilot: Pilot[Any]) -> None:
    await open_backups(pilot)


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_snapshot_backups(
    snapshot_backups: Databases, world: World, snap_compare: Any, size: tuple[int, int]
) -> None:
    app = app_as(snapshot_backups, "root", world.lab)
    assert snap_compare(app, terminal_size=size, run_before=snapshot_before(_palette_to_backups))


@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=["80x24", "160x50"])
def test_snapshot_restore_confirmation(
    snapshot_backups: Databases, world: World, snap_compare: Any, size: tuple[int, int]
) -> None:
    """Pushed with fixed database names (the fixtures' are random); the pilot test above opens it
    with R and proves what it does."""

    async def confirm(pilot: Pilot[Any]) -> None:
        pilot.app.push_screen(RestoreConfirmScreen(
            "creatia-backup-20261125T030000Z.tar.gz.gpg", "creatia", "creatia_logs",
            "creatia,creatia_logs"))

    app = app_as(snapshot_backups, "root", world.lab)
    steps = snapshot_before(_palette_to_backups, press("down"), confirm, press(*"creatia"))
    assert snap_compare(app, terminal_size=size, run_before=steps)
