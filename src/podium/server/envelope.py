"""A job's status answer, in RunPod's shape: what /status, /runsync and webhooks carry."""

from __future__ import annotations

from typing import Any

from podium import _json
from podium.core.waiting import Waiting
from podium.dispatch.jobs import Job
from podium.dispatch.states import JobStatus


def envelope(job: Job, now: float, waiting: Waiting | None = None) -> dict[str, Any]:
    """The RunPod status answer: id, status, delayTime/executionTime (ms), output or error; and,
    for a queued job that waits for something (a worker to start), Podium's `waiting`."""
    status = job.status
    delay = job.delay_ms
    if delay is None:
        delay = int((now - job.created_at) * 1000)
    execution = job.execution_ms
    if execution is None:
        execution = int((now - job.started_at) * 1000) if job.started_at else 0
    out: dict[str, Any] = {
        "id": job.id,
        "status": status,
        "delayTime": delay,
        "executionTime": execution,
    }
    if status == JobStatus.COMPLETED:
        out["output"] = _json.loads(job.output_json)
    elif status == JobStatus.IN_PROGRESS and job.progress is not None:
        out["output"] = job.progress
    elif job.error is not None:
        out["error"] = job.error
    if waiting is not None:
        out["waiting"] = waiting.as_dict()
    return out
