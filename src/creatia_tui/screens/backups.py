"""Backups: the encrypted backups of both databases, taken, verified and restored from here.

The list shows each backup in the backup folder, newest first, with its size, its age and what
its manifest says (tables, collections, tasks); the line under it shows the highlighted backup's
manifest in words. Reading a manifest decrypts only the archive's first member; manifests are
remembered by file, size and time, so a refresh does not decrypt them again.

``b`` takes a backup, ``v`` verifies the highlighted one in scratch databases, ``R`` restores it
into the databases this app is connected to after a confirmation screen that names them and asks
for their names to be typed. Each runs as a thread worker with two progress bars (bytes and
collections) and can be cancelled with ``x``; a cancelled backup leaves nothing behind.

A backup holds every organization's data, so the services refuse anyone but a platform admin
(:func:`creatia_tui.ops.backup.require_backup_access`), whatever the screen shows. A backup or
restore taken here writes a ``backup.created`` / ``backup.restored`` audit row in the
organization the admin acts in (after a restore, into the restored database).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widget import Widget
from textual.widgets import DataTable, Input, ProgressBar, Static

from creatia_tui.errors import UserError, one_line
from creatia_tui.ops.backup import (
    BackupFile,
    BackupResult,
    BackupSettings,
    Progress,
    audit_backup,
    backup_passphrase,
    format_age,
    format_size,
    list_backups,
    require_backup_access,
    take_backup,
)
from creatia_tui.ops.restore import (
    RestoreReport,
    confirmation_phrase,
    read_manifest,
    restore_backup,
    restore_targets,
    verify_backup,
)
from creatia_tui.screens.base import AppScreen
from creatia_tui.screens.dialogs import DIALOG_CSS
from creatia_tui.widgets.tables import highlighted_key
from creatia_tui.widgets.text import fit, plural

PROGRESS_EVERY = 0.1  # seconds between progress repaints; a batch may report far more often


def utcnow() -> dt.datetime:
    """The clock ages are measured against (a test freezes it for its snapshots)."""
    return dt.datetime.now(dt.timezone.utc)


# ---------------------------------------------------------------- reading the folder
@dataclass(frozen=True)
class Listed:
    backup: BackupFile
    manifest: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class Listing:
    folder: Path
    retention_days: int
    rows: list[Listed]


# (path, size, mtime) -> manifest: a manifest never changes while its file does not.
_MANIFESTS: dict[tuple[str, int, float], dict[str, Any]] = {}


def read_listing(settings: Any) -> Listing:
    config = BackupSettings.from_settings(settings)
    backups = list_backups(config.folder)
    try:
        passphrase: str | None = backup_passphrase(settings)
        missing = ""
    except UserError as exc:
        passphrase, missing = None, one_line(str(exc))
    rows = []
    for backup in backups:
        key = (str(backup.path), backup.size, backup.path.stat().st_mtime)
        manifest = _MANIFESTS.get(key)
        error = None
        if manifest is None:
            if passphrase is None:
                error = missing
            else:
                try:
                    manifest = read_manifest(backup.path, passphrase)
                    _MANIFESTS[key] = manifest
                except UserError as exc:
                    error = one_line(str(exc))
        rows.append(Listed(backup, manifest, error))
    return Listing(config.folder, config.retention_days, rows)


def _rows(manifest: dict[str, Any]) -> int:
    return sum(int(n) for n in manifest["postgres"]["tables"].values())


def describe(listed: Listed) -> str:
    if listed.manifest is None:
        return f"{listed.backup.name}: manifest unreadable: {listed.error}"
    m = listed.manifest
    pg, mongo = m["postgres"], m["mongo"]
    documents = sum(int(c["count"]) for c in mongo["collections"].values())
    return (
        f"PostgreSQL {pg['server_version']} {pg['database']}: "
        f"{plural(len(pg['tables']), 'table')}, {_rows(m):,} rows · MongoDB "
        f"{mongo['server_version']} {mongo['database']}: "
        f"{plural(len(mongo['collections']), 'collection')}, {documents:,} documents · "
        f"{plural(len(m['parts']), 'part')} with SHA-256 · {listed.backup.name}"
    )


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    optional: bool = False


COLUMNS = (
    Column("when", "Taken (UTC)", 16),
    Column("size", "Size", 9),
    Column("age", "Age", 6),
    Column("tables", "Tables", 6, optional=True),
    Column("collections", "Collections", 11, optional=True),
    Column("tasks", "Tasks", 9),
    Column("manifest", "Manifest", 10),
)


def cells_for(listed: Listed, now: dt.datetime) -> dict[str, Text]:
    backup, manifest = listed.backup, listed.manifest
    tasks = tables = collections = "-"
    if manifest is not None:
        counts = manifest["mongo"]["collections"]
        tasks = f"{int(counts.get('tasks', {}).get('count', 0)):,}"
        tables = str(len(manifest["postgres"]["tables"]))
        collections = str(len(counts))
    return {
        "when": Text(backup.created_at.strftime("%Y-%m-%d %H:%M")),
        "size": Text(format_size(backup.size), justify="right"),
        "age": Text(format_age(backup.age(now)), justify="right"),
        "tables": Text(tables, justify="right"),
        "collections": Text(collections, justify="right"),
        "tasks": Text(tasks, justify="right"),
        "manifest": Text("readable" if manifest is not None else "unreadable"),
    }


def columns_that_fit(width: int, padding: int) -> list[Column]:
    if sum(c.width + 2 * padding for c in COLUMNS) + 2 <= width:
        return list(COLUMNS)
    return [c for c in COLUMNS if not c.optional]


# ---------------------------------------------------------------- the confirmation
class RestoreConfirmScreen(ModalScreen[str | None]):
    """Names the databases a restore replaces and asks for their names to be typed."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]
    DEFAULT_CSS = DIALOG_CSS.format(name="RestoreConfirmScreen") + """
    RestoreConfirmScreen > Vertical {
        width: 72;
    }
    RestoreConfirmScreen .dialog-warning {
        color: $warning;
        text-style: bold;
    }
    RestoreConfirmScreen Input {
        margin-top: 1;
    }
    """

    def __init__(self, backup: str, pg_database: str, mongo_database: str, phrase: str) -> None:
        super().__init__()
        self.backup = backup
        self.pg_database = pg_database
        self.mongo_database = mongo_database
        self.phrase = phrase

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(f"Restore {self.backup}?", classes="dialog-title", markup=False)
            yield Static(
                f"WARNING: this replaces the PostgreSQL database {self.pg_database} and the "
                f"MongoDB database {self.mongo_database} with the backup's data. Changes made "
                "since the backup are lost.",
                classes="dialog-warning", markup=False,
            )
            yield Static(f"Type {self.phrase} and press enter to restore:", markup=False)
            yield Input(id="restore-phrase", placeholder="both names, a comma between",
                        compact=True)
            yield Static("escape cancels; nothing is changed", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one("#restore-phrase", Input).focus()

    @on(Input.Submitted, "#restore-phrase")
    def submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)


# ---------------------------------------------------------------- the screen
class BackupsScreen(AppScreen):
    """Backups of both databases: list, take, verify, restore."""

    READ_PERMISSION = "backups.read"
    # Backups are of the whole installation, not of one organization.
    NEEDS_ORGANIZATION = False
    PLATFORM_ADMIN_ONLY = True
    ACTION_PERMISSIONS: ClassVar[dict[str, str]] = {
        "backup": "backups.create",
        "verify": "backups.read",
        "restore": "backups.restore",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("b", "backup", "Back up"),
        Binding("v", "verify", "Verify"),
        Binding("R", "restore", "Restore"),
        Binding("x", "cancel", "Cancel job"),
        Binding("r", "reload", "Refresh", show=False),
    ]

    DEFAULT_CSS = """
    BackupsScreen #backup-summary, BackupsScreen #backup-detail, BackupsScreen #backup-phase {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    BackupsScreen #backup-table {
        height: 1fr;
    }
    BackupsScreen #backup-job {
        height: auto;
        display: none;
    }
    BackupsScreen #backup-job.-running {
        display: block;
    }
    BackupsScreen .bar-row {
        height: 1;
        padding: 0 1;
    }
    BackupsScreen .bar-label {
        width: 13;
    }
    BackupsScreen .bar-row ProgressBar {
        width: 1fr;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self.listing: Listing | None = None
        self.cancel_event: threading.Event | None = None
        self.job_name = ""
        self._last_progress = 0.0

    def compose_body(self) -> Iterable[Widget]:
        yield Static("", id="backup-summary", markup=False)
        yield DataTable(id="backup-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="backup-detail", markup=False)
        with Vertical(id="backup-job"):
            yield Static("", id="backup-phase", markup=False)
            with Horizontal(classes="bar-row"):
                yield Static("Bytes", classes="bar-label")
                yield ProgressBar(id="backup-bytes", show_eta=False)
            with Horizontal(classes="bar-row"):
                yield Static("Collections", classes="bar-label")
                yield ProgressBar(id="backup-collections", show_eta=False)

    def on_mount(self) -> None:
        self.table.focus()
        if not self.session.user.is_platform_admin:
            self.say("Backups hold every organization's data; only a platform admin may use "
                     "them.", error=True)
            return
        self.action_reload()

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#backup-table", DataTable)

    @property
    def running(self) -> bool:
        return self.cancel_event is not None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("backup", "verify", "restore", "reload", "cancel") and (
            self.creatia.session is None or not self.session.user.is_platform_admin
        ):
            return False
        if action == "cancel":
            return self.running
        if action in ("backup", "verify", "restore") and self.running:
            return None  # shown, greyed: one job at a time
        if action in ("verify", "restore") and self.highlighted() is None:
            return None
        return super().check_action(action, parameters)

    # ------------------------------------------------------------ listing
    def action_reload(self, note: str | None = None) -> None:
        settings = self.creatia.dbs.settings
        user_id = self.session.user.id
        dbs = self.creatia.dbs

        def job() -> Listing:
            with dbs.pg() as conn:
                require_backup_access(conn, user_id, "backups.read")
            return read_listing(settings)

        if note is None:
            self.say("Reading the backups…")
        self.run_job(job, lambda listing: self._listed(listing, note), group="backups-list")

    def _listed(self, listing: Listing, note: str | None) -> None:
        self.listing = listing
        self._fill_table()
        newest = listing.rows[0].backup if listing.rows else None
        self.query_one("#backup-summary", Static).update(
            f"Folder {listing.folder} · kept {listing.retention_days} days · "
            + (f"newest {format_age(newest.age(utcnow()))} old" if newest else "no backup yet")
        )
        self.say(note or f"{plural(len(listing.rows), 'backup')}, newest first")
        self.refresh_bindings()

    def _fill_table(self) -> None:
        table = self.table
        keep = highlighted_key(table)
        rows = self.listing.rows if self.listing else []
        columns = columns_that_fit(self.size.width, table.cell_padding)
        now = utcnow()
        with self.app.batch_update():
            table.clear(columns=True)
            for column in columns:
                table.add_column(Text(column.label), key=column.key, width=column.width)
            for listed in rows:
                cells = cells_for(listed, now)
                table.add_row(*(fit(cells[c.key].plain, c.width) if c.key == "manifest"
                                else cells[c.key] for c in columns), key=listed.backup.name)
            if keep is not None and keep in {r.backup.name for r in rows}:
                table.move_cursor(row=table.get_row_index(keep))
        self._show_detail()

    def on_resize(self) -> None:
        if self.listing is not None:
            self._fill_table()

    def highlighted(self) -> Listed | None:
        if self.listing is None:
            return None
        key = highlighted_key(self.table)
        return next((r for r in self.listing.rows if r.backup.name == key), None)

    def _show_detail(self) -> None:
        listed = self.highlighted()
        self.query_one("#backup-detail", Static).update(describe(listed) if listed else "")
        self.refresh_bindings()

    def on_data_table_row_highlighted(self) -> None:
        self._show_detail()

    def copy_target(self) -> tuple[str, str] | None:
        listed = self.highlighted()
        return ("the backup's path", str(listed.backup.path)) if listed else None

    # ------------------------------------------------------------ jobs
    def _start(self, name: str, job: Callable[[threading.Event, Callable[[Progress], None]], Any],
               done: Callable[[Any], None]) -> None:
        cancel = threading.Event()
        self.cancel_event = cancel
        self.job_name = name
        panel = self.query_one("#backup-job")
        panel.add_class("-running")
        self.query_one("#backup-phase", Static).update(f"{name}: starting…")
        for bar in self.query(ProgressBar):
            bar.update(total=None, progress=0)
        self.refresh_bindings()

        def progress(p: Progress) -> None:
            now = time.monotonic()
            if now - self._last_progress < PROGRESS_EVERY and p.bytes_done != p.bytes_total:
                return
            self._last_progress = now
            self.app.call_from_thread(self._progress, p)

        def finished(result: Any) -> None:
            self._stop()
            done(result)

        def failed(sentence: str) -> None:
            self._stop()
            self.say(sentence, error=True)
            self.action_reload(note=sentence)

        self.run_job(lambda: job(cancel, progress), finished, failed=failed, group="backups-job")

    def _progress(self, p: Progress) -> None:
        if not self.running:
            return
        size = format_size(p.bytes_done) + (f" of {format_size(p.bytes_total)}"
                                            if p.bytes_total else "")
        self.query_one("#backup-phase", Static).update(
            f"{self.job_name}: {p.phase} · {size}" + (f" · {p.detail}" if p.detail else "")
        )
        self.query_one("#backup-bytes", ProgressBar).update(
            total=p.bytes_total, progress=p.bytes_done)
        if p.collections_total:
            self.query_one("#backup-collections", ProgressBar).update(
                total=p.collections_total, progress=p.collections_done)

    def _stop(self) -> None:
        self.cancel_event = None
        self.query_one("#backup-job").remove_class("-running")
        self.refresh_bindings()

    def action_cancel(self) -> None:
        if self.cancel_event is not None:
            self.cancel_event.set()
            self.query_one("#backup-phase", Static).update(f"{self.job_name}: cancelling…")

    def action_backup(self) -> None:
        if self.running:
            return
        dbs = self.creatia.dbs
        user_id = self.session.user.id
        organization = self.session.current.id if self.session.current else None

        def job(cancel: threading.Event, progress: Callable[[Progress], None]) -> BackupResult:
            with dbs.pg() as conn:
                require_backup_access(conn, user_id, "backups.create")
            result = take_backup(dbs.settings, progress=progress, cancel=cancel)
            with dbs.pg() as conn:
                audit_backup(conn, organization_id=organization, user_id=user_id,
                             action="backup.created",
                             details={"file": result.path.name, "size": result.size})
            return result

        def done(result: BackupResult) -> None:
            deleted = (f"; retention deleted {plural(len(result.deleted), 'old backup')}"
                       if result.deleted else "")
            self.action_reload(note=f"Wrote {result.path.name} ({format_size(result.size)}) in "
                                    f"{result.seconds:.1f} s{deleted}.")

        self._start("Backup", job, done)

    def action_verify(self) -> None:
        listed = self.highlighted()
        if listed is None or self.running:
            return
        dbs = self.creatia.dbs
        user_id = self.session.user.id
        path = listed.backup.path

        def job(cancel: threading.Event, progress: Callable[[Progress], None]) -> RestoreReport:
            with dbs.pg() as conn:
                require_backup_access(conn, user_id, "backups.read")
            return verify_backup(dbs.settings, path, progress=progress, cancel=cancel)

        def done(report: RestoreReport) -> None:
            self.say(f"Verify of {path.name}: {report.summary()}", error=not report.ok)

        self._start("Verify", job, done)

    def action_restore(self) -> None:
        listed = self.highlighted()
        if listed is None or self.running:
            return
        settings = self.creatia.dbs.settings
        try:
            pg_name, mongo_name = restore_targets(settings)
            phrase = confirmation_phrase(settings)
        except UserError as exc:
            self.say(str(exc), error=True)
            return

        def confirmed(typed: str | None) -> None:
            if typed is None:
                self.say("Restore cancelled; nothing was changed.")
                return
            if typed.strip() != phrase:
                self.say(f"The names typed do not match {phrase}; nothing was restored.",
                         error=True)
                return
            self._restore(listed.backup.path, typed, pg_name, mongo_name)

        self.app.push_screen(
            RestoreConfirmScreen(listed.backup.name, pg_name, mongo_name, phrase), confirmed
        )

    def _restore(self, path: Path, typed: str, pg_name: str, mongo_name: str) -> None:
        dbs = self.creatia.dbs
        user_id = self.session.user.id
        organization = self.session.current.id if self.session.current else None

        def job(cancel: threading.Event, progress: Callable[[Progress], None]) -> RestoreReport:
            with dbs.pg() as conn:
                require_backup_access(conn, user_id, "backups.restore")
            report = restore_backup(dbs.settings, path, confirm=typed, progress=progress,
                                    cancel=cancel)
            try:
                with dbs.pg() as conn:
                    audit_backup(conn, organization_id=organization, user_id=user_id,
                                 action="backup.restored", details={"file": path.name})
            except UserError:
                pass  # the organization may not exist in the restored data
            return report

        def done(report: RestoreReport) -> None:
            self.say(f"Restored {path.name} into {pg_name} and {mongo_name}: "
                     f"{report.summary()}", error=not report.ok)

        self._start("Restore", job, done)
