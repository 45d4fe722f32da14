"""The admin API under /api/v1: bundles, deploys, endpoints, versions, jobs, logs and keys."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from podium.server.responses import JSONAnswer
from sqlalchemy.engine import RowMapping

from podium import _json
from podium.bundle import MAX_BUNDLE_BYTES, version_id
from podium.server.auth import ROLE_RANK, Principal, require
from podium.server.body import read_body, read_object
from podium.server.errors import HTTPError, not_found
from podium.server.runtime import Runtime
from podium.store.catalog import EndpointState, key_prefix
from podium.scaling.local import tail

router = APIRouter(prefix="/api/v1", tags=["admin"])

ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Names that would be shadowed by the server's own paths.
RESERVED_NAMES = {"v1", "v2", "api", "console", "healthz", "metrics", "docs", "openapi-json"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


async def _auth(request: Request, role: str) -> tuple[Runtime, Principal]:
    rt: Runtime = request.app.state.runtime
    principal = await rt.keys.authenticate(request)
    if principal.role == "worker":
        raise HTTPError(403, "forbidden", "worker tokens may only use the worker protocol")
    require(principal, role)
    return rt, principal


def urls(request: Request, ep_id: str) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    return {
        "run": f"{base}/v2/{ep_id}/run",
        "runsync": f"{base}/v2/{ep_id}/runsync",
        "status": f"{base}/v2/{ep_id}/status/{{job_id}}",
        "routes": f"{base}/{ep_id}/{{route}}",
    }


async def _endpoint_view(rt: Runtime, request: Request, ep: RowMapping) -> dict[str, Any]:
    return {
        "endpoint_id": ep["id"],
        "name": ep["name"],
        "version": ep["version_id"],
        "state": ep["state"],
        "error": ep["error"],
        "scaling": {k: ep[k] for k in ("min_workers", "max_workers", "idle_timeout", "concurrency")},
        "routes": await rt.routes(ep),
        "workers": [w.as_dict() for w in rt.registry.for_endpoint(ep["id"])],
        "urls": urls(request, ep["id"]),
    }


@router.get("/blobs/{sha256}")
async def blob_exists(request: Request, sha256: str) -> JSONAnswer:
    rt, _ = await _auth(request, "deploy")
    if not SHA256.match(sha256) or not rt.blob_path(sha256).exists():
        raise not_found("bundle", sha256)
    return JSONAnswer({"sha256": sha256, "size": rt.blob_path(sha256).stat().st_size})


@router.put("/blobs/{sha256}")
async def put_blob(request: Request, sha256: str) -> JSONAnswer:
    """Upload a bundle; it is stored under its SHA-256, which must match what was sent."""
    rt, _ = await _auth(request, "deploy")
    if not SHA256.match(sha256):
        raise HTTPError(400, "invalid_request", "bundle name must be its lowercase hex SHA-256")
    data = await read_body(request, MAX_BUNDLE_BYTES)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HTTPError(400, "hash_mismatch", "the uploaded bundle does not match its SHA-256")
    path = rt.blob_path(sha256)
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return JSONAnswer({"sha256": sha256, "size": len(data)})


def _check_version(v: Any) -> dict[str, Any]:
    required = ("sha256", "service", "entry", "routes", "config", "size")
    if not isinstance(v, dict) or any(k not in v for k in required):
        raise HTTPError(400, "invalid_request", f'"version" must be an object with {", ".join(required)}')
    if not isinstance(v["routes"], list) or not v["routes"]:
        raise HTTPError(400, "invalid_request", "the version declares no routes")
    cfg = v["config"]
    if not isinstance(cfg, dict) or not all(
        isinstance(cfg.get(k), (int, float)) for k in ("min_workers", "max_workers", "idle_timeout", "concurrency")
    ):
        raise HTTPError(400, "invalid_request", "version config needs min_workers, max_workers, idle_timeout, concurrency")
    runtime = v.setdefault("runtime", "podium")
    if runtime not in ("podium", "runpod"):
        raise HTTPError(400, "invalid_request", 'version runtime must be "podium" or "runpod"')
    meta = {k: v[k] for k in ("service", "entry", "routes", "config", "runtime")}
    return {**v, "id": version_id(v["sha256"], meta)}


@router.post("/deploy")
async def deploy(request: Request) -> JSONAnswer:
    """Store a version (same content, same id) and point the endpoint `name` at it."""
    rt, principal = await _auth(request, "deploy")
    body = await read_object(request, 10 * 1024 * 1024)
    name = body.get("name")
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name) or name in RESERVED_NAMES:
        raise HTTPError(
            400,
            "invalid_name",
            f"endpoint name {name!r} must match [a-z0-9][a-z0-9-]{{0,62}} "
            f"and not be one of {', '.join(sorted(RESERVED_NAMES))}",
        )
    version = _check_version(body.get("version"))
    if not rt.blob_path(version["sha256"]).exists():
        raise HTTPError(409, "bundle_missing", "upload the bundle (PUT /api/v1/blobs/{sha256}) first")
    message = body.get("message") if isinstance(body.get("message"), str) else None
    row = await rt.catalog.put_version(
        principal.project_id, {**version, "message": message, "created_by": principal.key_id}
    )
    ep, changed = await rt.catalog.point_endpoint(
        principal.project_id, name, row, key_id=principal.key_id, message=message
    )
    rt.scaler.wake()
    return JSONAnswer({**(await _endpoint_view(rt, request, ep)), "changed": changed})


@router.get("/endpoints")
async def list_endpoints(request: Request) -> JSONAnswer:
    rt, principal = await _auth(request, "read")
    eps = await rt.catalog.list_endpoints(principal.project_id)
    return JSONAnswer({"endpoints": [await _endpoint_view(rt, request, ep) for ep in eps]})


@router.get("/endpoints/{ref}")
async def get_endpoint(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await _auth(request, "read")
    ep = await rt.endpoint(principal, ref)
    return JSONAnswer(await _endpoint_view(rt, request, ep))


@router.post("/endpoints/{ref}/stop")
async def stop_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Tear down: INACTIVE, its workers drain and stop, calls are refused until the next deploy."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.endpoint(principal, ref)
    await rt.catalog.set_state(ep["id"], EndpointState.INACTIVE)
    rt.scaler.wake()
    ep = await rt.endpoint(principal, ep["id"])
    return JSONAnswer(await _endpoint_view(rt, request, ep))


@router.get("/endpoints/{ref}/logs")
async def endpoint_logs(request: Request, ref: str, tail_lines: int = 200) -> JSONAnswer:
    """The newest lines of the endpoint's worker logs, oldest worker first."""
    rt, principal = await _auth(request, "read")
    ep = await rt.endpoint(principal, ref)
    n = max(1, min(tail_lines, 10_000))
    log_dir = rt.settings.logs / ep["name"]
    files = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime) if log_dir.exists() else []
    workers = [{"worker": f.stem, "lines": tail(f, n).splitlines()} for f in files]
    return JSONAnswer({"endpoint_id": ep["id"], "name": ep["name"], "workers": workers})


@router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> JSONAnswer:
    rt, principal = await _auth(request, "read")
    row = await rt.queue.get(job_id)
    if row is None or row["project_id"] != principal.project_id:
        raise not_found("job", job_id)
    job = dict(row)
    for k in ("input", "output", "error_info", "attempt_errors", "progress", "policy"):
        job[k] = _json.loads(job[k])
    assert rt.webhooks is not None
    job["webhooks"] = await rt.webhooks.for_job(job_id)
    return JSONAnswer(job)


@router.get("/webhook-secret")
async def webhook_secret(request: Request) -> JSONAnswer:
    """The key webhook requests are signed with, for receivers to verify them (admins only)."""
    rt, _ = await _auth(request, "admin")
    assert rt.webhooks is not None
    return JSONAnswer({"secret": rt.webhooks.secret})


async def _version_for(request: Request, version_id: str) -> tuple[Runtime, RowMapping]:
    """Versions are readable by users of the project and by the workers that run them."""
    rt: Runtime = request.app.state.runtime
    principal = await rt.keys.authenticate(request)
    row = await rt.catalog.get_version(principal.project_id, version_id)
    if row is None:
        raise not_found("version", version_id)
    if principal.role == "worker":
        ep = await rt.catalog.get_endpoint(principal.project_id, principal.endpoint_id or "")
        if ep is None or ep["version_id"] != version_id:
            raise not_found("version", version_id)
    return rt, row


@router.get("/versions/{version_id}")
async def get_version(request: Request, version_id: str) -> JSONAnswer:
    _, row = await _version_for(request, version_id)
    v = dict(row)
    v["routes"] = _json.loads(v["routes"])
    v["config"] = _json.loads(v["config"])
    return JSONAnswer(v)


@router.get("/versions/{version_id}/bundle", response_model=None)
async def get_bundle(request: Request, version_id: str) -> FileResponse:
    rt, row = await _version_for(request, version_id)
    path = rt.blob_path(row["sha256"])
    if not path.exists():
        raise not_found("bundle of version", version_id)
    return FileResponse(path, media_type="application/zip")


@router.post("/keys")
async def create_key(request: Request) -> JSONAnswer:
    """Create an API key; the key itself is in this answer and nowhere else, ever."""
    rt, principal = await _auth(request, "admin")
    body = await read_object(request, 64 * 1024)
    role = body.get("role", "invoke")
    if role not in ROLE_RANK:
        raise HTTPError(400, "invalid_role", f"role must be one of {', '.join(ROLE_RANK)}")
    name = body.get("name")
    kid, key = await rt.catalog.create_key(principal.project_id, role, name=name if isinstance(name, str) else None)
    return JSONAnswer(
        {"id": kid, "key": key, "prefix": key_prefix(key), "role": role, "project": principal.project_id}
    )
