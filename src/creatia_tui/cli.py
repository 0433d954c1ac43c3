"""The ``creatia-tui`` command line.

Every command takes ``--pg-dsn`` and ``--mongo-uri`` (defaults: ``CREATIA_PG_DSN``,
``CREATIA_MONGO_URI``, then the config file). Errors are one plain sentence on stderr and a
non-zero exit; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from functools import partial
from logging.handlers import RotatingFileHandler
from typing import Any, TextIO

from creatia_tui import __version__
from creatia_tui.config import Settings, load_settings
from creatia_tui.errors import UserError, one_line, redact

log = logging.getLogger("creatia_tui")

EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(UserError):
    pass


def _connection_flags(top_level: bool) -> argparse.ArgumentParser:
    # The flags are accepted before and after the command. On subcommands their default is
    # SUPPRESS, so a flag given before the command is not reset to None by the subparser.
    default: dict[str, object] = {} if top_level else {"default": argparse.SUPPRESS}
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(
        "--pg-dsn", help="PostgreSQL DSN (default: $CREATIA_PG_DSN, config file)", **default
    )
    parser.add_argument(
        "--mongo-uri", help="MongoDB URI (default: $CREATIA_MONGO_URI, config file)", **default
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks on errors", **default
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    common = _connection_flags(top_level=False)
    parser = argparse.ArgumentParser(
        prog="creatia-tui",
        description="Terminal UI for Creatia: organizations, tasks and both databases' health.",
        parents=[_connection_flags(top_level=True)],
    )
    parser.add_argument("--version", action="version", version=f"creatia-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo", parents=[common],
        help="start the embedded servers, migrate, seed on first run and open the TUI",
    )
    demo.add_argument(
        "--no-tui", action="store_true", help="prepare everything, do not open the TUI"
    )

    local = sub.add_parser("local", parents=[common], help="the embedded servers alone")
    local_sub = local.add_subparsers(dest="local_command", metavar="ACTION", required=True)
    local_sub.add_parser("start", parents=[common], help="start both embedded servers")
    local_sub.add_parser("stop", parents=[common], help="stop both embedded servers")
    status = local_sub.add_parser(
        "status", parents=[common], help="are they running, on which ports"
    )
    status.add_argument("--json", action="store_true")
    local_sub.add_parser("env", parents=[common], help="print export lines for the shell")

    migrate = sub.add_parser(
        "migrate", parents=[common],
        help="apply PostgreSQL migrations and MongoDB collections, validators, indexes",
    )
    migrate.add_argument(
        "--shard", action="store_true",
        help="also apply the shard keys (only on a mongos)",
    )

    seed = sub.add_parser("seed", parents=[common], help="deterministic demo or scale data")
    seed.add_argument("--orgs", type=int, default=3)
    seed.add_argument("--users", type=int, default=40)
    seed.add_argument("--tasks", type=int, default=500)
    seed.add_argument("--activity", type=int, default=2000)
    seed.add_argument("--sprints-per-org", type=int, default=2)
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same data)")

    users = sub.add_parser("users", parents=[common], help="bootstrap accounts")
    users_sub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    create = users_sub.add_parser("create", parents=[common], help="create a user")
    create.add_argument("--email", required=True)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--password-stdin", action="store_true", required=True,
        help="read the password from standard input (never from argv)",
    )
    create.add_argument("--admin", action="store_true", help="a platform admin")

    secrets = sub.add_parser("secrets", parents=[common], help="store database passwords")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)
    set_ = secrets_sub.add_parser(
        "set", parents=[common],
        help="store a secret read from stdin: pg-password, mongo-password, backup-passphrase",
    )
    set_.add_argument("name")
    secrets_sub.add_parser("where", parents=[common], help="which store holds the secrets")
    _add_backup_commands(sub, common)

    health = sub.add_parser(
        "health", parents=[common],
        help="both databases' health; exit 0 only when both are up",
    )
    health.add_argument("--json", action="store_true", help="the seed's JSON report")
    health.add_argument(
        "--serve", metavar="HOST:PORT",
        help="answer HTTP GET /health/database (200 or 503) until interrupted",
    )

    # Snapshot sync and background workers (issue 7; ops/sync.py, ops/worker.py).
    sync_cmd = sub.add_parser(
        "sync", parents=[common],
        help="user snapshot sync and consistency; without a flag, sync in real time until "
        "stopped",
    )
    how = sync_cmd.add_mutually_exclusive_group()
    how.add_argument("--once", action="store_true", help="one batch sync of every user")
    how.add_argument(
        "--check", action="store_true", help="report drift between the databases (exit 3: found)"
    )
    how.add_argument(
        "--repair", action="store_true", help="fix snapshots, quarantine orphaned tasks"
    )
    sync_cmd.add_argument(
        "--batch-size", type=int, default=1000, help="documents per bulk write (default 1000)"
    )
    sub.add_parser(
        "worker", parents=[common],
        help="run every background worker headless until SIGTERM (log in the log dir)",
    )
    return parser


def _add_backup_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    backup = sub.add_parser(
        "backup", parents=[common],
        help="an encrypted backup of both databases (passphrase: secrets set backup-passphrase)",
    )
    backup.add_argument("--dest", metavar="DIR", help="backup folder (default: [backup] dir "
                        "in the config file, else <data dir>/backups)")
    backups = sub.add_parser("backups", parents=[common], help="the backups in the folder")
    backups_sub = backups.add_subparsers(dest="backups_command", metavar="ACTION", required=True)
    listing = backups_sub.add_parser(
        "list", parents=[common], help="size, age and manifest of each backup, newest first"
    )
    listing.add_argument("--dest", metavar="DIR", help="backup folder (as for backup)")
    listing.add_argument("--json", action="store_true")
    restore = sub.add_parser(
        "restore", parents=[common],
        help="verify a backup in scratch databases (--verify), or restore it into the targets",
    )
    restore.add_argument("archive", metavar="ARCHIVE")
    restore.add_argument(
        "--verify", action="store_true",
        help="restore into scratch databases, compare with the manifest, drop them",
    )
    restore.add_argument(
        "--confirm", metavar="PGDB,MONGODB",
        help="name both target databases to replace them without the typed prompt",
    )


# ----------------------------------------------------------------- helpers
def _read_secret(prompt: str, stdin: TextIO) -> str:
    if stdin.isatty():
        return getpass.getpass(prompt)
    value = stdin.readline()
    return value.rstrip("\r\n")


def _databases(settings: Settings) -> Any:
    from creatia_tui.data.db import Databases

    return Databases.from_settings(settings)


def _local_servers(settings: Settings) -> Any:
    from creatia_tui.ops.local_servers import LocalServers

    return LocalServers(settings.locations.local_servers_dir)


def setup_logging(settings: Settings, debug: bool) -> None:
    """Log to a rotating file in the log dir; never to the terminal the TUI draws on."""
    log_dir = settings.locations.log_dir
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = RotatingFileHandler(
            log_dir / "creatia-tui.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("creatia_tui")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    # The drivers' own warnings (a pool retrying a lost server) go to the same file, not to the
    # terminal: Python's last-resort handler would print them over the TUI or a command's output.
    for name in ("psycopg", "pymongo"):
        driver = logging.getLogger(name)
        driver.handlers[:] = [handler]
        driver.setLevel(logging.DEBUG if debug else logging.WARNING)
        driver.propagate = False


# ----------------------------------------------------------------- commands
def cmd_migrate(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from pymongo.errors import PyMongoError

    from creatia_tui.data.migrations import migrate_postgres
    from creatia_tui.data.mongo_schema import apply_shard_keys, migrate_mongo

    with _databases(settings) as dbs:
        with dbs.connect_pg(autocommit=True) as conn:
            pg_report = migrate_postgres(conn)
        try:
            mongo_report = migrate_mongo(dbs.mongo)
        except PyMongoError as exc:
            raise dbs.mongo_error(exc) from None
        print(
            f"PostgreSQL: {len(pg_report.applied)} migration(s) applied, "
            f"{len(pg_report.already)} already applied; audit partitions: "
            f"{', '.join(pg_report.partitions)}.",
            file=out,
        )
        print(
            f"MongoDB ({settings.mongo_db}): {len(mongo_report.created_collections)} "
            f"collection(s) created, {len(mongo_report.created_indexes)} index(es) built, "
            f"{len(mongo_report.rebuilt_indexes)} rebuilt.",
            file=out,
        )
        for note in mongo_report.skipped:
            print(f"Note: skipped optional index {note}", file=out)
        if args.shard:
            try:
                sharded = apply_shard_keys(dbs.mongo)
            except UserError as exc:
                print(str(exc), file=out)
            else:
                print(f"Sharded: {', '.join(sharded)}.", file=out)
    return 0


def _seed_options(args: argparse.Namespace) -> Any:
    for name in ("orgs", "users", "tasks", "activity", "sprints_per_org"):
        if getattr(args, name) < 0:
            raise CommandError(f"--{name.replace('_', '-')} cannot be negative.")
    if args.orgs < 1 or args.users < 1:
        raise CommandError("--orgs and --users must be at least 1.")
    from creatia_tui.ops.seed import SeedOptions

    return SeedOptions(
        orgs=args.orgs,
        users=args.users,
        tasks=args.tasks,
        activity=args.activity,
        sprints_per_org=args.sprints_per_org,
        seed=args.seed,
    )


def cmd_seed(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    options = _seed_options(args)
    from creatia_tui.ops.seed import seed

    with _databases(settings) as dbs, dbs.connect_pg() as conn:
        report = seed(conn, dbs.mongo, options, progress=lambda line: print(line, file=out))
    print(
        f"Seeded {report.organizations} organizations, {report.users} users, "
        f"{report.tasks} tasks, {report.sprints} sprints, {report.activity_logs} activity logs "
        f"in {report.seconds:.1f} s.",
        file=out,
    )
    return 0


def cmd_users_create(
    settings: Settings, args: argparse.Namespace, out: TextIO, stdin: TextIO
) -> int:
    from creatia_tui.data.users import create_user, normalise_email, validate_password

    # Validate what we can before asking for the password or touching the database.
    normalise_email(args.email)
    password = _read_secret("Password: ", stdin)
    validate_password(password)
    with _databases(settings) as dbs, dbs.connect_pg() as conn:
        user = create_user(
            conn, email=args.email, name=args.name, password=password, admin=args.admin
        )
    kind = "platform admin" if user.is_platform_admin else "user"
    print(f"Created {kind} {user.email} ({user.id}).", file=out)
    return 0


def cmd_secrets(
    settings: Settings, args: argparse.Namespace, out: TextIO, stdin: TextIO
) -> int:
    from creatia_tui.secret_store import SecretStore

    store = SecretStore(settings.locations.secrets_file)
    if args.secrets_command == "where":
        print(f"Secrets are stored in: {store.backend_name}.", file=out)
        names = store.names_set()
        print(f"Set: {', '.join(names) if names else 'none'}.", file=out)
        return 0
    store.check_name(args.name)
    value = _read_secret(f"{args.name}: ", stdin)
    where = store.set(args.name, value)
    print(f"Stored {args.name} in {where}.", file=out)
    return 0


def _backup_progress(err: TextIO) -> Callable[[Any], None]:
    """Phase changes on stderr when it is a terminal; nothing for cron."""
    last: list[str] = []

    def report(progress: Any) -> None:
        if err.isatty() and (not last or last[-1] != progress.phase):
            last.append(progress.phase)
            print(f"… {progress.phase}", file=err, flush=True)

    return report


def cmd_backup(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from creatia_tui.ops.backup import format_size, take_backup

    result = take_backup(settings, folder=args.dest, progress=_backup_progress(err))
    manifest = result.manifest
    print(
        f"Wrote {result.path} ({format_size(result.size)}) in {result.seconds:.1f} s: "
        f"{len(manifest['postgres']['tables'])} tables, "
        f"{len(manifest['mongo']['collections'])} collections.",
        file=out,
    )
    if result.deleted:
        print(f"Retention deleted {len(result.deleted)} old backup(s).", file=out)
    return 0


def cmd_backups(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from creatia_tui.ops.backup import (
        BackupSettings,
        backup_passphrase,
        format_age,
        format_size,
        list_backups,
    )
    from creatia_tui.ops.restore import read_manifest

    folder = BackupSettings.from_settings(settings, args.dest).folder
    backups = list_backups(folder)
    passphrase: str | None
    try:
        passphrase = backup_passphrase(settings)
        missing = ""
    except UserError as exc:
        passphrase, missing = None, str(exc)
    rows = []
    for backup in backups:
        row: dict[str, Any] = {"path": str(backup.path), "size": backup.size,
                               "created_at": backup.created_at.isoformat(),
                               "age_seconds": int(backup.age().total_seconds())}
        try:
            if passphrase is None:
                raise UserError(missing)
            row["manifest"] = read_manifest(backup.path, passphrase)
        except UserError as exc:
            row["error"] = one_line(str(exc))
        rows.append(row)
    if args.json:
        print(json.dumps({"folder": str(folder), "backups": rows}, indent=2), file=out)
        return 0
    if not backups:
        print(f"No backups in {folder}.", file=out)
        return 0
    print(f"{len(backups)} backup(s) in {folder}, newest first:", file=out)
    for backup, row in zip(backups, rows, strict=True):
        if "manifest" in row:
            manifest = row["manifest"]
            counts = manifest["mongo"]["collections"]
            detail = (f"PostgreSQL {manifest['postgres']['server_version']} "
                      f"{len(manifest['postgres']['tables'])} tables, MongoDB "
                      f"{manifest['mongo']['server_version']} {len(counts)} collections, "
                      f"{counts.get('tasks', {}).get('count', 0):,} tasks")
        else:
            detail = f"manifest unreadable: {row['error']}"
        print(f"{backup.name}  {format_size(backup.size):>10}  {format_age(backup.age()):>7} old"
              f"  {detail}", file=out)
    return 0


def cmd_restore(
    settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO
) -> int:
    from creatia_tui.ops.restore import (
        confirmation_phrase,
        restore_backup,
        restore_targets,
        verify_backup,
    )

    progress = _backup_progress(err)
    if args.verify:
        report = verify_backup(settings, args.archive, progress=progress)
        print(f"Verify of {report.archive.name}: {report.summary()}", file=out)
        return 0 if report.ok else EXIT_ERROR
    pg_name, mongo_name = restore_targets(settings)
    confirm = args.confirm
    if confirm is None:
        if not stdin.isatty():
            raise CommandError(
                f"Restoring replaces the PostgreSQL database {pg_name} and the MongoDB database "
                f"{mongo_name}; pass --confirm {confirmation_phrase(settings)} to go ahead."
            )
        print(f"This replaces the PostgreSQL database {pg_name} and the MongoDB database "
              f"{mongo_name} with the backup {args.archive}.", file=out)
        print(f"Type {confirmation_phrase(settings)} to go ahead: ", end="", file=out, flush=True)
        confirm = stdin.readline().strip()
    report = restore_backup(settings, args.archive, confirm=confirm, progress=progress)
    print(f"Restored {report.archive.name} into {pg_name} and {mongo_name}: "
          f"{report.summary()}", file=out)
    return 0 if report.ok else EXIT_ERROR


def cmd_local(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    servers = _local_servers(settings)
    action = args.local_command
    if action == "start":
        state = servers.start()
        print(f"PostgreSQL: {state.pg_dsn}", file=out)
        print(f"MongoDB:    {state.mongo_uri}", file=out)
        print(f"Data under {servers.root}. Use: eval \"$(creatia-tui local env)\"", file=out)
    elif action == "stop":
        stopped = servers.stop()
        print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.", file=out)
    elif action == "status":
        status = servers.status()
        if args.json:
            print(json.dumps(status, indent=2), file=out)
        else:
            for name in ("postgres", "mongo"):
                info = status[name]
                assert isinstance(info, dict)
                where = info.get("dsn") or info.get("uri") or ""
                state = "running" if info["running"] else "stopped"
                print(f"{name:9} {state:8} {where}", file=out)
        return 0 if all(status[n]["running"] for n in ("postgres", "mongo")) else 3  # type: ignore[index]
    elif action == "env":
        state = servers.read_state()
        if state is None or not servers.pg_running() or not servers.mongo_running():
            raise CommandError("The embedded servers are not running; run: creatia-tui local start")
        print(f"export CREATIA_PG_DSN='{state.pg_dsn}'", file=out)
        print(f"export CREATIA_MONGO_URI='{state.mongo_uri}'", file=out)
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from creatia_tui.data.db import Databases
    from creatia_tui.data.migrations import migrate_postgres
    from creatia_tui.data.mongo_schema import migrate_mongo
    from creatia_tui.ops.seed import SeedOptions, is_seeded, seed

    servers = _local_servers(settings)
    already_running = bool(servers.pg_running() and servers.mongo_running())
    print("Starting the embedded servers…", file=out)
    state = servers.start()
    try:
        demo_settings = settings.with_overrides(pg_dsn=state.pg_dsn, mongo_uri=state.mongo_uri)
        with Databases(demo_settings) as dbs:
            with dbs.connect_pg(autocommit=True) as conn:
                migrate_postgres(conn)
            migrate_mongo(dbs.mongo)
            with dbs.connect_pg() as conn:
                if not is_seeded(conn, dbs.mongo):
                    print("Seeding demo data (first run)…", file=out)
                    seed(conn, dbs.mongo, SeedOptions())
            if args.no_tui:
                print(f"Ready: PostgreSQL {state.pg_dsn}, MongoDB {state.mongo_uri}.", file=out)
                return 0
            from creatia_tui.app import demo_app

            demo_app(dbs).run()
    finally:
        if not already_running:
            servers.stop()
    return 0


def cmd_health(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    """One check (text or --json), or --serve: the HTTP endpoint until Ctrl-C."""
    from creatia_tui.ops.backup import backup_health
    from creatia_tui.ops.health import (
        EXTRA_CHECKS,
        HEALTH_PATH,
        ExtraCheck,
        check_health,
        parse_address,
        serve,
    )

    # Not critical: an old backup is a warning in the output and the JSON, not a down database.
    extra = {**EXTRA_CHECKS, "backup": ExtraCheck(partial(backup_health, settings))}
    address = parse_address(args.serve) if args.serve else None
    with _databases(settings) as dbs:
        if address is None:
            report = check_health(dbs, extra)
            if args.json:
                print(json.dumps(report.as_json(), indent=2), file=out)
            else:
                print("\n".join(report.lines()), file=out)
            return 0 if report.ok else EXIT_ERROR
        server = serve(dbs, *address, extra=extra)
        host, port = server.server_address[:2]
        print(f"Serving http://{host}:{port}{HEALTH_PATH} (Ctrl-C stops).", file=out, flush=True)
        try:
            threading.Event().wait()
        finally:
            server.shutdown()
            server.server_close()
    return 0  # pragma: no cover (only Ctrl-C ends the wait)


def cmd_tui(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from creatia_tui.app import CreatiaApp

    with _databases(settings) as dbs:
        CreatiaApp(dbs).run()
    return 0


EXIT_DRIFT = 3  # sync --check found problems; sync --repair left repairable ones


def _until_terminated(run: Callable[[Any], Any]) -> None:
    """Call run(stop_event) with SIGTERM and SIGINT setting the event (a clean stop)."""
    import signal
    import threading

    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_sync(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    if args.batch_size < 1:
        raise CommandError("--batch-size must be at least 1.")
    from creatia_tui.ops import consistency, sync, worker

    with _databases(settings) as dbs:
        if args.check:
            report = consistency.check_consistency(dbs)
            print("\n".join(report.lines()), file=out)
            return EXIT_DRIFT if report.problems else 0
        if args.repair:
            result = consistency.repair(dbs)
            print(result.summary(), file=out)
            if result.after is not None:
                print("\n".join(result.after.lines()), file=out)
            return EXIT_DRIFT if result.after and result.after.repairable else 0
        if args.once:
            outcome = sync.batch_sync(dbs, batch_size=args.batch_size)
            print(f"Synced: {outcome.summary()}.", file=out)
            return 0
        print("Syncing in real time; stop with SIGTERM or ctrl+c.", file=out, flush=True)
        jobs = [worker.job_named("snapshot-listener"), worker.job_named("snapshot-catch-up")]
        _until_terminated(lambda stop: worker.run_headless(dbs, stop, jobs, label="sync"))
        print("Stopped.", file=out)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from creatia_tui.ops import worker

    with _databases(settings) as dbs:
        dbs.check()
        names = ", ".join(job.name for job in worker.JOBS)
        print(
            f"Running {names}; logging to {settings.locations.log_dir / 'creatia-tui.log'}; "
            "stop with SIGTERM or ctrl+c.",
            file=out,
            flush=True,
        )
        _until_terminated(lambda stop: worker.run_headless(dbs, stop))
        print("Stopped.", file=out)
    return 0


# ----------------------------------------------------------------- entry point
def run(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its usage line
        return int(exc.code or 0)
    debug = bool(getattr(args, "debug", False))
    try:
        settings = load_settings(pg_dsn=args.pg_dsn, mongo_uri=args.mongo_uri)
        setup_logging(settings, debug)
        handlers: dict[str, Callable[[], int]] = {
            "migrate": lambda: cmd_migrate(settings, args, out),
            "seed": lambda: cmd_seed(settings, args, out),
            "users": lambda: cmd_users_create(settings, args, out, stdin),
            "secrets": lambda: cmd_secrets(settings, args, out, stdin),
            "local": lambda: cmd_local(settings, args, out),
            "demo": lambda: cmd_demo(settings, args, out),
            "backup": lambda: cmd_backup(settings, args, out, err),
            "backups": lambda: cmd_backups(settings, args, out),
            "restore": lambda: cmd_restore(settings, args, out, err, stdin),
            "health": lambda: cmd_health(settings, args, out),
            "sync": lambda: cmd_sync(settings, args, out),
            "worker": lambda: cmd_worker(settings, args, out),
        }
        handler = handlers.get(args.command or "", lambda: cmd_tui(settings, args, out))
        return handler()
    except KeyboardInterrupt:
        print("Interrupted.", file=err)
        return 130
    except Exception as exc:
        if debug:
            raise
        print(f"creatia-tui: {error_sentence(exc)}", file=err)
        log.error("command failed: %s", error_sentence(exc))
        return EXIT_ERROR


def error_sentence(exc: BaseException) -> str:
    """One sentence, without secrets, for any error that reaches the top."""
    if isinstance(exc, UserError):
        return one_line(redact(str(exc)))
    import psycopg
    from pymongo.errors import PyMongoError

    if isinstance(exc, psycopg.Error):
        return f"PostgreSQL error: {one_line(redact(str(exc)))}"
    if isinstance(exc, PyMongoError):
        return f"MongoDB error: {one_line(redact(str(exc)))}"
    if isinstance(exc, OSError):
        return one_line(redact(f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")))
    return (
        f"unexpected {type(exc).__name__}: {one_line(redact(str(exc)))} "
        "Run with --debug for the traceback."
    )


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["build_parser", "error_sentence", "main", "run"]
