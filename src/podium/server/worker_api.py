"""The worker protocol (RunPod's): job-take, job-take-batch, job-stop, job-done, job-stream, ping.

Our own worker and unmodified `runpod.serverless.start()` workers speak it alike. Posts for jobs a
worker no longer holds are acknowledged with 200 and ignored, because RunPod workers drop a result
on any 4xx and a late post is normal (progress updates race the final result). What each call does
to a worker and its jobs is the core's `WorkerPool`; this reads requests and writes answers.
`attached` and `report` also serve the same calls made over the worker channel
(`server/worker_channel.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response

from podium.core.access import WORKER, Principal
from podium.core.errors import WorkerGone
from podium.core.workers import Result
from podium.server.auth import caller, runtime
from podium.server.body import MB, read_json
from podium.server.responses import JSONAnswer
from podium.store.engine import Row

if TYPE_CHECKING:
    from podium.server.runtime import Runtime

router = APIRouter(prefix="/v2/{endpoint_id}", tags=["worker protocol"])

RESULT_LIMIT = 50 * MB
#: How long job-done?take=1 waits for a next job: a worker busy at a steady pace needs one
#: exchange per job; one left waiting goes back to its ordinary long-poll (and a draining one is
#: let go at once).
NEXT_JOB_WAIT = 1.0
CHUNK_LIMIT = 1 * MB
OK = {"ok": True}


Alive = Callable[[], Awaitable[bool]]


async def _worker(request: Request, endpoint_id: str, worker_id: str) -> tuple[Runtime, Row]:
    rt = runtime(request)
    return rt, await attached(rt, await caller(request, WORKER, scoped=True), endpoint_id, worker_id)


async def attached(rt: Runtime, principal: Principal, endpoint_ref: str, worker_id: str) -> Row:
    """The caller's endpoint `endpoint_ref` (a worker token's own, or one of a deploy key's
    project); a worker id of another endpoint is not found."""
    ep = await rt.access.endpoint(principal, endpoint_ref)
    rt.pool.check(worker_id, ep)
    return ep


def _connected(request: Request) -> Alive:
    async def connected() -> bool:
        return not await request.is_disconnected()

    return connected


async def report(
    rt: Runtime, ep: Row, worker_id: str, job_id: str, body: Any, *, take_next: bool, alive: Alive,
    version: str | None,
) -> dict[str, Any]:
    """job-done's work, whichever way it came (HTTP or `worker_channel`); returns its answer.

    `stopPod: true` (a handler returned `refresh_worker`) asks for a fresh worker process.
    `take_next` (Podium's own worker): the answer also carries the next job as `next`, waiting up
    to NEXT_JOB_WAIT for one, so a busy worker needs one exchange per job, not two.
    """
    result = Result.parse(body)
    await rt.pool.done(worker_id, ep, job_id, result)
    if result.progress:
        return OK
    if result.stop_pod or rt.scaler.due_for_recycling(worker_id, ep):
        rt.scaler.recycle(worker_id)
    elif take_next:
        wait = min(NEXT_JOB_WAIT, rt.settings.take_timeout)
        try:
            jobs = await rt.pool.take(worker_id, ep, limit=1, wait=wait, alive=alive, version=version)
        except WorkerGone:  # the result is stored; its next job-take tells it to stop
            jobs = []
        return {"ok": True, "next": jobs[0] if jobs else None}
    return OK


async def _take(request: Request, endpoint_id: str, worker_id: str, limit: int) -> list[dict[str, Any]]:
    rt, ep = await _worker(request, endpoint_id, worker_id)
    # `version`: what a worker started by hand runs (`podium worker`); it is given only its jobs.
    return await rt.pool.take(worker_id, ep, limit=limit, wait=rt.settings.take_timeout,
                              alive=_connected(request), version=request.query_params.get("version"))


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
    rt, ep = await _worker(request, endpoint_id, worker_id)
    ids = await rt.pool.stop_requests(worker_id, ep, rt.settings.take_timeout)
    return JSONAnswer({"jobsToStop": ids}) if ids else Response(status_code=204)


@router.post("/job-done/{worker_id}/{job_id}")
async def job_done(request: Request, endpoint_id: str, worker_id: str, job_id: str) -> JSONAnswer:
    """A job's result, error, or (with `status: IN_PROGRESS`) a progress update; `?take=1`: and
    the worker's next job (see `report`)."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    body = await read_json(request, RESULT_LIMIT, empty={})
    query = request.query_params
    return JSONAnswer(await report(
        rt, ep, worker_id, job_id, body, take_next=query.get("take") == "1", alive=_connected(request),
        version=query.get("version"),
    ))


@router.post("/job-stream/{worker_id}/{job_id}")
async def job_stream(request: Request, endpoint_id: str, worker_id: str, job_id: str) -> JSONAnswer:
    """One chunk a streaming route yielded."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    body = await read_json(request, CHUNK_LIMIT, empty={})
    await rt.pool.stream(worker_id, ep, job_id, body.get("output") if isinstance(body, dict) else body)
    return JSONAnswer(OK)


async def ping(
    request: Request,
    endpoint_id: str,
    worker_id: str,
    job_id: str | None = None,
    status: str | None = None,
    reason: str | None = None,
) -> JSONAnswer:
    """Heartbeat: extends the leases of the jobs the worker lists; may report the worker unhealthy.
    The answer says how often the server wants pings."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    if request.method == "POST":
        body = await read_json(request, MB, empty={})
        if isinstance(body, dict):
            status = body.get("status", status)
            reason = body.get("reason", reason)
    unhealthy = (reason or "the worker reported itself unhealthy") if status == "unhealthy" else None
    ids = [j for j in (job_id or "").split(",") if j]
    await rt.pool.ping(worker_id, ep, ids, unhealthy=unhealthy, version=request.query_params.get("version"))
    # How often to ping to keep leases: what a worker started by hand cannot know otherwise.
    return JSONAnswer({"ok": True, "ping_interval": rt.settings.ping_interval})


# GET is what RunPod workers send; POST carries a body (our worker's unhealthy report). Two
# registrations, so each has its own OpenAPI operation id.
router.add_api_route("/ping/{worker_id}", ping, methods=["GET"], operation_id="worker_ping")
router.add_api_route("/ping/{worker_id}", ping, methods=["POST"], operation_id="worker_ping_post")
