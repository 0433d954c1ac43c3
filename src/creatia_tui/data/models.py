"""Dataclass models for the seed's entities, one per table or collection."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TASK_STATUSES = ("todo", "in_progress", "review", "done")
OPEN_TASK_STATUSES = ("todo", "in_progress", "review")
TASK_PRIORITIES = ("low", "medium", "high", "urgent")
SPRINT_STATUSES = ("planned", "active", "completed")
SYSTEM_ROLE_KEYS = ("owner", "admin", "member", "viewer")


# ---------------------------------------------------------------- PostgreSQL
@dataclass
class User:
    id: str
    email: str
    name: str | None
    role: str
    active: bool
    provider: str | None = None
    uid: str | None = None
    avatar_url: str | None = None
    department: str | None = None
    position: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "admin" and self.active

    @property
    def display_name(self) -> str:
        return self.name or self.email


@dataclass
class Organization:
    id: str
    name: str
    subdomain: str
    plan: str
    active: bool
    settings: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass
class Membership:
    id: str
    user_id: str
    organization_id: str
    role: str
    active: bool
    joined_at: datetime | None = None


@dataclass
class Role:
    id: str
    organization_id: str
    name: str
    key: str
    description: str | None
    system_role: bool
    active: bool


@dataclass
class Permission:
    id: str
    name: str
    resource: str
    action: str
    description: str | None = None


@dataclass
class RoleSummary:
    """A role of the organization with how many active memberships hold it (Roles screen)."""

    id: str
    organization_id: str
    name: str
    key: str
    description: str | None
    system_role: bool
    active: bool
    active_member_count: int


@dataclass(frozen=True)
class PermissionMatrix:
    """Roles as columns, permissions as rows, and which (role_id, permission_id) are granted."""

    roles: list[RoleSummary]
    permissions: list[Permission]
    granted: frozenset[tuple[str, str]]

    def is_granted(self, role_id: str, permission_id: str) -> bool:
        return (role_id, permission_id) in self.granted


@dataclass
class OrganizationListing:
    """One row of the Organizations screen: the organization and its active member count."""

    id: str
    name: str
    subdomain: str
    plan: str
    active: bool
    settings: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None
    active_member_count: int


@dataclass
class MemberRow:
    """One row of the Members screen: a membership with its user and role."""

    membership_id: str
    user_id: str
    email: str
    name: str | None
    role_key: str
    role_name: str
    active: bool  # the membership
    user_active: bool  # the account (a deactivated account cannot sign in anywhere)
    joined_at: datetime | None


@dataclass
class AuditLogEntry:
    id: str
    organization_id: str
    user_id: str
    action: str
    resource_type: str | None
    resource_id: str | None
    changes: dict[str, Any] | None
    ip_address: str | None
    user_agent: str | None
    created_at: datetime


# ---------------------------------------------------------------- MongoDB
@dataclass
class UserSnapshot:
    user_id: str
    name: str | None
    email: str | None
    avatar_url: str | None = None
    department: str | None = None
    position: str | None = None
    synced_at: datetime | None = None

    def to_document(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "email": self.email,
            "avatar_url": self.avatar_url,
            "department": self.department,
            "position": self.position,
            "synced_at": self.synced_at,
        }

    @classmethod
    def from_user(cls, user: User, synced_at: datetime) -> UserSnapshot:
        return cls(
            user_id=user.id,
            name=user.name,
            email=user.email,
            avatar_url=user.avatar_url,
            department=user.department,
            position=user.position,
            synced_at=synced_at,
        )


@dataclass
class TimeEntry:
    user_id: str
    hours: float
    description: str | None
    logged_at: datetime


@dataclass
class Task:
    id: str
    organization_id: str
    task_id: str
    title: str
    status: str
    priority: str | None
    position: float
    description: str | None = None
    task_type: str | None = None
    sprint_id: str | None = None
    assignee_id: str | None = None
    reviewer_id: str | None = None
    assignee_snapshot: dict[str, Any] | None = None
    reviewer_snapshot: dict[str, Any] | None = None
    estimated_hours: float | None = None
    actual_hours: float | None = None
    remaining_hours: float | None = None
    time_entries: list[TimeEntry] = field(default_factory=list)
    due_date: datetime | None = None
    start_date: datetime | None = None
    completed_at: datetime | None = None
    tags: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Task:
        return cls(
            id=str(doc["_id"]),
            organization_id=doc["organization_id"],
            task_id=doc["task_id"],
            title=doc["title"],
            status=doc["status"],
            priority=doc.get("priority"),
            position=doc.get("position", 0),
            description=doc.get("description"),
            task_type=doc.get("task_type"),
            sprint_id=doc.get("sprint_id"),
            assignee_id=doc.get("assignee_id"),
            reviewer_id=doc.get("reviewer_id"),
            assignee_snapshot=doc.get("assignee_snapshot"),
            reviewer_snapshot=doc.get("reviewer_snapshot"),
            estimated_hours=doc.get("estimated_hours"),
            actual_hours=doc.get("actual_hours"),
            remaining_hours=doc.get("remaining_hours"),
            time_entries=[
                TimeEntry(e["user_id"], e["hours"], e.get("description"), e["logged_at"])
                for e in doc.get("time_entries", [])
            ],
            due_date=doc.get("due_date"),
            start_date=doc.get("start_date"),
            completed_at=doc.get("completed_at"),
            tags=list(doc.get("tags", [])),
            labels=list(doc.get("labels", [])),
            created_at=doc.get("created_at"),
            updated_at=doc.get("updated_at"),
        )


@dataclass
class Sprint:
    id: str
    organization_id: str
    name: str
    status: str
    start_date: datetime
    end_date: datetime
    goal: str | None = None
    capacity: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    retrospective: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Sprint:
        return cls(
            id=str(doc["_id"]),
            organization_id=doc["organization_id"],
            name=doc["name"],
            status=doc["status"],
            start_date=doc["start_date"],
            end_date=doc["end_date"],
            goal=doc.get("goal"),
            capacity=dict(doc.get("capacity", {})),
            metrics=dict(doc.get("metrics", {})),
            retrospective=dict(doc.get("retrospective", {})),
        )


@dataclass
class ActivityLog:
    id: str
    organization_id: str
    user_id: str
    action: str
    resource_type: str | None
    resource_id: str | None
    changes: dict[str, Any] | None
    metadata: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> ActivityLog:
        return cls(
            id=str(doc["_id"]),
            organization_id=doc["organization_id"],
            user_id=doc["user_id"],
            action=doc["action"],
            resource_type=doc.get("resource_type"),
            resource_id=doc.get("resource_id"),
            changes=doc.get("changes"),
            metadata=doc.get("metadata"),
            created_at=doc["created_at"],
        )


@dataclass
class OrganizationOverview:
    """One row of the home screen: an organization with counts from both databases."""

    id: str
    name: str
    subdomain: str
    plan: str
    active: bool
    member_count: int
    task_counts: dict[str, int] = field(default_factory=dict)

    @property
    def open_tasks(self) -> int:
        return sum(self.task_counts.get(s, 0) for s in OPEN_TASK_STATUSES)

    @property
    def total_tasks(self) -> int:
        return sum(self.task_counts.values())
