"""Endpoint secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with one server key.

The key comes from PODIUM_SECRET_KEY (a Fernet key: 32 url-safe base64 bytes) or is generated once
into $PODIUM_HOME/secret.key (mode 600). Values are decrypted only to hand them to a worker as
environment variables; no answer ever carries them. The cryptography package (several MiB in
memory) is loaded when the first value is sealed or opened: many servers never hold a secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from podium.errors import ConfigError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet


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
    key = (explicit or secret_file(path, new_key)).encode()
    if not is_key(key):
        raise ConfigError("PODIUM_SECRET_KEY (or secret.key) is not a Fernet key: 32 url-safe base64 bytes")
    return key


def new_key() -> str:
    """A new Fernet key: 32 random bytes, url-safe base64 (what `Fernet.generate_key` makes)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def is_key(key: bytes) -> bool:
    """Whether Fernet accepts `key` (its own check: 32 bytes once url-safe base64 decoded)."""
    try:
        return len(base64.urlsafe_b64decode(key)) == 32
    except (binascii.Error, ValueError):
        return False


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @functools.cached_property
    def _fernet(self) -> Fernet:
        from cryptography.fernet import Fernet

        return Fernet(self._key)

    def seal(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def open(self, token: str) -> str:
        fernet = self._fernet
        from cryptography.fernet import InvalidToken

        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("a stored secret cannot be decrypted: was PODIUM_SECRET_KEY changed?") from None
