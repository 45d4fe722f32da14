"""Route calls (Covalent-style): POST /{endpoint}/{route} with a JSON object of keyword arguments.

Answered with the route's JSON return value; a streaming route answers chunked bytes as the worker
produces them. With `Prefer: respond-async` (RFC 7240) the call answers `202 {id, status}` at once
and the job is followed like a RunPod job (`/v2/{endpoint}/status/{id}`, stream, cancel). These
calls take the same path as RunPod jobs: stored, taken, finished.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from podium import _json
from podium.core.access import Principal
from podium.core.calls import Failure, answered_status, error_of, failure_of
from podium.core.options import JobOptions, parse_env, parse_webhook
from podium.dispatch.jobs import Job
from podium.records import RouteRecord
from podium.server.admin.common import RESERVED_NAMES
from podium.server.auth import endpoint_caller, runtime
from podium.server.body import read_object
from podium.server.errors import HTTPError, status_code_name
from podium.server.http_apps import http_call
from podium.server.openapi_doc import endpoint_openapi
from podium.server.responses import JSONAnswer
from podium.server.runpod_api import misdirected
from podium.server.runtime import Runtime
from podium.server.streams import first_chunk_response, sse_frames
from podium.store.records import Endpoint

router = APIRouter(tags=["routes"])

#: A route call's `env`, as a JSON object (the body is the route's keyword arguments).
ENV_HEADER = "X-Podium-Env"
#: A route call's webhook URL: the job's final status is POSTed there, as for /run's `webhook`.
WEBHOOK_HEADER = "X-Podium-Webhook"
#: The RFC 7240 preference that asks for the job's id now rather than its result later.
RESPOND_ASYNC = "respond-async"


def failure(job: Job, *, traceback: bool = False) -> HTTPError:
    """The error answer for a job that did not complete: a route's HTTP error as its status and
    message; a route's exception as 500 with its type and message, and its traceback when
    `traceback` (deploy keys: an invoke key is not shown the server's paths)."""
    how, info = failure_of(job), error_of(job)
    extra: dict[str, Any] = {"id": job.id}
    if how == Failure.INVALID_ARGUMENTS:
        return HTTPError(400, "invalid_arguments", info.get("message") or job.error, extra=extra)
    if how == Failure.HTTP_ERROR:
        status = answered_status(job)
        assert status is not None
        return HTTPError(status, status_code_name(status), info.get("message") or job.error, extra=extra)
    if how == Failure.WORKER_LOST:
        return HTTPError(502, "worker_lost", job.error, extra=extra)
    if how != Failure.ROUTE_ERROR:
        return HTTPError(502, job.status.lower(), job.error or job.status, extra=extra)
    extra.update(type=info.get("type"), message=info.get("message"))
    if traceback:
        extra["traceback"] = info.get("traceback")
    return HTTPError(500, "route_error", job.error, extra=extra)


def failures(principal: Principal) -> Callable[[Job], HTTPError]:
    """`failure` as `principal` is answered (tracebacks for deploy keys and up)."""
    return functools.partial(failure, traceback=principal.can("deploy"))


def _env_header(request: Request) -> dict[str, str] | None:
    raw = request.headers.get(ENV_HEADER)
    if raw is None:
        return None
    try:
        value = _json.loads(raw)
    except _json.JSONDecodeError:
        raise HTTPError(400, "invalid_env", f"{ENV_HEADER} must be a JSON object of strings") from None
    return parse_env(value)


def _options(request: Request) -> JobOptions:
    return JobOptions(env=_env_header(request), webhook=parse_webhook(request.headers.get(WEBHOOK_HEADER)))


def responds_async(request: Request) -> bool:
    """Whether a `Prefer` header (there may be several, each a comma-separated list of
    `token[=value][; param]`) asks for respond-async."""
    return any(
        pref.split(";")[0].split("=")[0].strip().lower() == RESPOND_ASYNC
        for header in request.headers.getlist("prefer")
        for pref in header.split(",")
    )


def accepted(ep: Endpoint, job_id: str) -> JSONAnswer:
    """202 for a job submitted with respond-async: its id, and where its status is read."""
    return JSONAnswer(
        {"id": job_id, "status": "IN_QUEUE"},
        status_code=202,
        headers={
            "Preference-Applied": RESPOND_ASYNC,
            "Location": f"/v2/{ep.id}/status/{job_id}",
            "X-Podium-Job-Id": job_id,
        },
    )


def error_text(job: Job | None) -> str:
    """What a failed job's SSE error frame says."""
    if job is None:
        return "the job expired before it ended"
    return str(job.error or job.status)


def event_stream(rt: Runtime, job_id: str) -> StreamingResponse:
    """The job as server-sent events; a client that hangs up does not cancel the job."""
    return StreamingResponse(
        sse_frames(rt, job_id, error_text),
        media_type="text/event-stream",
        headers={"X-Podium-Job-Id": job_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _target(request: Request, endpoint: str, role: str) -> tuple[Runtime, Principal, Endpoint, list[RouteRecord]]:
    if endpoint == "v2":  # a RunPod path no route took: never a route of an endpoint named "v2"
        raise misdirected(request)
    if endpoint in RESERVED_NAMES:  # never an endpoint's name: a server path, mistyped
        raise HTTPError(404, "not_found", f"no such path: {request.method} {request.url.path}")
    rt = runtime(request)
    principal, ep = await endpoint_caller(request, role, endpoint)
    return rt, principal, ep, await rt.calls.routes(ep)


def _is_app(routes: list[RouteRecord]) -> bool:
    return bool(routes) and routes[0]["kind"] == "http"


@router.get("/{endpoint}/openapi.json", response_model=None)
async def endpoint_openapi_doc(request: Request, endpoint: str) -> Response:
    """This endpoint's routes as an OpenAPI 3.1 description (an HTTP app answers for itself)."""
    rt, principal, ep, routes = await _target(request, endpoint, "read")
    if _is_app(routes):
        return await http_call(rt, principal, ep, routes[0], request, endpoint, "openapi.json", failures(principal))
    base = str(request.base_url).rstrip("/")
    return JSONAnswer(endpoint_openapi(ep, routes, base))


async def other_method(request: Request, endpoint: str, route: str) -> Response:
    """GET, PUT, DELETE, ... reach HTTP-app services; routes take POST only."""
    rt, principal, ep, routes = await _target(request, endpoint, "invoke")
    if _is_app(routes):
        return await http_call(rt, principal, ep, routes[0], request, endpoint, route, failures(principal))
    raise HTTPError(405, "method_not_allowed", f"routes of {ep.name} are called with POST")


async def app_root(request: Request, endpoint: str) -> Response:
    """`/{endpoint}` without a trailing slash: the root of an HTTP app."""
    if request.method == "POST":
        return await call_route(request, endpoint, "")
    return await other_method(request, endpoint, "")


for _method in ("GET", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
    router.add_api_route(
        "/{endpoint}/{route:path}",
        other_method,
        methods=[_method],
        include_in_schema=False,
        name=f"http_app_{_method.lower()}",
    )
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"):
    router.add_api_route(
        "/{endpoint}", app_root, methods=[_method], include_in_schema=False, name=f"http_app_root_{_method.lower()}"
    )


@router.post("/{endpoint}/{route:path}", response_model=None)
async def call_route(request: Request, endpoint: str, route: str) -> Response:
    rt, principal, ep, routes = await _target(request, endpoint, "invoke")
    if _is_app(routes):
        return await http_call(rt, principal, ep, routes[0], request, endpoint, route, failures(principal))
    kwargs = await read_object(request, rt.settings.max_body)
    target = await rt.calls.target(principal, ep, route)
    detached = responds_async(request)
    sse = not detached and "text/event-stream" in request.headers.get("accept", "")
    follows = detached or sse or target.route["streaming"]
    outcome = await rt.calls.call(
        principal,
        target,
        kwargs,
        options=_options(request),
        idempotency_key=request.headers.get("idempotency-key"),
        wait=None if follows else rt.settings.route_wait,
    )
    job_id = outcome.job_id
    if detached:
        return accepted(ep, job_id)
    if sse:
        return event_stream(rt, job_id)
    if follows:
        return await first_chunk_response(rt, job_id, failures(principal), media_type="application/octet-stream")
    if not outcome.ended:
        raise HTTPError(
            504,
            "timeout",
            f"the route is still running; poll /v2/{ep.id}/status/{job_id}",
            extra={"id": job_id},
        )
    assert outcome.job is not None
    if not outcome.completed:
        raise failures(principal)(outcome.job)
    return Response(outcome.job.output_json, media_type="application/json", headers={"X-Podium-Job-Id": job_id})
