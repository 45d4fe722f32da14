"""Endpoint secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with one server key.

The key comes from PODIUM_SECRET_KEY (a Fernet key: 32 url-safe base64 bytes) or is generated once
into $PODIUM_HOME/secret.key (mode 600). Values are decrypted only to hand them to a worker as
environment variables; no answer ever carries them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from podium.errors import ConfigError


def secret_file(path: Path, generate: Callable[[], str]) -> str:
    """A server secret kept in a file of mode 600: read, or generated and written on first use."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    value = generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return value


def load_key(explicit: str | None, path: Path) -> bytes:
    """The server's secret key: explicit, else the key file (created with mode 600 if missing)."""
    key = (explicit or secret_file(path, lambda: Fernet.generate_key().decode())).encode()
    try:
        Fernet(key)
    except ValueError:
        raise ConfigError("PODIUM_SECRET_KEY (or secret.key) is not a Fernet key: 32 url-safe base64 bytes") from None
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted: was PODIUM_SECRET_KEY changed?") from None
