"""`creatia-tui demo`: embedded servers, migrations and seed on the first run only."""

from __future__ import annotations

import io
from pathlib import Path

import psycopg

from creatia_tui.cli import run
from creatia_tui.ops.local_servers import LocalServers


def test_demo_prepares_everything_once_and_stops_the_servers(home: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert run(["demo", "--no-tui"], stdout=out, stderr=err) == 0, err.getvalue()
    assert "Seeding demo data (first run)" in out.getvalue()
    servers = LocalServers(home.resolve() / "data" / "local")
    assert servers.pg_running() is None and servers.mongo_running() is None

    out = io.StringIO()
    assert run(["demo", "--no-tui"], stdout=out, stderr=err) == 0, err.getvalue()
    assert "Seeding" not in out.getvalue()  # the data survived the stop and is not seeded twice

    state = servers.start()
    try:
        with psycopg.connect(state.pg_dsn) as conn:
            orgs = conn.execute("SELECT count(*) FROM organizations").fetchone()[0]
            admin = conn.execute(
                "SELECT role FROM users WHERE email = 'admin@creatia.local'"
            ).fetchone()
        assert orgs == 3 and admin == ("admin",)
    finally:
        servers.stop()
