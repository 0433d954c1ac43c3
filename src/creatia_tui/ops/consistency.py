"""Cross-database consistency (seed: CrossDbSyncService): find drift between PostgreSQL and
MongoDB, report counts and samples, and repair what can be repaired safely.

What is checked, each a :class:`Finding` of the report (``KINDS``, in report order):

- ``orphaned_tasks``: tasks whose organization does not exist in PostgreSQL. Repair flags them
  ``quarantined: true`` (with ``quarantined_at`` and ``quarantine_reason``); nothing is deleted.
- ``inactive_organization_tasks``: tasks of deactivated organizations. Reported only: an
  organization can be reactivated, and its tasks are then as they were.
- ``missing_task_snapshots`` / ``stale_task_snapshots``: a task naming an assignee or reviewer
  without an embedded snapshot, or with one whose name, email or avatar differ from PostgreSQL
  (a deleted user's must read "<name> (former member)"). Repair rewrites them.
- ``non_member_assignees``: open tasks assigned to someone who is no longer an active member of
  the organization with an active account. Reported only: reassigning is a person's decision.
- ``missing_user_snapshots`` / ``stale_user_snapshots`` / ``deleted_user_snapshots``: users
  without a snapshot, snapshots that differ from their user, and snapshots of deleted users not
  marked deleted. Repair runs the batch sync (ops/sync.py).

Cost: PostgreSQL is read once (organizations, users with their memberships, active
memberships); MongoDB once for every snapshot's state, once for tasks outside every known
organization, and one find per organization whose tasks are grouped here by (person, embedded
name/email/avatar), so the comparison is per group, not per task. Every task query names
``organization_id``.

The last report is kept in ``sync_state`` ``{_id: "consistency_report"}`` for the Workers screen
and ``creatia-tui sync --check``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from psycopg.rows import dict_row
from pymongo import UpdateMany
from pymongo.database import Database

from creatia_tui.data.cache import invalidate_organization
from creatia_tui.data.db import Databases
from creatia_tui.data.models import OPEN_TASK_STATUSES
from creatia_tui.ops import sync
from creatia_tui.widgets.text import plural

log = logging.getLogger(__name__)

REPORT_ID = "consistency_report"
SAMPLES = 5
QUARANTINE_REASON = "organization missing in PostgreSQL"

KINDS: dict[str, tuple[str, bool]] = {  # kind -> (title, repaired by repair())
    "orphaned_tasks": ("Tasks whose organization does not exist", True),
    "inactive_organization_tasks": ("Tasks of deactivated organizations", False),
    "missing_task_snapshots": ("Tasks without the snapshot of their assignee or reviewer", True),
    "stale_task_snapshots": ("Tasks holding a stale assignee or reviewer snapshot", True),
    "non_member_assignees": ("Open tasks assigned to former or inactive members", False),
    "missing_user_snapshots": ("Users without a snapshot", True),
    "stale_user_snapshots": ("Snapshots that differ from their user", True),
    "deleted_user_snapshots": ("Snapshots of deleted users not marked deleted", True),
}

ORGANIZATIONS = "SELECT id::text AS id, name, active FROM organizations"
ACTIVE_MEMBERS = """
SELECT m.organization_id::text AS organization_id, m.user_id::text AS user_id
FROM organization_memberships m JOIN users u ON u.id = m.user_id AND u.active
WHERE m.active
"""


@dataclass
class Finding:
    kind: str
    count: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return KINDS[self.kind][0]

    @property
    def repairable(self) -> bool:
        return KINDS[self.kind][1]

    def add(self, count: int, sample: str) -> None:
        self.count += count
        if len(self.samples) < SAMPLES:
            self.samples.append(sample)


@dataclass
class ConsistencyReport:
    checked_at: dt.datetime
    seconds: float = 0.0
    organizations: int = 0
    users: int = 0
    tasks: int = 0
    quarantined: int = 0  # tasks already flagged by an earlier repair
    findings: dict[str, Finding] = field(default_factory=dict)
    # What repair() rewrites: (organization, role, user id) of stale or missing task snapshots.
    task_repairs: set[tuple[str, str, str]] = field(default_factory=set, repr=False)
    orphan_organizations: set[str] = field(default_factory=set, repr=False)
    user_repairs: set[str] = field(default_factory=set, repr=False)  # stale user snapshots

    def finding(self, kind: str) -> Finding:
        return self.findings.setdefault(kind, Finding(kind))

    @property
    def problems(self) -> int:
        return sum(f.count for f in self.findings.values())

    @property
    def repairable(self) -> int:
        return sum(f.count for f in self.findings.values() if f.repairable)

    def ordered(self) -> list[Finding]:
        return [self.findings.get(kind) or Finding(kind) for kind in KINDS]

    def to_document(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at,
            "seconds": round(self.seconds, 3),
            "organizations": self.organizations,
            "users": self.users,
            "tasks": self.tasks,
            "quarantined": self.quarantined,
            "findings": [
                {"kind": f.kind, "count": f.count, "samples": f.samples} for f in self.ordered()
            ],
        }

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ConsistencyReport:
        report = cls(
            checked_at=doc["checked_at"],
            seconds=float(doc.get("seconds", 0.0)),
            organizations=int(doc.get("organizations", 0)),
            users=int(doc.get("users", 0)),
            tasks=int(doc.get("tasks", 0)),
            quarantined=int(doc.get("quarantined", 0)),
        )
        for item in doc.get("findings", []):
            if item.get("kind") in KINDS:
                report.findings[item["kind"]] = Finding(
                    item["kind"], int(item.get("count", 0)), list(item.get("samples", []))
                )
        return report

    def lines(self) -> list[str]:
        """The report as plain text (the CLI prints it)."""
        out = [
            f"Checked {self.organizations} organizations, {self.users} users and {self.tasks} "
            f"tasks in {self.seconds:.1f} s: {self.problems} problems "
            f"({self.repairable} repairable); {self.quarantined} tasks quarantined earlier."
        ]
        for finding in self.ordered():
            how = "repair fixes" if finding.repairable else "report only"
            out.append(f"  {finding.count:>8}  {finding.title} ({how})")
            out.extend(f"            e.g. {sample}" for sample in finding.samples)
        return out


def _short(uuid_text: str) -> str:
    return uuid_text[:8]


TASK_FIELDS = {
    "task_id": 1, "status": 1, "quarantined": 1, "assignee_id": 1, "reviewer_id": 1,
    "assignee_snapshot": 1, "reviewer_snapshot": 1,
}


def _organization_groups(
    mongo: Database, organization_id: str
) -> tuple[int, int, dict[str, list[dict[str, Any]]]]:
    """One organization's tasks (total, quarantined) and, per role, its tasks grouped by person
    and what their embedded snapshot shows.

    A plain find grouped here, not an aggregate: on SecantusDB a find of one organization's
    tasks took 8 ms where the same grouping as one ``$facet`` aggregate took 33-61 ms (and
    ``$in`` over many organizations scaled with their number), so the check of 1,000
    organizations is ~10 s instead of minutes."""
    total = quarantined = 0
    groups: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {"assignee": {}, "reviewer": {}}
    for doc in mongo.tasks.find({"organization_id": organization_id}, TASK_FIELDS):
        total += 1
        quarantined += doc.get("quarantined") is True
        for role in ("assignee", "reviewer"):
            user_id = doc.get(f"{role}_id")
            if not isinstance(user_id, str):
                continue
            snap = doc.get(f"{role}_snapshot")
            is_object = isinstance(snap, dict)
            shown = snap if is_object else {}
            key = (
                user_id, is_object, shown.get("name"), shown.get("email"),
                shown.get("avatar_url"),
            )
            group = groups[role].get(key)
            if group is None:
                group = groups[role][key] = {
                    "_id": {
                        "org": organization_id, "user": user_id,
                        "kind": "object" if is_object else "missing",
                        "name": shown.get("name"), "email": shown.get("email"),
                        "avatar": shown.get("avatar_url"),
                    },
                    "count": 0, "open": 0, "sample": doc.get("task_id"),
                }
            group["count"] += 1
            group["open"] += doc.get("status") in OPEN_TASK_STATUSES
    return total, quarantined, {role: list(found.values()) for role, found in groups.items()}


def _expected(
    user_id: str, users: dict[str, sync.SourceUser], snapshots: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """What a task should embed for this person now; None for someone unknown to both."""
    user = users.get(user_id)
    if user is not None:
        return sync.task_snapshot(sync.snapshot_document(user, sync.utcnow()))
    stored = snapshots.get(user_id)
    if stored is None:
        return None
    return sync.task_snapshot({**stored, "deleted": True})


def check_consistency(dbs: Databases, *, store: bool = True) -> ConsistencyReport:
    started = time.monotonic()
    report = ConsistencyReport(checked_at=sync.utcnow())
    with dbs.pg() as conn, conn.cursor(row_factory=dict_row) as cur:
        organizations = {row["id"]: row for row in cur.execute(ORGANIZATIONS).fetchall()}
        users = {
            user.id: user
            for user in (
                sync.SourceUser.from_row(row) for row in cur.execute(sync.ALL_USERS).fetchall()
            )
        }
        members: dict[str, set[str]] = {}
        for row in cur.execute(ACTIVE_MEMBERS).fetchall():
            members.setdefault(row["organization_id"], set()).add(row["user_id"])
    report.organizations, report.users = len(organizations), len(users)
    mongo = dbs.mongo
    snapshots = {
        doc["user_id"]: doc
        for doc in mongo.user_snapshots.find({}, sync.EXISTING_PROJECTION).batch_size(10_000)
    }
    _check_user_snapshots(report, users, snapshots)
    _check_orphans(report, mongo, list(organizations))
    _check_organizations(report, mongo, organizations, users, snapshots, members)
    report.seconds = time.monotonic() - started
    if store:
        save_report(mongo, report)
    return report


def _check_user_snapshots(
    report: ConsistencyReport,
    users: dict[str, sync.SourceUser],
    snapshots: dict[str, dict[str, Any]],
) -> None:
    for user_id, user in users.items():
        stored = snapshots.get(user_id)
        label = f"{user.name or user.email} ({_short(user_id)})"
        if stored is None:
            report.finding("missing_user_snapshots").add(1, label)
        elif sync.shows_differently(stored, user) or stored.get("content_hash") != (
            user.content_hash
        ):
            # The hash is recomputed from what the snapshot holds: an edit made in MongoDB
            # behind the sync's back is found too (the batch sync trusts the stored hash).
            report.finding("stale_user_snapshots").add(1, label)
            report.user_repairs.add(user_id)
    for user_id, stored in snapshots.items():
        if user_id not in users and not stored.get("deleted"):
            who = stored.get("name") or stored.get("email") or "someone"
            report.finding("deleted_user_snapshots").add(1, f"{who} ({_short(user_id)})")


def _check_orphans(report: ConsistencyReport, mongo: Database, known: list[str]) -> None:
    """Tasks of organizations PostgreSQL does not know.

    The one query of the check that is not routed to named organizations, on purpose: the
    organizations looked for are the ones nobody can name. It groups every task by
    organization in one pass (``$exists`` keeps the shard key in the filter; on a sharded
    cluster it is a broadcast either way). ``$nin`` with the 1,000 known ids took 108 s on
    SecantusDB (the list is compared with every task); this pass takes seconds."""
    known_ids = set(known)
    rows = mongo.tasks.aggregate(
        [
            {"$match": {"organization_id": {"$exists": True}}},
            {
                "$group": {
                    "_id": "$organization_id",
                    "count": {"$sum": 1},
                    "quarantined": {"$sum": {"$cond": [{"$eq": ["$quarantined", True]}, 1, 0]}},
                    "sample": {"$first": "$task_id"},
                }
            },
        ]
    )
    for row in rows:
        organization_id = str(row["_id"])
        if organization_id in known_ids:
            continue
        report.tasks += int(row["count"])
        report.quarantined += int(row["quarantined"])
        waiting = int(row["count"]) - int(row["quarantined"])
        if waiting:
            report.orphan_organizations.add(organization_id)
            report.finding("orphaned_tasks").add(
                waiting,
                f"{row['sample']} of missing organization {_short(organization_id)}"
                f" ({plural(waiting, 'task')})",
            )


def _check_organizations(
    report: ConsistencyReport,
    mongo: Database,
    organizations: dict[str, dict[str, Any]],
    users: dict[str, sync.SourceUser],
    snapshots: dict[str, dict[str, Any]],
    members: dict[str, set[str]],
) -> None:
    for organization_id in sorted(organizations):
        organization = organizations[organization_id]
        total, quarantined, groups = _organization_groups(mongo, organization_id)
        report.tasks += total
        report.quarantined += quarantined
        if total and not organization["active"]:
            report.finding("inactive_organization_tasks").add(
                total, f"{organization['name']} ({plural(total, 'task')})"
            )
        for role in ("assignee", "reviewer"):
            for group in groups[role]:
                _check_group(report, role, group, organizations, users, snapshots, members)


def _check_group(
    report: ConsistencyReport,
    role: str,
    group: dict[str, Any],
    organizations: dict[str, dict[str, Any]],
    users: dict[str, sync.SourceUser],
    snapshots: dict[str, dict[str, Any]],
    members: dict[str, set[str]],
) -> None:
    key = group["_id"]
    organization_id, user_id = key["org"], key["user"]
    organization = organizations[organization_id]
    count = int(group["count"])
    where = f"{group['sample']} in {organization['name']}"
    expected = _expected(user_id, users, snapshots)
    if (
        role == "assignee"
        and int(group["open"])
        and user_id not in members.get(organization_id, set())
    ):
        who = (expected or {}).get("name") or _short(user_id)
        report.finding("non_member_assignees").add(int(group["open"]), f"{where}: {who}")
    if expected is None:
        return  # nobody knows who this was: nothing to compare with
    if key.get("kind") != "object":
        report.finding("missing_task_snapshots").add(count, f"{where} ({role})")
        report.task_repairs.add((organization_id, role, user_id))
    elif (key.get("name"), key.get("email"), key.get("avatar")) != (
        expected.get("name"),
        expected.get("email"),
        expected.get("avatar_url"),
    ):
        report.finding("stale_task_snapshots").add(
            count, f"{where} ({role}: {key.get('name')!s} → {expected.get('name')!s})"
        )
        report.task_repairs.add((organization_id, role, user_id))


def save_report(mongo: Database, report: ConsistencyReport) -> None:
    mongo[sync.STATE_COLLECTION].replace_one(
        {"_id": REPORT_ID}, {"_id": REPORT_ID, **report.to_document()}, upsert=True
    )


def last_report(mongo: Database) -> ConsistencyReport | None:
    doc = mongo[sync.STATE_COLLECTION].find_one({"_id": REPORT_ID})
    return ConsistencyReport.from_document(doc) if doc else None


@dataclass
class RepairResult:
    sync: sync.SyncResult
    tasks_fixed: int = 0
    tasks_quarantined: int = 0
    before: ConsistencyReport | None = None
    after: ConsistencyReport | None = None

    def summary(self) -> str:
        after = self.after
        left = (
            f"{after.problems} problems left ({after.repairable} repairable)"
            if after is not None
            else "not checked again"
        )
        return (
            f"Repaired: {self.sync.snapshots_written} user snapshots written, "
            f"{self.sync.deleted} marked deleted, "
            f"{self.tasks_fixed + self.sync.tasks_modified} task snapshots rewritten, "
            f"{self.tasks_quarantined} orphaned tasks quarantined; {left}."
        )


def repair(dbs: Databases, report: ConsistencyReport | None = None) -> RepairResult:
    """Fix snapshots (batch sync, then the task snapshots the check found stale or missing)
    and quarantine orphaned tasks; then check again and store that report."""
    before = report or check_consistency(dbs, store=False)
    mongo = dbs.mongo
    # full: the digest of the last sync cannot see drift made in MongoDB (sync decision 8).
    outcome = RepairResult(sync=sync.batch_sync(dbs, full=True), before=before)
    if before.user_repairs:
        # Stale in content while the stored hash matches: written whatever the hash says.
        ids = sorted(before.user_repairs)
        with dbs.pg() as conn:
            users = sync.read_users(conn, ids)
        stored = sync.existing_snapshots(mongo, ids)
        forced = {key: {**doc, "content_hash": None} for key, doc in stored.items()}
        outcome.sync.add(sync.apply_users(mongo, users, forced))
    # The batch sync may have written some of them already; the rest are rewritten from the
    # snapshots it left behind.
    fresh = sync.existing_snapshots(mongo, {user for _, _, user in before.task_repairs})
    by_org: dict[str, list[UpdateMany]] = {}
    for organization_id, role, user_id in sorted(before.task_repairs):
        stored = fresh.get(user_id)
        if stored is None:
            continue
        snap = sync.task_snapshot(stored)
        by_org.setdefault(organization_id, []).append(
            UpdateMany(
                # Led by the person (see sync.tasks_query): their index's own field order.
                {f"{role}_id": user_id, "organization_id": organization_id},
                {"$set": {f"{role}_snapshot": snap}},
            )
        )
    for organization_id, operations in by_org.items():
        outcome.tasks_fixed += mongo.tasks.bulk_write(operations, ordered=False).modified_count
        invalidate_organization(mongo, organization_id)
    if before.orphan_organizations:
        quarantined = mongo.tasks.update_many(
            {
                "organization_id": {"$in": sorted(before.orphan_organizations)},
                "quarantined": {"$ne": True},
            },
            {
                "$set": {
                    "quarantined": True,
                    "quarantined_at": sync.utcnow(),
                    "quarantine_reason": QUARANTINE_REASON,
                }
            },
        )
        outcome.tasks_quarantined = quarantined.modified_count
    outcome.after = check_consistency(dbs)
    log.info("consistency repair: %s", outcome.summary())
    return outcome
