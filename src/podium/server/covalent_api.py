"""Covalent Cloud function services: the management API the `covalent-cloud` client calls
(`/fn/api/v0/...`, `/api/v2/envs`) and the data plane its deployments answer on (`/fn/{id}/...`).

The client's account key is a Podium key (`x-api-key`); a deployment's routes take one of its
inference keys, or nothing when it was deployed with `auth=False`. Every answer is JSON (the
client parses bodies before it checks statuses) and every error is `{"detail", "code"}`, mapped
from the core's errors in `_covalent`, the one place this surface does so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from podium import _json
from podium.core.access import Principal
from podium.core.calls import Failure, answered_status, error_of, failure_of
from podium.core.errors import (
    DomainError,
    EndpointUnavailable,
    InvalidArguments,
    InvalidRequest,
    NotFound,
)
from podium.covalent.functions import Deployment, Functions, iso, stderr_text
from podium.covalent.models import FunctionService
from podium.covalent.staging import MAX_SLOTS, AssetSlots
from podium.dispatch.jobs import Job
from podium.server.auth import caller, runtime
from podium.server.body import MB, read_body
from podium.server.errors import HTTPError, status_code_name, status_of
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.server.streams import first_chunk_response
from podium.server.user_content import content_base
from podium.store.endpoints import EndpointState

ASSET_LIMIT = 100 * MB
#: A function service's spec, at deploy.
SPEC_LIMIT = 20 * MB
#: Covalent's own codes for the errors its SDK names.
CODES = {401: "auth/failed", 403: "auth/forbidden", 404: "resource/not_found", 422: "validation/error"}


class CovalentError(HTTPError):
    """Answered as `{"detail", "code"}`, the shape the covalent-cloud SDK reads."""

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail, "code": self.error}


def _covalent(exc: DomainError | HTTPError) -> CovalentError:
    """The core's errors (and Podium's own HTTP errors) in Covalent's words."""
    if isinstance(exc, CovalentError):
        return exc
    if isinstance(exc, HTTPError):
        return CovalentError(exc.status_code, CODES.get(exc.status_code, exc.error), exc.detail, headers=exc.headers)
    status = 422 if isinstance(exc, InvalidArguments) else status_of(exc)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return CovalentError(status, CODES.get(status, exc.code), exc.detail, headers=headers)


class CovalentRoute(APIRoute):
    """Every handler of this router answers its errors through `_covalent`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except (DomainError, HTTPError) as exc:
                return _covalent(exc).response()

        return answer


router = APIRouter(tags=["covalent"], route_class=CovalentRoute)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def _functions(request: Request, role: str) -> tuple[Runtime, Principal, Functions]:
    rt = runtime(request)
    return rt, await caller(request, role), rt.functions


def _slots(rt: Runtime) -> AssetSlots:
    return AssetSlots(rt.settings.home / "covalent-assets")


def _record(request: Request, d: Deployment, token: str | None) -> dict[str, Any]:
    """A function record (`Deployment.from_function_record` reads it)."""
    ep, cfg = d.endpoint, d.config
    error = ep.error if ep.state == EndpointState.ERROR else None
    return {
        "id": d.id,
        "invoke_url": f"{content_base(request)}/fn/{d.id}",
        "title": cfg.title,
        "description": cfg.description,
        "status": ep.state,
        "tags": cfg.tags,
        "auth": cfg.auth,
        "endpoints": [r.model_dump() for r in cfg.routes],
        "inference_keys": [{"key": token}] if token else [],
        "error": error.splitlines()[0] if error else None,
        "stderr": stderr_text(error) if error else None,
        "created_at": iso(ep.created_at),
        "updated_at": iso(ep.updated_at),
        "podium_endpoint": ep.name,
    }


# -- management API -------------------------------------------------------------------------------


@router.get("/api/v2/envs")
async def envs(request: Request, name: str = "default") -> JSONAnswer:
    """Every name is READY: a deployment's environment is built from what its pickles need."""
    await caller(request, "read")
    return JSONAnswer(
        {"records": [{"name": name, "status": "READY"}], "metadata": {"total_count": 1, "page": 0, "count": 1}}
    )


@router.post("/fn/api/v0/assets")
async def new_assets(request: Request, n: int = 1) -> JSONAnswer:
    """Upload slots: `[{"id", "url"}]`; the client PUTs each asset to its url."""
    rt, principal, _ = await _functions(request, "deploy")
    if not 1 <= n <= MAX_SLOTS:
        raise InvalidRequest(f"n must be between 1 and {MAX_SLOTS}")
    ids = _slots(rt).new(principal.project_id, n)
    return JSONAnswer([{"id": i, "url": f"{_base(request)}/fn/api/v0/assets/{i}"} for i in ids])


@router.put("/fn/api/v0/assets/{asset_id}")
async def put_asset(request: Request, asset_id: str) -> JSONAnswer:
    rt, principal, _ = await _functions(request, "deploy")
    data = await read_body(request, ASSET_LIMIT)
    slots = _slots(rt)
    if not await asyncio.to_thread(slots.put, principal.project_id, asset_id, data):
        raise NotFound("asset upload slot", asset_id)
    return JSONAnswer({"id": asset_id, "size": len(data)})


@router.post("/fn/api/v0/functions")
async def deploy(request: Request) -> JSONAnswer:
    """Deploy: answers at once with the record (CREATING); the worker starts meanwhile."""
    rt, principal, fns = await _functions(request, "deploy")
    try:
        spec = FunctionService.model_validate_json(await read_body(request, SPEC_LIMIT))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise CovalentError(422, "validation/error", problems) from None
    slots = _slots(rt)
    d = await fns.deploy(principal, spec, lambda asset_id: slots.get(principal.project_id, asset_id))
    slots.remove(
        [spec.init_fn.id, spec.init_fn_args.id, spec.init_fn_kwargs.id, *(e.endpoint_fn.id for e in spec.endpoints)]
    )
    return JSONAnswer(_record(request, d, await fns.token(d)), status_code=201)


@router.get("/fn/api/v0/functions")
async def list_functions(
    request: Request,
    count: int = 10,
    page: int = 0,
    search: str | None = None,
    sort: str = "created_at",
    direction: str = "DESC",
    status: str | None = None,
) -> JSONAnswer:
    _, principal, fns = await _functions(request, "read")
    if count < 1 or page < 0:
        raise InvalidRequest("count must be >= 1 and page >= 0")
    if direction.upper() not in ("ASC", "DESC"):
        raise InvalidRequest("direction must be ASC or DESC")
    found = await fns.listing(
        principal, search=search, status=status, sort=sort, descending=direction.upper() == "DESC"
    )
    records = [
        {
            k: v
            for k, v in _record(request, d, None).items()
            if k in ("id", "title", "description", "status", "created_at", "updated_at", "endpoints", "tags", "auth")
        }
        for d in found[page * count : (page + 1) * count]
    ]
    return JSONAnswer(
        {"records": records, "metadata": {"total_count": len(found), "page": page, "count": len(records)}}
    )


@router.get("/fn/api/v0/functions/{function_id}")
async def get_function(request: Request, function_id: str) -> JSONAnswer:
    _, principal, fns = await _functions(request, "read")
    d = await fns.get(principal, function_id)
    # The deployment's token, as Covalent's record carries it: for keys that may deploy.
    return JSONAnswer(_record(request, d, await fns.token(d) if principal.can("deploy") else None))


@router.put("/fn/api/v0/functions/{function_id}/teardown")
async def teardown(request: Request, function_id: str) -> JSONAnswer:
    _, principal, fns = await _functions(request, "deploy")
    d = await fns.teardown(await fns.get(principal, function_id))
    return JSONAnswer(_record(request, d, None))


@router.post("/fn/api/v0/functions/{function_id}/inference-keys")
async def create_key(request: Request, function_id: str) -> JSONAnswer:
    """A new key for the deployment's routes: shown this once."""
    _, principal, fns = await _functions(request, "deploy")
    key_id, key, at = await fns.new_key(await fns.get(principal, function_id))
    return JSONAnswer({"id": key_id, "key": key, "created_at": iso(at)}, status_code=201)


@router.get("/fn/api/v0/functions/{function_id}/inference-keys")
async def list_keys(request: Request, function_id: str) -> JSONAnswer:
    _, principal, fns = await _functions(request, "deploy")
    keys = await fns.keys(await fns.get(principal, function_id))
    return JSONAnswer(
        [
            {"id": k.id, "created_at": iso(k.created_at), "last_used": iso(k.last_used_at) if k.last_used_at else None}
            for k in keys
        ]
    )


@router.delete("/fn/api/v0/functions/{function_id}/inference-keys/{key_id}", response_model=None)
async def delete_key(request: Request, function_id: str, key_id: str) -> Response:
    _, principal, fns = await _functions(request, "deploy")
    await fns.delete_key(await fns.get(principal, function_id), key_id)
    return Response(status_code=204)


# -- data plane -----------------------------------------------------------------------------------


@router.post("/fn/{function_id}/info")
async def info(request: Request, function_id: str) -> JSONAnswer:
    """`Deployment.info()`: the record, for the account key."""
    _, principal, fns = await _functions(request, "read")
    return JSONAnswer(_record(request, await fns.get(principal, function_id), None))


async def _caller(request: Request, fns: Functions, function_id: str) -> tuple[Principal, Deployment]:
    """Who calls a route: an inference (or account) key, or anyone when auth is off."""
    d = await fns.public(function_id)
    if d is None:
        raise NotFound("function", function_id)
    if not d.config.auth:
        return Principal("covalent-public", d.endpoint.project_id, "invoke", d.id), d
    principal = await caller(request, "invoke", scoped=True)
    await fns.access.endpoint(principal, function_id)
    return principal, d


async def _kwargs(request: Request) -> dict[str, Any]:
    """The body as JSON whatever its Content-Type (curl -d sends a form type); empty is {}."""
    raw = await read_body(request, runtime(request).settings.max_body)
    if not raw.strip():
        return {}
    try:
        body = _json.loads(raw)
    except _json.JSONDecodeError:
        raise CovalentError(422, "validation/error", "the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise CovalentError(422, "validation/error", "the request body must be a JSON object of keyword arguments")
    return body


def _failure(job: Job) -> CovalentError:
    how = failure_of(job)
    if how == Failure.INVALID_ARGUMENTS:
        return CovalentError(422, "validation/error", error_of(job).get("message") or job.error)
    if how == Failure.HTTP_ERROR:
        status = answered_status(job)
        assert status is not None
        return CovalentError(status, CODES.get(status, status_code_name(status)), error_of(job).get("message"))
    return CovalentError(500, "function/error", job.error or job.status)


async def call(request: Request, function_id: str, route: str) -> Response:
    """`{METHOD} /fn/{id}/{route}` with the keyword arguments as a JSON body."""
    rt = runtime(request)
    principal, d = await _caller(request, rt.functions, function_id)
    rec = d.route(route)
    if rec is None:
        known = ", ".join(f"{r.method} {r.route}" for r in d.config.routes)
        raise NotFound("route", f"/{route} (routes: {known})")
    if rec.method != request.method:
        raise CovalentError(405, "method/not_allowed", f"{rec.route} takes {rec.method}, not {request.method}")
    ep = d.endpoint
    if ep.state == EndpointState.INACTIVE:
        reason = ep.error or f"deployment {d.id} was torn down"
        raise EndpointUnavailable(reason, code="deployment_inactive")
    kwargs = await _kwargs(request)
    target = await rt.calls.target(principal, ep, rec.route)
    outcome = await rt.calls.call(principal, target, kwargs, wait=None if rec.streaming else rt.settings.route_wait)
    if rec.streaming:
        return await first_chunk_response(
            rt, outcome.job_id, _failure, media_type="text/plain; charset=utf-8", end_quietly=True
        )
    if not outcome.ended:
        raise CovalentError(504, "function/timeout", f"the call is still running (job {outcome.job_id})")
    assert outcome.job is not None
    if not outcome.completed:
        raise _failure(outcome.job)
    return Response(outcome.job.output_json, media_type="application/json", headers={"X-Podium-Job-Id": outcome.job_id})


router.add_api_route(
    "/fn/{function_id}/{route:path}",
    call,
    methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
    response_model=None,
    include_in_schema=False,
)
