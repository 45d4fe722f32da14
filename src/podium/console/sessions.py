"""Console sign-in sessions, kept in the store so that every server replica behind a load balancer
knows every sign-in (signed in on one replica, signed in on all; signed out on one, on all).

The browser holds only a random session token in an HttpOnly, SameSite=Strict cookie. A row is
keyed by an HMAC digest of the token and keeps the API key sealed under another key derived from
the token, so the table alone (a backup, a read of the database) yields no usable API key without
the cookie. Times are wall-clock UNIX seconds, since the rows are shared between processes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import delete, insert, select, update

from podium import _json
from podium.store.engine import Row, Store
from podium.store.tables import console_sessions

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

COOKIE = "podium_console"
#: Double-submit cookie guarding the sign-in form (there is no session yet to hold a CSRF token).
LOGIN_COOKIE = "podium_console_login"
#: A session ends this long after its last use, or after MAX_AGE whatever happens.
IDLE_SECONDS = 8 * 3600.0
MAX_AGE = 24 * 3600.0
#: A session's last use is written at most this often, not on every page view.
TOUCH_SECONDS = 60.0
#: How often (at most, per process, on a sign-in) rows past MAX_AGE are deleted; an expired
#: session met before then is deleted on the spot.
SWEEP_SECONDS = 600.0


def _digest(token: str, purpose: bytes) -> bytes:
    return hmac.new(token.encode(), purpose, hashlib.sha256).digest()


@dataclass
class Session:
    """One signed-in browser. `project` is the operator's pick (None: the key's own project)."""

    id: str
    sealed_key: bytes
    csrf: str
    created: float
    seen: float
    project: str | None = None
    #: Messages for the next page (kind, text): the outcome of an action, shown after its redirect.
    flash: list[tuple[str, str]] = field(default_factory=list)

    def expired(self, now: float) -> bool:
        return now - self.seen > IDLE_SECONDS or now - self.created > MAX_AGE


class SessionStore:
    """The console's sessions in the store's `console_sessions` table."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._swept = 0.0

    async def create(self, api_key: str) -> str:
        """A new session for `api_key`; returns the token for the cookie (never stored)."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        async with self.store.tx() as conn:
            if now - self._swept > SWEEP_SECONDS:
                self._swept = now
                await conn.execute(delete(console_sessions).where(console_sessions.c.created_at < now - MAX_AGE))
            await conn.execute(
                insert(console_sessions).values(
                    id=_id(token),
                    sealed_key=_fernet(token).encrypt(api_key.encode()),
                    csrf=secrets.token_urlsafe(24),
                    project=None,
                    flash="[]",
                    created_at=now,
                    seen_at=now,
                )
            )
        return token

    async def get(self, token: str | None) -> tuple[Session, str] | None:
        """The live session of a cookie token and its API key, or None (unknown or expired)."""
        if not token:
            return None
        sid = _id(token)
        async with self.store.read() as conn:
            row = (await conn.execute(select(console_sessions).where(console_sessions.c.id == sid))).mappings().first()
        if row is None:
            return None
        session = _session(row)
        now = time.time()
        if session.expired(now):
            await self._delete(sid)
            return None
        fernet = _fernet(token)
        from cryptography.fernet import InvalidToken

        try:
            key = fernet.decrypt(session.sealed_key).decode()
        except InvalidToken:
            return None
        if now - session.seen >= TOUCH_SECONDS:
            session.seen = now
            async with self.store.tx(durable=False) as conn:
                await conn.execute(update(console_sessions).where(console_sessions.c.id == sid).values(seen_at=now))
        return session, key

    async def save(self, session: Session) -> None:
        """Write what a request changes in a session: its project pick and its messages. A session
        ended meanwhile stays ended."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(console_sessions)
                .where(console_sessions.c.id == session.id)
                .values(project=session.project, flash=_json.dumps(session.flash))
            )

    async def end(self, token: str | None) -> None:
        if token:
            await self._delete(_id(token))

    async def _delete(self, sid: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(delete(console_sessions).where(console_sessions.c.id == sid))


def _session(row: Row) -> Session:
    return Session(
        id=row["id"],
        sealed_key=bytes(row["sealed_key"]),
        csrf=row["csrf"],
        created=row["created_at"],
        seen=row["seen_at"],
        project=row["project"],
        flash=[(str(kind), str(text)) for kind, text in _json.loads(row["flash"])],
    )


def _id(token: str) -> str:
    return _digest(token, b"podium-console-session-id").hex()


def _fernet(token: str) -> Fernet:
    """A key sealed under the cookie token (cryptography is loaded at the first sign-in)."""
    from cryptography.fernet import Fernet

    return Fernet(base64.urlsafe_b64encode(_digest(token, b"podium-console-key-seal")))


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two CSRF tokens (False if either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))
