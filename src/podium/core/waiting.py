"""Why a queued job has not started yet, for its status answer.

A job behind a cold start cannot end within a /status hold, and a client that polls it in a tight
loop learns nothing new on each request. Its status says what it waits for instead, as a
`waiting` object every cause fills the same way (`{"reason": "starting a worker", "since": T}`,
T in Unix seconds), with how many seconds a caller may wait before asking again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podium.core.workers import WorkerPool, WorkerState
from podium.dispatch.jobs import Job
from podium.dispatch.states import JobStatus
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint

#: A worker of the endpoint is being started (or is about to be) and none is ready.
STARTING = "starting a worker"
#: Seconds a caller may wait before asking again about a job that waits for a worker to start.
RETRY_AFTER = 1


@dataclass(frozen=True)
class Waiting:
    """What a queued job waits for, since when (Unix seconds), and when to ask again."""

    reason: str
    since: float
    retry_after: int = RETRY_AFTER

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "since": round(self.since, 3)}


async def why_waiting(job: Job, ep: Endpoint, pool: WorkerPool, held: str | None = None) -> Waiting | None:
    """What the queued `job` of `ep` waits for, or None when only its turn stands in the way (a
    worker is ready, or busy with other jobs) or it is not queued. `held`: why no worker is
    started for the endpoint now (every GPU taken, ...), when something said so."""
    if job.status != JobStatus.IN_QUEUE:
        return None
    if held is not None:
        return Waiting(held, job.created_at)
    if ep.state not in (EndpointState.CREATING, EndpointState.ACTIVE):
        return None
    workers = await pool.view(ep.id)
    states = {w["state"] for w in workers}
    if WorkerState.IDLE.value in states:
        return None
    starting = [w["started_at"] for w in workers if w["state"] == WorkerState.STARTING]
    if starting:
        return Waiting(STARTING, max(job.created_at, min(starting)))
    if WorkerState.RUNNING.value in states or job.low_priority or ep.max_workers < 1:
        return None  # its turn comes when a running job ends; or no worker is started for it
    return Waiting(STARTING, job.created_at)  # the autoscaler starts one at its next tick
