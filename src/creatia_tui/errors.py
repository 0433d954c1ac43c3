"""Errors that reach a person as one plain sentence."""

from __future__ import annotations

import re


class UserError(Exception):
    """Something the user can act on; its message is shown as-is (one sentence, no secrets)."""


class ConfigurationError(UserError):
    """Settings are missing or malformed."""


class DatabaseUnavailable(UserError):
    """A database could not be reached or refused us.

    The message names the database and its target; ``cause`` is the reason alone, for places
    that already say which database it is (the status line).
    """

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause or message


class PermissionDenied(UserError):
    """The acting user may not do this in this organization."""


class ValidationError(UserError):
    """Input was refused before anything was written."""


_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]*@", re.I
)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Remove passwords from a DSN, URI or message before it is shown or logged."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    text = _KEYWORD_PASSWORD.sub(lambda m: f"{m.group(1)}***", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def one_line(text: str) -> str:
    """Collapse a driver's multi-line message into a single sentence."""
    line = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    line = line.split(", full error:")[0]  # pymongo appends the whole reply document
    if not line:
        return "unknown error."
    return line if line.endswith((".", "?", "!")) else line + "."
