"""Users: creation with validation and hashing, look-ups, password checks."""

from __future__ import annotations

import functools
import re
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row

from creatia_tui.data.models import User
from creatia_tui.data.passwords import MIN_PASSWORD_LENGTH, hash_password, verify_password
from creatia_tui.errors import ValidationError

# Deliberately loose: one @, something on each side, a dot in the domain, no spaces.
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
USER_COLUMNS = (
    "id::text AS id, email, name, role, active, provider, uid, avatar_url, department, "
    "position, created_at, updated_at"
)


def normalise_email(email: str) -> str:
    value = (email or "").strip().lower()
    if not EMAIL_PATTERN.match(value) or len(value) > 255:
        raise ValidationError(f"{email!r} is not a valid email address.")
    return value


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"The password is too short; use at least {MIN_PASSWORD_LENGTH} characters."
        )


def validate_name(name: str | None) -> str:
    """The person's name, trimmed; refused when blank or too long."""
    name = (name or "").strip()
    if not name:
        raise ValidationError("The name is empty.")
    if len(name) > 255:
        raise ValidationError("The name is longer than 255 characters.")
    return name


def _user(row: dict[str, Any]) -> User:
    return User(**row)


def create_user(
    conn: psycopg.Connection,
    *,
    email: str,
    name: str,
    password: str,
    admin: bool = False,
    department: str | None = None,
    position: str | None = None,
) -> User:
    """Insert a user; validates before writing, hashes the password, refuses duplicates."""
    email = normalise_email(email)
    name = validate_name(name)
    validate_password(password)
    encrypted = hash_password(password)
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                f"""
                INSERT INTO users (email, encrypted_password, name, role, department, position)
                VALUES (%s, %s, %s, %s, %s, %s)
                RETURNING {USER_COLUMNS}
                """,
                (email, encrypted, name, "admin" if admin else "user", department, position),
            ).fetchone()
    except pg_errors.UniqueViolation:
        raise ValidationError(f"A user with the email {email} already exists.") from None
    assert row is not None
    return _user(row)


def get_user_by_email(conn: psycopg.Connection, email: str) -> User | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {USER_COLUMNS} FROM users WHERE email = %s", (email.strip().lower(),)
        ).fetchone()
    return _user(row) if row else None


def get_user(conn: psycopg.Connection, user_id: str) -> User | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {USER_COLUMNS} FROM users WHERE id = %s", (user_id,)).fetchone()
    return _user(row) if row else None


def check_password(conn: psycopg.Connection, email: str, password: str) -> User | None:
    """The user when the password matches; None otherwise (unknown email or wrong password)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {USER_COLUMNS}, encrypted_password FROM users WHERE email = %s",
            (email.strip().lower(),),
        ).fetchone()
    if row is None:
        # Verify against a throwaway hash so an unknown email costs the same as a wrong password.
        verify_password(_dummy_hash(), password)
        return None
    encrypted = row.pop("encrypted_password")
    return _user(row) if verify_password(encrypted, password) else None


@functools.cache
def _dummy_hash() -> str:
    return hash_password("not-a-real-password")
