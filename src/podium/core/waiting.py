"""Why a queued job has not started yet, for its status answer.

RunPod users file tickets for jobs "stuck IN_QUEUE" that the status cannot explain. Every
IN_QUEUE answer carries a `waiting` object naming the cause instead:
`{"reason": "at_capacity", "detail": "workers of echo busy: 2 of at most 2; 3 jobs ahead of this one",
"since": 1765090000.123}` — `reason` one of the constants below, `detail` a sentence for people, `since`
in Unix seconds (as `created_at` and every other time of the job API). Each cause is read from
the store, so every replica answers the same: the endpoint's state, its workers as the replicas
recorded them, its version's build, and what the leader's autoscaler wrote about the start it
holds back (`Endpoint.waiting_for`, e.g. no free GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podium.core.workers import WorkerPool, WorkerState
from podium.dispatch.jobs import Job
from podium.dispatch.queue import JobQueue
from podium.dispatch.states import JobStatus
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint
from podium.store.versions import BuildState

#: A worker is starting (a cold start), or the autoscaler starts one at its next pass.
STARTING = "starting"
#: Every worker the endpoint may have is busy; the job waits for its turn.
AT_CAPACITY = "at_capacity"
#: The worker it needs cannot start: every GPU is taken (or the machine has too few).
NO_GPU = "no_gpu"
#: The version's environment is being built; no worker starts before it is.
BUILDING = "building"
#: The endpoint's workers fail to start (ERROR); the job waits for a fix, up to its ttl.
INIT_FAILING = "init_failing"
#: The endpoint is stopped; the job waits until it is started, up to its ttl.
STOPPED = "stopped"
#: A low-priority job starts no worker; it waits for one that other jobs started.
LOW_PRIORITY = "low_priority"
#: Seconds one read of the store's records of workers (the other replicas') serves the reasons
#: asked meanwhile: every `/run` answers with one, and that read was most of `/run`'s own time at
#: c=32. This replica's own workers are always seen as they are now.
RECORDED_FRESH = 0.25
#: Seconds a caller may wait before asking again about a job that waits for something other
#: than its turn (a /status of such a job is held that long, so a tight loop does not spin).
RETRY_AFTER = 1


@dataclass(frozen=True)
class Waiting:
    """What a queued job waits for, a sentence saying so, since when (Unix seconds), and, unless
    it only waits for its turn, when to ask again."""

    reason: str
    detail: str
    since: float
    retry_after: int | None = RETRY_AFTER

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "detail": self.detail, "since": round(self.since, 3)}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "unknown error"


class WaitingReasons:
    """Parameters:
    pool: every replica's workers, as recorded.
    queue: the jobs (how many are ahead of one).
    catalog: endpoints' versions and their builds.
    """

    def __init__(self, pool: WorkerPool, queue: JobQueue, catalog: Catalog) -> None:
        self.pool = pool
        self.queue = queue
        self.catalog = catalog

    async def of(self, job: Job, ep: Endpoint) -> Waiting | None:
        """Why the queued `job` of `ep` waits (None when it is not queued)."""
        if job.status != JobStatus.IN_QUEUE:
            return None
        now = self.pool.clock.now()
        if ep.state == EndpointState.INACTIVE:
            detail = f"endpoint {ep.name} is stopped; the job waits until it is started"
            return Waiting(STOPPED, detail, max(job.created_at, ep.updated_at))
        if ep.state == EndpointState.ERROR:
            detail = (
                f"endpoint {ep.name} cannot start its workers: {_first_line(ep.error)}; "
                "the job waits until it is started or redeployed"
            )
            return Waiting(INIT_FAILING, detail, max(job.created_at, ep.updated_at))
        view = await self.pool.view(ep.id, recorded_within=RECORDED_FRESH)
        workers = [w for w in view if w["version_id"] == ep.version_id]
        states = [w["state"] for w in workers]
        busy = states.count(WorkerState.RUNNING.value)
        if WorkerState.IDLE.value in states:  # taken at once: it waits only for its turn
            return await self._turn(job, ep, busy)
        starting = [w["started_at"] for w in workers if w["state"] == WorkerState.STARTING.value]
        if starting:
            since = max(job.created_at, min(starting))
            detail = f"a worker of {ep.name} is starting (cold start, {now - since:.0f} s so far)"
            return Waiting(STARTING, detail, since)
        if ep.waiting_for:  # what the leader's autoscaler wrote: no worker can start now
            return Waiting(NO_GPU, f"{ep.waiting_for}; the job waits for one to be free", job.created_at)
        if not workers:
            version = await self.catalog.get_version(ep.project_id, ep.version_id)
            if version is not None and version.build_state == BuildState.BUILDING:
                detail = f"the environment of version {ep.version_id} is being built; no worker starts before it is"
                return Waiting(BUILDING, detail, job.created_at)
        if job.low_priority:
            detail = "a low-priority job starts no worker; it waits for one that other jobs start"
            return Waiting(LOW_PRIORITY, detail, job.created_at, retry_after=None)
        if busy:
            return await self._turn(job, ep, busy)
        if ep.max_workers < 1:
            detail = f"endpoint {ep.name} may have no worker (max_workers 0); the job waits until it may"
            return Waiting(AT_CAPACITY, detail, job.created_at, retry_after=None)
        detail = f"a worker of {ep.name} is about to start (cold start, {now - job.created_at:.0f} s so far)"
        return Waiting(STARTING, detail, job.created_at)

    async def _turn(self, job: Job, ep: Endpoint, busy: int) -> Waiting:
        """Its turn: `busy` workers of the endpoint hold jobs; how many are queued before it."""
        ahead = await self.queue.ahead(job)
        detail = (
            f"workers of {ep.name} busy: {busy} of at most {ep.max_workers}; {_plural(ahead, 'job')} ahead of this one"
        )
        return Waiting(AT_CAPACITY, detail, job.created_at, retry_after=None)
