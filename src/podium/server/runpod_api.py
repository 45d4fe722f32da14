"""The RunPod surface: /v2/{endpoint}/run, runsync, status/{job}, status-sync/{job}, health."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from fastapi.routing import APIRoute

from podium.core.calls import Outcome
from podium.core.errors import InvalidRequest, NotFound, NotRetryable
from podium.core.options import parse_job_request
from podium.core.waiting import RETRY_AFTER, Waiting
from podium.dispatch.jobs import Job
from podium.ids import uuid7
from podium.server.auth import endpoint_caller, runtime
from podium.server.body import read_json
from podium.server.cancels import cancel_job
from podium.server.envelope import envelope
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.records import Endpoint

router = APIRouter(prefix="/v2/{endpoint_id}", tags=["runpod"])

#: The hold /status-sync accepts, in ms: RunPod's range; a `wait` outside it is brought into it.
SYNC_WAIT = (1000, 90_000)


async def _accept(
    request: Request, endpoint_id: str, limit: int, kind: str, job_id: str, wait: float | None = None
) -> tuple[Endpoint, Outcome]:
    """A job on the route the body names (`"route": "/predict"`), else on the endpoint's default
    route, its input the whole of RunPod's `input`. A named route's arguments are checked as a
    route call's are; the default route's input is passed on as RunPod's is."""
    rt = runtime(request)
    principal, ep = await endpoint_caller(request, "invoke", endpoint_id)
    job = parse_job_request(await read_json(request, limit))
    target = await rt.calls.target(principal, ep, job.route)
    return ep, await rt.calls.call(
        principal,
        target,
        job.input,
        kind=kind,
        wait=wait,
        job_id=job_id,
        options=job.options,
        idempotency_key=request.headers.get("idempotency-key"),
        check_args=job.route is not None,
    )


@router.post("/run")
async def run(request: Request, endpoint_id: str) -> JSONAnswer:
    """Queue a job (on the endpoint's default route, or the body's `route`); answers at once with its id."""
    limit = runtime(request).settings.max_body // 2
    rt = runtime(request)
    ep, outcome = await _accept(request, endpoint_id, limit, "run", f"{uuid7()}-u1")
    answer: dict[str, object] = {"id": outcome.job_id, "status": "IN_QUEUE"}
    job = outcome.queued or await rt.queue.get(outcome.job_id)
    waiting = None if job is None else await rt.waiting.of(job, ep)
    if waiting is not None:  # still queued: why, as /status would say
        answer["waiting"] = waiting.as_dict()
    return JSONAnswer(answer)


@router.post("/runsync")
async def runsync(request: Request, endpoint_id: str, wait: int | None = None) -> JSONAnswer:
    """Run a job and wait for it (`?wait=ms`, 1000–300000, default 90 s), else answer its id."""
    rt = runtime(request)
    if wait is not None and not 1000 <= wait <= 300_000:
        raise InvalidRequest("wait must be between 1000 and 300000 milliseconds", code="invalid_wait")
    timeout = wait / 1000 if wait is not None else rt.settings.runsync_wait
    ep, outcome = await _accept(request, endpoint_id, rt.settings.max_body, "runsync", f"sync-{uuid7()}", timeout)
    if outcome.job is None:  # its ttl ran out while we waited
        raise NotFound("job", outcome.job_id)
    return _status_answer(rt, outcome.job, await _waiting(rt, ep, outcome.job))


async def _job(request: Request, endpoint_id: str, job_id: str, role: str = "read") -> tuple[Runtime, Endpoint, Job]:
    rt = runtime(request)
    _, ep = await endpoint_caller(request, role, endpoint_id)
    return rt, ep, _of(ep, job_id, await rt.queue.get(job_id))


def _of(ep: Endpoint, job_id: str, job: Job | None) -> Job:
    """The job, if it is the endpoint's; NotFound otherwise (another endpoint's job is not shown)."""
    if job is None or job.endpoint_id != ep.id:
        raise NotFound("job", job_id)
    return job


def _status_answer(rt: Runtime, job: Job, waiting: Waiting | None) -> JSONAnswer:
    """The job's status envelope; a queued job says why it waits, and, unless it waits only for
    its turn, a Retry-After (seconds) for the next poll."""
    headers = None if waiting is None or waiting.retry_after is None else {"Retry-After": str(waiting.retry_after)}
    return JSONAnswer(envelope(job, rt.clock.now(), waiting), headers=headers)


async def _waiting(rt: Runtime, ep: Endpoint, job: Job) -> Waiting | None:
    """Why a queued job waits (None: it is not queued)."""
    return await rt.waiting.of(job, ep)


@router.get("/status/{job_id}")
async def status(request: Request, endpoint_id: str, job_id: str) -> JSONAnswer:
    """The job as it is, or as it ends: a running job is held up to PODIUM_STATUS_HOLD (50 ms), a
    queued one until a worker takes it (then as a running one), at most its Retry-After (1 s).

    Holding queued jobs keeps polls near one per job when jobs wait longer than the hold (a busy
    queue, a slower store): answered at once, a tight loop polled 4 times per job on PostgreSQL
    at c=32 and spent the server on it. A job still queued says why it waits."""
    rt = runtime(request)
    _, ep = await endpoint_caller(request, "read", endpoint_id)
    # One read, under the wait's listener: a job ending between a read and the wait is not missed.
    found = await rt.queue.wait_final(
        job_id, RETRY_AFTER, promise=False, endpoint_id=ep.id, running=rt.settings.status_hold
    )
    job = _of(ep, job_id, found)
    return _status_answer(rt, job, await _waiting(rt, ep, job))


@router.get("/status-sync/{job_id}")
async def status_sync(request: Request, endpoint_id: str, job_id: str, wait: int = SYNC_WAIT[1]) -> JSONAnswer:
    """/status held until the job is final or `wait` ms have passed (clamped to 1000–90000, as
    RunPod does: its JavaScript SDK polls this while a /runsync job runs on)."""
    rt = runtime(request)
    _, ep = await endpoint_caller(request, "read", endpoint_id)
    hold = min(max(wait, SYNC_WAIT[0]), SYNC_WAIT[1]) / 1000
    found = await rt.queue.wait_final(job_id, hold, promise=False, endpoint_id=ep.id)
    job = _of(ep, job_id, found)
    return _status_answer(rt, job, await _waiting(rt, ep, job))


@router.get("/stream/{job_id}")
async def stream(request: Request, endpoint_id: str, job_id: str) -> JSONAnswer:
    """Chunks produced since the last call, each returned once; `stream` is always present."""
    rt, _, job = await _job(request, endpoint_id, job_id)
    chunks = await rt.queue.drain_chunks(job_id)
    if chunks:  # the job may have ended while we read: report the status the chunks belong to
        job = await rt.queue.get(job_id) or job
    body = {"id": job.id, "status": job.status, "stream": [{"output": c} for c in chunks]}
    if job.error is not None:
        body["error"] = job.error
    return JSONAnswer(body)


@router.post("/cancel/{job_id}")
async def cancel(request: Request, endpoint_id: str, job_id: str) -> JSONAnswer:
    """Queued: it will never run. Running: its worker is told to stop it (or replaced)."""
    rt, ep, job = await _job(request, endpoint_id, job_id, "invoke")
    after = await cancel_job(rt, ep, job)
    if after is None:
        raise NotFound("job", job_id)
    return JSONAnswer({"id": job_id, "status": after.status})


@router.post("/retry/{job_id}")
async def retry(request: Request, endpoint_id: str, job_id: str) -> JSONAnswer:
    """Queue a FAILED or TIMED_OUT job again, same id."""
    rt, _, job = await _job(request, endpoint_id, job_id, "invoke")
    if not await rt.queue.retry(job_id):
        raise NotRetryable(f"only FAILED or TIMED_OUT jobs can be retried; job {job_id} is {job.status}")
    return JSONAnswer({"id": job_id, "status": "IN_QUEUE"})


@router.post("/purge-queue")
async def purge_queue(request: Request, endpoint_id: str) -> JSONAnswer:
    """Cancel every queued job of the endpoint; running jobs go on."""
    rt = runtime(request)
    _, ep = await endpoint_caller(request, "invoke", endpoint_id)
    return JSONAnswer({"removed": await rt.queue.purge(ep.id), "status": "completed"})


@router.get("/health")
async def health(request: Request, endpoint_id: str) -> JSONAnswer:
    rt = runtime(request)
    _, ep = await endpoint_caller(request, "read", endpoint_id)
    counts = await rt.queue.counts(ep.id)
    return JSONAnswer(
        {
            "jobs": {
                "completed": counts.get("COMPLETED", 0),
                "failed": counts.get("FAILED", 0),
                "inProgress": counts.get("IN_PROGRESS", 0),
                "inQueue": counts.get("IN_QUEUE", 0),
                "retried": counts["retried"],
            },
            "workers": await rt.pool.counts(ep.id),
        }
    )


#: A path under /v2/{endpoint}/: the endpoint, the operation, and what follows it.
V2_PATH = re.compile(r"/v2/([^/]+)/([^/]+)(/.*)?")
#: A route template's operation (`/v2/{endpoint_id}/status/{job_id}` -> `status`).
OPERATION = re.compile(r"/v2/\{[^}]+\}/([^/{]+)")
#: OpenAI-compatible paths (`/v2/{endpoint}/openai/v1/...`) are another surface's to answer.
OPENAI = "openai"


def misdirected(request: Request) -> HTTPError:
    """The answer for a path under /v2/ that no route took, so that it never reads as a route
    of an endpoint named "v2": an operation the server does not have is named; a known one
    called with the wrong method, or without its job id, says how it is called."""
    method, path = request.method, request.url.path
    lost = HTTPError(404, "not_found", f"no such path: {method} {path}")
    found = V2_PATH.fullmatch(path)
    if found is None or found.group(2) == OPENAI:
        return lost
    op, rest = found.group(2), found.group(3)
    templates: dict[str, set[str]] = {}  # this surface's templates for `op`: their methods
    ours: set[str] = set()
    for route in router.routes:
        if isinstance(route, APIRoute) and (m := OPERATION.match(route.path)):
            ours.add(m.group(1))
            if m.group(1) == op:
                templates[route.path] = route.methods or set()
    if not templates:
        others = {m.group(1) for t in request.app.paths if (m := OPERATION.match(t))}  # e.g. job-take
        if op in others:
            return lost
        listed = ", ".join(sorted(ours))
        return HTTPError(
            404, "not_found", f"{method} {path}: no operation {op!r} under /v2/{{endpoint}}/ (RunPod's are {listed})"
        )
    allowed = [t for t, methods in templates.items() if method in methods]
    if not allowed:
        methods = sorted(set().union(*templates.values()) - {"HEAD"})
        return HTTPError(
            405,
            "method_not_allowed",
            f"{method} {path}: {op} is called with {' or '.join(methods)}",
            headers={"Allow": ", ".join(methods)},
        )
    if rest in (None, "/") and all("{job_id}" in t for t in allowed):
        return HTTPError(
            400,
            "missing_job_id",
            f"{method} {path} names no job: {op} takes one, as in /v2/{{endpoint}}/{op}/{{job_id}}",
        )
    return lost
