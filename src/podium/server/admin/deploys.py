"""Bundles and deploys: upload a bundle under its SHA-256, then point an endpoint at a version of it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from podium.bundle import MAX_BUNDLE_BYTES, version_id
from podium.core.access import Principal
from podium.core.schedules import check_routes
from podium.envs.requirements import Requirements
from podium.errors import ServiceDefinitionError
from podium.records import ServiceConfig
from podium.server.admin.common import (
    ENDPOINT_NAME,
    RESERVED_NAMES,
    SHA256,
    admin_caller,
    check_resources,
    endpoint_view,
)
from podium.server.admin.models import DeployIn, VersionIn, parse
from podium.server.admin.volumes import volumes
from podium.server.body import read_body, read_object
from podium.server.errors import HTTPError, not_found
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.endpoints import EndpointState, scaling_columns
from podium.store.records import Endpoint, Version

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/blobs/{sha256}")
async def blob_exists(request: Request, sha256: str) -> JSONAnswer:
    """Whether the caller's project has this bundle (another project's is not found: uploading
    it is how a project proves it has the bytes)."""
    rt, principal = await admin_caller(request, "deploy")
    path = await _own_bundle(rt, principal.project_id, sha256)
    if path is None:
        raise not_found("bundle", sha256)
    return JSONAnswer({"sha256": sha256, "size": path.stat().st_size})


@router.put("/blobs/{sha256}")
async def put_blob(request: Request, sha256: str) -> JSONAnswer:
    """Upload a bundle; it is stored under its SHA-256, which must match what was sent, and the
    caller's project may use it from then on."""
    rt, principal = await admin_caller(request, "deploy")
    if not SHA256.match(sha256):
        raise HTTPError(400, "invalid_request", "bundle name must be its lowercase hex SHA-256")
    data = await read_body(request, MAX_BUNDLE_BYTES)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HTTPError(400, "hash_mismatch", "the uploaded bundle does not match its SHA-256")
    await rt.bundles.put(sha256, data)
    await rt.catalog.own_blob(principal.project_id, sha256)
    return JSONAnswer({"sha256": sha256, "size": len(data)})


async def _own_bundle(rt: Runtime, project_id: str, sha256: str) -> Path | None:
    """The bundle's file, if the project uploaded it or has a version of it."""
    if not SHA256.match(sha256) or not await rt.catalog.owns_blob(project_id, sha256):
        return None
    return await rt.bundles.local(sha256)


def _check_version(body: VersionIn, project_id: str) -> dict[str, Any]:
    """The version's record, its config and requirements checked, its id derived from its content."""
    v = {k: value for k, value in body.model_dump(exclude={"id"}).items() if value is not None}  # nested Nones stay
    if any(not route["path"].startswith("/") for route in v["routes"]):
        raise HTTPError(400, "invalid_request", "each route's path must start with /")
    check_routes(v["routes"])  # a schedule's cron expression, time zone or period: a 422 naming it
    cfg = v["config"]
    if not all(
        isinstance(cfg.get(k), (int, float)) for k in ("min_workers", "max_workers", "idle_timeout", "concurrency")
    ):
        raise HTTPError(
            400, "invalid_request", "version config needs min_workers, max_workers, idle_timeout, concurrency"
        )
    try:
        ServiceConfig.from_dict(cfg)
    except (ServiceDefinitionError, TypeError, ValueError) as exc:
        raise HTTPError(400, "invalid_scaling", str(exc)) from None
    meta = {k: v[k] for k in ("service", "entry", "routes", "config", "runtime")}
    if body.requirements is not None:
        try:
            reqs = Requirements.from_dict(body.requirements)
        except ValueError as exc:
            raise HTTPError(400, "invalid_requirements", str(exc)) from None
        meta["requirements"] = v["requirements"] = reqs.as_dict()
        v["env_hash"] = reqs.env_hash()
    # Content-addressed within a project: the same bundle in two projects is two versions.
    return {**v, "id": version_id(v["sha256"], {**meta, "project": project_id})}


@router.post("/deploy")
async def deploy(request: Request) -> JSONAnswer:
    """Store a version (same content, same id) and point the endpoint `name` at it; the answer
    says which of the endpoint's scaling settings that changes (`scaling_changes`)."""
    rt, principal = await admin_caller(request, "deploy")
    body = await read_object(request, 10 * 1024 * 1024)
    name = body.get("name")
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name) or name in RESERVED_NAMES:
        raise HTTPError(
            400,
            "invalid_name",
            f"endpoint name {name!r} must match [a-z0-9][a-z0-9-]{{0,62}} "
            f"and not be one of {', '.join(sorted(RESERVED_NAMES))}",
        )
    request_body = parse(DeployIn, body, "deploy")
    version = _check_version(request_body.version, principal.project_id)
    config = ServiceConfig.from_dict(version["config"])
    check_resources(rt, config.as_dict())
    shared_root = rt.settings.backend != "ray" or rt.settings.volumes_root is not None
    await volumes(rt).check_deploy(principal.project_id, config.volumes, shared_root=shared_root)
    if await _own_bundle(rt, principal.project_id, version["sha256"]) is None:
        raise HTTPError(409, "bundle_missing", "upload the bundle (PUT /api/v1/blobs/{sha256}) first")
    before = await rt.catalog.get_endpoint(principal.project_id, name)
    if request_body.canary is not None:
        return await _canary(rt, request, principal, before, name, version, request_body)
    ep, changed, row = await rt.deployments.deploy(principal, name, version, message=request_body.message)
    return JSONAnswer(
        {
            **(await endpoint_view(rt, request, ep)),
            "changed": changed,
            "deployed": row.id,
            "scaling_changes": _scaling_changes(before, name, row),
        }
    )


async def _canary(
    rt: Runtime,
    request: Request,
    principal: Principal,
    before: Endpoint | None,
    name: str,
    version: dict[str, Any],
    body: DeployIn,
) -> JSONAnswer:
    """`podium deploy --canary`: the version takes a share of the calls of an endpoint that
    serves already (its scaling settings apply to its own workers only)."""
    if before is None or before.name != name:
        raise HTTPError(409, "no_endpoint", f"no endpoint {name} to roll out to: deploy it first (without --canary)")
    assert body.canary is not None
    row = await rt.rollouts.deploy(
        principal, before, version, body.canary, max_failure_rate=body.max_failure_rate, message=body.message
    )
    ep = await rt.access.endpoint(principal, before.id)
    return JSONAnswer(
        {**(await endpoint_view(rt, request, ep)), "changed": True, "deployed": row.id, "scaling_changes": {}}
    )


def _scaling_changes(before: Endpoint | None, name: str, deployed: Version) -> dict[str, list[Any]]:
    """The endpoint's scaling settings (as `podium scale` may have left them) that pointing it at
    `deployed` sets otherwise, as {setting: [before, after]}; none for a new endpoint or one that
    already runs that version (a deploy of the same content resets nothing)."""
    if before is None or before.name != name:
        return {}
    if before.version_id == deployed.id and before.state != EndpointState.INACTIVE:
        return {}
    after = scaling_columns(deployed.config)
    return {k: [v, after[k]] for k, v in before.scaling().items() if v != after[k]}
