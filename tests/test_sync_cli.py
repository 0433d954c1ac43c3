"""``creatia-tui sync`` and ``creatia-tui worker`` from the command line, and the job runner."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from creatia_tui.config import Settings
from creatia_tui.data.db import Databases
from creatia_tui.ops import worker
from tests.conftest import World
from tests.test_cli import cli
from tests.test_sync import new_task, wait_for
from tests.test_sync_consistency import make_drift


@pytest.fixture
def conn_flags(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("CREATIA_MONGO_DB", settings.mongo_db)
    return ["--pg-dsn", settings.pg_dsn, "--mongo-uri", settings.mongo_uri]


def test_sync_once_check_and_repair(
    dbs: Databases, world: World, conn_flags: list[str]
) -> None:
    code, out, err = cli("sync", "--once", "--batch-size", "3", *conn_flags)
    assert (code, err) == (0, "")
    assert "7 snapshots written" in out
    make_drift(dbs, world)

    code, out, err = cli("sync", "--check", *conn_flags)
    assert (code, err) == (3, "")
    assert "Tasks whose organization does not exist (repair fixes)" in out
    assert " 2  Tasks whose organization" in out

    code, out, err = cli("sync", "--repair", *conn_flags)
    assert (code, err) == (0, "")
    assert "2 orphaned tasks quarantined" in out
    code, out, _ = cli("sync", "--check", *conn_flags)
    assert code == 3  # the report-only findings stay: a deactivated organization's task...
    assert "0 repairable" in out

    code, _, err = cli("sync", "--batch-size", "0", *conn_flags)
    assert code == 1 and err == "creatia-tui: --batch-size must be at least 1.\n"
    code, _, _ = cli("sync", "--once", "--check", *conn_flags)
    assert code == 2  # argparse: the flags exclude each other


def test_the_runner_runs_stops_and_runs_now(dbs: Databases, world: World) -> None:
    calls: list[str] = []

    def counting(ctx: worker.JobContext) -> worker.JobOutcome:
        calls.append("run")
        if len(calls) == 2:
            raise OSError("disk full")
        return worker.JobOutcome(items=2, summary="two done", lag_seconds=0.5)

    job = worker.Job("counting", "Counting", 3600, counting)
    runner = worker.WorkerRunner(dbs, [job], label="test")
    runner.run_now("counting")  # stopped: runs once
    wait_for(lambda: runner.states()[0].runs == 1 and not runner.running())
    runner.start()
    wait_for(lambda: runner.states()[0].runs == 2)
    runner.run_now("counting")  # waiting an hour: woken
    wait_for(lambda: runner.states()[0].runs == 3)
    [state] = runner.states()
    assert (state.items, state.errors, state.last_error) == (4, 1, "disk full.")
    assert state.last_summary == "two done" and state.lag_seconds == 0.5
    wait_for(lambda: runner.states()[0].state == "waiting")
    [published] = [w for w in worker.published_workers(dbs) if w.label == "test"]
    assert published.jobs[0].runs == 3 and not published.gone()
    runner.stop(wait=5)
    assert runner.states()[0].state == "stopped"
    [published] = [w for w in worker.published_workers(dbs) if w.label == "test"]
    assert published.gone()
    assert [job.name for job in worker.JOBS] == [
        "snapshot-listener", "snapshot-catch-up", "consistency-check", "burndown", "backup"
    ]


def test_worker_runs_headless_and_stops_on_sigterm(
    settings: Settings, dbs: Databases, world: World, home: Path
) -> None:
    script = shutil.which("creatia-tui", path=str(Path(sys.executable).parent))
    assert script
    dbs.mongo.tasks.insert_one(new_task(world.lab, 1, assignee_id=world.jiho))
    env = {**os.environ, "CREATIA_HOME": str(home), "CREATIA_PG_DSN": settings.pg_dsn,
           "CREATIA_MONGO_URI": str(settings.mongo_uri), "CREATIA_MONGO_DB": settings.mongo_db}
    process = subprocess.Popen(
        [script, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: any(not w.gone() for w in worker.published_workers(dbs)), 20)
        wait_for(lambda: dbs.mongo.user_snapshots.count_documents({}) == 7, 10)
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE users SET name = '지호' WHERE id = %s", (world.jiho,))
        wait_for(lambda: (dbs.mongo.user_snapshots.find_one({"user_id": world.jiho}) or {})
                 .get("name") == "지호", 5)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err == ""
    assert "Running snapshot-listener" in out and out.endswith("Stopped.\n")
    [published] = worker.published_workers(dbs)
    assert published.stopped and {job.state for job in published.jobs} == {"stopped"}
    logged = (home / "log" / "creatia-tui.log").read_text(encoding="utf-8")
    assert "worker stopping" in logged and "worker stopped" in logged
    assert settings.pg_dsn not in logged
