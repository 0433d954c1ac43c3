"""The command line, run in-process and as the installed console script."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from creatia_tui.cli import run
from creatia_tui.data.passwords import verify_password


def cli(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def conn_flags(settings) -> list[str]:
    os.environ["CREATIA_MONGO_DB"] = settings.mongo_db
    return ["--pg-dsn", settings.pg_dsn, "--mongo-uri", settings.mongo_uri]


@pytest.fixture(autouse=True)
def _restore_mongo_db_env(monkeypatch) -> None:
    monkeypatch.delenv("CREATIA_MONGO_DB", raising=False)


def test_migrate_is_idempotent_from_the_command_line(conn_flags: list[str]) -> None:
    code, out, err = cli("migrate", *conn_flags)
    assert (code, err) == (0, "")
    assert "0 migration(s) applied" in out  # the fixture's database is already migrated
    assert "0 collection(s) created" in out


def test_migrate_shard_on_a_plain_server_changes_nothing(conn_flags: list[str]) -> None:
    code, out, _ = cli("migrate", "--shard", *conn_flags)
    assert code == 0
    assert "not a mongos" in out and "nothing was changed" in out


def test_users_create_hashes_the_password_read_from_stdin(
    conn_flags: list[str], pg_dsn: str
) -> None:
    code, out, err = cli(
        "users", "create", "--email", "Minjun.Kim@Example.com", "--name", "김민준",
        "--password-stdin", "--admin", *conn_flags, stdin="correct horse battery\n",
    )
    assert (code, err) == (0, ""), err
    assert "platform admin minjun.kim@example.com" in out
    with psycopg.connect(pg_dsn) as conn:
        name, role, encrypted = conn.execute(
            "SELECT name, role, encrypted_password FROM users WHERE email = %s",
            ("minjun.kim@example.com",),
        ).fetchone()
    assert (name, role) == ("김민준", "admin")
    assert encrypted.startswith("$argon2") and "correct horse" not in encrypted
    assert verify_password(encrypted, "correct horse battery")


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "long enough pw", "not a valid email address"),
        ("a@example.com", "pw-7chr", "too short"),
    ],
)
def test_users_create_refuses_bad_input_and_writes_nothing(
    conn_flags: list[str], pg_dsn: str, email: str, password: str, message: str
) -> None:
    code, out, err = cli(
        "users", "create", "--email", email, "--name", "N", "--password-stdin", *conn_flags,
        stdin=password + "\n",
    )
    assert code == 1 and out == ""
    assert message in err and err.count("\n") == 1 and password not in err
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0


def test_a_duplicate_user_is_one_sentence(conn_flags: list[str]) -> None:
    args = ("users", "create", "--email", "a@example.com", "--name", "A", "--password-stdin")
    assert cli(*args, *conn_flags, stdin="password-1\n")[0] == 0
    code, _, err = cli(*args, *conn_flags, stdin="password-2\n")
    assert code == 1 and "already exists" in err and err.count("\n") == 1


def test_secrets_set_and_where_use_the_0600_file(home: Path) -> None:
    code, out, err = cli("secrets", "set", "pg-password", stdin="pa55word-비밀\n")
    assert (code, err) == (0, "")
    assert "0600" in out and "pa55word" not in out
    secrets_file = home.resolve() / "config" / "secrets.json"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"
    code, out, _ = cli("secrets", "where")
    assert code == 0 and "no keyring backend" in out and "pg-password" in out


def test_an_unreachable_database_is_one_line_on_stderr(home: Path) -> None:
    code, out, err = cli(
        "migrate", "--pg-dsn", "postgresql://alice:hunter22@127.0.0.1:1/creatia",
        "--mongo-uri", "mongodb://127.0.0.1:1",
    )
    assert code == 1 and out == ""
    assert err.startswith("creatia-tui: PostgreSQL at 127.0.0.1:1/creatia is unavailable")
    assert err.count("\n") == 1 and "hunter22" not in err and "Traceback" not in err


def test_missing_settings_are_one_line(home: Path) -> None:
    code, _, err = cli("migrate")
    assert code == 1 and "No PostgreSQL DSN" in err and err.count("\n") == 1


def test_seed_refuses_negative_counts(conn_flags: list[str]) -> None:
    code, _, err = cli("seed", "--tasks", "-5", *conn_flags)
    assert code == 1 and "--tasks cannot be negative" in err


def test_the_console_script_prints_one_sentence_and_debug_shows_the_traceback(
    home: Path,
) -> None:
    script = shutil.which("creatia-tui", path=str(Path(sys.executable).parent))
    assert script, "the console script is installed beside the interpreter"
    env = {**os.environ, "CREATIA_HOME": str(home)}
    args = [script, "migrate", "--pg-dsn", "postgresql://u:hunter22@127.0.0.1:1/x",
            "--mongo-uri", "mongodb://127.0.0.1:1"]
    plain = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert plain.returncode == 1
    assert plain.stderr.count("\n") == 1 and "hunter22" not in plain.stderr
    debug = subprocess.run([*args, "--debug"], capture_output=True, text=True, env=env,
                           timeout=60)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_local_servers_start_stop_status_env_and_keep_data(home: Path) -> None:
    code, out, err = cli("local", "start")
    assert code == 0, err
    try:
        code, out, _ = cli("local", "status", "--json")
        status = json.loads(out)
        assert code == 0 and status["postgres"]["running"] and status["mongo"]["running"]
        code, out, _ = cli("local", "env")
        lines = out.splitlines()
        assert lines[0].startswith("export CREATIA_PG_DSN='postgresql://postgres@127.0.0.1:")
        assert lines[1].startswith("export CREATIA_MONGO_URI='mongodb://127.0.0.1:")
        dsn = lines[0].split("=", 1)[1].strip("'")
        with psycopg.connect(dsn, autocommit=True) as conn:
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()[0]
            assert "pg_stat_statements" in preload
            conn.execute("CREATE TABLE survives (x int)")
        import pymongo

        uri = lines[1].split("=", 1)[1].strip("'")
        with pymongo.MongoClient(uri) as client:
            client.keep.things.insert_one({"x": 1})
    finally:
        code, out, _ = cli("local", "stop")
    assert code == 0 and "postgres" in out and "mongo" in out
    code, out, _ = cli("local", "status")
    assert code == 3 and "stopped" in out
    code, _, err = cli("local", "env")
    assert code == 1 and "not running" in err

    assert cli("local", "start")[0] == 0
    try:
        _, out, _ = cli("local", "env")
        dsn = out.splitlines()[0].split("=", 1)[1].strip("'")
        uri = out.splitlines()[1].split("=", 1)[1].strip("'")
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT to_regclass('survives')").fetchone()[0] == "survives"
        with pymongo.MongoClient(uri) as client:
            assert client.keep.things.count_documents({}) == 1
    finally:
        cli("local", "stop")
