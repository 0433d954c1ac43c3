"""Settings and file locations.

Precedence, highest first: command-line flags, environment variables (``CREATIA_PG_DSN``,
``CREATIA_MONGO_URI``, ``CREATIA_MONGO_DB``), the TOML config file, built-in defaults.

``CREATIA_HOME`` moves everything (config, data, state, logs) under one folder; without it the
platform's user directories for ``creatia-tui`` are used (platformdirs).

The config file (``config.toml`` in the config dir) looks like::

    [postgres]
    dsn = "postgresql://creatia@db.internal:5432/creatia"

    [mongo]
    uri = "mongodb://mongo.internal:27017/?replicaSet=rs0"
    database = "creatia_logs"

Passwords do not belong in it: ``creatia-tui secrets set pg-password`` stores them (see
:mod:`creatia_tui.secret_store`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import platformdirs

from creatia_tui.errors import UserError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

APP_NAME = "creatia-tui"
DEFAULT_MONGO_DB = "creatia_logs"


@dataclass(frozen=True)
class Locations:
    """The single place that knows where files live."""

    config_dir: Path
    data_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def secrets_file(self) -> Path:
        return self.config_dir / "secrets.json"

    @property
    def local_servers_dir(self) -> Path:
        return self.data_dir / "local"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Locations:
        env = os.environ if environ is None else environ
        home = env.get("CREATIA_HOME")
        if home:
            root = Path(home).expanduser().resolve()
            return cls(root / "config", root / "data", root / "state", root / "log")
        return cls(
            Path(platformdirs.user_config_dir(APP_NAME)),
            Path(platformdirs.user_data_dir(APP_NAME)),
            Path(platformdirs.user_state_dir(APP_NAME)),
            Path(platformdirs.user_log_dir(APP_NAME)),
        )


@dataclass(frozen=True)
class Settings:
    pg_dsn: str | None = None
    mongo_uri: str | None = None
    mongo_db: str = DEFAULT_MONGO_DB
    locations: Locations = field(default_factory=Locations.from_env)
    # Where each value came from, for `creatia-tui local env`-style reporting and errors.
    sources: dict[str, str] = field(default_factory=dict)

    def with_overrides(self, pg_dsn: str | None = None, mongo_uri: str | None = None) -> Settings:
        sources = dict(self.sources)
        changes: dict[str, Any] = {}
        if pg_dsn:
            changes["pg_dsn"] = pg_dsn
            sources["pg_dsn"] = "flag"
        if mongo_uri:
            changes["mongo_uri"] = mongo_uri
            sources["mongo_uri"] = "flag"
        return replace(self, sources=sources, **changes)


def read_config_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"The config file {path} is not valid TOML: {exc}.") from exc


def load_settings(
    pg_dsn: str | None = None,
    mongo_uri: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    env = os.environ if environ is None else environ
    locations = Locations.from_env(env)
    data = read_config_file(locations.config_file)
    pg_section = data.get("postgres", {}) or {}
    mongo_section = data.get("mongo", {}) or {}

    sources: dict[str, str] = {}

    def pick(flag: str | None, env_name: str, file_value: Any, key: str) -> str | None:
        if flag:
            sources[key] = "flag"
            return flag
        if env.get(env_name):
            sources[key] = env_name
            return env[env_name]
        if file_value:
            sources[key] = str(locations.config_file)
            return str(file_value)
        return None

    dsn = pick(pg_dsn, "CREATIA_PG_DSN", pg_section.get("dsn"), "pg_dsn")
    uri = pick(mongo_uri, "CREATIA_MONGO_URI", mongo_section.get("uri"), "mongo_uri")
    mongo_db = (
        env.get("CREATIA_MONGO_DB") or mongo_section.get("database") or DEFAULT_MONGO_DB
    )
    return Settings(
        pg_dsn=dsn, mongo_uri=uri, mongo_db=str(mongo_db), locations=locations, sources=sources
    )
