"""The worker protocol (RunPod's): job-take, job-take-batch, job-stop, job-done, job-stream, ping;
and Podium's job-done-batch (a batched route's results).

Our own worker and unmodified `runpod.serverless.start()` workers speak it alike. Posts for jobs a
worker no longer holds are acknowledged with 200 and ignored, because RunPod workers drop a result
on any 4xx and a late post is normal (progress updates race the final result). What each call does
to a worker and its jobs is the core's (`WorkerCalls`, `WorkerPool`); this reads requests and
writes answers, as the worker channel (`server/worker_channel.py`) does for the same calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response

from podium import _json
from podium.core.access import WORKER
from podium.core.errors import InvalidRequest
from podium.core.worker_calls import OK, RESULT_LIMIT, Alive, batching
from podium.core.workers import Result
from podium.records import Batching
from podium.server.auth import caller, runtime
from podium.server.body import MB, read_json
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer
from podium.server.worker_results import read_batch_results, read_result
from podium.store.records import Endpoint

if TYPE_CHECKING:
    from podium.server.runtime import Runtime

router = APIRouter(prefix="/v2/{endpoint_id}", tags=["worker protocol"])

CHUNK_LIMIT = 1 * MB


async def _worker(request: Request, endpoint_id: str, worker_id: str) -> tuple[Runtime, Endpoint]:
    rt = runtime(request)
    return rt, await rt.workers.attached(await caller(request, WORKER, scoped=True), endpoint_id, worker_id)


def _connected(request: Request) -> Alive:
    async def connected() -> bool:
        return not await request.is_disconnected()

    return connected


async def _take(request: Request, endpoint_id: str, worker_id: str, limit: int) -> list[dict[str, Any]]:
    rt, ep = await _worker(request, endpoint_id, worker_id)
    return await rt.workers.take(
        worker_id, ep, limit=limit, alive=_connected(request), version=request.query_params.get("version")
    )


def _batch(request: Request) -> dict[str, Batching] | None:
    """`?batch={"/route": [size, wait_ms], ...}`: the worker's batched routes (Podium's worker)."""
    raw = request.query_params.get("batch")
    if raw is None:
        return None
    try:
        return batching(_json.loads(raw))
    except _json.JSONDecodeError:
        raise InvalidRequest('batch must be JSON: {"/route": [size, wait_ms]}') from None


@router.get("/job-take/{worker_id}", response_model=None)
async def job_take(request: Request, endpoint_id: str, worker_id: str) -> Response:
    """Long-poll for one job: answers it as soon as one is stored, or 204 after the poll window.
    With `?batch=`, a list: one batch of a batched route, or one job of another."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    batch = _batch(request)
    jobs = await rt.workers.take(
        worker_id, ep, limit=1, alive=_connected(request), version=request.query_params.get("version"), batch=batch
    )
    if not jobs:
        return Response(status_code=204)
    return JSONAnswer(jobs if batch else jobs[0])


@router.get("/job-take-batch/{worker_id}", response_model=None)
async def job_take_batch(request: Request, endpoint_id: str, worker_id: str, batch_size: int = 1) -> Response:
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
    result = read_result(await read_json(request, RESULT_LIMIT, empty={}))
    query = request.query_params
    return JSONAnswer(
        await rt.workers.report(
            ep,
            worker_id,
            job_id,
            result,
            take_next=query.get("take") == "1",
            alive=_connected(request),
            version=query.get("version"),
            batch=_batch(request),
        )
    )


@router.post("/job-done-batch/{worker_id}")
async def job_done_batch(request: Request, endpoint_id: str, worker_id: str) -> JSONAnswer:
    """The results of one batch, `{job_id: result, ...}`; `?take=1`: and the next batch."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    body = await read_json(request, RESULT_LIMIT, empty={})
    query = request.query_params
    return JSONAnswer(
        await rt.workers.report_many(
            ep,
            worker_id,
            read_batch_results(body),
            take_next=query.get("take") == "1",
            alive=_connected(request),
            version=query.get("version"),
            batch=_batch(request),
        )
    )


@router.post("/job-stream/{worker_id}/{job_id}")
async def job_stream(request: Request, endpoint_id: str, worker_id: str, job_id: str) -> JSONAnswer:
    """One chunk a streaming route yielded. A chunk over the limit fails its job, saying so: a
    stream missing a piece would read as whole."""
    rt, ep = await _worker(request, endpoint_id, worker_id)
    try:
        body = await read_json(request, CHUNK_LIMIT, empty={})
    except HTTPError as exc:
        if exc.status_code == 413:
            error = (
                f"a stream chunk was over the {CHUNK_LIMIT // MB} MB limit (after JSON and base64 "
                "encoding): yield smaller pieces"
            )
            await rt.pool.done(worker_id, ep, job_id, Result(error=error))
        raise
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
