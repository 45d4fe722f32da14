"""The caller's side of the queue: submit a job, wait for it, read it, cancel or retry it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Update, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from podium import _json
from podium.dispatch.base import QueueBase
from podium.dispatch.jobs import Chunk, Job
from podium.dispatch.keys import SCALE_KEY, ep_key, job_key, taken_key
from podium.dispatch.notify import wait_event
from podium.dispatch.statements import ALIVE, GET, INSERT_JOB, PUBLIC_COLUMNS, ending, new_job_binds
from podium.dispatch.states import FINAL, JobStatus
from podium.errors import ConfigError
from podium.ids import uuid7
from podium.store.tables import idempotency_keys, jobs, stream_chunks, webhook_deliveries


@dataclass
class NewJob:
    """What a caller asks for; the queue fills in the rest."""

    project_id: str
    endpoint_id: str
    route: str
    input: Any
    kind: str = "run"
    max_attempts: int = 3
    webhook: str | None = None
    policy: dict[str, Any] | None = None
    secret: dict[str, Any] | None = None
    #: policy.ttl in ms: the job's whole life from submission.
    ttl_ms: int | None = None
    #: policy.executionTimeout in ms, counted from each take.
    timeout_ms: int | None = None
    #: policy.lowPriority: never the reason a worker is started.
    low_priority: bool = False
    #: Route errors that may be retried (the service's `retries`).
    retries: int = 0
    #: (Idempotency-Key, hash of the request): stored with the job, in the same transaction.
    idempotency: tuple[str, str] | None = None
    #: The caller waits on its connection for the result (runsync, route calls): storing the job
    #: promises nothing yet, so it is not fsynced until its id is handed out (see wait_final).
    awaited: bool = False
    #: An UPDATE run first in the job's transaction; the job is stored only if it changes a row
    #: (a schedule's tick, moved on once: store.schedules.Schedules.advance).
    guard: Update | None = None
    #: The canary version a rollout routed it to (None: whichever version the endpoint runs).
    version_id: str | None = None
    id: str = field(default_factory=uuid7)


class DuplicateRequest(Exception):
    """Another request stored a job under the same Idempotency-Key first."""


class Superseded(Exception):
    """The job's guard changed no row (another leader fired the same tick): nothing was stored."""


#: Every column of a job, unset: a job just stored is these and the values it was stored with.
_UNSET: dict[str, Any] = {column.name: None for column in jobs.c}

#: How long an Idempotency-Key is remembered.
IDEMPOTENCY_SECONDS = 24 * 3600


class CallerSide(QueueBase):
    """Submitting jobs and reading them back: what a caller, or an operator for them, does."""

    async def enqueue(self, new: NewJob) -> str:
        """Store the job (see `queue_job`); its id."""
        return (await self.queue_job(new)).id

    async def queue_job(self, new: NewJob) -> Job:
        """Store the job (and its webhook delivery, durable before this returns); wake a worker.
        The job as stored, not read back.

        Raises DuplicateRequest when another request stored the same Idempotency-Key first.
        """
        try:
            return await self._enqueue(new)
        except IntegrityError:
            if new.idempotency is None:
                raise
            key = new.idempotency[0]
        # The key's row may be over 24 hours old and not reaped yet: the key is free again.
        if await self._forget_expired(new.project_id, key):
            with contextlib.suppress(IntegrityError):
                return await self._enqueue(new)
        raise DuplicateRequest(key)

    async def _forget_expired(self, project_id: str, key: str) -> bool:
        """Delete an Idempotency-Key's row if it is past IDEMPOTENCY_SECONDS (not fsynced: the
        reaper deletes it too); whether there was one."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                delete(idempotency_keys).where(
                    idempotency_keys.c.project_id == project_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at <= self.clock.now() - IDEMPOTENCY_SECONDS,
                )
            )
        return bool(res.rowcount)

    async def idempotent(self, project_id: str, key: str) -> tuple[str, str] | None:
        """The (request_hash, job_id) an Idempotency-Key was first used with, within 24 hours."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(idempotency_keys.c.request_hash, idempotency_keys.c.job_id).where(
                    idempotency_keys.c.project_id == project_id,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at > self.clock.now() - IDEMPOTENCY_SECONDS,
                )
            )
            found = res.first()
        return None if found is None else (found.request_hash, found.job_id)

    async def _enqueue(self, new: NewJob) -> Job:
        now = self.clock.now()
        values = dict(
            id=new.id,
            project_id=new.project_id,
            endpoint_id=new.endpoint_id,
            version_id=new.version_id,
            route=new.route,
            kind=new.kind,
            input=_json.dumps(new.input),
            status=JobStatus.IN_QUEUE,
            attempt=0,
            max_attempts=new.max_attempts,
            created_at=now,
            webhook=new.webhook,
            policy=_json.dumps(new.policy) if new.policy is not None else None,
            secret=self._seal(new.secret),
            stream_closed=False,
            expires_at=now + new.ttl_ms / 1000 if new.ttl_ms else None,
            low_priority=new.low_priority,
            timeout_ms=new.timeout_ms,
            retries=new.retries,
        )
        binds = new_job_binds(**values)
        key = ep_key(new.endpoint_id, new.version_id)
        taken_here = False
        if new.guard is None and new.idempotency is None and not new.webhook:
            # The job alone: one statement (on PostgreSQL one round trip).
            if new.awaited and self.store.pipelines and self.notifier.listeners(key):
                taken_here = await self._insert_with_take(new.id, binds, key)
            else:
                await self.store.run(INSERT_JOB, binds, durable=not new.awaited)
        else:
            await self._store_with_rest(new, binds, now)
        if new.endpoint_id in self._depth:
            self._depth[new.endpoint_id] += 1
        if new.awaited:
            self._fresh.put(new.id, None)
        if not taken_here:
            if not self.notifier.listeners(key) and not new.low_priority:
                self.notifier.notify(SCALE_KEY)
            self.notifier.notify_one(key)
        return Job.from_row({**_UNSET, **values, "secret": None})

    async def _insert_with_take(self, job_id: str, binds: dict[str, Any], key: str) -> bool:
        """Store a job nobody is promised yet, waking a worker waiting here as the insert starts,
        so that its take goes in the same round trip (a take promises nothing either; the store
        `pipelines`): a runsync's job stored and taken in one. Whether it was taken here by then;
        if not (no worker waited, or its take went out apart and may have missed the insert), the
        caller wakes a worker as for any job."""
        with self.notifier.listen(taken_key(job_id)) as taken:
            inserted = asyncio.ensure_future(self.store.run(INSERT_JOB, binds, durable=False))
            self.notifier.wake_one(key)
            await inserted
            return taken.is_set()

    async def _store_with_rest(self, new: NewJob, binds: dict[str, Any], now: float) -> None:
        """The job with what goes in its transaction: its guard, Idempotency-Key, webhook delivery."""
        async with self.store.tx(durable=not new.awaited) as conn:
            if new.guard is not None and not (await conn.execute(new.guard)).rowcount:
                raise Superseded(new.id)
            await conn.rows(INSERT_JOB, binds)
            if new.idempotency is not None:
                await conn.execute(
                    insert(idempotency_keys).values(
                        project_id=new.project_id,
                        key=new.idempotency[0],
                        request_hash=new.idempotency[1],
                        job_id=new.id,
                        created_at=now,
                    )
                )
            if new.webhook:
                await conn.execute(
                    insert(webhook_deliveries).values(
                        id=uuid.uuid4().hex,
                        job_id=new.id,
                        url=new.webhook,
                        state="waiting",
                        tries=0,
                        created_at=now,
                    )
                )

    def _seal(self, fields: dict[str, Any] | None) -> str | None:
        if not fields:
            return None
        if self.box is None:
            raise ConfigError("this queue has no secrets key: it cannot store s3Config or env")
        return self.box.seal(_json.dumps(fields))

    async def get(self, job_id: str) -> Job | None:
        """The job, or None once it is gone: past its ttl, or final for longer than retention."""
        found = await self.store.fetch(GET, {"b_job": job_id, **self._alive_params(self.clock.now())})
        return await self._shown(Job.from_row(found[0]) if found else None)

    async def find(
        self,
        project_id: str,
        *,
        status: str | None = None,
        endpoint_id: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """A project's readable jobs, newest first (the dead-letter view with status=FAILED)."""
        q = select(*PUBLIC_COLUMNS).where(jobs.c.project_id == project_id, ALIVE)
        if status is not None:
            q = q.where(jobs.c.status == status)
        if endpoint_id is not None:
            q = q.where(jobs.c.endpoint_id == endpoint_id)
        async with self.store.tx() as conn:
            res = await conn.execute(
                q.order_by(jobs.c.created_at.desc()).limit(limit), self._alive_params(self.clock.now())
            )
            found = [Job.from_row(row) for row in res.mappings()]
        if any(job.id in self._settling for job in found):
            await self.store.sync()
        return found

    async def job_ids(self, project_id: str, prefix: str, limit: int, endpoint_id: str | None = None) -> list[str]:
        """Ids of a project's readable jobs (of one endpoint, when given) that start with `prefix`."""
        q = select(jobs.c.id).where(
            jobs.c.project_id == project_id, jobs.c.id.startswith(prefix, autoescape=True), ALIVE
        )
        if endpoint_id is not None:
            q = q.where(jobs.c.endpoint_id == endpoint_id)
        async with self.store.tx() as conn:
            res = await conn.execute(q.limit(limit), self._alive_params(self.clock.now()))
            return [i for i in res.scalars() if i.startswith(prefix)]  # SQLite's LIKE ignores case

    async def wait_final(
        self,
        job_id: str,
        timeout: float,
        *,
        promise: bool = True,
        endpoint_id: str | None = None,
        running: float | None = None,
    ) -> Job | None:
        """The job once final, or as it is when the wait ends (None if it does not exist).

        The wait ends after `timeout`; with `running`, that only while the job is queued, and
        `running` seconds after it is seen running (a /status holds a queued job until a worker
        takes it, then as long as a running one). With `promise`, a job still running then is
        made durable first: its id goes out as a promise (a /runsync caller's job; a /status
        caller's job was made durable by /run). With `endpoint_id`, another endpoint's job is
        returned as first read, without waiting (the caller, who may not see it, answers that it
        is not found)."""
        deadline = time.monotonic() + timeout
        # Just stored for this caller: not final yet, so nothing to read before the first wake-up.
        pending = job_id in self._fresh and running is None
        self._fresh.pop(job_id)
        ran = False
        # Woken when a worker takes it too, when the wait is shorter once it runs.
        with self.notifier.listen(job_key(job_id), None if running is None else taken_key(job_id)) as ev:
            try:
                while True:
                    if not pending:
                        job = await self._shown(self._handed.pop(job_id)) or await self.get(job_id)
                        if (
                            job is None
                            or job.status in FINAL
                            or (endpoint_id is not None and job.endpoint_id != endpoint_id)
                        ):
                            return job
                        if running is not None and not ran and job.status == JobStatus.IN_PROGRESS:
                            ran = True
                            deadline = time.monotonic() + running
                    pending = False
                    if not await wait_event(ev, deadline - time.monotonic()):
                        if promise:
                            await self.store.sync()
                        return await self.get(job_id)
            finally:
                self._handed.pop(job_id)

    async def chunks(self, job_id: str, after_seq: int = -1) -> list[Chunk]:
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(stream_chunks.c.seq, stream_chunks.c.data)
                .where(stream_chunks.c.job_id == job_id, stream_chunks.c.seq > after_seq)
                .order_by(stream_chunks.c.seq)
            )
            return [Chunk(seq, _json.loads(data)) for seq, data in res.all()]

    async def drain_chunks(self, job_id: str) -> list[Any]:
        """Stream chunks not handed out before, each exactly once (RunPod's /stream drains)."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(stream_chunks)
                .where(stream_chunks.c.job_id == job_id, stream_chunks.c.consumed.is_(False))
                .values(consumed=True)
                .returning(stream_chunks.c.seq, stream_chunks.c.data)
            )
            rows = sorted(res.all())
        return [_json.loads(data) for _, data in rows]

    async def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (a running one keeps `worker_id`, to be stopped).

        Returns the job as it is afterwards; a final job is returned unchanged.
        """
        now = self.clock.now()
        async with self.store.tx() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_([JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS]))
                .values(**ending(JobStatus.CANCELLED, now))
            )
        await self._ended([job_id])
        return await self.get(job_id)

    async def retry(self, job_id: str) -> bool:
        """Queue a FAILED or TIMED_OUT job again under the same id, its old result cleared."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_([JobStatus.FAILED, JobStatus.TIMED_OUT]))
                .values(
                    status=JobStatus.IN_QUEUE,
                    attempt=0,
                    worker_id=None,
                    lease_until=None,
                    created_at=self.clock.now(),
                    started_at=None,
                    finished_at=None,
                    delay_ms=None,
                    execution_ms=None,
                    output=None,
                    error=None,
                    error_info=None,
                    progress=None,
                    stream_closed=False,
                    deadline_at=None,
                    run_after=None,
                )
                .returning(jobs.c.endpoint_id)
            )
            endpoint_id = res.scalar()
            if endpoint_id is None:
                return False
            await conn.execute(delete(stream_chunks).where(stream_chunks.c.job_id == job_id))
            # Its webhook fires again when it ends again; earlier attempts stay on record.
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.job_id == job_id)
                .values(state="waiting", tries=0, next_at=None, body=None, finished_at=None)
            )
        self.notifier.notify(SCALE_KEY)
        self.notifier.notify_one(ep_key(endpoint_id))
        return True
