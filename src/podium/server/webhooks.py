"""The webhook outbox: POST a job's final status envelope to the URL its request named.

A delivery row is written in the same transaction as the job, so nothing accepted is forgotten,
and it survives a restart. When the job ends, its body is fixed (every retry sends the same bytes)
and sent; a 2xx acknowledges it, anything else (or no answer within the timeout) is tried again
`retry_delay` seconds later, three attempts in all, as RunPod does. Every attempt is recorded on the
row, and signed with the secrets of the job's project (store/webhook_secrets.py), never another's.
Delivery is at least once: an attempt cut short by a crash is sent again, with the same
`X-Podium-Delivery` id for receivers that deduplicate. Only the leading replica sends, and each
attempt is claimed in the store before it goes (its `next_at` moved past the attempt's time-out),
so a leader that has not yet noticed it was replaced cannot send the same attempt again.

An ended job's delivery can be sent again on request (`redeliver`, any replica): its row becomes
`redeliver`, which the leader sends once, with the same body and signing, recorded as one more
attempt (`"redelivery": true`); it ends delivered or failed, with no further retries. One still
being retried is sent at once instead, its retries kept.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update

from podium import _json
from podium.dispatch.jobs import Job
from podium.dispatch.keys import ENDED_KEY
from podium.dispatch.notify import wait_event
from podium.dispatch.queue import JobQueue
from podium.dispatch.states import FINAL
from podium.metrics import Metrics
from podium.netguard import allow_private_from_env
from podium.server.envelope import envelope
from podium.signing import signed_headers
from podium.store.records import Delivery
from podium.store.tables import jobs, webhook_deliveries
from podium.store.webhook_secrets import WebhookSecrets

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("podium.webhooks")

#: First attempt plus two retries.
MAX_TRIES = 3
#: Deliveries sent at once.
PARALLEL = 16
#: States the sender picks up: due retries, and one-off redeliveries asked for by someone.
SENDABLE = ("pending", "redeliver")
#: How often a redeliver request looks whether its attempt has been recorded.
REDELIVER_POLL = 0.1


def webhook_body(job: Job, envelope: dict[str, Any]) -> bytes:
    """RunPod's webhook body: the status envelope plus the job's input and webhook URL."""
    return _json.dumpb({**envelope, "input": _json.loads(job.input_json), "webhook": job.webhook})


class WebhookOutbox:
    """Parameters:
    queue: the job queue (its store, clock and wake-ups).
    secrets: each project's signing secrets.
    retry_delay, timeout: seconds between attempts, and per attempt.
    metrics: where attempts are counted.
    """

    def __init__(
        self,
        queue: JobQueue,
        secrets: WebhookSecrets,
        *,
        retry_delay: float = 10.0,
        timeout: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.queue = queue
        self.store = queue.store
        self.clock = queue.clock
        self.secrets = secrets
        self.retry_delay = retry_delay
        self.timeout = timeout
        self.metrics = metrics or Metrics()
        self._sending: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @functools.cached_property
    def client(self) -> httpx.AsyncClient:
        """Made (and httpx loaded) for the first delivery. Every delivery resolves the host again
        and connects only to a public address it checked (PODIUM_WEBHOOK_ALLOW_PRIVATE=1 lifts
        that, for local setups): no SSRF, no DNS rebinding."""
        from podium.guarded_http import guarded_client

        return guarded_client(allow_private=allow_private_from_env(), timeout=self.timeout)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="podium-webhooks")

    async def stop(self) -> None:
        """Send nothing more (another replica leads now; what is due is theirs to send)."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def close(self) -> None:
        await self.stop()
        if "client" in vars(self):  # made only if a webhook was sent
            await self.client.aclose()

    async def _run(self) -> None:
        with self.queue.notifier.listen(ENDED_KEY) as ev:
            while True:
                try:
                    wait = await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook pass failed")
                    wait = 1.0
                await wait_event(ev, wait)

    async def run_once(self) -> float:
        """Fix the bodies of ended jobs, send what is due; returns seconds until the next is due."""
        await self._seal()
        now = self.clock.now()
        async with self.store.tx() as conn:
            res = await conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.state.in_(SENDABLE)))
            found = [Delivery.from_row(r) for r in res.mappings().all()]
        pending = [d for d in found if d.id not in self._sending]
        due = [d for d in pending if d.next_at is not None and d.next_at <= now]
        if due:
            limit = asyncio.Semaphore(PARALLEL)

            async def one(delivery: Delivery) -> None:
                async with limit:
                    await self._attempt(delivery)

            await asyncio.gather(*(one(d) for d in due))
            return 0.0
        later = [d.next_at - now for d in pending if d.next_at is not None]
        return min([1.0, *later])

    async def _seal(self) -> None:
        """Deliveries waiting on jobs that have ended become pending, their bodies fixed now;
        those whose job expired before it ended fail. Writes only when there is something to do."""
        d = webhook_deliveries
        now = self.clock.now()
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(d.c.id.label("delivery_id"), jobs)
                .select_from(d.outerjoin(jobs, jobs.c.id == d.c.job_id))
                .where(d.c.state == "waiting", or_(jobs.c.id.is_(None), jobs.c.status.in_(list(FINAL))))
            )
            ready = list(res.mappings().all())
        if not ready:
            return
        async with self.store.tx() as conn:
            for row in ready:
                values: dict[str, Any]
                if row["id"] is None:  # the delivery's job is gone
                    values = {
                        "state": "failed",
                        "finished_at": now,
                        "attempts": _json.dumps([{"at": now, "error": "the job expired before it ended"}]),
                    }
                else:
                    job = Job.from_row(row)
                    body = webhook_body(job, envelope(job, now))
                    values = {"state": "pending", "body": body.decode(), "next_at": now, "project_id": job.project_id}
                await conn.execute(
                    update(d).where(d.c.id == row["delivery_id"], d.c.state == "waiting").values(**values)
                )

    async def _claim(self, row: Delivery) -> bool:
        """Take this attempt for this replica (False: another sender took it first)."""
        d = webhook_deliveries
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(d)
                .where(
                    d.c.id == row.id,
                    d.c.state == row.state,
                    d.c.tries == row.tries,
                    d.c.next_at == row.next_at,
                )
                .values(next_at=self.clock.now() + self.timeout + self.retry_delay)
            )
            return res.rowcount == 1

    async def _attempt(self, row: Delivery) -> None:
        self._sending.add(row.id)
        try:
            if not await self._claim(row):
                return
            assert row.body is not None and row.project_id is not None  # set when it became pending
            body = row.body.encode()
            signing = (await self.secrets.get(row.project_id)).signing
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "Podium-Webhooks/1",
                "X-Podium-Delivery": row.id,
                **signed_headers(signing, body),
            }
            client = self.client
            import httpx  # loaded with the client

            started = time.monotonic()
            record: dict[str, Any] = {"at": self.clock.now()}
            if row.state == "redeliver":
                record["redelivery"] = True
            try:
                resp = await client.post(row.url, content=body, headers=headers)
                record["status_code"] = resp.status_code
                ok = 200 <= resp.status_code < 300
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                ok = False
            record["ms"] = int((time.monotonic() - started) * 1000)
            await self._record(row, record, ok)
        finally:
            self._sending.discard(row.id)

    async def _record(self, row: Delivery, record: dict[str, Any], ok: bool) -> None:
        tries = row.tries + 1
        attempts = [*row.attempts, record]
        now = self.clock.now()
        values: dict[str, Any] = {"tries": tries, "attempts": _json.dumps(attempts)}
        self.metrics.webhooks.labels("ok" if ok else "failed").inc()
        if ok:
            values.update(state="delivered", finished_at=now, next_at=None)
        elif tries >= MAX_TRIES or row.state == "redeliver":
            values.update(state="failed", finished_at=now, next_at=None)
            log.warning("webhook for job %s failed after %d attempts", row.job_id, tries)
        else:
            values.update(next_at=now + self.retry_delay)
        async with self.store.tx() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == row.id, webhook_deliveries.c.state == row.state)
                .values(**values)
            )

    async def _of_job(self, job_id: str) -> list[Delivery]:
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(webhook_deliveries)
                .where(webhook_deliveries.c.job_id == job_id)
                .order_by(webhook_deliveries.c.created_at)
            )
            return [Delivery.from_row(r) for r in res.mappings().all()]

    async def for_job(self, job_id: str) -> list[dict[str, Any]]:
        """The deliveries of a job, attempts included (for `podium jobs show`)."""
        return [_view(d) for d in await self._of_job(job_id)]

    async def redeliver(self, job_id: str) -> dict[str, Any] | None:
        """Send an ended job's delivery once more and answer it once that attempt is recorded
        (or, if the leader has not sent it within a time-out, as it stands: it is still sent).
        None: the job has no webhook. Callers check the job has ended (its body is fixed then)."""
        await self._seal()  # a job that has just ended may not have its body yet
        found = await self._of_job(job_id)
        if not found:
            return None
        last = found[-1]
        d = webhook_deliveries
        # One still being retried is sent now (its retries kept); an ended one once more.
        state = "pending" if last.state == "pending" else "redeliver"
        async with self.store.tx() as conn:
            await conn.execute(
                update(d)
                .where(d.c.id == last.id, d.c.state.in_(("delivered", "failed", "pending", "redeliver")))
                .values(state=state, next_at=self.clock.now(), finished_at=None)
            )
        self.queue.notifier.notify(ENDED_KEY)  # the leader's sender looks now, not at its next pass
        current = last
        deadline = time.monotonic() + self.timeout + 5.0
        while time.monotonic() < deadline:
            current = next((x for x in await self._of_job(job_id) if x.id == last.id), current)
            if current.tries > last.tries and current.state != "redeliver":
                break
            await asyncio.sleep(REDELIVER_POLL)
        return _view(current)

    async def failed(self, endpoint_id: str, limit: int = 10) -> list[dict[str, Any]]:
        """The endpoint's last failed deliveries, newest first (for its console page)."""
        d = webhook_deliveries
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(d)
                .select_from(d.join(jobs, jobs.c.id == d.c.job_id))
                .where(jobs.c.endpoint_id == endpoint_id, d.c.state == "failed")
                .order_by(d.c.finished_at.desc())
                .limit(limit)
            )
            found = [Delivery.from_row(r) for r in res.mappings().all()]
        return [_view(x) | {"job_id": x.job_id} for x in found]


def _view(d: Delivery) -> dict[str, Any]:
    return {"id": d.id, "url": d.url, "state": d.state, "tries": d.tries, "attempts": d.attempts}
