"""Usage of the caller's project: jobs, execution seconds and reserved worker-seconds."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request

from podium.server.admin.common import admin_caller, parse_duration
from podium.server.responses import JSONAnswer

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/usage")
async def usage(
    request: Request, since: str = "30d", by: Literal["endpoint", "day", "version"] = "endpoint"
) -> JSONAnswer:
    """The project's usage over the last `since` (30d, 12h, ...), per endpoint, per endpoint and
    version, or per day (UTC): jobs ended, their execution seconds, and worker-seconds by
    resource (`cpu`: cores x s, `gpu`: GPUs x s, `memory_mb`: MB x s) that its workers reserved,
    idle ones included. Rolled up by the hour (PODIUM_USAGE_ROLLUP): the last minute may be missing."""
    rt, principal = await admin_caller(request, "read")
    window = parse_duration(since, "since")
    project = await rt.catalog.project(principal.project_id)
    name = project.name if project is not None else principal.project_id
    rows = await rt.usage.report(principal.project_id, rt.clock.now() - window, by)
    return JSONAnswer({"project": name, "since": since, "by": by, "rows": [{"project": name, **r} for r in rows]})
