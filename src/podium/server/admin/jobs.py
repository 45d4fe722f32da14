"""Jobs of a project: the list (the dead-letter view with status=FAILED), one job, re-drive,
webhook redelivery."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from fastapi import APIRouter, Request

from podium import _json
from podium.dispatch.jobs import Job
from podium.dispatch.states import FINAL, JobStatus
from podium.server.admin.common import admin_caller, job_by_ref
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
    found = await rt.queue.find(
        principal.project_id, status=status, endpoint_id=endpoint_id, limit=max(1, min(limit, 1000))
    )
    names = {ep.id: ep.name for ep in await rt.catalog.list_endpoints(principal.project_id)}
    return JSONAnswer(
        {
            "jobs": [
                {
                    "id": j.id,
                    "endpoint_id": j.endpoint_id,
                    # Its name (None once the endpoint is removed).
                    "endpoint": names.get(j.endpoint_id),
                    "route": j.route,
                    # "schedule": fired by a schedule; "run", "runsync", "route"...: called.
                    "kind": j.kind,
                    "status": j.status,
                    "attempt": j.attempt,
                    "max_attempts": j.max_attempts,
                    "error": j.error,
                    "created_at": j.created_at,
                    "finished_at": j.finished_at,
                    "delay_ms": j.delay_ms,
                    "execution_ms": j.execution_ms,
                }
                for j in found
            ]
        }
    )


@router.post("/jobs/{job_id}/retry")
async def retry_job(request: Request, job_id: str) -> JSONAnswer:
    """Queue a FAILED or TIMED_OUT job again, same id (re-drive from the dead-letter view); a
    unique prefix of the id stands for it."""
    rt, principal = await admin_caller(request, "invoke", scoped=True)
    job = await job_by_ref(rt, principal, job_id)
    if not await rt.queue.retry(job.id):
        raise HTTPError(
            400, "not_retryable", f"only FAILED or TIMED_OUT jobs can be retried; job {job.id} is {job.status}"
        )
    return JSONAnswer({"id": job.id, "status": "IN_QUEUE"})


@router.post("/jobs/{job_id}/redeliver")
async def redeliver_job(request: Request, job_id: str) -> JSONAnswer:
    """Send an ended job's final status to its webhook again (signed, recorded as one more
    attempt); answers the delivery once that attempt is recorded. Deploy keys and up."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    job = await job_by_ref(rt, principal, job_id)
    if job.status not in FINAL:
        raise HTTPError(409, "job_not_ended", f"job {job.id} is {job.status}: its webhook is sent when it ends")
    assert rt.webhooks is not None
    delivery = await rt.webhooks.redeliver(job.id)
    if delivery is None:
        raise HTTPError(400, "no_webhook", f"job {job.id} named no webhook")
    return JSONAnswer(delivery)


@router.get("/endpoints/{endpoint}/failed-deliveries")
async def failed_deliveries(request: Request, endpoint: str, limit: int = 10) -> JSONAnswer:
    """The endpoint's last failed webhook deliveries (every attempt failed), newest first."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    ep = await rt.access.endpoint(principal, endpoint)
    assert rt.webhooks is not None
    return JSONAnswer({"deliveries": await rt.webhooks.failed(ep.id, max(1, min(limit, 100)))})


@router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str) -> JSONAnswer:
    """A job by its id or a unique prefix of it, with its webhook deliveries and, while it is
    queued, why it waits (`waiting`: reason, detail, since)."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    job = await job_by_ref(rt, principal, job_id)
    view = job_view(job, traceback=principal.can("deploy"))
    ep = await rt.catalog.get_endpoint(job.project_id, job.endpoint_id)
    waiting = None if ep is None else await rt.waiting.of(job, ep)
    view["waiting"] = None if waiting is None else waiting.as_dict()
    assert rt.webhooks is not None
    view["webhooks"] = await rt.webhooks.for_job(job.id)
    return JSONAnswer(view)


def job_view(job: Job, *, traceback: bool) -> dict[str, Any]:
    """Every field a caller may see, in the table's order, under its column's name, its JSON
    decoded (the worker-only `secret` is never shown). A route's traceback shows the worker's
    paths: only with `traceback` (deploy keys and up); others see its error's type and message."""
    view = {f.name.removesuffix("_json"): getattr(job, f.name) for f in fields(job) if f.name != "secret"}
    view["input"] = _json.loads(job.input_json)
    view["output"] = _json.loads(job.output_json)
    if not traceback and job.error_info is not None:
        view["error_info"] = {k: v for k, v in job.error_info.items() if k != "traceback"}
    return view
