"""The one path every call takes: check the endpoint and the arguments, store the job, wait for it.

Every surface (RunPod, route calls, Laminar, HTTP apps, the console) submits through `Calls`, so
limits, idempotency, timing and metrics are the same for all; each maps the errors to its wire."""

from __future__ import annotations

import hashlib
from typing import Any

from podium import _json
from podium.core.access import Principal
from podium.core.errors import (
    Conflict,
    EndpointUnavailable,
    InvalidArguments,
    InvalidRequest,
    QueueFull,
)
from podium.core.options import JobOptions
from podium.dispatch.queue import JobQueue
from podium.dispatch.submit import DuplicateRequest, NewJob
from podium.ids import uuid7
from podium.metrics import Metrics
from podium.netguard import UnsafeURL, allow_private_from_env, check_url
from podium.records import DEFAULT_TIMEOUT_S, RouteRecord
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.engine import Row


def check_callable(ep: Row) -> None:
    if ep["state"] == EndpointState.ERROR:
        first = (ep["error"] or "unknown error").splitlines()[0]
        raise EndpointUnavailable(
            f"endpoint {ep['name']} cannot start its workers: {first}", code="endpoint_error"
        )
    if ep["state"] == EndpointState.INACTIVE:
        raise EndpointUnavailable(
            f"endpoint {ep['name']} is stopped; start it (podium start {ep['name']}) or deploy it again",
            code="endpoint_inactive",
        )


def default_route(routes: list[RouteRecord]) -> RouteRecord:
    return next((r for r in routes if r.get("default")), routes[0])


def find_route(routes: list[RouteRecord], path: str) -> RouteRecord | None:
    path = "/" + path.strip("/")
    return next((r for r in routes if r["path"] == path), None)


def check_arguments(route: RouteRecord, kwargs: dict[str, Any]) -> None:
    """Refuse arguments the route cannot take (the server knows the signature, not the values)."""
    if route.get("kind") == "handler" or route.get("var_keyword"):
        return
    known = {p["name"] for p in route["params"]}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise InvalidArguments(
            f"route {route['path']} takes no argument {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(known)) or 'nothing'})"
        )


class Calls:
    """Submitting jobs and waiting for them.

    Parameters:
        queue: where jobs are stored and from which workers take them.
        catalog: endpoints and versions (a version's config: retries, execution timeout).
        metrics: counts submissions.
        max_attempts: the least number of attempts of every job (worker crashes count).
    """

    def __init__(self, queue: JobQueue, catalog: Catalog, metrics: Metrics, *, max_attempts: int) -> None:
        self.queue = queue
        self.catalog = catalog
        self.metrics = metrics
        self.max_attempts = max_attempts

    async def submit(
        self,
        principal: Principal,
        ep: Row,
        route: RouteRecord,
        payload: Any,
        *,
        kind: str,
        job_id: str | None = None,
        options: JobOptions | None = None,
        idempotency_key: str | None = None,
        awaited: bool = False,
    ) -> str:
        """Store a job and return its id. With an Idempotency-Key already used (by this project,
        within 24 h) for the same request, the first job's id comes back and nothing is stored;
        used for a different request, it is a Conflict. `awaited`: the caller waits for the
        result on its connection (see NewJob.awaited)."""
        options = options or JobOptions()
        if options.webhook:
            try:
                await check_url(options.webhook, allow_private=allow_private_from_env())
            except UnsafeURL as exc:
                raise InvalidRequest(str(exc), code="invalid_webhook") from None
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                raise InvalidRequest(
                    "Idempotency-Key must be 1 to 255 characters", code="invalid_idempotency_key"
                )
            idempotency = (idempotency_key, request_hash(ep["id"], route["path"], payload, options))
            first = await self._first_use(principal, *idempotency)
            if first is not None:
                return first
        config = (await self.catalog.version_info(ep["project_id"], ep["version_id"]))["config"]
        if await self.queue.at_capacity(ep["id"], ep["queue_cap"]):
            raise QueueFull(
                f"endpoint {ep['name']} has {ep['queue_cap']} jobs waiting (its queue cap); retry later",
                retry_after=5,
            )
        retries = int(config.get("retries", 0))
        new = NewJob(
            project_id=principal.project_id,
            endpoint_id=ep["id"],
            route=route["path"],
            input=payload,
            kind=kind,
            max_attempts=max(self.max_attempts, retries + 1),
            retries=retries,
            webhook=options.webhook,
            policy=options.policy(),
            secret=options.secret(),
            ttl_ms=options.ttl_ms,
            timeout_ms=options.timeout_ms or int(config.get("execution_timeout", DEFAULT_TIMEOUT_S) * 1000),
            low_priority=options.low_priority,
            idempotency=idempotency,
            awaited=awaited,
            id=job_id or uuid7(),
        )
        try:
            stored = await self.queue.enqueue(new)
        except DuplicateRequest:  # the same key, stored a moment ago by a concurrent request
            assert idempotency is not None
            first = await self._first_use(principal, *idempotency)
            assert first is not None
            return first
        self.metrics.job_submitted(ep["id"], kind)
        return stored

    async def wait(self, job_id: str, timeout: float) -> Row | None:
        """The job once final, or as it is after `timeout` seconds (None: it expired)."""
        return await self.queue.wait_final(job_id, timeout)

    async def _first_use(self, principal: Principal, key: str, fingerprint: str) -> str | None:
        row = await self.queue.idempotent(principal.project_id, key)
        if row is None:
            return None
        if row["request_hash"] != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request; use a new key for a new request",
                code="idempotency_key_reused",
            )
        return str(row["job_id"])


def request_hash(endpoint_id: str, route: str, payload: Any, options: JobOptions) -> str:
    """What makes two requests "the same" for an Idempotency-Key (worker-only secrets left out:
    a hash of a credential is not stored)."""
    canonical = _json.dumpb({
        "endpoint": endpoint_id, "route": route, "input": payload, "webhook": options.webhook,
        "policy": options.policy(),
    })
    return hashlib.sha256(canonical).hexdigest()
