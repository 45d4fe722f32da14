"""The job queue: enqueue, take under a lease, heartbeat, finish, and recover lost leases.

Every state change is one short transaction followed by a wake-up of whoever waits on it: workers
long-polling an endpoint (`ep:<id>`) and callers waiting on a job (`job:<id>`). Taking is one atomic
statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), and every take counts
as an attempt, so a job that kills its worker ends FAILED instead of looping.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Float,
    String,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from podium import _json
from podium.bounded import Bounded
from podium.clock import Clock
from podium.dispatch.notify import Notifier, wait_event
from podium.dispatch.states import FINAL, WORKER_LOST, JobStatus
from podium.errors import ConfigError
from podium.ids import uuid7
from podium.store.engine import Prepared, Row, Store
from podium.store.secretbox import SecretBox
from podium.store.tables import idempotency_keys, jobs, stream_chunks, webhook_deliveries

#: Columns a caller may see; `secret` (worker-only request fields) is deliberately absent.
PUBLIC_COLUMNS = [c for c in jobs.c if c.name != "secret"]


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
    id: str = field(default_factory=uuid7)


#: What is known of a job when it ends (for metrics, and to tell whether a webhook is due).
ENDED_COLUMNS = (
    jobs.c.endpoint_id, jobs.c.kind, jobs.c.status, jobs.c.delay_ms, jobs.c.execution_ms, jobs.c.webhook
)

#: Jobs deleted per transaction when their retention or ttl is over (see JobQueue.reap).
REAP_BATCH = 500
#: How long an Idempotency-Key is remembered.
IDEMPOTENCY_SECONDS = 24 * 3600
#: With replicas, a queue's count in the store is reused this long (seconds) for its cap: a burst
#: spread over replicas overshoots the cap by at most what they store in that time.
COUNT_FRESH = 0.1


class DuplicateRequest(Exception):
    """Another request stored a job under the same Idempotency-Key first."""


#: Woken when a job is stored that no waiting worker is there to take (scale-up signal).
SCALE_KEY = "scale"
#: What held polls listen on: woken only by `notify_all` (the server closing, a relay's sweep).
HOLD_KEY = "hold"
#: Woken when jobs end, for the webhook outbox.
ENDED_KEY = "ended"


# -- the hot statements, built once: a statement object reused keeps its cache key, so executing
# it costs a compiled-cache hit instead of a rebuild and a fresh cache key on every call.

_NOW = bindparam("b_now", type_=Float)
#: Live statuses spelled out in the SQL as the indexes over live jobs say them (store/tables.py):
#: with a bound value the planner could not use those indexes.
_QUEUED = jobs.c.status == literal_column(f"'{JobStatus.IN_QUEUE.value}'")
_RUNNING = jobs.c.status == literal_column(f"'{JobStatus.IN_PROGRESS.value}'")


def _alive_clause() -> ColumnElement[bool]:
    keep = case(
        (jobs.c.kind == "runsync", bindparam("b_keep_runsync", type_=Float)),
        else_=bindparam("b_keep_run", type_=Float),
    )
    return and_(
        or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > _NOW),
        or_(jobs.c.finished_at.is_(None), jobs.c.finished_at + keep > _NOW),
    )


#: Not past its ttl, and not final for longer than its kind's retention (binds b_now, b_keep_*).
_ALIVE = _alive_clause()
#: execution_ms of a job ending at b_now (from its started_at).
_RAN_FOR = func.cast((_NOW - jobs.c.started_at) * 1000, jobs.c.execution_ms.type)


def _ending(status: Any, now: Any, **more: Any) -> dict[str, Any]:
    """The values every final transition sets: worker-only fields (s3Config, env) are dropped the
    moment a job ends, whichever way it ends."""
    return {"status": status, "finished_at": now, "lease_until": None, "secret": None,
            "stream_closed": True, **more}
_HELD = and_(
    jobs.c.id == bindparam("b_job"), jobs.c.worker_id == bindparam("b_worker"),
    _RUNNING,
)
#: A job this worker holds (binds b_job, b_worker), and of this endpoint (also b_endpoint).
_HELD_BY = {False: _HELD, True: and_(_HELD, jobs.c.endpoint_id == bindparam("b_endpoint"))}
_GET = Prepared(select(*PUBLIC_COLUMNS).where(jobs.c.id == bindparam("b_job"), _ALIVE))
#: What enqueue stores of a new job (bound as `v_<column>`).
_NEW_JOB_COLUMNS = (
    "id", "project_id", "endpoint_id", "route", "kind", "input", "status", "attempt", "max_attempts",
    "created_at", "webhook", "policy", "secret", "stream_closed", "expires_at", "low_priority",
    "timeout_ms", "retries",
)
_INSERT_JOB = Prepared(insert(jobs).values({name: bindparam(f"v_{name}") for name in _NEW_JOB_COLUMNS}))
_PICKED = (
    select(jobs.c.id)
    .where(
        jobs.c.endpoint_id == bindparam("b_endpoint"),
        _QUEUED,
        or_(jobs.c.expires_at.is_(None), jobs.c.expires_at > _NOW),
        or_(jobs.c.run_after.is_(None), jobs.c.run_after <= _NOW),
    )
    .order_by(jobs.c.created_at)
    .limit(bindparam("b_limit"))
    .with_for_update(skip_locked=True)
    .cte("picked")
)
_TAKE = Prepared(
    update(jobs)
    .where(jobs.c.id == _PICKED.c.id, _QUEUED)
    .values(
        status=JobStatus.IN_PROGRESS,
        worker_id=bindparam("b_worker"),
        lease_until=bindparam("b_lease_until", type_=Float),
        attempt=jobs.c.attempt + 1,
        started_at=_NOW,
        delay_ms=func.cast((_NOW - jobs.c.created_at) * 1000, jobs.c.delay_ms.type),
        deadline_at=_NOW + jobs.c.timeout_ms / 1000.0,
    )
    .returning(jobs)
)


def _finish_statement(by_endpoint: bool) -> Prepared:
    return Prepared(
        update(jobs)
        .where(_HELD_BY[by_endpoint])
        .values(**_ending(
            bindparam("b_status"), _NOW, execution_ms=_RAN_FOR, output=bindparam("b_output"),
            error=bindparam("b_error"), error_info=bindparam("b_error_info"),
        ))
        .returning(*PUBLIC_COLUMNS)
    )


def _bound(**values: Any) -> dict[str, Any]:
    """A new job's values as _INSERT_JOB binds them."""
    return {f"v_{name}": value for name, value in values.items()}


def _held(job_id: str, worker_id: str, endpoint_id: str | None) -> dict[str, str | None]:
    """The values _HELD_BY[endpoint_id is not None] binds."""
    return {"b_job": job_id, "b_worker": worker_id, "b_endpoint": endpoint_id}


#: End a held job (binds b_now, b_job, b_worker, b_status, b_output, b_error, b_error_info, and
#: b_endpoint in the by-endpoint variant).
_FINISH = {by_endpoint: _finish_statement(by_endpoint) for by_endpoint in (False, True)}


def backoff(attempt: int, base: float, cap: float = 60.0) -> float:
    """Seconds before retry number `attempt`: exponential, capped, with jitter (half to full) so
    retries of many jobs failing together spread out."""
    return float(random.uniform(0.5, 1.0) * min(cap, base * 2 ** (attempt - 1)))


def ep_key(endpoint_id: str) -> str:
    return f"ep:{endpoint_id}"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def stop_key(worker_id: str) -> str:
    return f"stop:{worker_id}"


class JobQueue:
    """Job-queue semantics on top of the store.

    Parameters:
        store: where jobs live.
        notifier: in-process wake-ups for waiting workers and callers.
        clock: time source (a fake one in unit tests).
        retention: seconds a final job stays readable, by kind (`runsync`, else `run`).
        retry_base: backoff before the first retry of a route error.
        box: encrypts worker-only request fields (s3Config, env) before they reach the store, so
            no store file (nor an old WAL page) ever holds them in clear. Without one, jobs
            carrying such fields are refused.
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        retention: dict[str, float] | None = None,
        retry_base: float = 1.0,
        box: SecretBox | None = None,
    ):
        self.store = store
        self.notifier = notifier or Notifier()
        self.clock = clock or Clock()
        self.retention = {"run": 1800.0, "runsync": 60.0, **(retention or {})}
        #: Seconds before the first retry of a failed attempt (doubling each time, with jitter).
        self.retry_base = retry_base
        self.box = box
        #: Per endpoint, an upper bound of its waiting jobs (see at_capacity).
        self._depth: dict[str, int] = {}
        self._counted_at: dict[str, float] = {}
        #: Jobs just stored for a caller that waits on them: not final yet, nothing to read.
        self._fresh: Bounded[str, None] = Bounded()
        #: Final rows handed from finish() to the callers waiting on them, saving a read each.
        self._finals: Bounded[str, Row] = Bounded()
        #: SQLite: results stored but maybe not on disk yet, by job id, with the store's mark
        #: after them: whoever shows one first makes it durable (see finish).
        self._settling: dict[str, int] = {}
        #: Called with (endpoint_id, status, delay_ms, execution_ms) of each job that ends.
        self.on_end: Callable[[Row], None] | None = None
        #: Set when the server shuts down: long-polls answer at once instead of holding it up.
        self.closing = False

    def close(self) -> None:
        self.closing = True
        self.notifier.notify_all()

    async def hold(self, seconds: float) -> None:
        """Hold a poll that gets nothing for `seconds`, as a real long-poll would be held; the
        server's close ends it, like every other long-poll, so its shutdown is not kept waiting."""
        with self.notifier.listen(HOLD_KEY) as ev:
            if not self.closing:
                await wait_event(ev, seconds)

    # -- callers --------------------------------------------------------------------------------

    async def enqueue(self, new: NewJob) -> str:
        """Store the job (and its webhook delivery, durable before this returns); wake a worker.

        Raises DuplicateRequest when another request stored the same Idempotency-Key first.
        """
        try:
            return await self._enqueue(new)
        except IntegrityError:
            if new.idempotency is None:
                raise
            raise DuplicateRequest(new.idempotency[0]) from None

    async def idempotent(self, project_id: str, key: str) -> Row | None:
        """The (request_hash, job_id) an Idempotency-Key was first used with, within 24 hours."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(idempotency_keys.c.request_hash, idempotency_keys.c.job_id).where(
                    idempotency_keys.c.project_id == project_id, idempotency_keys.c.key == key,
                    idempotency_keys.c.created_at > self.clock.now() - IDEMPOTENCY_SECONDS,
                )
            )
            return res.mappings().first()

    async def _enqueue(self, new: NewJob) -> str:
        now = self.clock.now()
        async with self.store.tx(durable=not new.awaited) as conn:
            await conn.rows(
                _INSERT_JOB,
                _bound(
                    id=new.id,
                    project_id=new.project_id,
                    endpoint_id=new.endpoint_id,
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
                ),
            )
            if new.idempotency is not None:
                await conn.execute(
                    insert(idempotency_keys).values(
                        project_id=new.project_id, key=new.idempotency[0],
                        request_hash=new.idempotency[1], job_id=new.id, created_at=now,
                    )
                )
            if new.webhook:
                await conn.execute(
                    insert(webhook_deliveries).values(
                        id=uuid.uuid4().hex, job_id=new.id, url=new.webhook, state="waiting",
                        tries=0, created_at=now,
                    )
                )
        if new.endpoint_id in self._depth:
            self._depth[new.endpoint_id] += 1
        if new.awaited:
            self._fresh.put(new.id, None)
        key = ep_key(new.endpoint_id)
        if not self.notifier.listeners(key) and not new.low_priority:
            self.notifier.notify(SCALE_KEY)
        self.notifier.notify_one(key)
        return new.id

    async def get(self, job_id: str) -> Row | None:
        """The job, or None once it is gone: past its ttl, or final for longer than retention."""
        async with self.store.read() as conn:
            found = await conn.rows(_GET, {"b_job": job_id, **self._alive_params(self.clock.now())})
        return await self._shown(found[0] if found else None)

    async def find(
        self, project_id: str, *, status: str | None = None, endpoint_id: str | None = None,
        limit: int = 100,
    ) -> list[Row]:
        """A project's readable jobs, newest first (the dead-letter view with status=FAILED)."""
        q = select(*PUBLIC_COLUMNS).where(jobs.c.project_id == project_id, _ALIVE)
        if status is not None:
            q = q.where(jobs.c.status == status)
        if endpoint_id is not None:
            q = q.where(jobs.c.endpoint_id == endpoint_id)
        async with self.store.tx() as conn:
            res = await conn.execute(
                q.order_by(jobs.c.created_at.desc()).limit(limit), self._alive_params(self.clock.now())
            )
            rows: list[Row] = list(res.mappings().all())
        if any(r["id"] in self._settling for r in rows):
            await self.store.sync()
        return rows

    async def wait_final(
        self, job_id: str, timeout: float, *, promise: bool = True, endpoint_id: str | None = None
    ) -> Row | None:
        """The job once final, or as it is when `timeout` runs out (None if it does not exist).

        With `promise`, a job still running then is made durable first: its id goes out as a
        promise (a /runsync caller's job; a /status caller's job was made durable by /run).
        With `endpoint_id`, another endpoint's job is returned as first read, without waiting
        (the caller, who may not see it, answers that it is not found)."""
        deadline = time.monotonic() + timeout
        # Just stored for this caller: not final yet, so nothing to read before the first wake-up.
        pending = job_id in self._fresh
        self._fresh.pop(job_id)
        with self.notifier.listen(job_key(job_id)) as ev:
            try:
                while True:
                    if not pending:
                        row = await self._shown(self._finals.pop(job_id)) or await self.get(job_id)
                        if row is None or row["status"] in FINAL or (
                            endpoint_id is not None and row["endpoint_id"] != endpoint_id
                        ):
                            return row
                    pending = False
                    if not await wait_event(ev, deadline - time.monotonic()):
                        if promise:
                            await self.store.sync()
                        return await self.get(job_id)
            finally:
                self._finals.pop(job_id)

    async def chunks(self, job_id: str, after_seq: int = -1) -> list[Row]:
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(stream_chunks.c.seq, stream_chunks.c.data)
                .where(stream_chunks.c.job_id == job_id, stream_chunks.c.seq > after_seq)
                .order_by(stream_chunks.c.seq)
            )
            return list(res.mappings().all())

    async def counts(self, endpoint_id: str) -> dict[str, int]:
        alive = self._alive_params(self.clock.now())
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(jobs.c.status, func.count())
                .where(jobs.c.endpoint_id == endpoint_id, _ALIVE)
                .group_by(jobs.c.status),
                alive,
            )
            out = {status: n for status, n in res.all()}
            out["retried"] = await conn.scalar(
                select(func.count()).where(jobs.c.endpoint_id == endpoint_id, jobs.c.attempt > 1, _ALIVE),
                alive,
            ) or 0
            return out

    async def held_by_workers(self, worker_ids: Sequence[str]) -> dict[str, list[str]]:
        """The running jobs each of these workers holds."""
        async with self.store.read() as conn:
            res = await conn.execute(
                select(jobs.c.worker_id, jobs.c.id).where(
                    jobs.c.worker_id.in_(list(worker_ids)), _RUNNING
                )
            )
            out: dict[str, list[str]] = {}
            for worker_id, job_id in res.all():
                out.setdefault(worker_id, []).append(job_id)
            return out

    async def queued_by_endpoint(self) -> dict[str, tuple[int, float]]:
        """Per endpoint: how many jobs wait that may start a worker (low-priority ones may not),
        and how long the oldest of them has waited (the scalers' inputs)."""
        now = self.clock.now()
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(jobs.c.endpoint_id, func.count(), func.min(jobs.c.created_at))
                .where(
                    _QUEUED,
                    jobs.c.low_priority.is_(False),
                    or_(jobs.c.run_after.is_(None), jobs.c.run_after <= now),
                )
                .group_by(jobs.c.endpoint_id)
            )
            return {ep: (n, max(0.0, now - oldest)) for ep, n, oldest in res.all()}

    async def waiting(self, endpoint_id: str) -> int:
        """Jobs waiting on an endpoint, whatever their priority."""
        async with self.store.read() as conn:
            n = await conn.scalar(
                select(func.count()).where(
                    jobs.c.endpoint_id == endpoint_id, _QUEUED
                )
            ) or 0
        self._depth[endpoint_id] = n
        self._counted_at[endpoint_id] = time.monotonic()
        return n

    async def at_capacity(self, endpoint_id: str, cap: int) -> bool:
        """Whether an endpoint already has `cap` jobs waiting. Counted in the store only when an
        upper bound kept in memory (the last count plus jobs stored here since) reaches the cap,
        or, with other replicas storing jobs too, when the count is older than COUNT_FRESH."""
        estimate = self._depth.get(endpoint_id)
        stale = self.notifier.relay is not None and (
            time.monotonic() - self._counted_at.get(endpoint_id, 0.0) > COUNT_FRESH
        )
        if estimate is None or estimate >= cap or stale:
            estimate = await self.waiting(endpoint_id)
        return estimate >= cap

    # -- workers --------------------------------------------------------------------------------

    async def take(
        self, endpoint_id: str, worker_id: str, *, lease: float, limit: int = 1
    ) -> list[Row]:
        """Atomically claim up to `limit` queued jobs of an endpoint for one worker."""
        now = self.clock.now()
        params = {"b_now": now, "b_endpoint": endpoint_id, "b_worker": worker_id,
                  "b_lease_until": now + lease, "b_limit": limit}
        # Not fsynced: a claim lost to a crash is a job still IN_QUEUE, taken again.
        async with self.store.tx(durable=False) as conn:
            return await conn.rows(_TAKE, params)

    async def take_wait(
        self,
        endpoint_id: str,
        worker_id: str,
        *,
        lease: float,
        timeout: float,
        limit: int = 1,
        alive: Callable[[], Awaitable[bool]] | None = None,
    ) -> list[Row]:
        """Long-poll: claim jobs, or wait until one is stored (no sleeping, no polling).

        `alive` is asked after each wait, before claiming and once more after: a worker that
        died, hung up or may no longer take work while it waited claims nothing (what was just
        claimed goes back), and the wake-up it got goes on to another waiting worker (or starts
        one). Before the first claim the caller has only just asked.
        """
        deadline = time.monotonic() + timeout
        waited = False
        with self.notifier.listen(ep_key(endpoint_id)) as ev:
            while True:
                if self.closing:
                    return []
                if waited and alive is not None and not await alive():
                    ev.set()  # passed on when this waiter leaves (Notifier.listen)
                    self.notifier.notify(SCALE_KEY)
                    return []
                taken = await self.take(endpoint_id, worker_id, lease=lease, limit=limit)
                if taken:
                    if waited and alive is not None and not await alive():
                        await self.untake([r["id"] for r in taken], worker_id)
                        return []
                    return taken
                if not await wait_event(ev, deadline - time.monotonic()):
                    return []
                waited = True

    async def note_cold_start(self, rows: Sequence[Row], started_at: float, ready_at: float) -> None:
        """Record how much of each job's wait was its worker's cold start."""
        async with self.store.tx(durable=False) as conn:
            for row in rows:
                cold = ready_at - max(row["created_at"], started_at)
                if cold > 0:
                    await conn.execute(
                        update(jobs).where(jobs.c.id == row["id"]).values(cold_ms=int(cold * 1000))
                    )

    async def untake(self, job_ids: Sequence[str], worker_id: str) -> None:
        """Give back jobs taken for a worker that hung up before it could receive them."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(list(job_ids)),
                    jobs.c.worker_id == worker_id,
                    _RUNNING,
                )
                .values(
                    status=JobStatus.IN_QUEUE, worker_id=None, lease_until=None,
                    attempt=jobs.c.attempt - 1, started_at=None, delay_ms=None, deadline_at=None,
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
        cond = and_(jobs.c.id.in_(list(job_ids)), jobs.c.worker_id == worker_id,
                    _RUNNING)
        if endpoint_id is not None:
            cond = and_(cond, jobs.c.endpoint_id == endpoint_id)
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(jobs)
                .where(cond)
                .values(lease_until=self.clock.now() + lease)
            )
            return res.rowcount or 0

    async def progress(self, job_id: str, worker_id: str, value: Any, *, endpoint_id: str | None = None) -> bool:
        """Record a progress update; ignored once the job is final (updates can arrive late)."""
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                update(jobs)
                .where(_HELD_BY[endpoint_id is not None])
                .values(progress=_json.dumps(value)),
                _held(job_id, worker_id, endpoint_id),
            )
        self.notifier.notify(job_key(job_id))
        return bool(res.rowcount)

    async def append_chunk(
        self, job_id: str, worker_id: str, value: Any, *, endpoint_id: str | None = None
    ) -> bool:
        """Store one stream chunk of a running job and wake its readers (not fsynced: the job's
        end is, and with it every chunk stored before)."""
        async with self.store.tx(durable=False) as conn:
            held = await conn.execute(
                select(jobs.c.id).where(_HELD_BY[endpoint_id is not None]), _held(job_id, worker_id, endpoint_id)
            )
            if held.first() is None:
                return False
            seq = await conn.scalar(
                select(func.coalesce(func.max(stream_chunks.c.seq), -1) + 1).where(
                    stream_chunks.c.job_id == job_id
                )
            )
            await conn.execute(
                insert(stream_chunks).values(
                    job_id=job_id, seq=seq, data=_json.dumps(value), consumed=False
                )
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
            **_held(job_id, worker_id, endpoint_id), "b_now": self.clock.now(),
            "b_status": JobStatus.FAILED if failed else JobStatus.COMPLETED,
            "b_output": None if failed else _json.dumps(output), "b_error": error,
            "b_error_info": _json.dumps(error_info) if error_info else None,
        }
        async with self.store.tx(durable=False) as conn:
            found = await conn.rows(_FINISH[endpoint_id is not None], params)
            row = found[0] if found else None
        if row is not None:
            waited = self.notifier.listeners(job_key(job_id)) > 0
            if row["kind"] == "run" or not waited:
                # A result is promised once shown, unless its caller is there to receive it (a
                # crash before that answer runs the job again).
                await self._promise(job_id)
            if waited:
                self._finals.put(job_id, row)
            await self._ended([job_id], [row])
        return row is not None

    async def _promise(self, job_id: str) -> None:
        """Make a stored result durable before anyone can be shown it. On SQLite only this server
        shows it: the worker's answer does not wait for the fsync, whoever reads the result
        first does (`_shown`), so one fsync covers the results of many workers. With replicas,
        another may show it at once: durable now."""
        if not self.store.sqlite:
            await self.store.sync()
            return
        if len(self._settling) >= 10_000:  # results nobody read: all made durable at once
            await self.store.sync()
            self._settling.clear()
        self._settling[job_id] = self.store.mark()

    async def _shown(self, row: Row | None) -> Row | None:
        """The row, its result on disk first if it was not yet (see `_promise`)."""
        if row is not None and row["id"] in self._settling:
            await self.store.sync(upto=self._settling[row["id"]])
            self._settling.pop(row["id"], None)
        return row

    async def _retry_later(self, job_id: str, worker_id: str, error: str, endpoint_id: str | None) -> bool:
        """Queue a failed attempt again if it has route retries left; True if it did."""
        now = self.clock.now()
        held = _held(job_id, worker_id, endpoint_id)
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(jobs.c.attempt, jobs.c.retries, jobs.c.max_attempts, jobs.c.attempt_errors,
                       jobs.c.endpoint_id)
                .where(_HELD_BY[endpoint_id is not None]),
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
                .where(_HELD_BY[endpoint_id is not None])
                .values(
                    status=JobStatus.IN_QUEUE, worker_id=None, lease_until=None, deadline_at=None,
                    started_at=None, progress=None, attempt_errors=_json.dumps(errors),
                    run_after=now + backoff(row["attempt"], self.retry_base),
                ),
                held,
            )
        self.notifier.notify(job_key(job_id))
        return True

    async def recover(self, *, worker_id: str | None = None) -> list[str]:
        """Give back jobs whose lease ran out (or whose worker is known dead).

        Each goes back to the queue if it has attempts left, else ends FAILED with WORKER_LOST.
        Returns the ids recovered.
        """
        now = self.clock.now()
        cond: ColumnElement[bool] = _RUNNING
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
                    jobs.c.id, jobs.c.endpoint_id, jobs.c.attempt, jobs.c.max_attempts,
                    jobs.c.attempt_errors, jobs.c.worker_id,
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
                    values.update(_ending(JobStatus.FAILED, now, error=WORKER_LOST))
                upd = await conn.execute(
                    update(jobs)
                    .where(
                        jobs.c.id == row["id"],
                        _RUNNING,
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

    async def cancel(self, job_id: str) -> Row | None:
        """Cancel a queued or running job (a running one keeps `worker_id`, to be stopped).

        Returns the job as it is afterwards; a final job is returned unchanged.
        """
        now = self.clock.now()
        async with self.store.tx() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_([JobStatus.IN_QUEUE, JobStatus.IN_PROGRESS]))
                .values(**_ending(JobStatus.CANCELLED, now))
            )
        await self._ended([job_id])
        return await self.get(job_id)

    async def purge(self, endpoint_id: str) -> int:
        """Cancel every queued job of an endpoint; running ones go on. Returns how many."""
        return await self._end_waiting(endpoint_id, JobStatus.CANCELLED)

    async def fail_queued(self, endpoint_id: str, reason: str) -> int:
        """End every waiting job of an endpoint FAILED with `reason` (its version cannot start:
        they would otherwise wait forever). Returns how many."""
        return await self._end_waiting(endpoint_id, JobStatus.FAILED, error=reason)

    async def _end_waiting(self, endpoint_id: str, status: JobStatus, **more: Any) -> int:
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(jobs.c.endpoint_id == endpoint_id, _QUEUED)
                .values(**_ending(status, self.clock.now(), **more))
                .returning(jobs.c.id)
            )
            ids = [r[0] for r in res.all()]
        await self._ended(ids)
        return len(ids)

    async def retry(self, job_id: str) -> bool:
        """Queue a FAILED or TIMED_OUT job again under the same id, its old result cleared."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status.in_([JobStatus.FAILED, JobStatus.TIMED_OUT]))
                .values(
                    status=JobStatus.IN_QUEUE, attempt=0, worker_id=None, lease_until=None,
                    created_at=self.clock.now(), started_at=None, finished_at=None, delay_ms=None,
                    execution_ms=None, output=None, error=None, error_info=None, progress=None,
                    stream_closed=False, deadline_at=None, run_after=None,
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

    def _seal(self, fields: dict[str, Any] | None) -> str | None:
        if not fields:
            return None
        if self.box is None:
            raise ConfigError("this queue has no secrets key: it cannot store s3Config or env")
        return self.box.seal(_json.dumps(fields))

    async def time_out(self) -> list[Row]:
        """End every running job past its execution deadline TIMED_OUT; returns (id, worker_id)s
        so their workers can be stopped."""
        now = self.clock.now()
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(jobs)
                .where(_RUNNING, jobs.c.deadline_at <= now)
                .values(**_ending(
                    JobStatus.TIMED_OUT, now,
                    error=literal("execution timeout: the job ran longer than ")
                    + cast(jobs.c.timeout_ms, String)
                    + literal(" ms (policy.executionTimeout)"),
                    execution_ms=_RAN_FOR,
                ))
                .returning(jobs.c.id, jobs.c.worker_id),
                {"b_now": now},
            )
            rows: list[Row] = list(res.mappings().all())
        await self._ended([r["id"] for r in rows])
        return rows

    async def next_deadline(self) -> float | None:
        """The earliest execution deadline of a running job (the autoscaler wakes for it)."""
        async with self.store.tx() as conn:
            deadline = await conn.scalar(
                select(func.min(jobs.c.deadline_at)).where(_RUNNING)
            )
        return None if deadline is None else float(deadline)

    async def reap(self) -> list[Row]:
        """Delete jobs past their ttl or retention, with their chunks. Returns the (id, worker_id)
        of those deleted while running, whose workers must be told to stop.

        REAP_BATCH jobs per transaction: at thousands of jobs a second, five seconds' worth
        deleted at once stopped the loop (SQLite runs on it) for a long while, held every row in
        memory, and past 32,766 jobs bound more values than SQLite takes, so it failed each time."""
        now = self.clock.now()
        running: list[Row] = []
        while True:
            rows = await self._reap_some(now)
            running += [r for r in rows if r["status"] == JobStatus.IN_PROGRESS]
            if len(rows) < REAP_BATCH:
                break
        async with self.store.tx(durable=False) as conn:
            await conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at <= now - IDEMPOTENCY_SECONDS)
            )
        return running

    async def _reap_some(self, now: float) -> list[Row]:
        """Up to REAP_BATCH of the jobs `reap` deletes (not fsynced: a deletion a crash loses is
        made again)."""
        expired = select(jobs.c.id).where(~_ALIVE).limit(REAP_BATCH).scalar_subquery()
        async with self.store.tx(durable=False) as conn:
            res = await conn.execute(
                delete(jobs).where(jobs.c.id.in_(expired)).returning(jobs.c.id, jobs.c.status, jobs.c.worker_id),
                self._alive_params(now),
            )
            rows: list[Row] = list(res.mappings().all())
            gone = [r["id"] for r in rows]
            if gone:
                await conn.execute(delete(stream_chunks).where(stream_chunks.c.job_id.in_(gone)))
        for jid in gone:
            self.notifier.notify(job_key(jid))
        return rows

    # -- helpers --------------------------------------------------------------------------------

    def _alive_params(self, now: float) -> dict[str, float]:
        return {"b_now": now, "b_keep_runsync": self.retention["runsync"],
                "b_keep_run": self.retention["run"]}

    async def _ended(self, job_ids: Sequence[str], rows: Sequence[Row] | None = None) -> None:
        """Wake whoever waits on these jobs, the observer if any, and the webhook outbox when one
        of them has a webhook. `rows` (ENDED_COLUMNS) saves a read when the caller has them."""
        for jid in job_ids:
            self.notifier.notify(job_key(jid))
        if not job_ids:
            return
        if rows is None:
            async with self.store.tx() as conn:
                res = await conn.execute(select(*ENDED_COLUMNS).where(jobs.c.id.in_(list(job_ids))))
                rows = list(res.mappings().all())
        if self.on_end is not None:
            for row in rows:
                self.on_end(row)
        if any(row["webhook"] for row in rows):
            self.notifier.notify(ENDED_KEY)
