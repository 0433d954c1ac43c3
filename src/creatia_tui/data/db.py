"""Connections: one psycopg pool for PostgreSQL, one pymongo client for MongoDB.

Passwords are never part of the DSN or URI we are given on the command line: they come from the
secret store (``pg-password``, ``mongo-password``) and are handed to the drivers as keyword
arguments, so they appear in no argv, log or error message. A password already written in a DSN
or URI (in the config file, say) still works, and is redacted from every message.

Outages: each database has a :class:`Link` that remembers whether its last check answered.
A failed check marks it down and schedules the next attempt with exponential backoff and jitter
(:func:`backoff_delay`, capped at 30 s). While PostgreSQL is known down, :meth:`Databases.pg`
fails at once with the last reason instead of waiting out the pool's timeout for every request;
once the retry is due, the next request (or the status line's check) tries again, and a server
that answers again is used at once (the pool's stale connections are checked and replaced).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pymongo
from psycopg import conninfo as pg_conninfo
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout
from pymongo.database import Database
from pymongo.errors import ConfigurationError as MongoConfigurationError
from pymongo.errors import InvalidURI, PyMongoError

from creatia_tui.config import Settings
from creatia_tui.data.access import ReadGrants
from creatia_tui.errors import ConfigurationError, DatabaseUnavailable, one_line, redact

log = logging.getLogger(__name__)

APP_NAME = "creatia-tui"


def pg_conninfo_for(dsn: str, password: str | None = None, **extra: Any) -> str:
    """The libpq connection string with our defaults; a bad DSN is one clear sentence."""
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(
            f"The PostgreSQL DSN is not valid: {one_line(redact(str(exc)))}"
        ) from exc
    params.setdefault("application_name", APP_NAME)
    params.setdefault("connect_timeout", 5)
    if password and not params.get("password"):
        params["password"] = password
    params.update(extra)
    return pg_conninfo.make_conninfo("", **params)


def describe_pg_target(dsn: str) -> str:
    """host:port/dbname, with no user or password, for messages."""
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "PostgreSQL"
    host = params.get("host") or params.get("hostaddr") or "local socket"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname', '')}"


def describe_mongo_target(uri: str) -> str:
    try:
        parsed = pymongo.uri_parser.parse_uri(uri, validate=False, warn=True)
    except (InvalidURI, MongoConfigurationError, ValueError):
        return "MongoDB"
    hosts = ",".join(f"{h}:{p}" for h, p in parsed.get("nodelist", []))
    return hosts or "MongoDB"


def pg_unavailable(
    exc: BaseException, dsn: str, password: str | None = None
) -> DatabaseUnavailable:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    # libpq says 'connection failed: connection to server at "h", port p failed: <cause>' and
    # then a hint line; the target is named by us, so keep the cause.
    cause = lines[0].rsplit(" failed: ", 1)[-1] if lines else type(exc).__name__
    cause = one_line(redact(cause, (password or "",)))
    return DatabaseUnavailable(
        f"PostgreSQL at {describe_pg_target(dsn)} is unavailable: {cause}", cause
    )


def mongo_unavailable(
    exc: BaseException, uri: str, password: str | None = None
) -> DatabaseUnavailable:
    text = str(exc).split(", Timeout:")[0]  # pymongo appends the whole topology description
    cause = one_line(redact(text, (password or "",)))
    return DatabaseUnavailable(
        f"MongoDB at {describe_mongo_target(uri)} is unavailable: {cause}", cause
    )


def connect_pg(dsn: str, password: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A single connection (migrations, COPY, LISTEN); the pool serves everything else."""
    info = pg_conninfo_for(dsn, password)
    try:
        return psycopg.connect(info, **kwargs)
    except psycopg.Error as exc:
        raise pg_unavailable(exc, dsn, password) from None


def make_mongo_client(uri: str, password: str | None = None, **kwargs: Any) -> pymongo.MongoClient:
    options: dict[str, Any] = {
        "tz_aware": True,
        "appname": APP_NAME,
        "serverSelectionTimeoutMS": 5000,
        "connectTimeoutMS": 5000,
    }
    options.update(kwargs)
    try:
        parsed = pymongo.uri_parser.parse_uri(uri, validate=True, warn=False)
    except (InvalidURI, MongoConfigurationError, ValueError) as exc:
        raise ConfigurationError(
            f"The MongoDB URI is not valid: {one_line(redact(str(exc)))}"
        ) from None
    if password and not parsed.get("password"):
        options["password"] = password
    try:
        return pymongo.MongoClient(uri, **options)
    except (MongoConfigurationError, InvalidURI, ValueError) as exc:
        raise ConfigurationError(
            f"The MongoDB URI is not valid: {one_line(redact(str(exc)))}"
        ) from None


BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 30.0
MONGO_PROBE_TIMEOUT_MS = 2000
POOL_TIMEOUT_S = 5.0
POOL_WAIT_STEP_S = 0.25


def backoff_delay(
    failures: int,
    *,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the n-th consecutive failure: base·2^(n-1), capped, with "equal
    jitter" (half fixed, half random) so that many clients do not retry in step."""
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return ceiling / 2 + rng() * ceiling / 2


@dataclass
class Link:
    """What the last check of one database found; shared by every screen's status line."""

    name: str
    up: bool | None = None  # None until the first check has answered
    latency_ms: float | None = None
    error: DatabaseUnavailable | None = None
    failures: int = 0
    retry_at: float = 0.0  # time.monotonic() when the next attempt is due (while down)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def down(self) -> bool:
        return self.up is False

    def retry_in(self, now: float | None = None) -> float:
        """Seconds until the next attempt is due (0 when up or due)."""
        if not self.down:
            return 0.0
        return max(0.0, self.retry_at - (time.monotonic() if now is None else now))

    def mark_up(self, latency_ms: float) -> bool:
        """Record an answer; True when the database was down until now."""
        with self._lock:
            recovered = self.up is False
            self.up, self.latency_ms, self.error, self.failures = True, latency_ms, None, 0
            return recovered

    def mark_down(self, error: DatabaseUnavailable) -> None:
        with self._lock:
            self.failures += 1
            self.up, self.latency_ms, self.error = False, None, error
            self.retry_at = time.monotonic() + backoff_delay(self.failures)


@dataclass
class Databases:
    """The app's two connections, opened once and closed cleanly."""

    settings: Settings
    pg_password: str | None = None
    mongo_password: str | None = None
    pool_min: int = 1
    pool_max: int = 6
    # Extra MongoClient options (tests pass event_listeners for command monitoring).
    mongo_options: dict[str, Any] = field(default_factory=dict)
    _pool: ConnectionPool | None = field(default=None, init=False, repr=False)
    _mongo: pymongo.MongoClient | None = field(default=None, init=False, repr=False)
    _mongo_probe: pymongo.MongoClient | None = field(default=None, init=False, repr=False)
    pg_link: Link = field(default_factory=lambda: Link("PostgreSQL"), init=False)
    mongo_link: Link = field(default_factory=lambda: Link("MongoDB"), init=False)
    # The standings read lately, which the board's open may rely on (access decision 3).
    read_grants: ReadGrants = field(default_factory=ReadGrants, init=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> Databases:
        from creatia_tui.secret_store import SecretStore

        if not settings.pg_dsn:
            raise ConfigurationError(
                "No PostgreSQL DSN: pass --pg-dsn, set CREATIA_PG_DSN or add [postgres] dsn to "
                f"{settings.locations.config_file}."
            )
        if not settings.mongo_uri:
            raise ConfigurationError(
                "No MongoDB URI: pass --mongo-uri, set CREATIA_MONGO_URI or add [mongo] uri to "
                f"{settings.locations.config_file}."
            )
        store = SecretStore(settings.locations.secrets_file)
        log.info("secrets are read from %s", store.backend_name)
        return cls(
            settings,
            pg_password=store.get("pg-password"),
            mongo_password=store.get("mongo-password"),
            **kwargs,
        )

    # ------------------------------------------------------------ PostgreSQL
    @property
    def pg_dsn(self) -> str:
        assert self.settings.pg_dsn
        return self.settings.pg_dsn

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            info = pg_conninfo_for(self.pg_dsn, self.pg_password)
            self._pool = ConnectionPool(
                info,
                min_size=self.pool_min,
                max_size=self.pool_max,
                kwargs={"row_factory": dict_row},
                name="creatia-pg",
                open=False,
                timeout=POOL_TIMEOUT_S,
                # psycopg_pool retries a lost server with backoff for this long before giving
                # up on it; a day means "as long as the app runs" (0 would mean never).
                reconnect_timeout=24 * 3600,
            )
            self._pool.open(wait=False)
        return self._pool

    @contextlib.contextmanager
    def pg(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection in a transaction: committed on success, rolled back on error.

        Fails at once while PostgreSQL is known down and its retry is not due. Before anything
        has checked the server, and when a retry is due, one direct attempt decides first, so a
        server that refuses is said at once instead of after the pool's wait."""
        link = self.pg_link
        if link.up is None or (link.down and link.retry_in() <= 0):
            self.check_pg()
        elif link.down and link.error is not None:
            raise DatabaseUnavailable(str(link.error), link.error.cause)
        conn = self._pooled_connection()
        try:
            with conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise pg_unavailable(exc, self.pg_dsn, self.pg_password) from exc
        finally:
            self.pool.putconn(conn)

    def _pooled_connection(self) -> psycopg.Connection[dict[str, Any]]:
        """Wait for a pooled connection in short steps, giving up as soon as another check
        (the status line's) finds the server down, or after POOL_TIMEOUT_S."""
        deadline = time.monotonic() + POOL_TIMEOUT_S
        while True:
            try:
                return self.pool.getconn(timeout=min(POOL_WAIT_STEP_S,
                                                     max(0.01, deadline - time.monotonic())))
            except PoolTimeout as exc:
                link = self.pg_link
                if link.down and link.error is not None:
                    raise DatabaseUnavailable(str(link.error), link.error.cause) from None
                if time.monotonic() < deadline:
                    continue
                # The pool only knows it waited; one direct attempt tells the person why.
                self.check_pg()
                raise DatabaseUnavailable(
                    f"PostgreSQL at {describe_pg_target(self.pg_dsn)} answered, but no pooled "
                    f"connection was free in time ({one_line(str(exc))})"
                ) from exc
            except psycopg.OperationalError as exc:
                raise pg_unavailable(exc, self.pg_dsn, self.pg_password) from exc

    def connect_pg(self, **kwargs: Any) -> psycopg.Connection:
        return connect_pg(self.pg_dsn, self.pg_password, **kwargs)

    def check_pg(self) -> None:
        """Raise DatabaseUnavailable with one sentence when PostgreSQL does not answer.

        Records the outcome and its latency in :attr:`pg_link`. The query is the standing of
        whoever this process acts for lately (:meth:`ReadGrants.refresh`), or ``SELECT 1``."""
        started = time.perf_counter()
        try:
            with self.connect_pg(autocommit=True) as conn:
                try:
                    if not self.read_grants.refresh(conn):
                        conn.execute("SELECT 1")
                except psycopg.Error as exc:  # the server went away after accepting us
                    raise pg_unavailable(exc, self.pg_dsn, self.pg_password) from None
        except DatabaseUnavailable as exc:
            self.pg_link.mark_down(exc)
            raise
        if self.pg_link.mark_up((time.perf_counter() - started) * 1000) and self._pool:
            # The pool's idle connections died with the server: replace them now rather than
            # failing the next requests one by one.
            with contextlib.suppress(Exception):
                self._pool.check()

    # ------------------------------------------------------------ MongoDB
    @property
    def mongo_client(self) -> pymongo.MongoClient:
        if self._mongo is None:
            assert self.settings.mongo_uri
            self._mongo = make_mongo_client(
                self.settings.mongo_uri, self.mongo_password, **self.mongo_options
            )
        return self._mongo

    @property
    def mongo(self) -> Database:
        return self.mongo_client[self.settings.mongo_db]

    def mongo_error(self, exc: BaseException) -> DatabaseUnavailable:
        assert self.settings.mongo_uri
        return mongo_unavailable(exc, self.settings.mongo_uri, self.mongo_password)

    @property
    def mongo_probe(self) -> pymongo.MongoClient:
        """A client with short timeouts for health checks: an outage shows in ~2 s, not 5."""
        if self._mongo_probe is None:
            assert self.settings.mongo_uri
            options = {
                "serverSelectionTimeoutMS": MONGO_PROBE_TIMEOUT_MS,
                "connectTimeoutMS": MONGO_PROBE_TIMEOUT_MS,
                "socketTimeoutMS": MONGO_PROBE_TIMEOUT_MS,
                **self.mongo_options,
                "maxPoolSize": 1,
            }
            self._mongo_probe = make_mongo_client(
                self.settings.mongo_uri, self.mongo_password, **options
            )
        return self._mongo_probe

    def check_mongo(self) -> None:
        """Raise DatabaseUnavailable when MongoDB does not answer a ping; recorded in
        :attr:`mongo_link`."""
        started = time.perf_counter()
        try:
            self.mongo_probe.admin.command("ping")
        except PyMongoError as exc:
            error = self.mongo_error(exc)
            self.mongo_link.mark_down(error)
            raise error from None
        self.mongo_link.mark_up((time.perf_counter() - started) * 1000)

    def check(self) -> None:
        self.check_pg()
        self.check_mongo()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._mongo is not None:
            self._mongo.close()
            self._mongo = None
        if self._mongo_probe is not None:
            self._mongo_probe.close()
            self._mongo_probe = None

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
