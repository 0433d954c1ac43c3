"""Saved board filters: the built-in ones everyone has, and each user's own per organization.

Decisions:

- A saved filter belongs to one user in one organization (table ``saved_filters``, migration
  0005) and nobody else sees it: not an admin, not an owner. Listing, saving and deleting take
  the permission to read tasks (``tasks.read``), since a filter only narrows what the user may
  read anyway; a viewer may save their own.
- Names are trimmed (runs of spaces inside become one), 1 to 100 characters, and unique per
  user and organization whatever their case. Saving under an existing name replaces that filter
  (and takes the new spelling); the built-in names (``task_filters.BUILT_IN_FILTERS``) are
  refused in any case, so a list never shows two filters with one name.
- Filters are stored as ``TaskFilter.to_json()`` and read back with ``from_json`` (which
  validates): "me" stays "me", so a saved "my tasks" follows whoever uses it.
- Deleting another user's filter, or one of another organization, says "not found", exactly as
  an id that never existed: ids cannot be probed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from creatia_tui.data.access import Actor, require
from creatia_tui.data.task_filters import BUILT_IN_FILTERS, TaskFilter, validate
from creatia_tui.errors import ValidationError

NAME_MAX = 100
NOT_FOUND = "That saved filter does not exist (it may have been deleted)."


@dataclass(frozen=True)
class SavedFilter:
    id: str | None  # None for a built-in filter
    name: str
    filter: TaskFilter
    built_in: bool
    updated_at: dt.datetime | None = None


def built_in_filters() -> list[SavedFilter]:
    return [
        SavedFilter(id=None, name=name, filter=task_filter, built_in=True)
        for name, task_filter in BUILT_IN_FILTERS.items()
    ]


def clean_name(name: str) -> str:
    """The name as stored, or a ValidationError saying what is wrong with it."""
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValidationError("A saved filter needs a name.")
    if len(cleaned) > NAME_MAX:
        raise ValidationError(f"A saved filter's name is at most {NAME_MAX} characters.")
    if cleaned.casefold() in {built_in.casefold() for built_in in BUILT_IN_FILTERS}:
        raise ValidationError(f"{cleaned!r} is a built-in filter; choose another name.")
    return cleaned


def _row_to_filter(row: dict) -> SavedFilter:
    return SavedFilter(
        id=row["id"],
        name=row["name"],
        filter=TaskFilter.from_json(row["filter"]),
        built_in=False,
        updated_at=row["updated_at"],
    )


def list_saved_filters(conn: psycopg.Connection, actor: Actor) -> list[SavedFilter]:
    """The built-in filters, then the user's own in this organization by name."""
    require(conn, actor, "tasks.read")
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            """
            SELECT id::text AS id, name, filter, updated_at
            FROM saved_filters
            WHERE user_id = %(user)s AND organization_id = %(org)s
            ORDER BY lower(name), id
            """,
            {"user": actor.user_id, "org": actor.organization_id},
        ).fetchall()
    return built_in_filters() + [_row_to_filter(row) for row in rows]


def save_filter(
    conn: psycopg.Connection, actor: Actor, name: str, task_filter: TaskFilter
) -> SavedFilter:
    """Create the user's filter, or replace the one with this name (any case)."""
    require(conn, actor, "tasks.read")
    cleaned = clean_name(name)
    validate(task_filter)
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            INSERT INTO saved_filters (user_id, organization_id, name, filter)
            VALUES (%(user)s, %(org)s, %(name)s, %(filter)s)
            ON CONFLICT (user_id, organization_id, lower(name))
            DO UPDATE SET name = EXCLUDED.name, filter = EXCLUDED.filter, updated_at = now()
            RETURNING id::text AS id, name, filter, updated_at
            """,
            {
                "user": actor.user_id,
                "org": actor.organization_id,
                "name": cleaned,
                "filter": Jsonb(task_filter.to_json()),
            },
        ).fetchone()
    assert row is not None
    return _row_to_filter(row)


def delete_saved_filter(conn: psycopg.Connection, actor: Actor, filter_id: str) -> None:
    """Delete one of the user's own filters in this organization; anything else is not found."""
    require(conn, actor, "tasks.read")
    try:
        uuid.UUID(str(filter_id))
    except ValueError:
        raise ValidationError(NOT_FOUND) from None
    with conn.cursor() as cur:
        cur.execute(
            "DELETE FROM saved_filters "
            "WHERE id = %(id)s AND user_id = %(user)s AND organization_id = %(org)s",
            {"id": filter_id, "user": actor.user_id, "org": actor.organization_id},
        )
        if cur.rowcount == 0:
            raise ValidationError(NOT_FOUND)
