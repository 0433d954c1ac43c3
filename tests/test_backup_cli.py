"""`creatia-tui backup`, `backups list` and `restore`, and every error a backup can meet: each is
one line on stderr, a non-zero exit, and no partial file in the backup folder."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest

from creatia_tui.cli import run
from creatia_tui.ops.backup import list_backups
from creatia_tui.secret_store import SecretStore
from tests.backup_world import (
    PASSPHRASE,
    Source,
    source_fixture,  # noqa: F401  (the module's `source` fixture)
)


def cli(source: Source, *argv: str, stdin: str = "", mongo_db: str | None = None
        ) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    settings = source.settings
    flags = ["--pg-dsn", settings.pg_dsn or "", "--mongo-uri", settings.mongo_uri or ""]
    previous = os.environ.get("CREATIA_MONGO_DB")
    os.environ["CREATIA_MONGO_DB"] = mongo_db or settings.mongo_db
    try:
        code = run([*argv, *flags], stdin=io.StringIO(stdin), stdout=out, stderr=err)
    finally:
        if previous is None:
            os.environ.pop("CREATIA_MONGO_DB", None)
        else:
            os.environ["CREATIA_MONGO_DB"] = previous
    return code, out.getvalue(), err.getvalue()


def one_line_error(code: int, out: str, err: str) -> str:
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("creatia-tui: "), err
    assert "Traceback" not in err
    return err


def nothing_in(folder: Path) -> bool:
    return not folder.exists() or list(folder.iterdir()) == []


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def test_backup_list_verify_and_restore_confirmation(source: Source, dest: Path) -> None:
    code, out, err = cli(source, "backup", "--dest", str(dest))
    assert (code, err) == (0, ""), err
    [made] = list_backups(dest)
    assert out.startswith(f"Wrote {made.path} (") and "collections." in out

    code, out, err = cli(source, "backups", "list", "--dest", str(dest))
    assert (code, err) == (0, "")
    assert made.name in out and "PostgreSQL 18" in out and "42 tasks" in out

    code, out, err = cli(source, "restore", str(made.path), "--verify")
    assert (code, err) == (0, ""), err
    assert "all match the manifest" in out

    # Restoring without naming the targets is refused before anything is read.
    err = one_line_error(*cli(source, "restore", str(made.path)))
    assert "--confirm creatia_test_" in err and source.settings.mongo_db in err


def test_a_wrong_passphrase(source: Source) -> None:
    store = SecretStore(source.settings.locations.secrets_file)
    store.set("backup-passphrase", "not the passphrase")
    try:
        err = one_line_error(*cli(source, "restore", str(source.result.path), "--verify"))
        assert "wrong passphrase" in err
        code, out, _ = cli(source, "backups", "list")
        assert code == 0 and "manifest unreadable" in out and "wrong passphrase" in out
    finally:
        store.set("backup-passphrase", PASSPHRASE)


def test_a_truncated_archive(source: Source, tmp_path: Path) -> None:
    broken = tmp_path / source.result.path.name
    broken.write_bytes(source.result.path.read_bytes()[:4096])
    err = one_line_error(*cli(source, "restore", str(broken), "--verify"))
    assert "is corrupted or truncated" in err


def test_missing_gpg(source: Source, dest: Path, tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    err = one_line_error(*cli(source, "backup", "--dest", str(dest)))
    assert "gpg was not found on PATH" in err
    assert nothing_in(dest)


def test_missing_or_too_old_pg_dump(source: Source, dest: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREATIA_PG_BIN", str(tmp_path / "no-such-folder"))
    err = one_line_error(*cli(source, "backup", "--dest", str(dest)))
    assert "pg_dump was not found in " in err and "CREATIA_PG_BIN" in err
    assert nothing_in(dest)
    debian = Path("/usr/lib/postgresql/15/bin")
    if not (debian / "pg_dump").exists():
        pytest.skip("Debian's pg_dump 15 is not installed here")
    monkeypatch.setenv("CREATIA_PG_BIN", str(debian))
    err = one_line_error(*cli(source, "backup", "--dest", str(dest)))
    assert "pg_dump 15 (/usr/lib/postgresql/15/bin/pg_dump) is older than the PostgreSQL 18 " \
           "server and cannot dump it" in err
    assert nothing_in(dest)


@contextlib.contextmanager
def tiny_tmpfs(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(folder)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 1 MiB tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize(("blob_kib", "count"), [(1024, 3), (640, 1)],
                         ids=["while-dumping", "while-encrypting"])
def test_a_full_disk(source: Source, tmp_path: Path, blob_kib: int, count: int) -> None:
    """A real 1 MiB tmpfs as the backup folder and incompressible documents: 3 MiB fill it
    while the parts are written, 640 KiB fit as parts and fill it under gpg's output."""
    blobs = f"creatia_test_blob_{uuid.uuid4().hex[:8]}"
    source.raw[blobs].blobs.insert_many(
        [{"data": os.urandom(blob_kib << 10)} for _ in range(count)])
    try:
        with tiny_tmpfs(tmp_path / "full") as full:
            err = one_line_error(*cli(source, "backup", "--dest", str(full), mongo_db=blobs))
            assert "is full (No space left on device); nothing was kept" in err
            assert nothing_in(full)
    finally:
        source.raw.drop_database(blobs)


def test_the_server_going_down_mid_backup(source: Source, dest: Path) -> None:
    """MongoDB closes the backup's connection from its third collection on (mongod's
    failCommand fail point, only for the backup's appName), while pg_dump already runs."""
    admin: pymongo.MongoClient = pymongo.MongoClient(source.settings.mongo_uri)
    admin.admin.command(
        "configureFailPoint", "failCommand", mode={"skip": 2},
        data={"failCommands": ["find"], "closeConnection": True,
              "appName": "creatia-tui-backup"},
    )
    try:
        err = one_line_error(*cli(source, "backup", "--dest", str(dest)))
    finally:
        admin.admin.command("configureFailPoint", "failCommand", mode="off")
        admin.close()
    assert "MongoDB at 127.0.0.1:" in err and "is unavailable" in err
    assert nothing_in(dest) or [p.name for p in dest.iterdir()] == []
    assert shutil.which("gpg")  # the test changed no tool
