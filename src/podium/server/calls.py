"""The one path every call takes: check the endpoint, store the job, wait if asked, shape the answer."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from podium.dispatch.queue import NewJob
from podium.server.auth import Principal
from podium.sdk.service import DEFAULT_TIMEOUT_S
from podium.server.errors import HTTPError
from podium.server.options import JobOptions
from podium.server.runtime import Runtime
from podium.store.catalog import EndpointState


def check_callable(ep: RowMapping) -> None:
    if ep["state"] == EndpointState.ERROR:
        first = (ep["error"] or "unknown error").splitlines()[0]
        raise HTTPError(
            503, "endpoint_error", f"endpoint {ep['name']} cannot start its workers: {first}"
        )
    if ep["state"] == EndpointState.INACTIVE:
        raise HTTPError(
            503, "endpoint_inactive",
            f"endpoint {ep['name']} is stopped; start it (podium start {ep['name']}) or deploy it again",
        )


def default_route(routes: list[dict[str, Any]]) -> dict[str, Any]:
    return next((r for r in routes if r.get("default")), routes[0])


def find_route(routes: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    path = "/" + path.strip("/")
    return next((r for r in routes if r["path"] == path), None)


def check_arguments(route: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Refuse arguments the route cannot take (the server knows the signature, not the values)."""
    if route.get("kind") == "handler" or route.get("var_keyword"):
        return
    known = {p["name"] for p in route["params"]}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise HTTPError(
            400,
            "invalid_arguments",
            f"route {route['path']} takes no argument {', '.join(unknown)} "
            f"(it takes: {', '.join(sorted(known)) or 'nothing'})",
        )


async def submit(
    rt: Runtime,
    principal: Principal,
    ep: RowMapping,
    route: dict[str, Any],
    payload: Any,
    *,
    kind: str,
    job_id: str | None = None,
    options: JobOptions | None = None,
) -> str:
    options = options or JobOptions()
    config = (await rt.version(ep))["config"]
    if await rt.queue.at_capacity(ep["id"], ep["queue_cap"]):
        raise HTTPError(
            429, "queue_full",
            f"endpoint {ep['name']} has {ep['queue_cap']} jobs waiting (its queue cap); retry later",
            headers={"Retry-After": "5"},
        )
    retries = int(config.get("retries", 0))
    new = NewJob(
        project_id=principal.project_id,
        endpoint_id=ep["id"],
        route=route["path"],
        input=payload,
        kind=kind,
        max_attempts=max(rt.settings.max_attempts, retries + 1),
        retries=retries,
        webhook=options.webhook,
        policy=options.policy(),
        secret=options.secret(),
        ttl_ms=options.ttl_ms,
        timeout_ms=options.timeout_ms or int(config.get("execution_timeout", DEFAULT_TIMEOUT_S) * 1000),
        low_priority=options.low_priority,
    )
    if job_id is not None:
        new.id = job_id
    stored = await rt.queue.enqueue(new)
    rt.metrics.submitted.labels(ep["id"], kind).inc()
    return stored
