"""The admin API under /api/v1: bundles, deploys, endpoints, versions, jobs, logs and keys."""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sqlalchemy.engine import RowMapping

from podium import _json
from podium.bundle import MAX_BUNDLE_BYTES, version_id
from podium.core.access import ROLE_RANK, Principal
from podium.dispatch.states import JobStatus
from podium.envs.requirements import Requirements
from podium.errors import ServiceDefinitionError
from podium.logs import job_of
from podium.scaling.local import tail
from podium.sdk.service import ServiceConfig
from podium.server.auth import caller, runtime
from podium.server.body import read_body, read_object
from podium.server.errors import HTTPError, not_found
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.catalog import SCALING, EndpointState, key_prefix

router = APIRouter(prefix="/api/v1", tags=["admin"])

ENDPOINT_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: Names that would be shadowed by the server's own paths. ("api" is allowed: only an app's own
#: /v1/... paths would be shadowed by the admin API under /api/v1.)
RESERVED_NAMES = {"v1", "v2", "console", "healthz", "metrics", "docs", "endpoint", "pipeline", "fn"}
SHA256 = re.compile(r"^[0-9a-f]{64}$")


async def _auth(request: Request, role: str) -> tuple[Runtime, Principal]:
    return runtime(request), await caller(request, role)


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
        "scaling": {k: ep[k] for k in SCALING},
        "routes": await rt.routes(ep),
        # Where it came from: "podium", "runpod" (a worker file) or "covalent" (covalent-cloud).
        "runtime": (await rt.version(ep))["runtime"],
        "workers": [w.as_dict() for w in rt.pool.for_endpoint(ep["id"])],
        "workers_by_state": rt.pool.counts(ep["id"]),
        "urls": urls(request, ep["id"]),
        "service": service_record(request, ep),
        # A redeploy whose environment is still building (the current version serves meanwhile).
        "pending_version": _json.loads(ep["pending"])["version_id"] if ep["pending"] else None,
    }


def service_record(request: Request, ep: RowMapping) -> dict[str, Any]:
    """DigitalHub's service record: `url` is host:port/path without a scheme."""
    host = request.url.hostname or "127.0.0.1"
    port = request.url.port or (443 if request.url.scheme == "https" else 80)
    return {
        "name": ep["name"],
        "type": "http",
        "url": f"{host}:{port}/{ep['id']}",
        "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}],
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


def _route_shape(route: Any) -> bool:
    return (
        isinstance(route, dict)
        and isinstance(route.get("path"), str) and route["path"].startswith("/")
        and isinstance(route.get("method"), str)
        and route.get("kind") in ("route", "handler", "http")
        and isinstance(route.get("streaming"), bool)
        and isinstance(route.get("params"), list)
        and all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in route["params"])
    )


def _check_version(v: Any, project_id: str) -> dict[str, Any]:
    required = ("sha256", "service", "entry", "routes", "config", "size")
    if not isinstance(v, dict) or any(k not in v for k in required):
        raise HTTPError(400, "invalid_request", f'"version" must be an object with {", ".join(required)}')
    if not isinstance(v["routes"], list) or not v["routes"]:
        raise HTTPError(400, "invalid_request", "the version declares no routes")
    for route in v["routes"]:
        if not _route_shape(route):
            raise HTTPError(400, "invalid_request",
                            "each route must be an object like the bundler makes: path ('/...'), method, "
                            "kind (route, handler or http), streaming (bool), params (list)")
    cfg = v["config"]
    if not isinstance(cfg, dict) or not all(
        isinstance(cfg.get(k), (int, float)) for k in ("min_workers", "max_workers", "idle_timeout", "concurrency")
    ):
        raise HTTPError(
            400, "invalid_request", "version config needs min_workers, max_workers, idle_timeout, concurrency"
        )
    try:
        ServiceConfig.from_dict(cfg)
    except (ServiceDefinitionError, TypeError, ValueError) as exc:
        raise HTTPError(400, "invalid_scaling", str(exc)) from None
    runtime = v.setdefault("runtime", "podium")
    if runtime not in ("podium", "runpod"):
        raise HTTPError(400, "invalid_request", 'version runtime must be "podium" or "runpod"')
    meta = {k: v[k] for k in ("service", "entry", "routes", "config", "runtime")}
    if v.get("requirements") is not None:
        try:
            reqs = Requirements.from_dict(v["requirements"])
        except ValueError as exc:
            raise HTTPError(400, "invalid_requirements", str(exc)) from None
        meta["requirements"] = v["requirements"] = reqs.as_dict()
        v["env_hash"] = reqs.env_hash()
    # Content-addressed within a project: the same bundle in two projects is two versions.
    return {**v, "id": version_id(v["sha256"], {**meta, "project": project_id})}


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
    version = _check_version(body.get("version"), principal.project_id)
    if not rt.blob_path(version["sha256"]).exists():
        raise HTTPError(409, "bundle_missing", "upload the bundle (PUT /api/v1/blobs/{sha256}) first")
    message = body.get("message") if isinstance(body.get("message"), str) else None
    row = await rt.catalog.put_version(
        principal.project_id, {**version, "message": message, "created_by": principal.key_id}
    )
    current = await rt.catalog.get_endpoint(principal.project_id, name)
    serving = current is not None and current["name"] == name and current["version_id"] != row["id"] and (
        current["state"] in (EndpointState.ACTIVE, EndpointState.CREATING)
    )
    if await rt.scaler.builds.deployed(row) and serving:
        # The current version keeps serving while the new one's environment builds.
        assert current is not None
        await rt.catalog.stage_endpoint(current["id"], row["id"], key_id=principal.key_id, message=message)
        staged = await rt.catalog.get_endpoint(principal.project_id, current["id"])
        assert staged is not None
        ep, changed = staged, True
    else:
        ep, changed = await rt.catalog.point_endpoint(
            principal.project_id, name, row, key_id=principal.key_id, message=message
        )
    rt.scaler.wake()
    return JSONAnswer({**(await _endpoint_view(rt, request, ep)), "changed": changed, "deployed": row["id"]})


@router.get("/endpoints")
async def list_endpoints(request: Request) -> JSONAnswer:
    rt, principal = await _auth(request, "read")
    eps = await rt.catalog.list_endpoints(principal.project_id)
    return JSONAnswer({"endpoints": [await _endpoint_view(rt, request, ep) for ep in eps]})


@router.get("/endpoints/{ref}")
async def get_endpoint(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await _auth(request, "read")
    ep = await rt.access.endpoint(principal, ref)
    return JSONAnswer(await _endpoint_view(rt, request, ep))


async def _changed(rt: Runtime, request: Request, principal: Principal, endpoint_id: str) -> JSONAnswer:
    rt.scaler.wake()
    return JSONAnswer(await _endpoint_view(rt, request, await rt.access.endpoint(principal, endpoint_id)))


@router.post("/endpoints/{ref}/stop")
async def stop_endpoint(request: Request, ref: str) -> JSONAnswer:
    """INACTIVE: its workers drain and stop, calls answer 503 until it is started or redeployed."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    await rt.catalog.set_state(ep["id"], EndpointState.INACTIVE)
    return await _changed(rt, request, principal, ep["id"])


@router.patch("/endpoints/{ref}/scaling")
async def scale(request: Request, ref: str) -> JSONAnswer:
    """Change scaling settings without a redeploy (the next deploy sets the version's again)."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    changes = await read_object(request, 64 * 1024)
    unknown = sorted(set(changes) - set(SCALING))
    if unknown:
        raise HTTPError(
            400, "invalid_request", f"unknown setting {', '.join(unknown)} (settings: {', '.join(SCALING)})"
        )
    try:
        merged = ServiceConfig.from_dict({**{k: ep[k] for k in SCALING}, **changes})
    except (ServiceDefinitionError, TypeError) as exc:
        raise HTTPError(400, "invalid_scaling", str(exc)) from None
    await rt.catalog.set_scaling(ep["id"], merged.as_dict())
    return await _changed(rt, request, principal, ep["id"])


@router.post("/endpoints/{ref}/start")
async def start_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Bring a stopped (or failed) endpoint back: CREATING until a worker proves the version loads
    (an environment that failed to build is tried again)."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    if ep["state"] in (EndpointState.INACTIVE, EndpointState.ERROR):
        version = await rt.catalog.get_version(principal.project_id, ep["version_id"])
        if version is not None:
            await rt.scaler.builds.deployed(version)
        await rt.catalog.set_state(ep["id"], EndpointState.CREATING)
    return await _changed(rt, request, principal, ep["id"])


@router.post("/endpoints/{ref}/restart")
async def restart_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Replace every worker: each finishes its job in hand, new ones start as needed."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    rt.scaler.restart(ep["id"])
    return await _changed(rt, request, principal, ep["id"])


@router.post("/endpoints/{ref}/rollback")
async def rollback(request: Request, ref: str) -> JSONAnswer:
    """Point the endpoint back at `version` (default: the one before the current one)."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    body = await read_object(request, 64 * 1024)
    target = body.get("version")
    if target is None:
        older = [h["version_id"] for h in await rt.catalog.history(ep["id"]) if h["version_id"] != ep["version_id"]]
        if not older:
            raise HTTPError(409, "no_previous_version", f"endpoint {ep['name']} has no earlier version")
        target = older[0]
    if not isinstance(target, str):
        raise HTTPError(400, "invalid_request", '"version" must be a version id')
    version = await rt.catalog.get_version(principal.project_id, target)
    if version is None:
        raise not_found("version", target)
    message = body.get("message") if isinstance(body.get("message"), str) else f"rollback to {target}"
    await rt.catalog.point_endpoint(
        principal.project_id, ep["name"], version, key_id=principal.key_id, message=message
    )
    return await _changed(rt, request, principal, ep["id"])


@router.get("/endpoints/{ref}/history")
async def history(request: Request, ref: str) -> JSONAnswer:
    """Every re-pointing, newest first: version, when, which key, message."""
    rt, principal = await _auth(request, "read")
    ep = await rt.access.endpoint(principal, ref)
    rows = await rt.catalog.history(ep["id"])
    return JSONAnswer({
        "endpoint_id": ep["id"], "name": ep["name"],
        "history": [
            {"version": h["version_id"], "at": h["at"], "key_id": h["key_id"], "message": h["message"],
             "current": i == 0 and h["version_id"] == ep["version_id"]}
            for i, h in enumerate(rows)
        ],
    })


@router.get("/endpoints/{ref}/versions")
async def endpoint_versions(request: Request, ref: str) -> JSONAnswer:
    """The versions this endpoint has pointed at, newest first."""
    rt, principal = await _auth(request, "read")
    ep = await rt.access.endpoint(principal, ref)
    seen: dict[str, None] = {}
    for h in await rt.catalog.history(ep["id"]):
        seen.setdefault(h["version_id"])
    out = []
    for vid in seen:
        row = await rt.catalog.get_version(principal.project_id, vid)
        if row is not None:
            out.append({**_version_summary(row), "current": vid == ep["version_id"]})
    return JSONAnswer({"endpoint_id": ep["id"], "name": ep["name"], "versions": out})


SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


@router.put("/endpoints/{ref}/secrets")
async def set_secrets(request: Request, ref: str) -> JSONAnswer:
    """Set endpoint secrets `{NAME: value}`: encrypted at rest, given to its workers as environment
    variables (its workers are replaced so they see them). The answer names them, never values."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    body = await read_object(request, 1024 * 1024)
    reserved = ("PODIUM_", "RUNPOD_")
    bad = [str(k) for k, v in body.items()
           if not SECRET_NAME.match(str(k)) or str(k).upper().startswith(reserved) or not isinstance(v, str)]
    if bad or not body:
        raise HTTPError(400, "invalid_secrets",
                        "send {NAME: \"value\"}: names like MY_TOKEN (not PODIUM_* or RUNPOD_*), string values"
                        + (f"; refused: {', '.join(sorted(bad))}" if bad else ""))
    assert rt.secrets is not None
    for name, value in body.items():
        await rt.catalog.set_secret(ep["id"], name, rt.secrets.seal(value))
    rt.scaler.restart(ep["id"])
    return await _secret_names(rt, ep)


@router.get("/endpoints/{ref}/secrets")
async def list_secrets(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await _auth(request, "deploy")
    return await _secret_names(rt, await rt.access.endpoint(principal, ref))


@router.delete("/endpoints/{ref}/secrets/{name}")
async def delete_secret(request: Request, ref: str, name: str) -> JSONAnswer:
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    if not await rt.catalog.delete_secret(ep["id"], name):
        raise not_found("secret", name)
    rt.scaler.restart(ep["id"])
    return await _secret_names(rt, ep)


async def _secret_names(rt: Runtime, ep: RowMapping) -> JSONAnswer:
    rows = await rt.catalog.secrets(ep["id"])
    return JSONAnswer({"endpoint_id": ep["id"], "name": ep["name"],
                       "secrets": [{"name": r["name"], "updated_at": r["updated_at"]} for r in rows]})


@router.delete("/endpoints/{ref}")
async def remove_endpoint(request: Request, ref: str) -> JSONAnswer:
    """Drain and remove: queued jobs are cancelled, running ones finish; job records stay readable
    (GET /api/v1/jobs/{id}) until their retention ends. The name is free again."""
    rt, principal = await _auth(request, "deploy")
    ep = await rt.access.endpoint(principal, ref)
    cancelled = await rt.queue.purge(ep["id"])
    await rt.catalog.remove_endpoint(ep["id"])
    rt.scaler.wake()
    return JSONAnswer({"endpoint_id": ep["id"], "name": ep["name"], "removed": True, "cancelled_jobs": cancelled})


@router.get("/endpoints/{ref}/logs")
async def endpoint_logs(
    request: Request, ref: str, tail_lines: int = 200, job: str | None = None, offsets: str = ""
) -> JSONAnswer:
    """Worker log lines, oldest worker first: the newest `tail_lines` of each, or with `offsets`
    (`worker:byte,...` from a previous answer) only what was written since; `job` keeps that
    job's lines. Each worker's `offset` is where the next read starts (for --follow)."""
    rt, principal = await _auth(request, "read")
    ep = await rt.access.endpoint(principal, ref)
    n = max(1, min(tail_lines, 10_000))
    since = dict(_offset(part) for part in offsets.split(",") if ":" in part)
    log_dir = rt.settings.logs / ep["name"]
    files = sorted(log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime) if log_dir.exists() else []
    workers = []
    for f in files:
        offset = f.stat().st_size
        if f.stem in since:
            lines, offset = read_from(f, since[f.stem], offset)
        else:
            lines = tail(f, n if job is None else 10_000).splitlines()
        if job is not None:
            lines = [line for line in lines if job_of(line) == job]
        workers.append({"worker": f.stem, "lines": lines, "offset": offset})
    return JSONAnswer({"endpoint_id": ep["id"], "name": ep["name"], "workers": workers})


def _offset(part: str) -> tuple[str, int]:
    name, _, value = part.rpartition(":")
    return name, int(value) if value.isdigit() else 0


def read_from(path: Path, start: int, end: int, limit: int = 1 << 20) -> tuple[list[str], int]:
    """Whole lines written between byte `start` and `end` (at most `limit` bytes of them), and
    where the next read starts (a line still being written is left for then)."""
    with path.open("rb") as f:
        f.seek(min(start, end))
        data = f.read(min(end - start, limit)) if end > start else b""
    whole = data[: data.rfind(b"\n") + 1]
    return whole.decode(errors="replace").splitlines(), start + len(whole)


@router.get("/jobs")
async def list_jobs(
    request: Request, status: str | None = None, endpoint: str | None = None, limit: int = 100
) -> JSONAnswer:
    """Jobs of the caller's project, newest first; `status=FAILED` is the dead-letter view."""
    rt, principal = await _auth(request, "read")
    if status is not None and status not in JobStatus.__members__:
        raise HTTPError(400, "invalid_status", f"status must be one of {', '.join(JobStatus.__members__)}")
    endpoint_id = (await rt.access.endpoint(principal, endpoint))["id"] if endpoint else None
    rows = await rt.queue.find(
        principal.project_id, status=status, endpoint_id=endpoint_id, limit=max(1, min(limit, 1000))
    )
    keys = ("id", "endpoint_id", "route", "status", "attempt", "max_attempts", "error", "created_at",
            "finished_at", "delay_ms", "execution_ms")
    return JSONAnswer({"jobs": [{k: r[k] for k in keys} for r in rows]})


@router.post("/jobs/{job_id}/retry")
async def retry_job(request: Request, job_id: str) -> JSONAnswer:
    """Queue a FAILED or TIMED_OUT job again, same id (re-drive from the dead-letter view)."""
    rt, principal = await _auth(request, "invoke")
    row = await rt.queue.get(job_id)
    if row is None or row["project_id"] != principal.project_id:
        raise not_found("job", job_id)
    if not await rt.queue.retry(job_id):
        raise HTTPError(400, "not_retryable",
                        f"only FAILED or TIMED_OUT jobs can be retried; job {job_id} is {row['status']}")
    return JSONAnswer({"id": job_id, "status": "IN_QUEUE"})


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
    rt = runtime(request)
    principal = await caller(request, None)
    row = await rt.catalog.get_version(principal.project_id, version_id)
    if row is None:
        raise not_found("version", version_id)
    if principal.role == "worker":
        ep = await rt.catalog.get_endpoint(principal.project_id, principal.endpoint_id or "")
        if ep is None or ep["version_id"] != version_id:
            raise not_found("version", version_id)
    return rt, row


def _version_summary(row: RowMapping) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "service", "runtime", "size", "message", "created_by", "created_at",
                                "env_hash", "build_state")}


@router.get("/versions/{version_id}")
async def get_version(request: Request, version_id: str) -> JSONAnswer:
    """A version: what it records, and the files of its bundle."""
    rt, row = await _version_for(request, version_id)
    v = dict(row)
    v["routes"] = _json.loads(v["routes"])
    v["config"] = _json.loads(v["config"])
    v["requirements"] = _json.loads(v["requirements"]) if v["requirements"] else None
    path = rt.blob_path(row["sha256"])
    if path.exists():
        with zipfile.ZipFile(path) as zf:
            v["files"] = [{"name": i.filename, "size": i.file_size} for i in zf.infolist()]
    return JSONAnswer(v)


@router.get("/versions/{version_id}/build")
async def version_build(request: Request, version_id: str, offset: int | None = None) -> JSONAnswer:
    """A version's environment build: its state, the installer's error, and the build log's lines
    from byte `offset` (default: where the latest build began); `offset` in the answer is where
    the next read starts, to follow a build."""
    rt, row = await _version_for(request, version_id)
    key = row["env_hash"]
    out: dict[str, Any] = {"version": version_id, "env": key, "state": row["build_state"],
                           "error": row["build_error"], "lines": [], "offset": 0}
    if key is not None:
        store = rt.scaler.builds.store
        path = store.log_path(key)
        start = store.last_build_offset(key) if offset is None else max(0, offset)
        if path.exists():
            out["lines"], out["offset"] = read_from(path, start, path.stat().st_size)
    return JSONAnswer(out)


@router.get("/versions/{version_id}/bundle", response_model=None)
async def get_bundle(request: Request, version_id: str) -> FileResponse:
    rt, row = await _version_for(request, version_id)
    path = rt.blob_path(row["sha256"])
    if not path.exists():
        raise not_found("bundle of version", version_id)
    return FileResponse(path, media_type="application/zip")


@router.post("/keys")
async def create_key(request: Request) -> JSONAnswer:
    """Create an API key in the caller's project; the key itself is in this answer and nowhere
    else, ever. `expires` is a duration like 30d, 12h or 90m."""
    rt, principal = await _auth(request, "admin")
    body = await read_object(request, 64 * 1024)
    role = body.get("role", "invoke")
    if not isinstance(role, str) or role not in ROLE_RANK:
        raise HTTPError(400, "invalid_role", f"role must be one of {', '.join(ROLE_RANK)}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise HTTPError(400, "invalid_request", "name must be a string of at most 128 characters")
    expires_at = None
    if body.get("expires") is not None:
        expires_at = rt.clock.now() + parse_duration(body["expires"])
    kid, key = await rt.catalog.create_key(principal.project_id, role, name=name, expires_at=expires_at)
    project = await rt.catalog.project(principal.project_id)
    return JSONAnswer({
        "id": kid, "key": key, "prefix": key_prefix(key), "role": role,
        "project": project["name"] if project else principal.project_id, "expires_at": expires_at,
    })


@router.get("/keys")
async def list_keys(request: Request) -> JSONAnswer:
    """The project's keys: prefix, name, role, created, last used; never the keys or their hashes."""
    rt, principal = await _auth(request, "admin")
    return JSONAnswer({"keys": [dict(r) for r in await rt.catalog.list_keys(principal.project_id)]})


@router.delete("/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> JSONAnswer:
    """Revoke a key: refused from the next request on."""
    rt, principal = await _auth(request, "admin")
    if not await rt.catalog.revoke_key(principal.project_id, key_id):
        raise not_found("key", key_id)
    rt.access.forget()
    return JSONAnswer({"id": key_id, "revoked": True})


@router.post("/projects")
async def create_project(request: Request) -> JSONAnswer:
    """A new project, with its first admin key (shown once). Operator only."""
    rt, principal = await _auth(request, "admin")
    _operator(principal)
    body = await read_object(request, 64 * 1024)
    name = body.get("name")
    if not isinstance(name, str) or not ENDPOINT_NAME.match(name):
        raise HTTPError(400, "invalid_name", f"project name {name!r} must match [a-z0-9][a-z0-9-]{{0,62}}")
    pid = await rt.catalog.create_project(name)
    if pid is None:
        raise HTTPError(409, "exists", f"a project named {name} exists")
    kid, key = await rt.catalog.create_key(pid, "admin", name=f"admin of {name}")
    return JSONAnswer({"id": pid, "name": name, "admin_key": {"id": kid, "key": key, "prefix": key_prefix(key)}})


@router.get("/projects")
async def list_projects(request: Request) -> JSONAnswer:
    """Every project (operator), or the caller's own."""
    rt, principal = await _auth(request, "read")
    rows = await rt.catalog.list_projects()
    if not principal.operator:
        rows = [r for r in rows if r["id"] == principal.project_id]
    return JSONAnswer({"projects": [{"id": r["id"], "name": r["name"], "created_at": r["created_at"]} for r in rows]})


def _operator(principal: Principal) -> None:
    if not principal.operator:
        raise HTTPError(403, "forbidden", "only the server's operator key may manage projects")


def parse_duration(value: Any) -> float:
    """Seconds in a duration like 30d, 12h, 90m, 45s (or a number of seconds)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", value.strip()) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        raise HTTPError(400, "invalid_expires", "expires must be a duration like 30d, 12h, 90m or 45s")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
