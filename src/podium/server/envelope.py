"""A job's status answer, in RunPod's shape: what /status, /runsync and webhooks carry."""

from __future__ import annotations

from typing import Any

from podium import _json
from podium.dispatch.states import JobStatus
from podium.store.engine import Row


def envelope(row: Row, now: float) -> dict[str, Any]:
    """The RunPod status answer: id, status, delayTime/executionTime (ms), output or error."""
    status = row["status"]
    delay = row["delay_ms"]
    if delay is None:
        delay = int((now - row["created_at"]) * 1000)
    execution = row["execution_ms"]
    if execution is None:
        execution = int((now - row["started_at"]) * 1000) if row["started_at"] else 0
    out: dict[str, Any] = {
        "id": row["id"],
        "status": status,
        "delayTime": delay,
        "executionTime": execution,
    }
    if status == JobStatus.COMPLETED:
        out["output"] = _json.loads(row["output"])
    elif status == JobStatus.IN_PROGRESS and row["progress"] is not None:
        out["output"] = _json.loads(row["progress"])
    elif row["error"] is not None:
        out["error"] = row["error"]
    return out
