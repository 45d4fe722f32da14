"""How a canary rollout splits calls: by a hash of the job's id, so that which version a call
reaches is fixed the moment its id is (a retry of the same job goes where it went), needs no
shared counter across replicas, and can be told afterwards from the id alone."""

from __future__ import annotations

import hashlib

#: Buckets of the split: a rollout's percent is a whole number of them.
BUCKETS = 100


def bucket(job_id: str) -> int:
    """The job's bucket, 0 to BUCKETS - 1: the first 8 bytes of the SHA-256 of its id."""
    return int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:8], "big") % BUCKETS


def routed_to_canary(job_id: str, percent: int) -> bool:
    """Whether a rollout at `percent` sends this job to the canary version."""
    return bucket(job_id) < percent
