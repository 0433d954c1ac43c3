"""MongoDB collections, $jsonSchema validators and indexes from ``schema/mongo/*.json``.

Each JSON file names a collection, its validator, its indexes (key as a list of [field, direction]
pairs, so the order survives JSON) and, for sharded clusters, its shard key. Applying is
idempotent: a missing collection is created with its validator, an existing one gets the validator
through ``collMod``; a missing index is built, an index whose definition changed is rebuilt, an
unchanged one is left alone.

Text indexes are optional: SecantusDB cannot build them (code 67) and Korean is not tokenised by
MongoDB text search anyway, so search never depends on them (it uses anchored or unanchored
regular expressions on the indexed organization range instead).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo.database import Database
from pymongo.errors import OperationFailure

from creatia_tui.data.migrations import schema_dir
from creatia_tui.errors import UserError, one_line

log = logging.getLogger(__name__)

CANNOT_CREATE_INDEX = 67
NAMESPACE_EXISTS = 48


@dataclass(frozen=True)
class IndexSpec:
    name: str
    key: list[tuple[str, Any]]
    options: dict[str, Any]
    optional: bool = False


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    validator: dict[str, Any]
    indexes: list[IndexSpec]
    shard_key: list[tuple[str, Any]] | None = None
    # Indexes an earlier schema built and this one no longer wants: dropped when present, so
    # a replaced index does not go on costing every write (e.g. idx_tasks_org_reviewer).
    retired_indexes: list[str] = field(default_factory=list)


def load_collection_specs(folder: Path | None = None) -> list[CollectionSpec]:
    folder = folder or schema_dir() / "mongo"
    specs = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        indexes = [
            IndexSpec(
                name=ix["name"],
                key=[(f, d) for f, d in ix["key"]],
                options=dict(ix.get("options", {})),
                optional=bool(ix.get("optional")),
            )
            for ix in raw.get("indexes", [])
        ]
        shard = raw.get("shard_key")
        specs.append(
            CollectionSpec(
                name=raw["collection"],
                validator=raw["validator"],
                indexes=indexes,
                shard_key=[(f, d) for f, d in shard] if shard else None,
                retired_indexes=list(raw.get("retired_indexes", [])),
            )
        )
    return specs


@dataclass
class MongoMigrationReport:
    created_collections: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)
    rebuilt_indexes: list[str] = field(default_factory=list)
    dropped_indexes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _index_matches(existing: dict[str, Any], spec: IndexSpec) -> bool:
    if list(existing["key"].items()) != spec.key and "_fts" not in existing["key"]:
        return False
    for option, value in spec.options.items():
        if option == "default_language" and "_fts" in existing["key"]:
            if existing.get(option, "english") != value:
                return False
            continue
        if existing.get(option) != value:
            return False
    return True


def migrate_mongo(db: Database, folder: Path | None = None) -> MongoMigrationReport:
    report = MongoMigrationReport()
    present = set(db.list_collection_names())
    for spec in load_collection_specs(folder):
        if spec.name not in present:
            try:
                db.create_collection(
                    spec.name,
                    validator=spec.validator,
                    validationLevel="strict",
                    validationAction="error",
                )
                report.created_collections.append(spec.name)
            except OperationFailure as exc:
                if exc.code != NAMESPACE_EXISTS:  # another migrate got there first
                    raise UserError(
                        f"Creating collection {spec.name} failed: {one_line(str(exc))}"
                    ) from exc
        else:
            db.command(
                "collMod",
                spec.name,
                validator=spec.validator,
                validationLevel="strict",
                validationAction="error",
            )
        collection = db[spec.name]
        existing = {ix["name"]: ix for ix in collection.list_indexes()}
        for index in spec.indexes:
            label = f"{spec.name}.{index.name}"
            current = existing.get(index.name)
            if current is not None and _index_matches(current, index):
                continue
            if current is not None:
                collection.drop_index(index.name)
                report.rebuilt_indexes.append(label)
            try:
                collection.create_index(index.key, name=index.name, **index.options)
            except OperationFailure as exc:
                if index.optional and exc.code == CANNOT_CREATE_INDEX:
                    log.info("skipped optional index %s: %s", label, one_line(str(exc)))
                    report.skipped.append(f"{label} ({one_line(str(exc))})")
                    continue
                raise UserError(f"Building index {label} failed: {one_line(str(exc))}") from exc
            if current is None:
                report.created_indexes.append(label)
        for name in spec.retired_indexes:
            if name in existing:
                collection.drop_index(name)
                report.dropped_indexes.append(f"{spec.name}.{name}")
    return report


def is_mongos(db: Database) -> bool:
    hello = db.client.admin.command("hello")
    return hello.get("msg") == "isdbgrid"


def apply_shard_keys(db: Database, folder: Path | None = None) -> list[str]:
    """The seed's shard keys; only on a mongos. Returns what was sharded."""
    if not is_mongos(db):
        raise UserError(
            "This MongoDB server is not a mongos (sharded cluster router); shard keys apply only "
            "there, so nothing was changed."
        )
    admin = db.client.admin
    done = []
    try:
        admin.command("enableSharding", db.name)
    except OperationFailure as exc:  # already enabled on older servers
        log.info("enableSharding: %s", one_line(str(exc)))
    for spec in load_collection_specs(folder):
        if not spec.shard_key:
            continue
        namespace = f"{db.name}.{spec.name}"
        admin.command("shardCollection", namespace, key=dict(spec.shard_key))
        done.append(namespace)
    return done
