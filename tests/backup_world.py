"""A small seeded pair of databases of the backup tests' own, backed up once per module.

Not the shared world fixture: a backup takes whole databases. The passphrase comes from the secret
store's 0600 file under a temporary CREATIA_HOME (no keyring backend), as on an ops host.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pymongo
import pytest

from creatia_tui.config import Locations, Settings
from creatia_tui.data.mongo_schema import migrate_mongo
from creatia_tui.ops.backup import BackupResult, Progress, take_backup
from creatia_tui.ops.seed import SeedOptions, seed
from creatia_tui.secret_store import SecretStore
from tests.conftest import ServerInfo, scratch_database

PASSPHRASE = "백업 passphrase: correct horse"
SMALL_SEED = SeedOptions(orgs=2, users=6, tasks=40, activity=60, sprints_per_org=1, seed=8)


@dataclass
class Source:
    settings: Settings
    home: Path
    folder: Path  # the default backup folder
    result: BackupResult  # the module's one backup
    progress: list[Progress]
    raw: pymongo.MongoClient


def _settings(dsn: str, uri: str, mongo_db: str, home: Path) -> Settings:
    return Settings(pg_dsn=dsn, mongo_uri=uri, mongo_db=mongo_db,
                    locations=Locations.from_env({"CREATIA_HOME": str(home)}))


@pytest.fixture(scope="module", name="source")
def source_fixture(
    servers: ServerInfo, pg_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Source]:
    home = tmp_path_factory.mktemp("backup-home")
    mongo_db = f"creatia_test_bk_{uuid.uuid4().hex[:10]}"
    raw: pymongo.MongoClient = pymongo.MongoClient(servers.mongo_uri, tz_aware=True)
    with pytest.MonkeyPatch.context() as mp, scratch_database(servers, pg_template) as dsn:
        mp.setenv("CREATIA_HOME", str(home))
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        migrate_mongo(raw[mongo_db])
        with psycopg.connect(dsn) as conn:
            seed(conn, raw[mongo_db], SMALL_SEED)
        # Tasks of an organization PostgreSQL does not know, and of none: a backup reads the
        # tasks organization by organization, and must not lose these.
        raw[mongo_db].tasks.insert_many(
            [{"organization_id": "no-such-organization", "task_id": "ORPHAN-1", "title": "고아"},
             {"task_id": "NO-ORG-1", "title": "no organization"}],
            bypass_document_validation=True)
        settings = _settings(dsn, servers.mongo_uri, mongo_db, home)
        SecretStore(settings.locations.secrets_file).set("backup-passphrase", PASSPHRASE)
        seen: list[Progress] = []
        result = take_backup(settings, progress=seen.append)
        try:
            yield Source(settings, home, home / "data" / "backups", result, seen, raw)
        finally:
            raw.drop_database(mongo_db)
            raw.close()
