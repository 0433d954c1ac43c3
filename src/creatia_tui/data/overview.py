"""The home screen's read: organizations from PostgreSQL, their task counts from MongoDB.

The caller passes the organizations the signed-in user may see (their memberships; every
organization for a platform admin). It asks MongoDB once for all listed organizations, the query
pinned to their organization_ids (only their shards on a sharded cluster) and answered from
idx_tasks_org_status_created.
"""

from __future__ import annotations

from collections.abc import Sequence

from pymongo.errors import PyMongoError

from creatia_tui.data.db import Databases
from creatia_tui.data.models import OrganizationOverview

ORGANIZATIONS_WITH_MEMBER_COUNTS = """
SELECT o.id::text AS id, o.name, o.subdomain, o.plan, o.active,
       count(m.id) FILTER (WHERE m.active) AS member_count
FROM organizations o
LEFT JOIN organization_memberships m ON m.organization_id = o.id
WHERE %(ids)s::uuid[] IS NULL OR o.id = ANY(%(ids)s::uuid[])
GROUP BY o.id
ORDER BY o.name, o.id
LIMIT %(limit)s
"""


def organization_overview(
    dbs: Databases, organization_ids: Sequence[str] | None = None, limit: int = 100
) -> list[OrganizationOverview]:
    """The first ``limit`` organizations by name, of ``organization_ids`` when given."""
    ids = list(organization_ids) if organization_ids is not None else None
    with dbs.pg() as conn:
        rows = conn.execute(
            ORGANIZATIONS_WITH_MEMBER_COUNTS, {"limit": limit, "ids": ids}
        ).fetchall()
    overview = [
        OrganizationOverview(
            id=row["id"],
            name=row["name"],
            subdomain=row["subdomain"],
            plan=row["plan"],
            active=row["active"],
            member_count=int(row["member_count"]),
        )
        for row in rows
    ]
    by_id = {org.id: org for org in overview}
    if not by_id:
        return overview
    try:
        counts = dbs.mongo.tasks.aggregate(
            [
                {"$match": {"organization_id": {"$in": list(by_id)}}},
                {"$group": {"_id": {"org": "$organization_id", "status": "$status"},
                            "count": {"$sum": 1}}},
            ]
        )
        for doc in counts:
            by_id[doc["_id"]["org"]].task_counts[doc["_id"]["status"]] = int(doc["count"])
    except PyMongoError as exc:
        raise dbs.mongo_error(exc) from None
    return overview
