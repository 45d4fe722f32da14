"""Jobs of a project: the list (the dead-letter view with status=FAILED), one job, re-drive."""

from __future__ import annotations

from fastapi import APIRouter, Request

from podium import _json
from podium.dispatch.states import JobStatus
from podium.server.admin.common import (
    admin_caller,
)
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/jobs")
async def list_jobs(
    request: Request, status: str | None = None, endpoint: str | None = None, limit: int = 100
) -> JSONAnswer:
    """Jobs of the caller's project, newest first; `status=FAILED` is the dead-letter view."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    if status is not None and status not in JobStatus.__members__:
        raise HTTPError(400, "invalid_status", f"status must be one of {', '.join(JobStatus.__members__)}")
    endpoint_id = (await rt.access.endpoint(principal, endpoint)).id if endpoint else principal.endpoint_id
    rows = await rt.queue.find(
        principal.project_id, status=status, endpoint_id=endpoint_id, limit=max(1, min(limit, 1000))
    )
    keys = ("id", "endpoint_id", "route", "status", "attempt", "max_attempts", "error", "created_at",
            "finished_at", "delay_ms", "execution_ms")
    return JSONAnswer({"jobs": [{k: r[k] for k in keys} for r in rows]})


@router.post("/jobs/{job_id}/retry")
async def retry_job(request: Request, job_id: str) -> JSONAnswer:
    """Queue a FAILED or TIMED_OUT job again, same id (re-drive from the dead-letter view)."""
    rt, principal = await admin_caller(request, "invoke", scoped=True)
    row = rt.access.job(principal, await rt.queue.get(job_id), job_id)
    if not await rt.queue.retry(job_id):
        raise HTTPError(400, "not_retryable",
                        f"only FAILED or TIMED_OUT jobs can be retried; job {job_id} is {row['status']}")
    return JSONAnswer({"id": job_id, "status": "IN_QUEUE"})


@router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read", scoped=True)
    job = dict(rt.access.job(principal, await rt.queue.get(job_id), job_id))
    for k in ("input", "output", "error_info", "attempt_errors", "progress", "policy"):
        job[k] = _json.loads(job[k])
    assert rt.webhooks is not None
    job["webhooks"] = await rt.webhooks.for_job(job_id)
    return JSONAnswer(job)
