"""API keys on every request: `Authorization: Bearer KEY`, a raw `Authorization: KEY` (RunPod
workers send that), or `x-api-key: KEY`. Only the key's SHA-256 is stored or cached."""

from __future__ import annotations

import time
from dataclasses import dataclass

from fastapi import Request

from podium.server.errors import HTTPError
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

    def can(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else auth.strip()
    return request.headers.get("x-api-key") or None


UNAUTHORIZED = HTTPError(
    401,
    "unauthorized",
    "missing or invalid API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`",
    headers={"WWW-Authenticate": "Bearer"},
)


class KeyRing:
    """Looks keys up by hash, with a short cache so the call path does not hit the store each time."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._cache: dict[str, tuple[float, Principal | None]] = {}

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
            else Principal(row["id"], row["project_id"], row["role"], row["endpoint_id"])
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
        return principal


def require(principal: Principal, role: str) -> None:
    if not principal.can(role):
        raise HTTPError(403, "forbidden", f"this key's role ({principal.role}) may not do this; needs {role}")
