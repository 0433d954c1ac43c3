"""Secrets: keyring first, a 0600 file where the host has no keyring backend.

Ops hosts reached over SSH usually have no keyring backend (keyring raises ``NoKeyringError``);
there the secrets live in ``secrets.json`` in the config dir, created with mode 0600 and refused
when anyone but the owner can read it. ``creatia-tui secrets where`` says which store is in use.

Secret values never enter argv, the environment of child processes, logs or error messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from creatia_tui.errors import UserError

KEYRING_SERVICE = "creatia-tui"
SECRET_NAMES = ("pg-password", "mongo-password", "backup-passphrase")


def _keyring_usable() -> bool:
    try:
        import keyring
        from keyring.backends import fail
        from keyring.errors import KeyringError
    except ImportError:  # pragma: no cover - keyring is a dependency
        return False
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    try:
        backend.get_password(KEYRING_SERVICE, "__probe__")
    except (KeyringError, RuntimeError, OSError):
        return False
    return True


@dataclass
class SecretStore:
    secrets_file: Path

    @property
    def backend_name(self) -> str:
        if _keyring_usable():
            import keyring

            return f"keyring ({type(keyring.get_keyring()).__name__})"
        return f"file {self.secrets_file} (mode 0600; this host has no keyring backend)"

    @property
    def uses_keyring(self) -> bool:
        return _keyring_usable()

    def get(self, name: str) -> str | None:
        self.check_name(name)
        if _keyring_usable():
            import keyring

            return keyring.get_password(KEYRING_SERVICE, name)
        return self._read_file().get(name)

    def set(self, name: str, value: str) -> str:
        """Store a secret; returns a description of where it went."""
        self.check_name(name)
        if not value:
            raise UserError(f"The secret {name} is empty; nothing was stored.")
        if _keyring_usable():
            import keyring

            keyring.set_password(KEYRING_SERVICE, name, value)
            return self.backend_name
        data = self._read_file()
        data[name] = value
        self._write_file(data)
        return self.backend_name

    def delete(self, name: str) -> None:
        self.check_name(name)
        if _keyring_usable():
            import keyring
            from keyring.errors import PasswordDeleteError

            with contextlib.suppress(PasswordDeleteError):
                keyring.delete_password(KEYRING_SERVICE, name)
            return
        data = self._read_file()
        if data.pop(name, None) is not None:
            self._write_file(data)

    def names_set(self) -> list[str]:
        return [name for name in SECRET_NAMES if self.get(name)]

    @staticmethod
    def check_name(name: str) -> None:
        if name not in SECRET_NAMES:
            raise UserError(
                f"Unknown secret {name!r}; expected one of: {', '.join(SECRET_NAMES)}."
            )

    def _read_file(self) -> dict[str, str]:
        path = self.secrets_file
        try:
            info = path.stat()
        except FileNotFoundError:
            return {}
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise UserError(
                f"The secrets file {path} can be read by other users; run "
                f"'chmod 600 {path}' and try again."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
        except json.JSONDecodeError as exc:
            raise UserError(f"The secrets file {path} is not valid JSON.") from exc
        if not isinstance(data, dict):
            raise UserError(f"The secrets file {path} does not hold a JSON object.")
        return {str(k): str(v) for k, v in data.items()}

    def _write_file(self, data: dict[str, str]) -> None:
        path = self.secrets_file
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written to a 0600 temp file in the same folder, then renamed: the secret is never
        # readable by others, not even for a moment, and never half written.
        fd, tmp_name = tempfile.mkstemp(prefix=".secrets-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
