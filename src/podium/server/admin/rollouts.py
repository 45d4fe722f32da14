"""Canary rollouts of an endpoint: start one or change its share, promote, abort, read it."""

from __future__ import annotations

from fastapi import APIRouter, Request

from podium.server.admin.common import admin_caller, changed_view, version_by_ref
from podium.server.admin.models import RolloutIn, parse
from podium.server.body import read_object
from podium.server.responses import JSONAnswer

router = APIRouter(prefix="/api/v1", tags=["admin"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": RolloutIn.model_json_schema()}},
    }
}


@router.get("/endpoints/{ref}/rollout")
async def get_rollout(request: Request, ref: str) -> JSONAnswer:
    """The rollout under way (null: none), with each version's share, calls, failures and median
    execution time over the last minutes."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    view = await rt.rollouts.view(ep)
    return JSONAnswer({"endpoint_id": ep.id, "name": ep.name, "rollout": view.as_dict(ep) if view else None})


@router.put("/endpoints/{ref}/rollout", openapi_extra=_BODY)
async def put_rollout(request: Request, ref: str) -> JSONAnswer:
    """With `version`: send `percent` of new calls to that version (already deployed, of this
    project), the rest to the current one. Without: change the share of the rollout under way."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    body = parse(RolloutIn, await read_object(request, 64 * 1024), "rollout")
    if body.version is None:
        await rt.rollouts.set_percent(principal, ep, body.percent, max_failure_rate=body.max_failure_rate)
    else:
        version = await version_by_ref(rt, principal.project_id, body.version)
        await rt.rollouts.start(principal, ep, version, body.percent, max_failure_rate=body.max_failure_rate)
    return await changed_view(rt, request, principal, ep.id)


@router.post("/endpoints/{ref}/rollout/promote")
async def promote(request: Request, ref: str) -> JSONAnswer:
    """Every call goes to the canary: the endpoint points at it, the old version's workers drain."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    await rt.rollouts.promote(principal, ep)
    return await changed_view(rt, request, principal, ep.id)


@router.post("/endpoints/{ref}/rollout/abort")
async def abort(request: Request, ref: str) -> JSONAnswer:
    """Every new call goes to the current version again; the canary's workers drain."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    await rt.rollouts.abort(principal, ep)
    return await changed_view(rt, request, principal, ep.id)
