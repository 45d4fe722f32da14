"""What the queue hands back: typed records of a job, its stream chunks and its end.

Each record is built once from the store's row by `from_row`, which decodes the JSON columns the
code reads as values; nothing above the queue subscripts a row. A job's input and output are the
exception: the call path passes them on as JSON text, so they stay text (`input_json`,
`output_json`) and are decoded only where a value is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podium import _json
from podium.store.engine import Row


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored, its fields in the table's column order (the admin job view keeps it)."""

    id: str
    project_id: str
    endpoint_id: str
    version_id: str | None
    route: str
    #: `run` or `runsync` (which retention it gets).
    kind: str
    #: The request's input as stored JSON text: a worker, a webhook and the admin view decode it;
    #: a read of a result never needs it, so it is not decoded on the call path.
    input_json: str
    status: str
    attempt: int
    max_attempts: int
    worker_id: str | None
    lease_until: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    delay_ms: int | None
    execution_ms: int | None
    #: The result as stored JSON text: route calls answer with it as is (decoding it to encode it
    #: again would cost the hot path time and could change its bytes); None unless COMPLETED.
    output_json: str | None
    error: str | None
    error_info: dict[str, Any] | None
    #: Every attempt's error, oldest first.
    attempt_errors: list[dict[str, Any]] | None
    #: The last progress update, decoded.
    progress: Any
    webhook: str | None
    policy: dict[str, Any] | None
    stream_closed: bool
    expires_at: float | None
    low_priority: bool
    timeout_ms: int | None
    deadline_at: float | None
    retries: int
    run_after: float | None
    cold_ms: int | None
    #: How many calls the batch it ran in held (a batched route's jobs only).
    batch_size: int | None = None
    #: Worker-only request fields, sealed; only a take reads them (`JobQueue.worker_fields`).
    secret: str | None = None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            endpoint_id=row["endpoint_id"],
            version_id=row["version_id"],
            route=row["route"],
            kind=row["kind"],
            input_json=row["input"],
            status=row["status"],
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            worker_id=row["worker_id"],
            lease_until=row["lease_until"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            delay_ms=row["delay_ms"],
            execution_ms=row["execution_ms"],
            output_json=row["output"],
            error=row["error"],
            error_info=_json.loads(row["error_info"]),
            attempt_errors=_json.loads(row["attempt_errors"]),
            progress=_json.loads(row["progress"]),
            webhook=row["webhook"],
            policy=_json.loads(row["policy"]),
            stream_closed=row["stream_closed"],
            expires_at=row["expires_at"],
            low_priority=row["low_priority"],
            timeout_ms=row["timeout_ms"],
            deadline_at=row["deadline_at"],
            retries=row["retries"],
            run_after=row["run_after"],
            cold_ms=row["cold_ms"],
            batch_size=row["batch_size"],
            secret=row.get("secret"),
        )


@dataclass(frozen=True, slots=True)
class Ended:
    """What is known of a job when it ends: the metrics' figures, and whether a webhook is due."""

    id: str
    endpoint_id: str
    kind: str
    status: str
    delay_ms: int | None
    execution_ms: int | None
    webhook: str | None

    @classmethod
    def from_row(cls, row: Row) -> Ended:
        return cls(
            row["id"],
            row["endpoint_id"],
            row["kind"],
            row["status"],
            row["delay_ms"],
            row["execution_ms"],
            row["webhook"],
        )

    @classmethod
    def of(cls, job: Job) -> Ended:
        return cls(job.id, job.endpoint_id, job.kind, job.status, job.delay_ms, job.execution_ms, job.webhook)


@dataclass(frozen=True, slots=True)
class Held:
    """A running job ended or deleted by the leader, and the worker to stop for it."""

    id: str
    worker_id: str | None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One stored stream chunk of a job, its value decoded."""

    seq: int
    value: Any
