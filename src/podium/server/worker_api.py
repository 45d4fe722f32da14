"""The worker protocol (RunPod's): job-take, job-take-batch, job-stop, job-done, job-stream, ping.

Our own worker and unmodified `runpod.serverless.start()` workers speak it alike. Posts for jobs a
worker no longer holds are acknowledged with 200 and ignored, because RunPod workers drop a result
on any 4xx and a late post is normal (progress updates race the final result).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.engine import RowMapping

from podium import _json
from podium.core.access import WORKER, Principal
from podium.core.errors import NotFound
from podium.dispatch.notify import wait_event
from podium.dispatch.queue import stop_key
from podium.scaling.registry import WorkerInfo, WorkerState
from podium.server.auth import endpoint_caller, runtime
from podium.server.body import MB, read_json
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime

router = APIRouter(prefix="/v2/{endpoint_id}", tags=["worker protocol"])

RESULT_LIMIT = 50 * MB
CHUNK_LIMIT = 1 * MB
OK = {"ok": True}


async def _worker(
    request: Request, endpoint_id: str, worker_id: str
) -> tuple[Runtime, Principal, RowMapping]:
    """The endpoint (the caller's: a worker token's own, or one of a deploy key's project), and a
    404 for a worker id that belongs to another endpoint (no acting on others' workers)."""
    rt = runtime(request)
    principal, ep = await endpoint_caller(request, WORKER, endpoint_id)
    info = rt.registry.get(worker_id)
    if info is not None and info.endpoint_id != ep["id"]:
        raise NotFound("worker", worker_id)
    return rt, principal, ep


def _job_for_worker(rt: Runtime, row: RowMapping) -> dict[str, Any]:
    job: dict[str, Any] = {
        "id": row["id"],
        "input": _json.loads(row["input"]),
        "podium": {"route": row["route"], "attempt": row["attempt"], "kind": row["kind"]},
    }
    if row["webhook"]:
        job["webhook"] = row["webhook"]
    if row["policy"]:
        job["policy"] = _json.loads(row["policy"])
    job.update(rt.queue.worker_fields(row["secret"]))
    return job


async def _take(request: Request, endpoint_id: str, worker_id: str, limit: int) -> list[dict[str, Any]]:
    rt, _, ep = await _worker(request, endpoint_id, worker_id)
    return await _claim(request, rt, ep, worker_id, limit, rt.settings.take_timeout)


async def _claim(
    request: Request, rt: Runtime, ep: RowMapping, worker_id: str, limit: int, wait: float
) -> list[dict[str, Any]]:
    """Claim up to `limit` jobs for a worker, waiting at most `wait` seconds for one."""
    if rt.registry.is_gone(worker_id):
        raise HTTPError(410, "worker_gone", f"worker {worker_id} has exited; start a new one")
    info, ready = rt.registry.seen(worker_id, ep["id"])
    if ready:
        await rt.scaler.worker_ready(info, ep)
    if not _may_take(info, ep):
        # Hold the poll as a real one would be held, so a RunPod worker does not spin on 204s.
        await asyncio.sleep(wait)
        return []
    async def alive() -> bool:
        return not rt.registry.is_gone(worker_id) and not await request.is_disconnected()

    rows = await rt.queue.take_wait(
        ep["id"], worker_id, lease=rt.settings.lease_seconds, timeout=wait, limit=limit,
        alive=alive,
    )
    if rows and await request.is_disconnected():
        await rt.queue.untake([r["id"] for r in rows], worker_id)
        return []
    rt.registry.took(info, [r["id"] for r in rows])
    if rows and info.local and info.ready_at is not None and info.jobs_done == 0 and len(info.jobs) == len(rows):
        # A fresh worker's first jobs: part of their wait was its start-up.
        await rt.queue.note_cold_start(rows, info.started_at, info.ready_at)
    return [_job_for_worker(rt, r) for r in rows]


def _may_take(info: WorkerInfo, ep: RowMapping) -> bool:
    """Draining workers and workers of a version the endpoint left take nothing new."""
    if info.state is WorkerState.DRAINING:
        return False
    return info.version_id is None or info.version_id == ep["version_id"]


@router.get("/job-take/{worker_id}", response_model=None)
async def job_take(request: Request, endpoint_id: str, worker_id: str) -> Response:
    """Long-poll for one job: answers it as soon as one is stored, or 204 after the poll window."""
    jobs = await _take(request, endpoint_id, worker_id, 1)
    return JSONAnswer(jobs[0]) if jobs else Response(status_code=204)


@router.get("/job-take-batch/{worker_id}", response_model=None)
async def job_take_batch(
    request: Request, endpoint_id: str, worker_id: str, batch_size: int = 1
) -> Response:
    jobs = await _take(request, endpoint_id, worker_id, max(1, min(batch_size, 64)))
    return JSONAnswer(jobs) if jobs else Response(status_code=204)


@router.get("/job-stop/{worker_id}", response_model=None)
async def job_stop(request: Request, endpoint_id: str, worker_id: str) -> Response:
    """The per-job stop channel (long-poll): the ids of cancelled jobs this worker still runs."""
    rt, _, ep = await _worker(request, endpoint_id, worker_id)
    if rt.registry.is_gone(worker_id):
        return Response(status_code=204)
    info = rt.registry.attach(worker_id, ep["id"])
    with rt.notifier.listen(stop_key(worker_id)) as ev:
        if not info.stop:
            await wait_event(ev, rt.settings.take_timeout)
    if not info.stop:
        return Response(status_code=204)
    ids, info.stop = sorted(info.stop), set()
    return JSONAnswer({"jobsToStop": ids})


def _error_of(body: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """A job-done error: our worker sends `error_info`; RunPod workers a JSON string in `error`."""
    error = body["error"]
    info = body.get("error_info")
    if info is None and isinstance(error, str) and error.startswith("{"):
        try:
            parsed = _json.loads(error)
        except _json.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict) and "error_message" in parsed:
            info = {
                "type": parsed.get("error_type"),
                "message": parsed.get("error_message"),
                "traceback": parsed.get("error_traceback"),
            }
    if not isinstance(error, str):
        error = _json.dumps(error)
    return error, info if isinstance(info, dict) else None


@router.post("/job-done/{worker_id}/{job_id}")
async def job_done(request: Request, endpoint_id: str, worker_id: str, job_id: str) -> JSONAnswer:
    """A job's result, error, or (with `status: IN_PROGRESS`) a progress update.

    `stopPod: true` (a handler returned `refresh_worker`) asks for a fresh worker process.
    `?take=1` (Podium's own worker): the answer also carries the next job as `next`, if one is
    waiting now (never waits for one), so a busy worker needs one exchange per job, not two.
    """
    rt, _, ep = await _worker(request, endpoint_id, worker_id)
    body = await read_json(request, RESULT_LIMIT, empty={})
    if not isinstance(body, dict):
        body = {"output": body}
    if body.get("status") == "IN_PROGRESS":
        await rt.queue.progress(job_id, worker_id, body.get("output"), endpoint_id=ep["id"])
        return JSONAnswer(OK)
    if "error" in body:
        error, info = _error_of(body)
        await rt.queue.finish(
            job_id, worker_id, error=error, error_info=info, retryable=body.get("retryable") is True,
            endpoint_id=ep["id"],
        )
    else:
        await rt.queue.finish(job_id, worker_id, output=body.get("output"), endpoint_id=ep["id"])
    rt.registry.released(worker_id, job_id)
    if body.get("stopPod") or rt.scaler.due_for_recycling(worker_id, ep):
        rt.scaler.recycle(worker_id)
    elif request.query_params.get("take") == "1":
        jobs = await _claim(request, rt, ep, worker_id, 1, 0.0)
        return JSONAnswer({"ok": True, "next": jobs[0] if jobs else None})
    return JSONAnswer(OK)


@router.post("/job-stream/{worker_id}/{job_id}")
async def job_stream(request: Request, endpoint_id: str, worker_id: str, job_id: str) -> JSONAnswer:
    """One chunk a streaming route yielded."""
    rt, _, ep = await _worker(request, endpoint_id, worker_id)
    body = await read_json(request, CHUNK_LIMIT, empty={})
    value = body.get("output") if isinstance(body, dict) else body
    await rt.queue.append_chunk(job_id, worker_id, value, endpoint_id=ep["id"])
    return JSONAnswer(OK)


async def ping(
    request: Request,
    endpoint_id: str,
    worker_id: str,
    job_id: str | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> JSONAnswer:
    """Heartbeat: extends the leases of the jobs the worker lists; may report the worker unhealthy."""
    rt, _, ep = await _worker(request, endpoint_id, worker_id)
    if request.method == "POST":
        body = await read_json(request, MB, empty={})
        if isinstance(body, dict):
            status = body.get("status", status)
            reason = body.get("reason", reason)
    if rt.registry.is_gone(worker_id):
        return JSONAnswer(OK)
    info = rt.registry.attach(worker_id, ep["id"])
    info.last_seen = rt.clock.now()
    if status == "unhealthy":
        info.state = WorkerState.UNHEALTHY
        info.failure = reason or "the worker reported itself unhealthy"
        if info.ready_at is None and not info.local:
            await rt.scaler.fail_endpoint(info, info.failure)
    ids = [j for j in (job_id or "").split(",") if j]
    await rt.queue.heartbeat(worker_id, ids, lease=rt.settings.lease_seconds, endpoint_id=ep["id"])
    return JSONAnswer(OK)


# GET is what RunPod workers send; POST carries a body (our worker's unhealthy report). Two
# registrations, so each has its own OpenAPI operation id.
router.add_api_route("/ping/{worker_id}", ping, methods=["GET"], operation_id="worker_ping")
router.add_api_route("/ping/{worker_id}", ping, methods=["POST"], operation_id="worker_ping_post")
