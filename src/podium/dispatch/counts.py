"""How many jobs wait or run, per endpoint: what the scalers read and the queue cap checks."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select

from podium.dispatch.base import QueueBase
from podium.dispatch.jobs import Job
from podium.dispatch.statements import AHEAD, ALIVE, QUEUED, RUNNING
from podium.dispatch.states import JobStatus
from podium.store.tables import jobs

#: Final statuses of jobs a worker ran to an end (a figure of the version that ran them).
ENDED_BY_WORK = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMED_OUT)


@dataclass(frozen=True)
class Figures:
    """How one version of an endpoint has done lately (a canary rollout's two versions)."""

    calls: int
    failures: int
    #: Median execution time in ms (None: no call ended).
    p50_ms: int | None

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"calls": self.calls, "failures": self.failures, "p50_ms": self.p50_ms}


#: With replicas, a queue's count in the store is reused this long (seconds) for its cap: a burst
#: spread over replicas overshoots the cap by at most what they store in that time.
COUNT_FRESH = 0.1


class QueueCounts(QueueBase):
    """Counts of jobs by endpoint and state: the scalers' inputs, and admission's cap."""

    async def counts(self, endpoint_id: str) -> dict[str, int]:
        alive = self._alive_params(self.clock.now())
        async with self.store.read() as conn:
            res = await conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.endpoint_id == endpoint_id, ALIVE)
                .group_by(jobs.c.status),
                alive,
            )
            out = {status: n for status, n in res.all()}
            out["retried"] = (
                await conn.scalar(
                    select(func.count()).where(jobs.c.endpoint_id == endpoint_id, jobs.c.attempt > 1, ALIVE),
                    alive,
                )
                or 0
            )
            return out

    async def held_by_workers(self, worker_ids: Sequence[str]) -> dict[str, list[str]]:
        """The running jobs each of these workers holds."""
        async with self.store.read() as conn:
            res = await conn.execute(
                select(jobs.c.worker_id, jobs.c.id).where(jobs.c.worker_id.in_(list(worker_ids)), RUNNING)
            )
            out: dict[str, list[str]] = {}
            for worker_id, job_id in res.all():
                out.setdefault(worker_id, []).append(job_id)
            return out

    async def queued_by_endpoint(self) -> dict[str, tuple[int, float]]:
        """Per endpoint: how many jobs wait that may start a worker (low-priority ones may not),
        and how long the oldest of them has waited (the scalers' inputs)."""
        now = self.clock.now()
        async with self.store.read() as conn:
            res = await conn.execute(
                select(jobs.c.endpoint_id, func.count(), func.min(jobs.c.created_at))
                .where(
                    QUEUED,
                    jobs.c.low_priority.is_(False),
                    or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
                )
                .group_by(jobs.c.endpoint_id)
            )
            return {ep: (n, max(0.0, now - oldest)) for ep, n, oldest in res.all()}

    async def queued_by_version(self) -> dict[str, dict[str | None, tuple[int, float]]]:
        """As `queued_by_endpoint`, by the version the jobs are routed or pinned to (None: any),
        for endpoints whose canary rollout splits their jobs between two sets of workers."""
        now = self.clock.now()
        async with self.store.read() as conn:
            res = await conn.execute(
                select(jobs.c.endpoint_id, jobs.c.version_id, func.count(), func.min(jobs.c.created_at))
                .where(
                    QUEUED,
                    jobs.c.low_priority.is_(False),
                    or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
                )
                .group_by(jobs.c.endpoint_id, jobs.c.version_id)
            )
            out: dict[str, dict[str | None, tuple[int, float]]] = {}
            for ep, version, n, oldest in res.all():
                out.setdefault(ep, {})[version] = (n, max(0.0, now - oldest))
            return out

    async def figures(self, endpoint_id: str, version_id: str, since: float) -> Figures:
        """Calls of one version of an endpoint that ended since `since`: how many, how many
        failed (errors and timeouts; cancelled ones are the caller's doing), and the median
        execution time."""
        ended = (
            jobs.c.endpoint_id == endpoint_id,
            jobs.c.version_id == version_id,
            jobs.c.finished_at >= since,
            jobs.c.status.in_(ENDED_BY_WORK),
        )
        failed = jobs.c.status.in_((JobStatus.FAILED, JobStatus.TIMED_OUT))
        async with self.store.read() as conn:
            res = await conn.execute(select(func.count(), func.sum(case((failed, 1), else_=0))).where(*ended))
            calls, failures = res.one()
            p50 = None
            if calls:
                p50 = await conn.scalar(
                    select(jobs.c.execution_ms)
                    .where(*ended, jobs.c.execution_ms.is_not(None))
                    .order_by(jobs.c.execution_ms)
                    .offset((calls - 1) // 2)
                    .limit(1)
                )
        return Figures(calls, failures or 0, p50)

    async def waiting(self, endpoint_id: str) -> int:
        """Jobs waiting on an endpoint, whatever their priority."""
        async with self.store.read() as conn:
            n = await conn.scalar(select(func.count()).where(jobs.c.endpoint_id == endpoint_id, QUEUED)) or 0
        self._depth[endpoint_id] = n
        self._counted_at[endpoint_id] = time.monotonic()
        return n

    async def ahead(self, job: Job) -> int:
        """Jobs waiting on the job's endpoint that were queued before it (taken before it)."""
        found = await self.store.fetch(AHEAD, {"b_endpoint": job.endpoint_id, "b_created": job.created_at})
        return int(found[0]["n"])

    async def at_capacity(self, endpoint_id: str, cap: int) -> bool:
        """Whether an endpoint already has `cap` jobs waiting. Counted in the store only when an
        upper bound kept in memory (the last count plus jobs stored here since) reaches the cap,
        or, with other replicas storing jobs too, when the count is older than COUNT_FRESH."""
        estimate = self._depth.get(endpoint_id)
        relay = self.notifier.relay
        stale = (
            relay is not None
            and relay.others > 0
            and time.monotonic() - self._counted_at.get(endpoint_id, 0.0) > COUNT_FRESH
        )
        if estimate is None or estimate >= cap or stale:
            estimate = await self.waiting(endpoint_id)
        return estimate >= cap
