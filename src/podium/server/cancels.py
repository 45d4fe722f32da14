"""Cancelling a job, from whichever surface asks: RunPod's /cancel, or an OpenAI stream its client
left."""

from __future__ import annotations

from podium.core.calls import find_route
from podium.dispatch.jobs import Job
from podium.dispatch.states import JobStatus
from podium.server.runtime import Runtime
from podium.store.records import Endpoint


async def cancel_job(rt: Runtime, ep: Endpoint, job: Job) -> Job | None:
    """Queued: it will never run. Running: its worker is told to stop it (or replaced). Returns
    the job as it is after (None: it is gone)."""
    was_running = job.status == JobStatus.IN_PROGRESS
    after = await rt.queue.cancel(job.id)
    if after is not None and was_running and after.status == JobStatus.CANCELLED and job.worker_id:
        # An async RunPod handler is cancelled where it awaits; anything else must be killed.
        version = await rt.version(ep)
        route = find_route(version.routes, job.route)
        gentle = version.runtime == "runpod" and route is not None and route["is_async"]
        rt.scaler.stop_job(job.worker_id, job.id, kill=not gentle)
    return after
