"""Health checks of both databases: the status line, ``creatia-tui health`` and its HTTP endpoint.

``SELECT 1`` on PostgreSQL and ``ping`` on MongoDB, each timed, run side by side so a database
that hangs until its timeout does not delay the other's answer. The JSON is the seed's
(``DatabaseHealthChecker.system_status``): ``status`` is ``ok`` or ``error``, ``details`` holds one
boolean per database and the timestamp; ``checks`` adds each check's latency and reason.

Extra checks (hook): :data:`EXTRA_CHECKS` maps a name to a function returning a
:class:`ServiceHealth`; they are reported under ``checks`` and, when registered ``critical``,
count towards ``status`` and the exit code. The backups issue registers "age of the last good
backup" here (``register_check("backup", ..., critical=False)`` around its
``last_good_backup_age``); nothing here knows about backups.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from creatia_tui.data.db import Databases
from creatia_tui.errors import DatabaseUnavailable, UserError, one_line, redact

log = logging.getLogger(__name__)

HEALTH_PATH = "/health/database"


@dataclass(frozen=True)
class ServiceHealth:
    """One check's outcome; ``up is None`` until the first check has answered."""

    name: str
    up: bool | None = None
    latency_ms: float | None = None
    error: str | None = None
    detail: str | None = None  # what an up check adds to its line ("last one 3 hours ago")

    def as_json(self) -> dict[str, Any]:
        latency = None if self.latency_ms is None else round(self.latency_ms, 2)
        shown = {"up": bool(self.up), "latency_ms": latency, "error": self.error}
        if self.detail is not None:
            shown["detail"] = self.detail
        return shown


def measure(name: str, check: Callable[[], None]) -> ServiceHealth:
    """Run one blocking check and time it (call from a worker thread, never the UI thread)."""
    started = time.perf_counter()
    try:
        check()
    except DatabaseUnavailable as exc:
        return ServiceHealth(name, up=False, error=exc.cause)  # the caller names the database
    except UserError as exc:
        return ServiceHealth(name, up=False, error=one_line(str(exc)))
    except Exception as exc:
        # A probe that fails in a way the data layer did not foresee still means "down"; the
        # log keeps the traceback for whoever fixes the data layer.
        log.warning("%s health check failed", name, exc_info=True)
        reason = f"{type(exc).__name__}: {redact(str(exc))}"
        return ServiceHealth(name, up=False, error=one_line(reason))
    return ServiceHealth(name, up=True, latency_ms=(time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class ExtraCheck:
    check: Callable[[], ServiceHealth]
    critical: bool = False


# name -> extra check (the hook for "age of the last good backup"; see the module docstring)
EXTRA_CHECKS: dict[str, ExtraCheck] = {}


def register_check(
    name: str, check: Callable[[], ServiceHealth], *, critical: bool = False
) -> None:
    EXTRA_CHECKS[name] = ExtraCheck(check, critical)


@dataclass(frozen=True)
class HealthReport:
    postgresql: ServiceHealth
    mongodb: ServiceHealth
    timestamp: dt.datetime
    extra: dict[str, tuple[ServiceHealth, bool]]  # name -> (outcome, critical)

    @property
    def ok(self) -> bool:
        critical = [h for h, is_critical in self.extra.values() if is_critical]
        return all(bool(h.up) for h in (self.postgresql, self.mongodb, *critical))

    def as_json(self) -> dict[str, Any]:
        stamp = self.timestamp.isoformat()
        checks = {"postgresql": self.postgresql.as_json(), "mongodb": self.mongodb.as_json()}
        checks.update({name: h.as_json() for name, (h, _) in self.extra.items()})
        return {
            "status": "ok" if self.ok else "error",
            "details": {
                "postgresql": bool(self.postgresql.up),
                "mongodb": bool(self.mongodb.up),
                "timestamp": stamp,
            },
            "checks": checks,
            "timestamp": stamp,
        }

    def lines(self) -> list[str]:
        """One line per check, states in words (the command's plain output)."""
        out = []
        checks = [(self.postgresql, True), (self.mongodb, True), *self.extra.values()]
        for health, critical in checks:
            if health.up:
                latency = "" if health.latency_ms is None else f" {health.latency_ms:.1f} ms"
                detail = f": {health.detail}" if health.detail else ""
                out.append(f"{health.name}: up{latency}{detail}")
            elif critical:
                out.append(f"{health.name}: down: {health.error or 'no answer.'}")
            else:  # a warning: it does not change the exit code
                out.append(f"{health.name}: warning: {health.error or 'no answer.'}")
        return out


def check_health(
    dbs: Databases, extra: dict[str, ExtraCheck] | None = None
) -> HealthReport:
    """Both databases side by side, then the extra checks."""
    extra = EXTRA_CHECKS if extra is None else extra
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="health") as pool:
        pg = pool.submit(measure, "PostgreSQL", dbs.check_pg)
        mongo = pool.submit(measure, "MongoDB", dbs.check_mongo)
        postgresql, mongodb = pg.result(), mongo.result()
    outcomes: dict[str, tuple[ServiceHealth, bool]] = {}
    for name, item in extra.items():
        try:
            outcomes[name] = (item.check(), item.critical)
        except Exception as exc:  # an extra check must not take the endpoint down
            log.warning("health check %s failed", name, exc_info=True)
            outcomes[name] = (ServiceHealth(name, up=False, error=one_line(redact(str(exc)))),
                              item.critical)
    return HealthReport(postgresql, mongodb, dt.datetime.now(dt.timezone.utc), outcomes)


class HealthServer(ThreadingHTTPServer):
    """Answers GET /health/database with the report's JSON: 200 when ok, 503 otherwise."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], dbs: Databases,
        extra: dict[str, ExtraCheck] | None = None,
    ) -> None:
        # One check at a time: a burst of probes shares the connections instead of opening
        # one each.
        self.dbs = dbs
        self.extra = extra
        self.check_lock = threading.Lock()
        super().__init__(address, HealthHandler)


class HealthHandler(BaseHTTPRequestHandler):
    server: HealthServer
    server_version = "creatia-tui-health"

    def do_GET(self) -> None:
        if self.path.split("?")[0] != HEALTH_PATH:
            self._send(404, {"status": "error", "error": f"Not found; try {HEALTH_PATH}."})
            return
        with self.server.check_lock:
            report = check_health(self.server.dbs, self.server.extra)
        self._send(200 if report.ok else 503, report.as_json())

    def _send(self, code: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.info("health %s", format % args)


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (``[::1]:8080`` for IPv6) -> (host, port); one sentence when malformed."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError(f"--serve wants HOST:PORT, such as 127.0.0.1:8080, not {text!r}.")
    return host, int(port)


def serve(
    dbs: Databases, host: str, port: int, extra: dict[str, ExtraCheck] | None = None
) -> HealthServer:
    """Bind the endpoint and serve it from a daemon thread; the caller shuts it down. `extra`
    replaces the registered extra checks (None: those of EXTRA_CHECKS)."""
    try:
        server = HealthServer((host, port), dbs, extra)
    except OSError as exc:
        raise UserError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    threading.Thread(target=server.serve_forever, name="health-http", daemon=True).start()
    return server
