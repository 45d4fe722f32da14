"""The one path every call takes: find the endpoint's route, check the arguments and the
endpoint, store the job, wait for it.

Every surface (RunPod, route calls, Covalent, Laminar, HTTP apps, DigitalHub services, the
console) calls through `Calls.call`, so limits, idempotency, timing and metrics are the same for
all. What comes back is an `Outcome`: the job's id and, once it ended, how (`Failure`); each
surface only maps the core's errors and the outcome to its own wire.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Update

from podium import _json
from podium.core.access import Access, Principal
from podium.core.errors import (
    Conflict,
    EndpointUnavailable,
    InvalidArguments,
    InvalidRequest,
    NotFound,
    QueueFull,
)
from podium.core.options import JobOptions
from podium.core.split import routed_to_canary
from podium.dispatch.jobs import Job
from podium.dispatch.queue import JobQueue
from podium.dispatch.states import FINAL, WORKER_LOST, JobStatus
from podium.dispatch.submit import DuplicateRequest, NewJob
from podium.ids import uuid7
from podium.metrics import Metrics
from podium.netguard import UnsafeURL, allow_private_from_env, check_url
from podium.records import DEFAULT_TIMEOUT_S, RouteRecord, default_route
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint


def check_callable(ep: Endpoint) -> None:
    if ep.state == EndpointState.ERROR:
        raise EndpointUnavailable(_cannot_start(ep), code="endpoint_error")
    if ep.state == EndpointState.INACTIVE:
        raise EndpointUnavailable(
            f"endpoint {ep.name} is stopped; start it (podium start {ep.name}) or deploy it again",
            code="endpoint_inactive",
        )


def _cannot_start(ep: Endpoint) -> str:
    first = (ep.error or "unknown error").splitlines()[0]
    return f"endpoint {ep.name} cannot start its workers: {first}"


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


class Failure(StrEnum):
    """How a job ended when it did not complete."""

    INVALID_ARGUMENTS = "invalid_arguments"  #: the worker refused the arguments (a missing one)
    HTTP_ERROR = "http_error"  #: the route answered an HTTP error status (podium.HTTPError)
    ROUTE_ERROR = "route_error"  #: the route raised
    WORKER_LOST = "worker_lost"  #: its workers died under it, attempt after attempt
    TIMED_OUT = "timed_out"  #: it ran past its execution timeout
    CANCELLED = "cancelled"  #: a caller cancelled it


@dataclass(frozen=True)
class Target:
    """What a call reaches: an endpoint that may be called, and one of its routes."""

    endpoint: Endpoint
    route: RouteRecord
    #: The canary version a rollout routes the call to (None: the endpoint's own version).
    version_id: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A call's job as the caller gets it back: its id and, when the call waited, the job (None:
    it expired while waited for; not final: still running when the wait ended)."""

    job_id: str
    job: Job | None = None
    #: The job as this call stored it, not read back (None when an Idempotency-Key answered
    #: with an earlier job): what `/run` says of a job it queued.
    queued: Job | None = None

    @property
    def ended(self) -> bool:
        return self.job is not None and self.job.status in FINAL

    @property
    def completed(self) -> bool:
        return self.job is not None and self.job.status == JobStatus.COMPLETED

    @property
    def failure(self) -> Failure | None:
        """How it failed, once it ended without completing (None otherwise)."""
        if not self.ended or self.completed:
            return None
        assert self.job is not None
        return failure_of(self.job)


def error_of(job: Job) -> dict[str, Any]:
    """A failed job's error as the worker reported it (`type`, `message`, `traceback`; {} when
    there is none)."""
    info = job.error_info
    return info if isinstance(info, dict) else {}


def answered_status(job: Job) -> int | None:
    """The HTTP status a route answered by raising podium.HTTPError (None: it did not)."""
    status = error_of(job).get("status")
    return status if isinstance(status, int) and 400 <= status <= 599 else None


def failure_of(job: Job) -> Failure:
    """How a final job that did not complete ended."""
    if job.status == JobStatus.CANCELLED:
        return Failure.CANCELLED
    if job.status == JobStatus.TIMED_OUT:
        return Failure.TIMED_OUT
    if job.error == WORKER_LOST:
        return Failure.WORKER_LOST
    if error_of(job).get("type") == "InvalidArguments":
        return Failure.INVALID_ARGUMENTS
    if answered_status(job) is not None:
        return Failure.HTTP_ERROR
    return Failure.ROUTE_ERROR


class Calls:
    """Calling endpoints: submitting jobs and waiting for them.

    Parameters:
        queue: where jobs are stored and from which workers take them.
        catalog: endpoints and versions (a version's config: retries, execution timeout).
        access: which endpoints a caller may reach.
        metrics: counts submissions.
        max_attempts: the least number of attempts of every job (worker crashes count).
    """

    def __init__(
        self, queue: JobQueue, catalog: Catalog, access: Access, metrics: Metrics, *, max_attempts: int
    ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.access = access
        self.metrics = metrics
        self.max_attempts = max_attempts

    async def routes(self, ep: Endpoint) -> list[RouteRecord]:
        """The route table of the version the endpoint runs now."""
        return (await self.catalog.cached_version(ep.project_id, ep.version_id)).routes

    async def target(self, principal: Principal, endpoint: str | Endpoint, route: str | None = None) -> Target:
        """The endpoint (a reference the caller may see, or one already found) and its route
        (its default one when None): a route that is not there is NotFound naming the routes
        there are."""
        ep = await self.access.endpoint(principal, endpoint) if isinstance(endpoint, str) else endpoint
        routes = await self.routes(ep)
        spec = default_route(routes) if route is None else find_route(routes, route)
        if spec is None:
            known = ", ".join(r["path"] for r in routes)
            detail = f"endpoint {ep.name} has no route /{route} (routes: {known})"
            raise NotFound("route", f"/{route}", detail=detail)
        return Target(ep, spec)

    async def call(
        self,
        principal: Principal,
        target: Target,
        payload: Any,
        *,
        kind: str = "route",
        wait: float | None = None,
        job_id: str | None = None,
        options: JobOptions | None = None,
        idempotency_key: str | None = None,
        check_args: bool = True,
    ) -> Outcome:
        """Check the arguments against the route (unless `check_args` is off: a RunPod job's
        input is the route's one argument) and that the endpoint may be called, store the job
        and, when `wait` is given, wait up to that many seconds for it to end. Without `wait` the
        caller follows the job itself (a stream, or `/run`'s id)."""
        job_id = job_id or uuid7()
        target = await self.split(target, job_id)
        if check_args:
            check_arguments(target.route, payload)
        check_callable(target.endpoint)
        stored = await self.submit(
            principal,
            target.endpoint,
            target.route,
            payload,
            kind=kind,
            job_id=job_id,
            options=options,
            idempotency_key=idempotency_key,
            awaited=wait is not None,
            version_id=target.version_id,
        )
        if wait is None:
            return stored
        return Outcome(stored.job_id, await self.wait(stored.job_id, wait))

    async def split(self, target: Target, job_id: str) -> Target:
        """Where a canary rollout sends the call: to the canary version when the job's id falls
        in its share (`routed_to_canary`) and the canary has the route, else where it was."""
        rollout = target.endpoint.rollout
        if rollout is None or not routed_to_canary(job_id, rollout.percent):
            return target
        canary = await self.catalog.cached_version(target.endpoint.project_id, rollout.version_id)
        spec = find_route(canary.routes, target.route["path"])
        return target if spec is None else Target(target.endpoint, spec, rollout.version_id)

    async def submit(
        self,
        principal: Principal,
        ep: Endpoint,
        route: RouteRecord,
        payload: Any,
        *,
        kind: str,
        job_id: str | None = None,
        options: JobOptions | None = None,
        idempotency_key: str | None = None,
        awaited: bool = False,
        guard: Update | None = None,
        version_id: str | None = None,
    ) -> Outcome:
        """Store a job: its id, and the job as stored. With an Idempotency-Key already used (by
        this project, within 24 h) for the same request, the first job's id comes back and nothing is stored;
        used for a different request, it is a Conflict. `awaited`: the caller waits for the
        result on its connection (see NewJob.awaited). `guard`: see NewJob.guard (raises
        Superseded when it changes no row). `version_id`: a canary's, for a job a rollout
        routes to it."""
        options = options or JobOptions()
        if options.webhook:
            await check_webhook(options.webhook)
        idempotency = None
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 255:
                raise InvalidRequest("Idempotency-Key must be 1 to 255 characters", code="invalid_idempotency_key")
            idempotency = (idempotency_key, request_hash(ep.id, route["path"], payload, options))
            first = await self._first_use(principal, *idempotency)
            if first is not None:
                return Outcome(first)
        config = (await self.catalog.cached_version(ep.project_id, version_id or ep.version_id)).config
        if await self.queue.at_capacity(ep.id, ep.queue_cap):
            raise QueueFull(
                f"endpoint {ep.name} has {ep.queue_cap} jobs waiting (its queue cap); retry later",
                retry_after=5,
            )
        retries = int(config.get("retries", 0))
        new = NewJob(
            project_id=principal.project_id,
            endpoint_id=ep.id,
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
            guard=guard,
            version_id=version_id,
            id=job_id or uuid7(),
        )
        try:
            stored = await self.queue.queue_job(new)
        except DuplicateRequest:  # the same key, stored a moment ago by a concurrent request
            assert idempotency is not None
            first = await self._first_use(principal, *idempotency)
            assert first is not None
            return Outcome(first)
        self.metrics.job_submitted(ep.id, kind)
        return Outcome(stored.id, queued=stored)

    async def wait(self, job_id: str, timeout: float) -> Job | None:
        """The job once final, or as it is after `timeout` seconds (None: it expired)."""
        return await self.queue.wait_final(job_id, timeout)

    async def _first_use(self, principal: Principal, key: str, fingerprint: str) -> str | None:
        first = await self.queue.idempotent(principal.project_id, key)
        if first is None:
            return None
        first_hash, first_job = first
        if first_hash != fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request; use a new key for a new request",
                code="idempotency_key_reused",
            )
        return first_job


async def check_webhook(url: str) -> None:
    """InvalidRequest unless a webhook may be posted to `url` (https, a public address)."""
    try:
        await check_url(url, allow_private=allow_private_from_env())
    except UnsafeURL as exc:
        raise InvalidRequest(str(exc), code="invalid_webhook") from None


def request_hash(endpoint_id: str, route: str, payload: Any, options: JobOptions) -> str:
    """What makes two requests "the same" for an Idempotency-Key (worker-only secrets left out:
    a hash of a credential is not stored)."""
    canonical = _json.dumpb(
        {
            "endpoint": endpoint_id,
            "route": route,
            "input": payload,
            "webhook": options.webhook,
            "policy": options.policy(),
        }
    )
    return hashlib.sha256(canonical).hexdigest()
