"""Connections: one psycopg pool for PostgreSQL, one pymongo client for MongoDB.

Passwords are never part of the DSN or URI we are given on the command line: they come from the
secret store (``pg-password``, ``mongo-password``) and are handed to the drivers as keyword
arguments, so they appear in no argv, log or error message. A password already written in a DSN
or URI (in the config file, say) still works, and is redacted from every message.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
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


def pg_error_sentence(exc: BaseException, dsn: str, password: str | None = None) -> str:
    target = describe_pg_target(dsn)
    return f"PostgreSQL at {target} is unavailable: {one_line(redact(str(exc), (password or '',)))}"


def mongo_error_sentence(exc: BaseException, uri: str, password: str | None = None) -> str:
    target = describe_mongo_target(uri)
    text = str(exc).split(", Timeout:")[0]  # pymongo appends the whole topology description
    return f"MongoDB at {target} is unavailable: {one_line(redact(text, (password or '',)))}"


def connect_pg(dsn: str, password: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A single connection (migrations, COPY, LISTEN); the pool serves everything else."""
    info = pg_conninfo_for(dsn, password)
    try:
        return psycopg.connect(info, **kwargs)
    except psycopg.Error as exc:
        raise DatabaseUnavailable(pg_error_sentence(exc, dsn, password)) from None


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
                timeout=10,
                reconnect_timeout=0,  # keep retrying; the status line shows the outage
            )
            self._pool.open(wait=False)
        return self._pool

    @contextlib.contextmanager
    def pg(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection in a transaction: committed on success, rolled back on error."""
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise DatabaseUnavailable(
                pg_error_sentence(exc, self.pg_dsn, self.pg_password)
            ) from exc

    def connect_pg(self, **kwargs: Any) -> psycopg.Connection:
        return connect_pg(self.pg_dsn, self.pg_password, **kwargs)

    def check_pg(self) -> None:
        """Raise DatabaseUnavailable with one sentence when PostgreSQL does not answer."""
        with self.connect_pg(autocommit=True) as conn:
            conn.execute("SELECT 1")

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
        return DatabaseUnavailable(
            mongo_error_sentence(exc, self.settings.mongo_uri, self.mongo_password)
        )

    def check_mongo(self) -> None:
        try:
            self.mongo_client.admin.command("ping")
        except PyMongoError as exc:
            raise self.mongo_error(exc) from None

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

    def __enter__(self) -> Databases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
