"""`creatia-tui health` and GET /health/database against the real servers."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from creatia_tui.cli import run
from creatia_tui.config import Settings
from creatia_tui.data.db import Databases
from creatia_tui.ops import health
from creatia_tui.ops.health import HEALTH_PATH, ServiceHealth, check_health, serve
from creatia_tui.ops.local_servers import free_port
from tests.conftest import ServerInfo

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/none"


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=15) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_exits_0_when_both_answer(pg_dsn: str, servers: ServerInfo, home: Path) -> None:
    code, out, err = cli("health", "--pg-dsn", pg_dsn, "--mongo-uri", servers.mongo_uri)
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("PostgreSQL: up ") and " ms" in out
    assert out.splitlines()[1].startswith("MongoDB: up ")

    code, out, _ = cli("health", "--json", "--pg-dsn", pg_dsn, "--mongo-uri", servers.mongo_uri)
    report = json.loads(out)
    assert code == 0 and report["status"] == "ok"
    assert report["details"]["postgresql"] is True and report["details"]["mongodb"] is True
    assert report["details"]["timestamp"] == report["timestamp"]
    assert report["checks"]["postgresql"]["latency_ms"] >= 0


def test_health_exits_1_and_says_why_when_postgres_is_down(
    servers: ServerInfo, home: Path
) -> None:
    dsn = "postgresql://alice:hunter22@127.0.0.1:1/none"
    code, out, err = cli("health", "--json", "--pg-dsn", dsn, "--mongo-uri", servers.mongo_uri)
    report = json.loads(out)
    assert code == 1 and err == ""
    assert report["status"] == "error"
    assert report["details"] == {"postgresql": False, "mongodb": True,
                                 "timestamp": report["timestamp"]}
    assert report["checks"]["postgresql"]["error"] and "hunter22" not in out
    code, out, err = cli("health", "--pg-dsn", dsn, "--mongo-uri", servers.mongo_uri)
    assert code == 1 and "PostgreSQL: down: " in out


def test_a_bad_serve_address_is_one_sentence(home: Path) -> None:
    code, out, err = cli("health", "--serve", "nowhere", "--pg-dsn", UNREACHABLE_PG,
                         "--mongo-uri", "mongodb://127.0.0.1:1")
    assert code == 1 and out == ""
    assert err.strip() == "creatia-tui: --serve wants HOST:PORT, such as 127.0.0.1:8080, not " \
        "'nowhere'."


@pytest.fixture
def endpoint(dbs: Databases) -> Iterator[str]:
    server = serve(dbs, "127.0.0.1", 0)
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}"
    server.shutdown()
    server.server_close()


def test_the_endpoint_answers_200_with_the_seeds_json(endpoint: str) -> None:
    code, body = get(endpoint + HEALTH_PATH)
    assert code == 200 and body["status"] == "ok"
    assert set(body["details"]) == {"postgresql", "mongodb", "timestamp"}
    code, body = get(endpoint + "/elsewhere")
    assert code == 404 and HEALTH_PATH in body["error"]


def test_a_critical_extra_check_turns_it_to_503(endpoint: str) -> None:
    """The hook the backups issue uses for the age of the last good backup."""
    health.register_check(
        "backup", lambda: ServiceHealth("Last good backup", up=False, error="none in 26 h."),
        critical=True)
    try:
        code, body = get(endpoint + HEALTH_PATH)
    finally:
        health.EXTRA_CHECKS.pop("backup")
    assert code == 503 and body["status"] == "error"
    assert body["details"]["postgresql"] is True
    assert body["checks"]["backup"] == {"up": False, "latency_ms": None, "error": "none in 26 h."}


def test_the_endpoint_answers_503_when_postgres_is_down(
    settings: Settings, servers: ServerInfo
) -> None:
    broken = Databases(Settings(pg_dsn=UNREACHABLE_PG, mongo_uri=servers.mongo_uri,
                                locations=settings.locations))
    report = check_health(broken, extra={})
    assert not report.ok and report.mongodb.up
    server = serve(broken, "127.0.0.1", 0)
    try:
        code, body = get(f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}")
    finally:
        server.shutdown()
        server.server_close()
        broken.close()
    assert code == 503 and body["status"] == "error"
    assert body["details"]["postgresql"] is False and body["details"]["mongodb"] is True


def test_the_serve_command_runs_until_stopped(
    pg_dsn: str, servers: ServerInfo, home: Path
) -> None:
    port = free_port()
    env = {**os.environ, "CREATIA_HOME": str(home), "CREATIA_PG_DSN": pg_dsn,
           "CREATIA_MONGO_URI": servers.mongo_uri}
    proc = subprocess.Popen(
        [sys.executable, "-m", "creatia_tui", "health", "--serve", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"Serving http://127.0.0.1:{port}{HEALTH_PATH}")
        code, body = get(f"http://127.0.0.1:{port}{HEALTH_PATH}")
        assert code == 200 and body["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_age_of_the_last_good_backup_is_a_warning_not_an_error(
    pg_dsn: str, servers: ServerInfo, home: Path
) -> None:
    from creatia_tui.config import load_settings
    from creatia_tui.ops.backup import PREFIX, SUFFIX, TIME_FORMAT

    argv = ("health", "--pg-dsn", pg_dsn, "--mongo-uri", servers.mongo_uri)
    code, out, _ = cli(*argv)
    assert code == 0 and "Backup: warning: no backup has been taken yet." in out.splitlines()

    folder = load_settings().locations.data_dir / "backups"
    folder.mkdir(parents=True)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=30)
    (folder / f"{PREFIX}{old.strftime(TIME_FORMAT)}{SUFFIX}").write_bytes(b"x")
    code, out, _ = cli(*argv, "--json")
    report = json.loads(out)
    assert code == 0 and report["status"] == "ok"  # the databases answer: still ok
    assert report["checks"]["backup"]["up"] is False
    assert report["checks"]["backup"]["error"] == (
        "the last good backup is 30.0 h old (more than 26.0 h).")

    fresh = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)
    (folder / f"{PREFIX}{fresh.strftime(TIME_FORMAT)}{SUFFIX}").write_bytes(b"x")
    code, out, _ = cli(*argv)
    assert code == 0 and "Backup: up: the last good backup is 3.0 h old." in out.splitlines()
