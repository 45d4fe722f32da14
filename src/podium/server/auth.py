"""API keys on every request: `Authorization: Bearer KEY`, a raw `Authorization: KEY` (RunPod
workers send that), or `x-api-key: KEY`. Only the key's SHA-256 is stored or cached.

A key belongs to one project and sees nothing of another (404, never 403, so names do not leak).
The operator key (the server's bootstrap admin) may pick a project with `X-Podium-Project`. Each
user key is rate-limited (a token bucket per key: 429 with Retry-After past it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from fastapi import Request

from podium.server.errors import HTTPError, not_found
from podium.store.catalog import Catalog, hash_key

#: Roles that may act on behalf of users, weakest first; `worker` tokens stand apart.
ROLE_RANK = {"read": 0, "invoke": 1, "deploy": 2, "admin": 3}
CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class Principal:
    key_id: str
    project_id: str
    role: str
    #: For worker tokens: the one endpoint whose jobs this worker may take.
    endpoint_id: str | None = None
    #: The server's operator key: may act in any project.
    operator: bool = False

    def can(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else auth.strip()
    return request.headers.get("x-api-key") or None


PROJECT_HEADER = "x-podium-project"
#: How often a key's last-used time is written (a write per request would cost an fsync each).
TOUCH_EVERY = 60.0


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> float:
        """0 if a request may go now, else the seconds until one may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


UNAUTHORIZED = HTTPError(
    401,
    "unauthorized",
    "missing or invalid API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
    headers={"WWW-Authenticate": "Bearer"},
)


class KeyRing:
    """Looks keys up by hash, with a short cache so the call path does not hit the store each time.

    Parameters:
        catalog: where keys live.
        rate, burst: per-key request rate limit (requests per second, and burst); 0 disables it.
    """

    def __init__(self, catalog: Catalog, *, rate: float = 0.0, burst: float = 0.0) -> None:
        self.catalog = catalog
        self.rate = rate
        self.burst = burst or 2 * rate
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._touched: dict[str, float] = {}

    def forget(self) -> None:
        self._cache.clear()

    async def lookup(self, key: str) -> Principal | None:
        h = hash_key(key)
        hit = self._cache.get(h)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self.catalog.key_by_hash(h)
        principal = (
            None
            if row is None
            else Principal(row["id"], row["project_id"], row["role"], row["endpoint_id"], bool(row["operator"]))
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[h] = (now + CACHE_SECONDS, principal)
        return principal

    async def authenticate(self, request: Request) -> Principal:
        key = presented_key(request)
        if not key:
            raise UNAUTHORIZED
        principal = await self.lookup(key)
        if principal is None:
            raise UNAUTHORIZED
        if principal.role != "worker":
            self._limit(principal)
            await self._touch(principal)
        return await self._project(principal, request.headers.get(PROJECT_HEADER))

    async def authorize(self, request: Request, role: str) -> Principal:
        """authenticate(), then 403 unless the key's role is at least `role`."""
        principal = await self.authenticate(request)
        require(principal, role)
        return principal

    def _limit(self, principal: Principal) -> None:
        if self.rate <= 0:
            return
        bucket = self._buckets.get(principal.key_id)
        if bucket is None:
            bucket = self._buckets[principal.key_id] = TokenBucket(self.rate, self.burst)
        wait = bucket.take()
        if wait > 0:
            raise HTTPError(
                429, "rate_limited",
                f"this key may make {self.rate:g} requests per second (bursts of {self.burst:g}); retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )

    async def _touch(self, principal: Principal) -> None:
        now = time.monotonic()
        if now - self._touched.get(principal.key_id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[principal.key_id] = now
            await self.catalog.touch_key(principal.key_id)

    async def _project(self, principal: Principal, ref: str | None) -> Principal:
        """The project a request acts in: the key's own, or for the operator the one it names."""
        if not ref:
            return principal
        project = await self.catalog.project(ref)
        if project is not None and (principal.operator or project["id"] == principal.project_id):
            return dataclasses.replace(principal, project_id=project["id"])
        raise not_found("project", ref)


def require(principal: Principal, role: str) -> None:
    if not principal.can(role):
        raise HTTPError(403, "forbidden", f"this key's role ({principal.role}) may not do this; needs {role}")
