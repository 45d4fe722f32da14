"""The state every side of the job queue shares, and what they all use of it."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select

from podium.bounded import Bounded
from podium.clock import Clock
from podium.dispatch.jobs import Ended, Job
from podium.dispatch.keys import ENDED_KEY, HOLD_KEY, job_key
from podium.dispatch.notify import Notifier, wait_event
from podium.dispatch.statements import ENDED_COLUMNS
from podium.store.engine import Store
from podium.store.secretbox import SecretBox
from podium.store.tables import jobs


class QueueBase:
    """What every side of the queue shares: the store, the wake-ups, and the hand-off ledger
    (jobs just stored for a waiting caller, final rows handed to it, results not yet on disk).

    Parameters:
        store: where jobs live.
        notifier: in-process wake-ups for waiting workers and callers.
        clock: time source (a fake one in unit tests).
        retention: seconds a final job stays readable, by kind (`runsync`, else `run`).
        retry_base: backoff before the first retry of a route error.
        box: encrypts worker-only request fields (s3Config, env) before they reach the store, so
            no store file (nor an old WAL page) ever holds them in clear. Without one, jobs
            carrying such fields are refused.
        on_end: called with what is known of each job that ends (its metrics' figures).
    """

    def __init__(
        self,
        store: Store,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        retention: dict[str, float] | None = None,
        retry_base: float = 1.0,
        box: SecretBox | None = None,
        on_end: Callable[[Ended], None] | None = None,
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
        #: Jobs as a worker just took or ended them, handed to the callers waiting on them (a
        #: read saved each); the later replaces the earlier.
        self._handed: Bounded[str, Job] = Bounded()
        #: SQLite: results stored but maybe not on disk yet, by job id, with the store's mark
        #: after them: whoever shows one first makes it durable (see finish).
        self._settling: dict[str, int] = {}
        self.on_end = on_end
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

    def _alive_params(self, now: float) -> dict[str, float]:
        return {"b_now": now, "b_keep_runsync": self.retention["runsync"], "b_keep_run": self.retention["run"]}

    async def _ended(self, job_ids: Sequence[str], ended: Sequence[Ended] | None = None) -> None:
        """Wake whoever waits on these jobs, the observer if any, and the webhook outbox when one
        of them has a webhook. `ended` saves a read when the caller has them."""
        for jid in job_ids:
            self.notifier.notify(job_key(jid))
        if not job_ids:
            return
        if ended is None:
            async with self.store.tx() as conn:
                res = await conn.execute(select(*ENDED_COLUMNS).where(jobs.c.id.in_(list(job_ids))))
                ended = [Ended.from_row(row) for row in res.mappings()]
        if self.on_end is not None:
            for one in ended:
                self.on_end(one)
        if any(one.webhook for one in ended):
            self.notifier.notify(ENDED_KEY)

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

    async def _shown(self, job: Job | None) -> Job | None:
        """The job, its result on disk first if it was not yet (see `_promise`)."""
        if job is not None and job.id in self._settling:
            await self.store.sync(upto=self._settling[job.id])
            self._settling.pop(job.id, None)
        return job
