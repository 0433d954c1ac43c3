"""Reading, verifying and restoring the backups :mod:`creatia_tui.ops.backup` writes.

- :func:`read_manifest` decrypts only the archive's first member (the manifest) and stops gpg.
- :func:`verify_backup` restores into scratch databases and compares what arrived with the
  manifest: the SHA-256 of every part, the row count of every table, and the count and digest of
  every collection's documents. The scratch PostgreSQL database is created and dropped; the
  scratch MongoDB database gets a fresh, unique name (``<database>_verify_<random>``) and is
  dropped afterwards. (SecantusDB drops a big database slowly, row by row, so the name is never
  reused: a slow drop cannot collide with the next verify.)
- :func:`restore_backup` replaces the target databases after an explicit confirmation naming
  them (:func:`confirmation_phrase`). Every part is extracted and checked against its SHA-256
  first, so a damaged archive is refused before anything is touched. PostgreSQL is restored with
  the embedded ``pg_restore`` (Debian's 15 cannot read an 18 dump) in a single transaction;
  MongoDB collection by collection (drop, create with its options, insert, build its indexes),
  with ``mongorestore`` semantics but through pymongo, so it cannot be all-or-nothing.

Extracted parts live in a private (0700) temporary folder that is removed afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from bson import json_util
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from psycopg import conninfo as pg_conninfo
from pymongo.errors import PyMongoError

from creatia_tui.config import Settings
from creatia_tui.data.db import make_mongo_client, mongo_unavailable, pg_unavailable
from creatia_tui.errors import one_line, redact
from creatia_tui.ops.backup import (
    CHUNK,
    LONG_JOB_MONGO_OPTIONS,
    BackupError,
    DocumentTally,
    Progress,
    ProgressCallback,
    _connect,
    _no_progress,
    _secret_store_password,
    _without_password,
    backup_passphrase,
    check_cancel,
    find_gpg,
    find_pg_tool,
    gpg_command,
    gpg_failure,
    iter_bson_documents,
    organization_ids,
    passphrase_pipe,
    pg_child_env,
    pg_server_major,
    pg_table_counts,
    raw_batches,
)
from creatia_tui.ops.sync import forget_digest

log = logging.getLogger(__name__)

VERIFY_CANCELLED = "The verify was cancelled; its scratch databases were dropped."
RESTORE_CANCELLED = "The restore was cancelled part way; run it again to finish it."
INSERT_BATCH_DOCS = 1000
INSERT_BATCH_BYTES = 8 << 20


# ---------------------------------------------------------------- decrypting
class _Decryption:
    """gpg -d of an archive, read as a tar.gz stream."""

    def __init__(self, archive: Path, passphrase: str) -> None:
        self.archive = archive
        gpg = find_gpg()
        # Closed in close(): the object outlives this method.
        self.stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115
        with passphrase_pipe(passphrase) as fd:
            self.process = subprocess.Popen(
                gpg_command(gpg, fd, "--decrypt", str(archive)),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr,
                pass_fds=(fd,),
            )
        assert self.process.stdout is not None
        self.stdout = self.process.stdout

    def gpg_error(self) -> BackupError | None:
        """gpg's failure once it has ended (its stdout drained), or None when it succeeded."""
        with contextlib.suppress(OSError, ValueError):
            while self.stdout.read(CHUNK):
                pass
        code = self.process.wait()
        if code == 0:
            return None
        self.stderr.seek(0)
        return gpg_failure(self.stderr.read().decode(errors="replace"), self.archive,
                           decrypting=True)

    def damaged(self, exc: BaseException) -> BackupError:
        """The error to show for a tar/gzip failure: gpg's own when it failed (a wrong
        passphrase yields no data at all), else the archive is damaged."""
        return self.gpg_error() or BackupError(
            f"The backup {self.archive.name} is corrupted or truncated "
            f"({one_line(str(exc) or type(exc).__name__)})"
        )

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(OSError, ValueError):
            self.stdout.close()
        self.process.wait()
        self.stderr.close()


TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError, json.JSONDecodeError,
              UnicodeDecodeError, KeyError)


@contextlib.contextmanager
def _opened(archive: Path, passphrase: str) -> Iterator[tuple[_Decryption, tarfile.TarFile]]:
    archive = Path(archive)
    if not archive.is_file():
        raise BackupError(f"There is no backup file {archive}.")
    decryption = _Decryption(archive, passphrase)
    try:
        try:
            # Stream mode reads from gpg's pipe; the pipe is closed by decryption.close().
            tar = tarfile.open(fileobj=decryption.stdout, mode="r|gz")  # noqa: SIM115
        except TAR_ERRORS as exc:
            raise decryption.damaged(exc) from None
        yield decryption, tar
    finally:
        decryption.close()


def _first_manifest(decryption: _Decryption, tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = tar.next()
        if member is None or member.name != "manifest.json":
            raise BackupError(f"The backup {decryption.archive.name} has no manifest first; it "
                              "is not a creatia-tui backup.")
        handle = tar.extractfile(member)
        assert handle is not None
        manifest = json.loads(handle.read().decode("utf-8"))
    except TAR_ERRORS as exc:
        raise decryption.damaged(exc) from None
    if not isinstance(manifest, dict) or "parts" not in manifest:
        raise BackupError(f"The manifest of {decryption.archive.name} is not one this version "
                          "understands.")
    return manifest


def read_manifest(archive: Path, passphrase: str) -> dict[str, Any]:
    """The manifest alone: gpg is stopped once it has been read."""
    with _opened(archive, passphrase) as (decryption, tar):
        return _first_manifest(decryption, tar)


def extract_archive(
    archive: Path,
    passphrase: str,
    into: Path,
    *,
    progress: ProgressCallback = _no_progress,
    cancel: threading.Event | None = None,
    cancelled: str = VERIFY_CANCELLED,
) -> dict[str, Any]:
    """Every part into `into`, each checked against its size and SHA-256 in the manifest, and
    gpg's integrity check at the end; returns the manifest."""
    with _opened(archive, passphrase) as (decryption, tar):
        manifest = _first_manifest(decryption, tar)
        expected: dict[str, dict[str, Any]] = manifest["parts"]
        total = sum(int(p["size"]) for p in expected.values())
        done = 0
        seen: set[str] = set()
        try:
            # tar.next(), not iteration: iterating a stream starts again with the manifest.
            while (member := tar.next()) is not None:
                check_cancel(cancel, cancelled)
                # Only names the manifest lists, so a crafted archive cannot write elsewhere.
                if member.name not in expected or not member.isfile() or member.name in seen:
                    raise BackupError(f"The backup {archive.name} holds {member.name!r}, which "
                                      "its manifest does not list; it is not trustworthy.")
                target = into / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                handle = tar.extractfile(member)
                assert handle is not None
                digest = hashlib.sha256()
                size = 0
                with target.open("wb") as out:
                    while chunk := handle.read(CHUNK):
                        check_cancel(cancel, cancelled)
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                        done += len(chunk)
                        progress(Progress("reading", bytes_done=done, bytes_total=total,
                                          detail=member.name))
                want = expected[member.name]
                if size != int(want["size"]) or digest.hexdigest() != want["sha256"]:
                    raise decryption.gpg_error() or BackupError(
                        f"The part {member.name} of {archive.name} does not match its SHA-256 "
                        "in the manifest: the backup is corrupted."
                    )
                seen.add(member.name)
        except TAR_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno == 28:
                raise BackupError(f"The disk holding {into} is full (No space left on device) "
                                  "while reading the backup.") from None
            raise decryption.damaged(exc) from None
        error = decryption.gpg_error()
        if error:
            raise error
        missing = sorted(set(expected) - seen)
        if missing:
            raise BackupError(f"The backup {archive.name} is truncated: {len(missing)} part(s) "
                              f"missing, the first {missing[0]}.")
    return manifest


# ---------------------------------------------------------------- checks
@dataclass(frozen=True)
class Check:
    what: str  # "part postgres/creatia.dump", "table public.users", "collection tasks"
    expected: str
    found: str

    @property
    def ok(self) -> bool:
        return self.expected == self.found


@dataclass
class RestoreReport:
    archive: Path
    manifest: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    postgres_database: str = ""
    mongo_database: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        parts = sum(1 for c in self.checks if c.what.startswith("part "))
        tables = sum(1 for c in self.checks if c.what.startswith("table "))
        collections = sum(1 for c in self.checks if c.what.startswith("collection "))
        head = (f"{parts} parts, {tables} tables and {collections} collections checked in "
                f"{self.seconds:.1f} s")
        if self.ok:
            return f"{head}: all match the manifest."
        first = self.failed[0]
        return (f"{head}: {len(self.failed)} differ from the manifest, the first {first.what} "
                f"(expected {first.expected}, found {first.found}).")


def _part_checks(manifest: dict[str, Any]) -> list[Check]:
    # extract_archive refused any mismatch; what it accepted is recorded as checked.
    return [Check(f"part {name}", info["sha256"], info["sha256"])
            for name, info in sorted(manifest["parts"].items())]


def _table_checks(expected: dict[str, int], found: dict[str, int]) -> list[Check]:
    return [Check(f"table {name}", str(expected.get(name, "absent")),
                  str(found.get(name, "absent")))
            for name in sorted(set(expected) | set(found))]


def _collection_checks(
    expected: dict[str, dict[str, Any]], found: dict[str, DocumentTally]
) -> list[Check]:
    checks = []
    for name in sorted(set(expected) | set(found)):
        want = expected.get(name)
        have = found.get(name)
        checks.append(Check(
            f"collection {name}",
            f"{want['count']} documents, digest {want['digest'][:16]}" if want else "absent",
            f"{have.count} documents, digest {have.digest[:16]}" if have else "absent",
        ))
    return checks


# ---------------------------------------------------------------- PostgreSQL
def _with_dbname(dsn: str, dbname: str) -> str:
    params = pg_conninfo.conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return pg_conninfo.make_conninfo("", **params)


def _pg_dump_major(manifest: dict[str, Any]) -> int:
    text = str(manifest.get("postgres", {}).get("pg_dump", ""))
    digits = text.split(")")[-1].strip().split(".")[0].split()[0] if ")" in text else ""
    return int(digits) if digits.isdigit() else 0


def _run_child(
    command: list[str], env: dict[str, str], what: str, cancel: threading.Event | None,
    cancelled: str,
) -> None:
    """Run a PostgreSQL client tool, killed on cancel; its first error line when it fails."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=err, env=env)
        try:
            while True:
                if cancel is not None and cancel.is_set():
                    process.kill()
                    process.wait()
                    check_cancel(cancel, cancelled)
                try:
                    code = process.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if code != 0:
            err.seek(0)
            lines = [line for line in err.read().decode(errors="replace").splitlines()
                     if line.strip()]
            reason = next((line for line in lines if "error" in line.lower()),
                          lines[-1] if lines else f"exit {code}")
            if "No space left" in reason:
                raise BackupError(f"{what} failed: the disk is full (No space left on device).")
            raise BackupError(f"{what} failed: {one_line(redact(reason))}")


def _run_pg_restore(
    dsn: str, password: str | None, dump: Path, server_major: int, manifest: dict[str, Any],
    cancel: threading.Event | None, cancelled: str,
) -> None:
    """pg_restore into an empty database (the verify's scratch one)."""
    tool = find_pg_tool("pg_restore", max(server_major, _pg_dump_major(manifest)))
    info, secret = _without_password(dsn, password)
    with pg_child_env(secret) as env:
        _run_child(
            [str(tool.path), "--no-owner", "--no-privileges", "--exit-on-error",
             "--no-password", f"--dbname={info}", str(dump)],
            env, "pg_restore", cancel, cancelled,
        )


# Run first, in the same transaction as the restored script: every user schema goes, and public
# comes back empty with the rights a new database gives it. (pg_restore --clean cannot replace a
# database holding partitioned tables: it drops a partition's inherited constraint and fails.)
REPLACE_PREAMBLE = """\
DO $$
DECLARE s text;
BEGIN
  FOR s IN SELECT nspname FROM pg_namespace
           WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' LOOP
    EXECUTE format('DROP SCHEMA %I CASCADE', s);
  END LOOP;
END $$;
CREATE SCHEMA public;
DO $$
BEGIN
  IF current_setting('server_version_num')::int >= 150000 THEN
    ALTER SCHEMA public OWNER TO pg_database_owner;
    GRANT USAGE ON SCHEMA public TO PUBLIC;
  ELSE
    GRANT ALL ON SCHEMA public TO PUBLIC;
  END IF;
END $$;
"""


def _replace_pg_database(
    dsn: str, password: str | None, dump: Path, server_major: int, manifest: dict[str, Any],
    workdir: Path, cancel: threading.Event | None, cancelled: str,
) -> None:
    """Replace the target database's contents with the dump in ONE transaction: pg_restore
    writes the dump as SQL, psql runs the preamble and that SQL with --single-transaction, so
    a failure anywhere leaves the database as it was."""
    needed = max(server_major, _pg_dump_major(manifest))
    pg_restore = find_pg_tool("pg_restore", needed)
    psql = find_pg_tool("psql", needed)
    script = workdir / "restore.sql"
    preamble = workdir / "preamble.sql"
    preamble.write_text(REPLACE_PREAMBLE, encoding="utf-8")
    info, secret = _without_password(dsn, password)
    with pg_child_env(secret) as env:
        _run_child(
            [str(pg_restore.path), "--no-owner", "--no-privileges", f"--file={script}",
             str(dump)],
            env, "pg_restore", cancel, cancelled,
        )
        _run_child(
            [str(psql.path), "--no-psqlrc", "--quiet", "--no-password", "--single-transaction",
             "--set=ON_ERROR_STOP=1", f"--file={preamble}", f"--file={script}",
             f"--dbname={info}"],
            env, "psql (the restore, rolled back)", cancel, cancelled,
        )


def _counts_in(dsn: str, password: str | None) -> tuple[dict[str, int], list[str]]:
    """Every table's rows, and the organization ids (to read MongoDB by them)."""
    with _connect(dsn, password) as conn:
        try:
            return pg_table_counts(conn), organization_ids(conn)
        except psycopg.Error as exc:
            raise pg_unavailable(exc, dsn, password) from None


# ---------------------------------------------------------------- MongoDB
def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = json_util.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def restore_collection(
    db: Any,
    name: str,
    metadata: dict[str, Any],
    bson_path: Path | None,
    *,
    cancel: threading.Event | None = None,
    cancelled: str = VERIFY_CANCELLED,
    advanced: Callable[[int], None] | None = None,
) -> None:
    """One collection as mongorestore --drop does it: drop, create with the dumped options,
    insert the documents as they are (no validation: they passed it once), build the indexes."""
    db.drop_collection(name)
    options = dict(metadata.get("options") or {})
    db.command(SON([("create", name), *options.items()]))
    if metadata.get("type") == "view":
        return
    collection = db[name]
    if bson_path is not None and bson_path.exists():
        with bson_path.open("rb") as fh:
            batch: list[RawBSONDocument] = []
            size = 0
            for raw in iter_bson_documents(fh):
                batch.append(RawBSONDocument(bytes(raw)))
                size += len(raw)
                if len(batch) >= INSERT_BATCH_DOCS or size >= INSERT_BATCH_BYTES:
                    check_cancel(cancel, cancelled)
                    collection.insert_many(batch, ordered=False, bypass_document_validation=True)
                    if advanced:
                        advanced(size)
                    batch, size = [], 0
            if batch:
                collection.insert_many(batch, ordered=False, bypass_document_validation=True)
                if advanced:
                    advanced(size)
    indexes = []
    for index in metadata.get("indexes") or []:
        if index.get("name") == "_id_":
            continue
        spec = SON((k, v) for k, v in index.items() if k not in ("v", "ns"))
        indexes.append(spec)
    if indexes:
        check_cancel(cancel, cancelled)
        db.command(SON([("createIndexes", name), ("indexes", indexes)]))


def _tally_collection(db: Any, name: str, organizations: list[str]) -> DocumentTally:
    """Read back as the backup reads (by organization where an index leads with it)."""
    tally = DocumentTally()
    for batch in raw_batches(db[name], list(db[name].list_indexes()), organizations):
        tally.add_batch(batch)
    return tally


def _restore_mongo(
    db: Any, folder: Path, manifest: dict[str, Any], progress: ProgressCallback,
    cancel: threading.Event | None, cancelled: str, organizations: list[str],
) -> dict[str, DocumentTally]:
    """Every collection of the manifest into `db`; returns what is there afterwards."""
    collections: dict[str, dict[str, Any]] = manifest["mongo"]["collections"]
    total = len(collections)
    done_bytes = 0

    def advanced(n: int) -> None:
        nonlocal done_bytes
        done_bytes += n

    found: dict[str, DocumentTally] = {}
    for index, name in enumerate(sorted(collections)):
        check_cancel(cancel, cancelled)
        progress(Progress("restoring", bytes_done=done_bytes, collections_done=index,
                          collections_total=total, detail=name))
        metadata = _read_metadata(folder / f"{name}.metadata.json")
        restore_collection(db, name, metadata, folder / f"{name}.bson", cancel=cancel,
                           cancelled=cancelled, advanced=advanced)
        found[name] = _tally_collection(db, name, organizations)
        progress(Progress("restoring", bytes_done=done_bytes, collections_done=index + 1,
                          collections_total=total, detail=name))
    return found


# ---------------------------------------------------------------- verify and restore
def _workdir(base: Path | None) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="creatia-restore-", dir=base))
    os.chmod(folder, 0o700)
    return folder


def _require_targets(settings: Settings) -> tuple[str, str]:
    if not settings.pg_dsn or not settings.mongo_uri:
        raise BackupError("Both databases must be configured (--pg-dsn and --mongo-uri) to "
                          "verify or restore a backup.")
    return settings.pg_dsn, settings.mongo_uri


def verify_backup(
    settings: Settings,
    archive: Path | str,
    *,
    passphrase: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    workdir: Path | None = None,
) -> RestoreReport:
    """Restore into scratch databases on the configured servers and compare with the manifest."""
    started = time.perf_counter()
    archive = Path(archive)
    dsn, uri = _require_targets(settings)
    secret = passphrase or backup_passphrase(settings)
    report_progress = progress or _no_progress
    pg_password = _secret_store_password(settings, "pg-password")
    mongo_password = _secret_store_password(settings, "mongo-password")
    folder = _workdir(workdir)
    try:
        manifest = extract_archive(archive, secret, folder, progress=report_progress,
                                   cancel=cancel)
        report = RestoreReport(archive, manifest, _part_checks(manifest))
        suffix = uuid.uuid4().hex[:12]
        report.postgres_database = f"creatia_verify_{suffix}"
        report.mongo_database = f"{settings.mongo_db[:40]}_verify_{suffix}"

        # PostgreSQL: a scratch database, created and dropped.
        report_progress(Progress("restoring", detail=f"PostgreSQL {report.postgres_database}"))
        dump = folder / next(n for n in manifest["parts"] if n.startswith("postgres/"))
        with _connect(dsn, pg_password) as admin:
            major, _ = pg_server_major(admin)
            try:
                admin.execute(f'CREATE DATABASE "{report.postgres_database}"')
            except psycopg.Error as exc:
                raise BackupError(f"The scratch database for the verify cannot be created "
                                  f"({one_line(str(exc))}); the role needs CREATEDB.") from None
            try:
                scratch = _with_dbname(dsn, report.postgres_database)
                _run_pg_restore(scratch, pg_password, dump, major, manifest, cancel,
                                VERIFY_CANCELLED)
                found_tables, organizations = _counts_in(scratch, pg_password)
            finally:
                with contextlib.suppress(psycopg.Error):
                    admin.execute(
                        f'DROP DATABASE IF EXISTS "{report.postgres_database}" WITH (FORCE)'
                    )
        report.checks += _table_checks(manifest["postgres"]["tables"], found_tables)

        # MongoDB: a fresh, uniquely named scratch database, dropped afterwards.
        client = make_mongo_client(uri, mongo_password, appname="creatia-tui-restore",
                                   **LONG_JOB_MONGO_OPTIONS)
        try:
            scratch_db = client[report.mongo_database]
            try:
                found = _restore_mongo(scratch_db, folder / "mongo" / manifest["mongo"]["database"],
                                       manifest, report_progress, cancel, VERIFY_CANCELLED,
                                       organizations)
            finally:
                with contextlib.suppress(PyMongoError):
                    client.drop_database(report.mongo_database)
        except PyMongoError as exc:
            raise mongo_unavailable(exc, uri, mongo_password) from None
        finally:
            client.close()
        report.checks += _collection_checks(manifest["mongo"]["collections"], found)
        report.seconds = time.perf_counter() - started
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def restore_targets(settings: Settings) -> tuple[str, str]:
    """(PostgreSQL database, MongoDB database) a restore would replace."""
    dsn, _ = _require_targets(settings)
    params = pg_conninfo.conninfo_to_dict(dsn)
    return str(params.get("dbname") or params.get("user") or "postgres"), settings.mongo_db


def confirmation_phrase(settings: Settings) -> str:
    """What a person must type (or pass to --confirm) to restore: both databases' names."""
    pg_name, mongo_name = restore_targets(settings)
    return f"{pg_name},{mongo_name}"


def restore_backup(
    settings: Settings,
    archive: Path | str,
    *,
    confirm: str,
    passphrase: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    workdir: Path | None = None,
) -> RestoreReport:
    """Replace the configured databases with the backup's, after `confirm` named them; the
    result is then counted and compared with the manifest."""
    started = time.perf_counter()
    archive = Path(archive)
    dsn, uri = _require_targets(settings)
    pg_name, mongo_name = restore_targets(settings)
    wanted = confirmation_phrase(settings)
    if confirm.strip() != wanted:
        raise BackupError(
            f"Restoring replaces the PostgreSQL database {pg_name} and the MongoDB database "
            f"{mongo_name}; confirm by naming them exactly: {wanted}"
        )
    secret = passphrase or backup_passphrase(settings)
    report_progress = progress or _no_progress
    pg_password = _secret_store_password(settings, "pg-password")
    mongo_password = _secret_store_password(settings, "mongo-password")
    folder = _workdir(workdir)
    try:
        # Every part is checked before anything is touched.
        manifest = extract_archive(archive, secret, folder, progress=report_progress,
                                   cancel=cancel, cancelled=RESTORE_CANCELLED)
        report = RestoreReport(archive, manifest, _part_checks(manifest),
                               postgres_database=pg_name, mongo_database=mongo_name)
        report_progress(Progress("restoring", detail=f"PostgreSQL {pg_name}"))
        dump = folder / next(n for n in manifest["parts"] if n.startswith("postgres/"))
        with _connect(dsn, pg_password) as conn:
            major, _ = pg_server_major(conn)
        _replace_pg_database(dsn, pg_password, dump, major, manifest, folder, cancel,
                             RESTORE_CANCELLED)
        found_tables, organizations = _counts_in(dsn, pg_password)
        report.checks += _table_checks(manifest["postgres"]["tables"], found_tables)
        client = make_mongo_client(uri, mongo_password, appname="creatia-tui-restore",
                                   **LONG_JOB_MONGO_OPTIONS)
        try:
            found = _restore_mongo(client[mongo_name],
                                   folder / "mongo" / manifest["mongo"]["database"], manifest,
                                   report_progress, cancel, RESTORE_CANCELLED, organizations)
        except PyMongoError as exc:
            raise mongo_unavailable(exc, uri, mongo_password) from None
        finally:
            client.close()
        report.checks += _collection_checks(manifest["mongo"]["collections"], found)
        with _connect(dsn, pg_password) as conn:
            forget_digest(conn)
        report.seconds = time.perf_counter() - started
        log.info("restored %s into %s and %s", archive, pg_name, mongo_name)
        return report
    finally:
        shutil.rmtree(folder, ignore_errors=True)


__all__ = [
    "Check",
    "RestoreReport",
    "confirmation_phrase",
    "extract_archive",
    "read_manifest",
    "restore_backup",
    "restore_collection",
    "restore_targets",
    "verify_backup",
]
