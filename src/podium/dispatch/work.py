"""The worker's side of the queue: take under a lease, heartbeat, progress, chunks, finish."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import and_, func, insert, select, update

from podium import _json
from podium.dispatch.base import QueueBase
from podium.dispatch.jobs import Ended, Job
from podium.dispatch.keys import SCALE_KEY, ep_key, job_key, taken_key
from podium.dispatch.notify import Signal, wait_event
from podium.dispatch.statements import FINISH, HELD_BY, RUNNING, SET_BATCH_SIZE, TAKE, TAKE_ROUTE, held_binds
from podium.dispatch.states import JobStatus
from podium.records import Batching
from podium.store.engine import Conn
from podium.store.tables import jobs, stream_chunks


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Seconds before retry number `attempt`: exponential, capped, with jitter (half to full) so
    retries of many jobs failing together spread out."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1)))


class WorkerSide(QueueBase):
    """What workers do with jobs: take them under a lease, report on them, end them."""

    async def take(
        self,
        endpoint_id: str,
        worker_id: str,
        *,
        lease: float,
        limit: int = 1,
        route: str | None = None,
        version: str | None = None,
    ) -> list[Job]:
        """Atomically claim up to `limit` queued jobs of an endpoint (of one route, when given)
        for one worker, which runs `version` (None: unsaid). While the endpoint has a canary
        rollout, a worker of the canary takes only the jobs routed to it, the others the rest
        (statements.TAKE)."""
        # Not fsynced: a claim lost to a crash is a job still IN_QUEUE, taken again.
        params = self._take_params(endpoint_id, worker_id, lease=lease, limit=limit, route=route, version=version)
        found = await self.store.run(TAKE if route is None else TAKE_ROUTE, params, durable=False)
        return self._woken([Job.from_row(row) for row in found])

    def _woken(self, taken: list[Job]) -> list[Job]:
        """`taken`, once each job's /status held while it waited for a worker is told it runs."""
        for job in taken:
            key = taken_key(job.id)
            if self.notifier.listeners(key):
                self._handed.put(job.id, job)
                self.notifier.wake(key)
        return taken

    def _take_params(
        self, endpoint_id: str, worker_id: str, *, lease: float, limit: int, route: str | None, version: str | None
    ) -> dict[str, Any]:
        """What TAKE (TAKE_ROUTE with a route) binds."""
        now = self.clock.now()
        params: dict[str, Any] = {
            "b_now": now,
            "b_endpoint": endpoint_id,
            "b_worker": worker_id,
            "b_version": version,
            "b_lease_until": now + lease,
            "b_limit": limit,
        }
        if route is not None:
            params["b_route"] = route
        return params

    async def _claim(
        self,
        conn: Conn,
        endpoint_id: str,
        worker_id: str,
        *,
        lease: float,
        limit: int,
        route: str | None,
        version: str | None,
    ) -> list[Job]:
        params = self._take_params(endpoint_id, worker_id, lease=lease, limit=limit, route=route, version=version)
        taken = await conn.rows(TAKE if route is None else TAKE_ROUTE, params)
        return [Job.from_row(row) for row in taken]

    async def take_wait(
        self,
        endpoint_id: str,
        worker_id: str,
        *,
        lease: float,
        timeout: float,
        limit: int = 1,
        alive: Callable[[], Awaitable[bool]] | None = None,
        batch: Mapping[str, Batching] | None = None,
        version: str | None = None,
        canary: str | None = None,
    ) -> list[Job]:
        """Long-poll: claim jobs, or wait until one is stored (no sleeping, no polling).

        `alive` is asked after each wait, before claiming and once more after: a worker that
        died, hung up or may no longer take work while it waited claims nothing (what was just
        claimed goes back), and the wake-up it got goes on to another waiting worker (or starts
        one). Before the first claim the caller has only just asked. `version`: as for `take`;
        `canary`: the version of the endpoint's canary rollout, as the caller saw it (a canary's
        workers wait on the canary's own key, woken by the jobs routed to it).

        `batch`: the worker's batched routes. When the first job claimed is of one, the batch is
        filled with that route's queued jobs (see `_fill`).
        """
        deadline = time.monotonic() + timeout
        waited = False
        key = ep_key(endpoint_id, canary if canary is not None and version == canary else None)
        with self.notifier.listen(key) as ev:
            while True:
                if self.closing:
                    return []
                if waited and alive is not None and not await alive():
                    ev.set()  # passed on when this waiter leaves (Notifier.listen)
                    self.notifier.notify(SCALE_KEY)
                    return []
                taken = await self.take(endpoint_id, worker_id, lease=lease, limit=limit, version=version)
                if taken and batch and taken[0].route in batch:
                    taken = await self._fill(taken, batch[taken[0].route], worker_id, lease, ev, version)
                if taken:
                    if waited and alive is not None and not await alive():
                        await self.untake([job.id for job in taken], worker_id)
                        return []
                    return taken
                if not await wait_event(ev, deadline - time.monotonic()):
                    return []
                waited = True

    async def _fill(
        self, taken: list[Job], rule: Batching, worker_id: str, lease: float, ev: Signal, version: str | None
    ) -> list[Job]:
        """A batch begun with `taken`: the route's queued jobs up to `rule.size`; then, only if
        that found others (a lone call must not pay the wait), up to `rule.wait_ms` for more, as
        they are stored. Each job records the size of the batch it ran in."""
        first = taken[0]
        batch = list(taken)
        async with self.store.tx(durable=False) as conn:
            if len(batch) < rule.size:
                batch += await self._claim(
                    conn,
                    first.endpoint_id,
                    worker_id,
                    lease=lease,
                    limit=rule.size - len(batch),
                    route=first.route,
                    version=version,
                )
            settled = not 1 < len(batch) < rule.size  # nothing to wait for: one transaction in all
            if settled:
                batch = await self._sized(conn, batch)
        self._woken(batch)
        if settled:
            return batch
        # The jobs are leased while it waits, and their worker cannot heartbeat jobs it has not had.
        deadline = time.monotonic() + min(rule.wait_ms / 1000, lease / 4)
        while len(batch) < rule.size and await wait_event(ev, deadline - time.monotonic()):
            found = await self.take(
                first.endpoint_id,
                worker_id,
                lease=lease,
                limit=rule.size - len(batch),
                route=first.route,
                version=version,
            )
            if not found:
                ev.set()  # a job of another route: the wake-up goes on to another worker
                break
            batch += found
        async with self.store.tx(durable=False) as conn:
            return await self._sized(conn, batch)

    @staticmethod
    async def _sized(conn: Conn, batch: list[Job]) -> list[Job]:
        await conn.execute(SET_BATCH_SIZE, [{"b_job": job.id, "b_size": len(batch)} for job in batch])
        return [dataclasses.replace(job, batch_size=len(batch)) for job in batch]

    async def note_cold_start(self, taken: Sequence[Job], started_at: float, ready_at: float) -> None:
        """Record how much of each job's wait was its worker's cold start."""
        async with self.store.tx(durable=False) as conn:
            for job in taken:
                cold = ready_at - max(job.created_at, started_at)
                if cold > 0:
                    await conn.execute(update(jobs).where(jobs.c.id == job.id).values(cold_ms=int(cold * 1000)))

    async def untake(self, job_ids: Sequence[str], worker_id: str) -> None:
        """Give back jobs taken for a worker that hung up before it could receive them."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(list(job_ids)),
                    jobs.c.worker_id == worker_id,
                    RUNNING,
                )
                .values(
                    status=JobStatus.IN_QUEUE,
                    worker_id=None,
                    lease_until=None,
                    attempt=jobs.c.attempt - 1,
                    started_at=None,
                    delay_ms=None,
                    deadline_at=None,
                )
                .returning(jobs.c.endpoint_id)
            )
            endpoints = {ep for (ep,) in res.all()}
        for ep in endpoints:
            self.notifier.notify(ep_key(ep))

    async def heartbeat(
        self, worker_id: str, job_ids: Sequence[str], *, lease: float, endpoint_id: str | None = None
    ) -> int:
        """Extend the leases of the jobs a live worker says it holds."""
        if not job_ids:
            return 0
        cond = and_(jobs.c.id.in_(list(job_ids)), jobs.c.worker_id == worker_id, RUNNING)
        if endpoint_id is not None:
            cond = and_(cond, jobs.c.endpoint_id == endpoint_id)
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(update(jobs).where(cond).values(lease_until=self.clock.now() + lease))
            return res.rowcount or 0

    async def progress(self, job_id: str, worker_id: str, value: Any, *, endpoint_id: str | None = None) -> bool:
        """Record a progress update; ignored once the job is final (updates can arrive late)."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(jobs).where(HELD_BY[endpoint_id is not None]).values(progress=_json.dumps(value)),
                held_binds(job_id, worker_id, endpoint_id),
            )
        self.notifier.notify(job_key(job_id))
        return bool(res.rowcount)

    async def append_chunk(self, job_id: str, worker_id: str, value: Any, *, endpoint_id: str | None = None) -> bool:
        """Store one stream chunk of a running job and wake its readers (not fsynced: the job's
        end is, and with it every chunk stored before)."""
        async with self.store.tx(durable=False) as conn:
            held = await conn.execute(
                select(jobs.c.id).where(HELD_BY[endpoint_id is not None]), held_binds(job_id, worker_id, endpoint_id)
            )
            if held.first() is None:
                return False
            seq = await conn.scalar(
                select(func.coalesce(func.max(stream_chunks.c.seq), -1) + 1).where(stream_chunks.c.job_id == job_id)
            )
            await conn.execute(
                insert(stream_chunks).values(job_id=job_id, seq=seq, data=_json.dumps(value), consumed=False)
            )
        self.notifier.notify(job_key(job_id))
        return True

    async def finish(
        self,
        job_id: str,
        worker_id: str,
        *,
        output: Any = None,
        error: str | None = None,
        error_info: dict[str, Any] | None = None,
        retryable: bool = False,
        endpoint_id: str | None = None,
    ) -> bool:
        """End a job COMPLETED (no error) or FAILED; a `retryable` error with retries left queues
        it again after a backoff instead. Late or foreign posts (another worker's, another
        endpoint's) change nothing."""
        if error is not None and retryable and await self._retry_later(job_id, worker_id, error, endpoint_id):
            return True
        failed = error is not None
        params = {
            **held_binds(job_id, worker_id, endpoint_id),
            "b_now": self.clock.now(),
            "b_status": JobStatus.FAILED if failed else JobStatus.COMPLETED,
            "b_output": None if failed else _json.dumps(output),
            "b_error": error,
            "b_error_info": _json.dumps(error_info) if error_info else None,
        }
        found = await self.store.run(FINISH[endpoint_id is not None], params, durable=False)
        job = Job.from_row(found[0]) if found else None
        if job is not None:
            waited = self.notifier.listeners(job_key(job_id)) > 0
            if job.kind == "run" or not waited:
                # A result is promised once shown, unless its caller is there to receive it (a
                # crash before that answer runs the job again).
                await self._promise(job_id)
            if waited:
                self._handed.put(job_id, job)
            await self._ended([job_id], [Ended.of(job)])
        return job is not None

    async def _retry_later(self, job_id: str, worker_id: str, error: str, endpoint_id: str | None) -> bool:
        """Queue a failed attempt again if it has route retries left; True if it did."""
        now = self.clock.now()
        held = held_binds(job_id, worker_id, endpoint_id)
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(
                    jobs.c.attempt, jobs.c.retries, jobs.c.max_attempts, jobs.c.attempt_errors, jobs.c.endpoint_id
                ).where(HELD_BY[endpoint_id is not None]),
                held,
            )
            row = res.mappings().first()
            if row is None or row["attempt"] > row["retries"] or row["attempt"] >= row["max_attempts"]:
                return False
            errors = (_json.loads(row["attempt_errors"]) or []) + [
                {"attempt": row["attempt"], "error": error, "at": now}
            ]
            await conn.execute(
                update(jobs)
                .where(HELD_BY[endpoint_id is not None])
                .values(
                    status=JobStatus.IN_QUEUE,
                    worker_id=None,
                    lease_until=None,
                    deadline_at=None,
                    started_at=None,
                    progress=None,
                    attempt_errors=_json.dumps(errors),
                    run_after=now + backoff(row["attempt"], self.retry_base),
                ),
                held,
            )
        self.notifier.notify(job_key(job_id))
        return True

    async def secret_fields(self, job_id: str) -> dict[str, Any]:
        """Worker-only request fields of a job (never shown to callers)."""
        async with self.store.tx() as conn:
            raw = await conn.scalar(select(jobs.c.secret).where(jobs.c.id == job_id))
        return self.worker_fields(raw)

    def worker_fields(self, sealed: str | None) -> dict[str, Any]:
        """A taken job's worker-only request fields, decrypted (its `secret` column)."""
        if not sealed:
            return {}
        assert self.box is not None, "sealed fields exist only where a box sealed them"
        fields: dict[str, Any] = _json.loads(self.box.open(sealed))
        return fields
