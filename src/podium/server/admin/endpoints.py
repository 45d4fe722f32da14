"""Endpoints: view, stop, start, restart, scale, roll back, history, secrets, logs, removal."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request

from podium.errors import ServiceDefinitionError
from podium.logs import job_of, tail, worker_logs
from podium.records import ServiceConfig
from podium.server.admin.common import (
    admin_caller,
    changed_view,
    check_resources,
    endpoint_view,
    read_from,
    version_by_ref,
    version_summary,
)
from podium.server.admin.models import RollbackIn, parse
from podium.server.body import read_object
from podium.server.errors import HTTPError, not_found
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.records import RESOURCES, SCALING, Endpoint

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/endpoints")
async def list_endpoints(request: Request) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read", scoped=True)
    eps = [ep for ep in await rt.catalog.list_endpoints(principal.project_id) if principal.sees(ep.id)]
    return JSONAnswer({"endpoints": [await endpoint_view(rt, request, ep) for ep in eps]})


@router.get("/endpoints/{ref}")
async def get_endpoint(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    return JSONAnswer(await endpoint_view(rt, request, ep))


@router.post("/endpoints/{ref}/stop")
async def stop_endpoint(request: Request, ref: str) -> JSONAnswer:
    """INACTIVE: its workers drain and stop, calls answer 503 until it is started or redeployed."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    await rt.deployments.stop(ep)
    return await changed_view(rt, request, principal, ep.id)


@router.patch("/endpoints/{ref}/scaling")
async def scale(request: Request, ref: str) -> JSONAnswer:
    """Change scaling settings without a redeploy (the next deploy sets the version's again);
    new resources replace the running workers, each after its job in hand."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    changes = await read_object(request, 64 * 1024)
    unknown = sorted(set(changes) - set(SCALING))
    if unknown:
        raise HTTPError(
            400, "invalid_request", f"unknown setting {', '.join(unknown)} (settings: {', '.join(SCALING)})"
        )
    try:
        merged = ServiceConfig.from_dict({**ep.scaling(), **changes})
    except (ServiceDefinitionError, TypeError) as exc:
        raise HTTPError(400, "invalid_scaling", str(exc)) from None
    check_resources(rt, merged.as_dict())
    await rt.catalog.set_scaling(ep.id, merged.as_dict())
    if any(merged.as_dict()[k] != ep.scaling()[k] for k in RESOURCES):  # workers get resources when started
        rt.scaler.restart(ep.id)
    return await changed_view(rt, request, principal, ep.id)


@router.post("/endpoints/{ref}/start")
async def start_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Bring a stopped (or failed) endpoint back: CREATING until a worker proves the version loads
    (an environment that failed to build is tried again)."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    await rt.deployments.start(ep)
    return await changed_view(rt, request, principal, ep.id)


@router.post("/endpoints/{ref}/restart")
async def restart_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Replace every worker: each finishes its job in hand, new ones start as needed."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    rt.scaler.restart(ep.id)
    return await changed_view(rt, request, principal, ep.id)


@router.post("/endpoints/{ref}/rollback")
async def rollback(request: Request, ref: str) -> JSONAnswer:
    """Point the endpoint back at `version`, its id or a unique prefix of it (default: the one
    before the current one)."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    body = parse(RollbackIn, await read_object(request, 64 * 1024), "rollback")
    target = body.version
    if target is None:
        older = [h.version_id for h in await rt.catalog.history(ep.id) if h.version_id != ep.version_id and h.repointed]
        if not older:
            raise HTTPError(409, "no_previous_version", f"endpoint {ep.name} has no earlier version")
        target = older[0]
    version = await version_by_ref(rt, principal.project_id, target)
    await rt.deployments.point(principal, ep, version, message=body.message or f"rollback to {version.id}")
    return await changed_view(rt, request, principal, ep.id)


@router.get("/endpoints/{ref}/history")
async def history(request: Request, ref: str) -> JSONAnswer:
    """Every re-pointing and every step of a canary rollout (`action`: start, percent, promote,
    abort, guard), newest first: version, when, which key (none: Podium itself), message."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    rows = await rt.catalog.history(ep.id)
    # The newest re-pointing is the current one; a deploy that failed to start never was, and a
    # rollout's steps (`action`) but its promotion point at nothing.
    latest = next((h for h in rows if h.repointed), None)
    return JSONAnswer(
        {
            "endpoint_id": ep.id,
            "name": ep.name,
            "history": [
                {
                    "version": h.version_id,
                    "at": h.at,
                    "key_id": h.key_id,
                    "message": h.message,
                    "current": h is latest and h.version_id == ep.version_id,
                    "error": h.error,
                    "action": h.action,
                }
                for h in rows
            ],
        }
    )


@router.get("/endpoints/{ref}/versions")
async def endpoint_versions(request: Request, ref: str) -> JSONAnswer:
    """The versions this endpoint has pointed at, or was deployed at and failed to start
    (`start_error`), newest first."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    seen: dict[str, None] = {}
    for h in await rt.catalog.history(ep.id):
        seen.setdefault(h.version_id)
    out = []
    for vid in seen:
        row = await rt.catalog.get_version(principal.project_id, vid)
        if row is not None:
            out.append({**version_summary(row), "current": vid == ep.version_id})
    return JSONAnswer({"endpoint_id": ep.id, "name": ep.name, "versions": out})


SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@router.put("/endpoints/{ref}/secrets")
async def set_secrets(request: Request, ref: str) -> JSONAnswer:
    """Set endpoint secrets `{NAME: value}`: encrypted at rest, given to its workers as environment
    variables (its workers are replaced so they see them). The answer names them, never values."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    body = await read_object(request, 1024 * 1024)
    reserved = ("PODIUM_", "RUNPOD_")
    bad = [
        str(k)
        for k, v in body.items()
        if not SECRET_NAME.match(str(k)) or str(k).upper().startswith(reserved) or not isinstance(v, str)
    ]
    if bad or not body:
        raise HTTPError(
            400,
            "invalid_secrets",
            'send {NAME: "value"}: names like MY_TOKEN (not PODIUM_* or RUNPOD_*), string values'
            + (f"; refused: {', '.join(sorted(bad))}" if bad else ""),
        )
    await rt.deployments.set_secrets(ep, body)
    return await _secret_names(rt, ep)


@router.get("/endpoints/{ref}/secrets")
async def list_secrets(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    return await _secret_names(rt, await rt.access.endpoint(principal, ref))


@router.delete("/endpoints/{ref}/secrets/{name}")
async def delete_secret(request: Request, ref: str, name: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    if not await rt.deployments.delete_secret(ep, name):
        raise not_found("secret", name)
    return await _secret_names(rt, ep)


async def _secret_names(rt: Runtime, ep: Endpoint) -> JSONAnswer:
    rows = await rt.catalog.secrets(ep.id)
    return JSONAnswer(
        {"endpoint_id": ep.id, "name": ep.name, "secrets": [{"name": s.name, "updated_at": s.updated_at} for s in rows]}
    )


@router.delete("/endpoints/{ref}")
async def remove_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Drain and remove: queued jobs are cancelled, running ones finish; job records stay readable
    (GET /api/v1/jobs/{id}) until their retention ends. The name is free again."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    cancelled = await rt.deployments.remove(ep)
    return JSONAnswer({"endpoint_id": ep.id, "name": ep.name, "removed": True, "cancelled_jobs": cancelled})


@router.get("/endpoints/{ref}/logs")
async def endpoint_logs(
    request: Request, ref: str, tail_lines: int = 200, job: str | None = None, offsets: str = ""
) -> JSONAnswer:
    """Worker log lines, oldest worker first: the newest `tail_lines` of each, or with `offsets`
    (`worker:byte,...` from a previous answer) only what was written since; `job` keeps that
    job's lines. Each worker's `offset` is where the next read starts (for --follow)."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    n = max(1, min(tail_lines, 10_000))
    since = dict(_offset(part) for part in offsets.split(",") if ":" in part)
    workers = []
    for f in worker_logs(rt.settings.logs, ep.id):
        offset = f.stat().st_size
        if f.stem in since:
            lines, offset = read_from(f, since[f.stem], offset)
        else:
            lines = tail(f, n if job is None else 10_000).splitlines()
        if job is not None:
            lines = [line for line in lines if job_of(line) == job]
        workers.append({"worker": f.stem, "lines": lines, "offset": offset})
    return JSONAnswer({"endpoint_id": ep.id, "name": ep.name, "workers": workers})


def _offset(part: str) -> tuple[str, int]:
    name, _, value = part.rpartition(":")
    return name, int(value) if value.isdigit() else 0
