"""Who is calling, and which endpoint: the one resolver every surface uses.

A key is looked up by its SHA-256 (only the hash is stored or cached). A key belongs to one
project and sees nothing of another: what it may not see is NotFound, never Forbidden, so names
do not leak. The operator key (the server's bootstrap admin) may act in any project it names.
A key bound to one endpoint (a worker token, a Covalent inference key) sees that endpoint only:
a route that does not keep it there (`scoped=False`, the default) answers it NotFound.
Each user key is rate-limited by a token bucket: in memory on a server of its own, in the store
when replicas share it (so a key's limit holds whichever replica it calls). Unknown keys are
rate-limited per client address, so keys cannot be guessed at the server's pace.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from podium.bounded import MISSING, Bounded
from podium.core.errors import Forbidden, NotFound, RateLimited, Unauthorized
from podium.dispatch.jobs import Job
from podium.dispatch.notify import Notifier
from podium.store.catalog import Catalog
from podium.store.projects import hash_key
from podium.store.ratebuckets import StoredBuckets
from podium.store.records import Endpoint

#: Roles that may act on behalf of users, weakest first; `worker` tokens stand apart.
ROLE_RANK = {"read": 0, "invoke": 1, "deploy": 2, "admin": 3}
#: What `Access.caller` takes as the role of the worker protocol: a worker token, or a deploy key.
WORKER = "worker"
#: A key that may read /metrics and nothing else (the operator's key may read them too).
METRICS = "metrics"
#: The roles a key can be created with (`worker` tokens are made by the autoscaler only).
KEY_ROLES = (*ROLE_RANK, METRICS)
CACHE_SECONDS = 5.0
#: Unknown keys one client address may present: bursts of BAD_KEY_BURST, then BAD_KEY_RATE a second.
BAD_KEY_RATE = 1.0
BAD_KEY_BURST = 20.0
#: How often a key's last-used time is written (a write per request would cost a transaction).
TOUCH_EVERY = 60.0

NO_KEY = "missing or invalid API key: send `Authorization: Bearer KEY` or `x-api-key: KEY`"


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

    def sees(self, endpoint_id: str) -> bool:
        """Whether an endpoint of the key's project is within its reach."""
        return self.endpoint_id is None or self.endpoint_id == endpoint_id


def require(principal: Principal, role: str | None) -> None:
    """Forbidden unless the key's role is at least `role` (worker tokens: only the worker protocol;
    metrics keys: only metrics; None: any key but a metrics key)."""
    if role == WORKER:
        if principal.role != WORKER:
            require(principal, "deploy")
        return
    if role == METRICS:
        if principal.role != METRICS and not principal.operator:
            raise Forbidden("metrics are for the operator key or a metrics key")
        return
    if principal.role == METRICS:
        raise Forbidden("metrics keys may only read /metrics")
    if role is None:
        return
    if principal.role == WORKER:
        raise Forbidden("worker tokens may only use the worker protocol")
    if not principal.can(role):
        raise Forbidden(f"this key's role ({principal.role}) may not do this; needs {role}")


class TokenBucket:
    """`rate` requests per second on average, bursts up to `burst`."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.at = time.monotonic()

    def take(self) -> float:
        """0 if a request may go now (it takes its token), else the seconds until one may."""
        wait = self.wait()
        if wait == 0:
            self.tokens -= 1
        return wait

    def wait(self) -> float:
        """0 if a request may go now, else the seconds until one may (nothing is taken)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class Access:
    """Keys looked up with a short cache (the call path does not hit the store each time), rate
    limits, projects, and the caller's endpoints.

    Parameters:
        catalog: where keys, projects and endpoints live.
        rate, burst: per-key request rate limit (requests per second, and burst); 0 disables it.
        shared: other replicas serve the same keys: budgets are kept in the store.
        notifier: tells the other replicas when a key changed.
    """

    def __init__(
        self,
        catalog: Catalog,
        *,
        rate: float = 0.0,
        burst: float = 0.0,
        shared: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.catalog = catalog
        self.notifier = notifier
        if notifier is not None:
            notifier.on("forget", lambda _: self._cache.clear())
        self.rate = rate
        self.burst = burst or 2 * rate
        self._cache: Bounded[str, Principal | None] = Bounded(ttl=CACHE_SECONDS)
        self._buckets: dict[str, TokenBucket] = {}
        self._stored = StoredBuckets(catalog.store, self.rate, self.burst) if shared else None
        self._touched: dict[str, float] = {}
        #: Unknown keys presented, per client address.
        self._bad: dict[str, TokenBucket] = {}

    def forget(self) -> None:
        """Drop cached keys (after one is revoked or changed), here and on the other replicas."""
        self._cache.clear()
        if self.notifier is not None:
            self.notifier.announce("forget", "")

    async def lookup(self, key: str) -> Principal | None:
        h = hash_key(key)
        hit = self._cache.get(h, MISSING)
        if hit is not MISSING:
            return hit
        found = await self.catalog.key_by_hash(h)
        principal = (
            None
            if found is None
            else Principal(found.id, found.project_id, found.role, found.endpoint_id, bool(found.operator))
        )
        self._cache.put(h, principal)
        return principal

    async def identify(self, key: str, client: str | None) -> Principal | None:
        """The key's principal, or None for an unknown key; RateLimited when `client` (an
        address) presented too many unknown keys lately, whatever this one is."""
        bad = self._bad.get(client) if client else None
        if bad is not None and (wait := bad.wait()) > 0:
            raise RateLimited(
                "too many invalid API keys from this address; retry later", retry_after=max(1, math.ceil(wait))
            )
        principal = await self.lookup(key)
        if principal is None and client:
            if bad is None:
                if len(self._bad) > 10_000:
                    self._bad.clear()
                bad = self._bad[client] = TokenBucket(BAD_KEY_RATE, BAD_KEY_BURST)
            bad.take()
        return principal

    async def caller(
        self,
        key: str | None,
        role: str | None,
        *,
        project: str | None = None,
        scoped: bool = False,
        client: str | None = None,
    ) -> Principal:
        """The principal a presented key stands for, allowed to act as `role` (None: any valid
        key), in `project` if it names one; raises Unauthorized, RateLimited, Forbidden or
        NotFound (a project it may not see). `scoped`: the route keeps an endpoint-bound key to
        its endpoint (through `endpoint`, `job` or `Principal.sees`); elsewhere such a key finds
        nothing. `client`: the caller's address, for the limit on unknown keys."""
        principal = await self.identify(key, client) if key else None
        if principal is None:
            raise Unauthorized(NO_KEY)
        if principal.role != WORKER:
            await self._limit(principal)
            await self._touch(principal)
        require(principal, role)
        if principal.endpoint_id is not None and not scoped:
            raise NotFound("project", project or principal.project_id)
        if not project:
            return principal
        found = await self.catalog.project(project)
        if found is not None and (principal.operator or found.id == principal.project_id):
            return dataclasses.replace(principal, project_id=found.id)
        raise NotFound("project", project)

    async def endpoint(self, principal: Principal, ref: str) -> Endpoint:
        """The caller's endpoint by id or name; NotFound for anything it may not see."""
        ep = await self.catalog.get_endpoint(principal.project_id, ref)
        if ep is None or not principal.sees(ep.id):
            raise NotFound("endpoint", ref)
        return ep

    @staticmethod
    def job(principal: Principal, job: Job | None, ref: str) -> Job:
        """A job the caller may see (its project's, on an endpoint within its reach)."""
        if job is None or job.project_id != principal.project_id or not principal.sees(job.endpoint_id):
            raise NotFound("job", ref)
        return job

    async def _limit(self, principal: Principal) -> None:
        if self.rate <= 0:
            return
        if self._stored is not None:
            wait = await self._stored.take(principal.key_id, time.time())
        else:
            bucket = self._buckets.get(principal.key_id)
            if bucket is None:
                bucket = self._buckets[principal.key_id] = TokenBucket(self.rate, self.burst)
            wait = bucket.take()
        if wait > 0:
            raise RateLimited(
                f"this key may make {self.rate:g} requests per second (bursts of {self.burst:g}); retry later",
                retry_after=max(1, math.ceil(wait)),
            )

    async def _touch(self, principal: Principal) -> None:
        now = time.monotonic()
        if now - self._touched.get(principal.key_id, -TOUCH_EVERY) >= TOUCH_EVERY:
            self._touched[principal.key_id] = now
            await self.catalog.touch_key(principal.key_id)
