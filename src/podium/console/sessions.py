"""Console sign-in sessions, kept in the server process (per replica: behind a load balancer, pin
console users to one replica or they sign in again).

The browser holds only a random session token in an HttpOnly, SameSite=Strict cookie. The store is
keyed by the token's SHA-256 and keeps the API key encrypted under a key derived from the token,
so neither the store nor a memory dump of it yields a usable API key without the cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

COOKIE = "podium_console"
#: Double-submit cookie guarding the sign-in form (there is no session yet to hold a CSRF token).
LOGIN_COOKIE = "podium_console_login"
#: A session ends this long after its last use, or after MAX_AGE whatever happens.
IDLE_SECONDS = 8 * 3600.0
MAX_AGE = 24 * 3600.0
#: Bound on live sessions per server (the oldest are forgotten first).
MAX_SESSIONS = 10_000


def _digest(token: str, purpose: bytes) -> bytes:
    return hmac.new(token.encode(), purpose, hashlib.sha256).digest()


@dataclass
class Session:
    """One signed-in browser. `project` is the operator's pick (None: the key's own project)."""

    sealed_key: bytes
    csrf: str
    created: float = field(default_factory=time.monotonic)
    seen: float = field(default_factory=time.monotonic)
    project: str | None = None
    #: Messages for the next page (kind, text): the outcome of an action, shown after its redirect.
    flash: list[tuple[str, str]] = field(default_factory=list)

    def expired(self, now: float) -> bool:
        return now - self.seen > IDLE_SECONDS or now - self.created > MAX_AGE


class SessionStore:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def create(self, api_key: str) -> str:
        """A new session for `api_key`; returns the token for the cookie (never stored)."""
        token = secrets.token_urlsafe(32)
        if len(self._sessions) >= MAX_SESSIONS:
            oldest = min(self._sessions, key=lambda h: self._sessions[h].seen)
            del self._sessions[oldest]
        sealed = _fernet(token).encrypt(api_key.encode())
        self._sessions[_id(token)] = Session(sealed_key=sealed, csrf=secrets.token_urlsafe(24))
        return token

    def get(self, token: str | None) -> tuple[Session, str] | None:
        """The live session of a cookie token and its API key, or None (unknown or expired)."""
        if not token:
            return None
        sid = _id(token)
        session = self._sessions.get(sid)
        now = time.monotonic()
        if session is None:
            return None
        if session.expired(now):
            del self._sessions[sid]
            return None
        fernet = _fernet(token)
        from cryptography.fernet import InvalidToken

        try:
            key = fernet.decrypt(session.sealed_key).decode()
        except InvalidToken:
            return None
        session.seen = now
        return session, key

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_id(token), None)


def _id(token: str) -> str:
    return _digest(token, b"podium-console-session-id").hex()


def _fernet(token: str) -> Fernet:
    """A key sealed under the cookie token (cryptography is loaded at the first sign-in)."""
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(_digest(token, b"podium-console-key-seal")))


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
