"""What the admin API's resources share: who may call, an endpoint's view, its URLs and service record."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from fastapi import Request

from podium.core.access import Principal
from podium.core.errors import NotFound
from podium.core.refs import by_prefix
from podium.dispatch.jobs import Job

# The routers check names and hashes with the one helper (re-exported for them).
from podium.names import ENDPOINT_NAME as ENDPOINT_NAME
from podium.names import SHA256 as SHA256
from podium.scaling.resources import Resources
from podium.server.auth import caller, runtime
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.server.user_content import content_base, content_host
from podium.store.records import Endpoint, Version

#: Names that would be shadowed by the server's own paths. ("api" is allowed: only an app's own
#: /v1/... paths would be shadowed by the admin API under /api/v1.)
RESERVED_NAMES = {"v1", "v2", "console", "healthz", "readyz", "metrics", "docs", "endpoint", "pipeline", "fn"}


async def admin_caller(request: Request, role: str, *, scoped: bool = False) -> tuple[Runtime, Principal]:
    """The runtime and who calls (`scoped`: the route keeps an endpoint-bound key to its endpoint)."""
    return runtime(request), await caller(request, role, scoped=scoped)


def urls(request: Request, ep_id: str) -> dict[str, str]:
    base = content_base(request)
    return {
        "run": f"{base}/v2/{ep_id}/run",
        "runsync": f"{base}/v2/{ep_id}/runsync",
        "status": f"{base}/v2/{ep_id}/status/{{job_id}}",
        "routes": f"{base}/{ep_id}/{{route}}",
    }


async def endpoint_view(rt: Runtime, request: Request, ep: Endpoint) -> dict[str, Any]:
    info = await rt.version(ep)
    workers = await rt.pool.view(ep.id)
    rollout = await rt.rollouts.view(ep)
    return {
        "endpoint_id": ep.id,
        "name": ep.name,
        "version": ep.version_id,
        "state": ep.state,
        "error": ep.error,
        "scaling": ep.scaling(),
        "routes": info.routes,
        # How its workers run it: "podium", "runpod" (a worker file) or "covalent" (covalent-cloud).
        "runtime": info.runtime,
        # Where it came from: its runtime, or the platform whose client deployed it ("digitalhub").
        "origin": info.config.get("origin", info.runtime),
        "workers": workers,
        "workers_by_state": await rt.pool.counts(ep.id),
        "urls": urls(request, ep.id),
        "service": service_record(request, ep),
        # A redeploy whose environment builds or whose first worker starts (the current version
        # serves meanwhile).
        "pending_version": ep.pending.version_id if ep.pending else None,
        # Why wanted workers are not started, e.g. "waiting for 1 GPU (2 of 2 in use)".
        "waiting_for": ep.waiting_for,
        # The autoscaler's last pass: workers wanted for the jobs running and waiting, plus
        # the warm buffer (idle workers kept beyond them).
        "autoscaler": rt.scaler.status.get(ep.id),
        # A canary rollout under way: both versions, their shares and recent figures.
        "rollout": rollout.as_dict(ep) if rollout is not None else None,
    }


async def version_by_ref(rt: Runtime, project_id: str, ref: str) -> Version:
    """A version of the project by its id or a unique prefix of it."""
    version = await rt.catalog.get_version(project_id, ref)
    if version is None:

        async def starting(prefix: str, limit: int) -> list[str]:
            return await rt.catalog.version_ids(project_id, prefix, limit)

        version = await rt.catalog.get_version(project_id, await by_prefix("version", ref, starting))
    if version is None:
        raise NotFound("version", ref)
    return version


async def job_by_ref(rt: Runtime, principal: Principal, ref: str) -> Job:
    """A job the caller may see, by its id or a unique prefix of it."""
    job = await rt.queue.get(ref)
    if job is None or job.project_id != principal.project_id:

        async def starting(prefix: str, limit: int) -> list[str]:
            return await rt.queue.job_ids(principal.project_id, prefix, limit, principal.endpoint_id)

        job = await rt.queue.get(await by_prefix("job", ref, starting))
    return rt.access.job(principal, job, ref)


def check_resources(rt: Runtime, settings: dict[str, Any]) -> None:
    """422 when the backend can never run a worker asking these resources (more GPUs than the
    machine has, on the local backend), before anything is stored."""
    refusal = rt.scaler.backend.refusal(Resources.of(settings))
    if refusal is not None:
        raise HTTPError(422, "insufficient_resources", f"the service {refusal}")


def service_record(request: Request, ep: Endpoint) -> dict[str, Any]:
    """DigitalHub's service record: `url` is host:port/path without a scheme."""
    host, port = content_host(request)
    return {
        "name": ep.name,
        "type": "http",
        "url": f"{host}:{port}/{ep.id}",
        "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}],
    }


async def changed_view(rt: Runtime, request: Request, principal: Principal, endpoint_id: str) -> JSONAnswer:
    rt.scaler.wake()
    return JSONAnswer(await endpoint_view(rt, request, await rt.access.endpoint(principal, endpoint_id)))


def version_summary(version: Version) -> dict[str, Any]:
    row = version.as_dict()
    return {
        k: row[k]
        for k in (
            "id",
            "service",
            "runtime",
            "size",
            "message",
            "created_by",
            "created_at",
            "env_hash",
            "build_state",
            "start_error",
        )
    }


def require_operator(principal: Principal, what: str = "may do this") -> None:
    if not principal.operator:
        raise HTTPError(403, "forbidden", f"only the server's operator key {what}")


def parse_duration(value: Any, field: str = "expires", *, zero: bool = False) -> float:
    """Seconds in a duration like 30d, 12h, 90m, 45s (or a number of seconds); more than zero
    unless `zero` allows it. Refused with a 400 that names `field`."""
    if isinstance(value, int | float) and not isinstance(value, bool) and (value > 0 or zero and value == 0):
        return float(value)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip()) if isinstance(value, str) else None
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)] if m else math.nan
    if not math.isfinite(seconds) or seconds <= 0 and not zero:
        raise HTTPError(400, f"invalid_{field}", f"{field} must be a duration like 30d, 12h, 90m or 45s")
    return seconds


def read_from(path: Path, start: int, end: int, limit: int = 1 << 20) -> tuple[list[str], int]:
    """Whole lines written between byte `start` and `end` (at most `limit` bytes of them), and
    where the next read starts (a line still being written is left for then)."""
    with path.open("rb") as f:
        f.seek(min(start, end))
        data = f.read(min(end - start, limit)) if end > start else b""
    whole = data[: data.rfind(b"\n") + 1]
    return whole.decode(errors="replace").splitlines(), start + len(whole)
