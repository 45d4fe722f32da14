"""The leader's upkeep of the queue: recover lost leases, time out, reap, end waiting jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String, and_, cast, delete, func, literal, select, update
from sqlalchemy.sql.elements import ColumnElement

from podium import _json
from podium.dispatch.base import QueueBase
from podium.dispatch.jobs import Held
from podium.dispatch.keys import ep_key, job_key
from podium.dispatch.statements import ALIVE, QUEUED, RAN_FOR, RUNNING, ending
from podium.dispatch.states import WORKER_LOST, JobStatus
from podium.dispatch.submit import IDEMPOTENCY_SECONDS
from podium.store.tables import idempotency_keys, jobs, stream_chunks

#: Jobs deleted per transaction when their retention or ttl is over (see JobQueue.reap).
REAP_BATCH = 500


class Maintenance(QueueBase):
    """The leader's periodic work, and ending an endpoint's waiting jobs in bulk."""

    async def recover(self, *, worker_id: str | None = None) -> list[str]:
        """Give back jobs whose lease ran out (or whose worker is known dead).

        Each goes back to the queue if it has attempts left, else ends FAILED with WORKER_LOST.
        Returns the ids recovered.
        """
        now = self.clock.now()
        cond: ColumnElement[bool] = RUNNING
        if worker_id is not None:
            cond = and_(cond, jobs.c.worker_id == worker_id)
        else:
            cond = and_(cond, jobs.c.lease_until < now)
        woken: set[str] = set()
        ids: list[str] = []
        failed: list[str] = []
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(
                    jobs.c.id,
                    jobs.c.endpoint_id,
                    jobs.c.attempt,
                    jobs.c.max_attempts,
                    jobs.c.attempt_errors,
                    jobs.c.worker_id,
                )
                .where(cond)
                .with_for_update(skip_locked=True)
            )
            for row in res.mappings().all():
                errors = _json.loads(row["attempt_errors"]) or []
                errors.append({"attempt": row["attempt"], "error": WORKER_LOST, "at": now})
                retry = row["attempt"] < row["max_attempts"]
                values: dict[str, Any] = {
                    "attempt_errors": _json.dumps(errors),
                    "worker_id": None,
                    "lease_until": None,
                    "deadline_at": None,
                }
                if retry:
                    values.update(status=JobStatus.IN_QUEUE, progress=None)
                else:
                    values.update(ending(JobStatus.FAILED, now, error=WORKER_LOST))
                upd = await conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == row["id"],
                        RUNNING,
                        jobs.c.worker_id == row["worker_id"],
                    )
                    .values(**values)
                )
                if upd.rowcount:
                    ids.append(row["id"])
                    if retry:
                        woken.add(row["endpoint_id"])
                    else:
                        failed.append(row["id"])
        for ep in woken:
            self.notifier.notify(ep_key(ep))
        await self._ended(failed)
        return ids

    async def time_out(self) -> list[Held]:
        """End every running job past its execution deadline TIMED_OUT; returns them so their
        workers can be stopped."""
        now = self.clock.now()
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(RUNNING, jobs.c.deadline_at <= now)
                .values(
                    **ending(
                        JobStatus.TIMED_OUT,
                        now,
                        error=literal("execution timeout: the job ran longer than ")
                        + cast(jobs.c.timeout_ms, String)
                        + literal(" ms (policy.executionTimeout)"),
                        execution_ms=RAN_FOR,
                    )
                )
                .returning(jobs.c.id, jobs.c.worker_id),
                {"b_now": now},
            )
            timed_out = [Held(job_id, worker_id) for job_id, worker_id in res.all()]
        await self._ended([h.id for h in timed_out])
        return timed_out

    async def next_deadline(self) -> float | None:
        """The earliest execution deadline of a running job (the autoscaler wakes for it)."""
        async with self.store.read() as conn:
            deadline = await conn.scalar(select(func.min(jobs.c.deadline_at)).where(RUNNING))
        return None if deadline is None else float(deadline)

    async def reap(self) -> list[Held]:
        """Delete jobs past their ttl or retention, with their chunks. Returns those deleted while
        running, whose workers must be told to stop.

        REAP_BATCH jobs per transaction: at thousands of jobs a second, five seconds' worth
        deleted at once stopped the loop (SQLite runs on it) for a long while, held every row in
        memory, and past 32,766 jobs bound more values than SQLite takes, so it failed each time."""
        now = self.clock.now()
        running: list[Held] = []
        while True:
            deleted, held = await self._reap_some(now)
            running += held
            if deleted < REAP_BATCH:
                break
        async with self.store.tx(durable=False) as conn:
            await conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at <= now - IDEMPOTENCY_SECONDS)
            )
        return running

    async def _reap_some(self, now: float) -> tuple[int, list[Held]]:
        """Up to REAP_BATCH of the jobs `reap` deletes (not fsynced: a deletion a crash loses is
        made again): how many, and those of them that were running."""
        expired = select(jobs.c.id).where(~ALIVE).limit(REAP_BATCH).scalar_subquery()
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                delete(jobs).where(jobs.c.id.in_(expired)).returning(jobs.c.id, jobs.c.status, jobs.c.worker_id),
                self._alive_params(now),
            )
            rows = res.all()
            gone = [job_id for job_id, _, _ in rows]
            if gone:
                await conn.execute(delete(stream_chunks).where(stream_chunks.c.job_id.in_(gone)))
        for jid in gone:
            self.notifier.notify(job_key(jid))
        return len(rows), [
            Held(job_id, worker_id) for job_id, status, worker_id in rows if status == JobStatus.IN_PROGRESS
        ]

    async def purge(self, endpoint_id: str) -> int:
        """Cancel every queued job of an endpoint; running ones go on. Returns how many."""
        return await self._end_waiting(endpoint_id, JobStatus.CANCELLED)

    async def _end_waiting(self, endpoint_id: str, status: JobStatus, **more: Any) -> int:
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(jobs.c.endpoint_id == endpoint_id, QUEUED)
                .values(**ending(status, self.clock.now(), **more))
                .returning(jobs.c.id)
            )
            ids = [r[0] for r in res.all()]
        await self._ended(ids)
        return len(ids)
