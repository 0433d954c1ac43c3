"""Who is signed in, which organization they act in, and what they may do there.

The permission set is a copy read when the organization was chosen; it decides which keys the
screens offer. It is not what protects the data: every service in ``data/`` checks the
permission again inside its own transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from creatia_tui.data.access import Actor, OrganizationChoice
from creatia_tui.data.models import User


@dataclass
class Session:
    user: User
    organizations: list[OrganizationChoice]
    current: OrganizationChoice | None = None
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor(self) -> Actor | None:
        if self.current is None:
            return None
        return Actor(self.user, self.current.id)

    def actor_for(self, organization_id: str) -> Actor:
        """The same user acting in another organization (the services decide if they may)."""
        return Actor(self.user, organization_id)

    def may(self, permission: str) -> bool:
        return self.user.is_platform_admin or permission in self.permissions

    def choice(self, organization_id: str) -> OrganizationChoice | None:
        return next((c for c in self.organizations if c.id == organization_id), None)

    @property
    def role_label(self) -> str:
        if self.user.is_platform_admin:
            return "platform admin"
        return self.current.role or "" if self.current else ""
