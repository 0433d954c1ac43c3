"""Settings precedence, the secret store's keyring/0600-file fallback, redaction."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend

from creatia_tui.config import Locations, load_settings
from creatia_tui.errors import UserError, redact
from creatia_tui.secret_store import SecretStore


def test_flags_beat_environment_beat_config_file(home: Path, monkeypatch) -> None:
    locations = Locations.from_env({"CREATIA_HOME": str(home)})
    locations.config_dir.mkdir(parents=True)
    locations.config_file.write_text(
        '[postgres]\ndsn = "postgresql://file/db"\n'
        '[mongo]\nuri = "mongodb://file:27017"\ndatabase = "from_file"\n'
    )
    settings = load_settings()
    assert (settings.pg_dsn, settings.mongo_uri, settings.mongo_db) == (
        "postgresql://file/db", "mongodb://file:27017", "from_file",
    )
    monkeypatch.setenv("CREATIA_PG_DSN", "postgresql://env/db")
    monkeypatch.setenv("CREATIA_MONGO_DB", "from_env")
    settings = load_settings()
    assert settings.pg_dsn == "postgresql://env/db"
    assert settings.mongo_db == "from_env"
    assert settings.sources["pg_dsn"] == "CREATIA_PG_DSN"
    settings = load_settings(pg_dsn="postgresql://flag/db", mongo_uri="mongodb://flag")
    assert settings.pg_dsn == "postgresql://flag/db"
    assert settings.mongo_uri == "mongodb://flag"


def test_defaults_without_a_config_file(home: Path) -> None:
    settings = load_settings()
    assert settings.pg_dsn is None and settings.mongo_uri is None
    assert settings.mongo_db == "creatia_logs"
    assert settings.locations.config_dir == home.resolve() / "config"


def test_a_broken_config_file_is_one_sentence(home: Path) -> None:
    locations = Locations.from_env({"CREATIA_HOME": str(home)})
    locations.config_dir.mkdir(parents=True)
    locations.config_file.write_text("[postgres\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_settings()


def test_without_a_keyring_backend_secrets_go_to_a_0600_file(home: Path) -> None:
    store = SecretStore(Locations.from_env({"CREATIA_HOME": str(home)}).secrets_file)
    assert not store.uses_keyring  # this host (and the fixture) has no backend
    where = store.set("pg-password", "s3cret-비밀")
    assert "0600" in where and str(store.secrets_file) in where
    mode = stat.S_IMODE(store.secrets_file.stat().st_mode)
    assert mode == 0o600
    assert store.get("pg-password") == "s3cret-비밀"
    assert store.names_set() == ["pg-password"]
    store.delete("pg-password")
    assert store.get("pg-password") is None
    assert not list(store.secrets_file.parent.glob(".secrets-*"))  # no temp files left


def test_a_secrets_file_readable_by_others_is_refused(home: Path) -> None:
    store = SecretStore(Locations.from_env({"CREATIA_HOME": str(home)}).secrets_file)
    store.set("mongo-password", "hunter22")
    os.chmod(store.secrets_file, 0o644)
    with pytest.raises(UserError, match="chmod 600") as excinfo:
        store.get("mongo-password")
    assert "hunter22" not in str(excinfo.value)


def test_unknown_secret_names_are_refused(home: Path) -> None:
    store = SecretStore(Locations.from_env({"CREATIA_HOME": str(home)}).secrets_file)
    with pytest.raises(UserError, match="Unknown secret"):
        store.set("api-token", "x")


class _MemoryKeyring(KeyringBackend):
    """A working keyring backend, as a desktop session would have."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.values.pop((service, username), None)


def test_keyring_is_used_when_the_host_has_one(home: Path) -> None:
    previous = keyring.get_keyring()
    backend = _MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        store = SecretStore(Locations.from_env({"CREATIA_HOME": str(home)}).secrets_file)
        assert store.uses_keyring
        assert "keyring" in store.set("backup-passphrase", "correct horse")
        assert backend.values[("creatia-tui", "backup-passphrase")] == "correct horse"
        assert not store.secrets_file.exists()
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://alice:pa55word@db:5432/x", "pa55word"),
        ("mongodb://bob:pa55word@m1,m2/?replicaSet=rs", "pa55word"),
        ("host=db password=pa55word dbname=x", "pa55word"),
        ("host=db password='pa 55word' dbname=x", "pa 55word"),
    ],
)
def test_redact_removes_passwords(text: str, secret: str) -> None:
    cleaned = redact(text)
    assert secret not in cleaned
    assert "***" in cleaned
