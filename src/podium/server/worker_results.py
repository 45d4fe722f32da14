"""A job-done body, read into the core's `Result`, for both transports of the worker protocol
(HTTP and the worker channel): the wire shapes of our worker and of RunPod's library stay here,
at the edge."""

from __future__ import annotations

from typing import Any

from podium import _json
from podium.core.errors import InvalidRequest
from podium.core.workers import Result


def read_result(body: Any) -> Result:
    """Our worker sends `error_info`; RunPod workers a JSON string in `error`."""
    if not isinstance(body, dict):
        return Result(output=body)
    stop_pod = bool(body.get("stopPod"))
    if body.get("status") == "IN_PROGRESS":
        return Result(progress=True, output=body.get("output"))
    if "error" not in body:
        return Result(output=body.get("output"), stop_pod=stop_pod)
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
    return Result(
        error=error,
        error_info=info if isinstance(info, dict) else None,
        retryable=body.get("retryable") is True,
        stop_pod=stop_pod,
    )


def read_batch_results(body: Any) -> list[tuple[str, Result]]:
    """A job-done-batch body, `{job_id: result, ...}`, as (job id, result) pairs."""
    if not isinstance(body, dict) or not body:
        raise InvalidRequest("a batch's results must be an object of job ids to results")
    return [(job_id, read_result(result)) for job_id, result in body.items()]
