"""The worker protocol's calls, whichever transport carries them: HTTP (`server/worker_api.py`, for
every worker) or the Unix socket (`server/worker_channel.py`, for the server's local workers).

Both transports only read a request (a job-done body into a `Result`) and write an answer;
what a call does is here, on the `WorkerPool` (the owner of worker state) and a `Recycler`
(whoever replaces workers: the autoscaler), so that the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from podium.core.access import Access, Principal
from podium.core.errors import InvalidRequest, WorkerGone
from podium.core.workers import Result, WorkerPool
from podium.metrics import Metrics
from podium.records import Batching, parse_batching
from podium.store.records import Endpoint

#: The largest job-done body taken (a job's result).
RESULT_LIMIT = 50 * 2**20
#: How long job-done?take=1 waits for a next job: a worker busy at a steady pace needs one
#: exchange per job; one left waiting goes back to its ordinary long-poll (and a draining one is
#: let go at once).
NEXT_JOB_WAIT = 1.0
OK = {"ok": True}

#: Whether the caller is still there (a long-poll ends early when it is not).
Alive = Callable[[], Awaitable[bool]]


def batching(value: Any) -> dict[str, Batching] | None:
    """A take's `batch` as sent (None when absent); InvalidRequest when it is malformed."""
    if value is None:
        return None
    try:
        return parse_batching(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


class Recycler(Protocol):
    """Replaces workers: past their job or memory limit, or when their handler asks."""

    def due_for_recycling(self, worker_id: str, ep: Endpoint) -> bool: ...

    def recycle(self, worker_id: str) -> None: ...


class WorkerCalls:
    """Parameters:
    access: who may call (a worker's own token, or a deploy key of its project).
    pool: the workers' state and their jobs.
    recycler: replaces a worker after its current job.
    metrics: where the sizes of the batches formed are observed.
    take_timeout: seconds a job-take long-poll is held.

    A worker with batched routes says so in each take (`batch`, its routes' `Batching`): a job of
    one comes with that route's other queued jobs, and the jobs it is given are then always a
    list (`next` too), one batch, or one job of another route.
    """

    def __init__(
        self, access: Access, pool: WorkerPool, recycler: Recycler, metrics: Metrics, *, take_timeout: float
    ) -> None:
        self.access = access
        self.pool = pool
        self.recycler = recycler
        self.metrics = metrics
        self.take_timeout = take_timeout

    async def attached(self, principal: Principal, endpoint_ref: str, worker_id: str) -> Endpoint:
        """The caller's endpoint `endpoint_ref` (a worker token's own, or one of a deploy key's
        project); a worker id of another endpoint is not found."""
        ep = await self.access.endpoint(principal, endpoint_ref)
        self.pool.check(worker_id, ep)
        return ep

    async def take(
        self,
        worker_id: str,
        ep: Endpoint,
        *,
        limit: int,
        alive: Alive,
        version: str | None,
        batch: Mapping[str, Batching] | None = None,
        wait: float | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` jobs (one batch, with `batch`), held up to `wait` (default
        `take_timeout`) for the first. `version`: what a worker started by hand runs (`podium
        worker`); it is given only its version's jobs."""
        jobs = await self.pool.take(
            worker_id,
            ep,
            limit=1 if batch else limit,
            wait=self.take_timeout if wait is None else wait,
            alive=alive,
            version=version,
            batch=batch,
        )
        if jobs and batch and jobs[0]["podium"]["route"] in batch:
            self.metrics.batch_formed(ep.id, len(jobs))
        return jobs

    async def report(
        self,
        ep: Endpoint,
        worker_id: str,
        job_id: str,
        result: Result,
        *,
        take_next: bool,
        alive: Alive,
        version: str | None,
        batch: Mapping[str, Batching] | None = None,
    ) -> dict[str, Any]:
        """job-done: a result, an error or a progress update, as the transport read it
        (`server/worker_results.py`); returns the answer.

        `stop_pod` (a handler returned `refresh_worker`) asks for a fresh worker process.
        `take_next` (Podium's own worker): the answer also carries the next job as `next`, waiting
        up to NEXT_JOB_WAIT for one, so a busy worker needs one exchange per job, not two.
        """
        return await self.report_many(
            ep, worker_id, [(job_id, result)], take_next=take_next, alive=alive, version=version, batch=batch
        )

    async def report_many(
        self,
        ep: Endpoint,
        worker_id: str,
        results: list[tuple[str, Result]],
        *,
        take_next: bool,
        alive: Alive,
        version: str | None,
        batch: Mapping[str, Batching] | None = None,
    ) -> dict[str, Any]:
        """`report` for the jobs of one batch at once: one exchange for all their results (and
        the next batch)."""
        stop_pod = progress = False
        for job_id, result in results:
            await self.pool.done(worker_id, ep, job_id, result)
            progress = progress or result.progress
            stop_pod = stop_pod or result.stop_pod
        if progress:
            return OK
        if stop_pod or self.recycler.due_for_recycling(worker_id, ep):
            self.recycler.recycle(worker_id)
        elif take_next:
            wait = min(NEXT_JOB_WAIT, self.take_timeout)
            try:
                jobs = await self.take(worker_id, ep, limit=1, wait=wait, alive=alive, version=version, batch=batch)
            except WorkerGone:  # the result is stored; its next job-take tells it to stop
                jobs = []
            return {"ok": True, "next": jobs if batch else jobs[0] if jobs else None}
        return OK
