"""Job statuses (RunPod's names) and which of them are final."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    IN_QUEUE = "IN_QUEUE"  #: stored, waiting for a worker
    IN_PROGRESS = "IN_PROGRESS"  #: taken by a worker under a lease
    COMPLETED = "COMPLETED"  #: the route returned; `output` holds its value
    FAILED = "FAILED"  #: the route raised, or its workers were lost too often
    CANCELLED = "CANCELLED"  #: cancelled by a caller
    TIMED_OUT = "TIMED_OUT"  #: ran past its execution timeout


FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
UNFINISHED = frozenset({JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS})

#: The error a job gets when its last allowed attempt died with its worker.
WORKER_LOST = "worker lost: the worker running this job stopped before finishing it"
