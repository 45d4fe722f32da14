"""The running server's parts, wired once at start-up and shared by every router.

Every replica serves the whole API. The duties of the installation (the autoscaler and its
workers, leases, time-outs, retention, webhooks, endpoint expiry, rollout guards) run on the leader only
(scaling/leader.py); on SQLite the one server leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

from podium.clock import Clock
from podium.config import Settings
from podium.core.access import Access
from podium.core.calls import Calls
from podium.core.deployments import EXPIRE_EVERY, Deployments
from podium.core.rollouts import GUARD_EVERY, Rollouts
from podium.core.schedules import TICK_SECONDS, Scheduler
from podium.core.waiting import WaitingReasons
from podium.core.worker_calls import WorkerCalls
from podium.core.workers import WorkerPool
from podium.covalent.functions import Functions
from podium.digitalhub.runs import ServeRuns
from podium.dispatch.notify import Notifier
from podium.dispatch.queue import JobQueue
from podium.dispatch.relay import PgRelay
from podium.home import make_private
from podium.logs import sort_by_endpoint_id
from podium.metrics import Metrics
from podium.scaling.autoscaler import Autoscaler
from podium.scaling.leader import Leadership
from podium.server.webhooks import WebhookOutbox
from podium.server.worker_channel import WorkerChannel
from podium.store import open_store
from podium.store.blobs import Bundles
from podium.store.catalog import Catalog
from podium.store.cluster import Cluster, Replica
from podium.store.projects import DEFAULT_PROJECT
from podium.store.records import Endpoint, Version
from podium.store.schedules import Schedules
from podium.store.secretbox import SecretBox, load_key
from podium.store.usage import UsageMeter
from podium.store.webhook_secrets import WebhookSecrets

log = logging.getLogger("podium.server")


class Runtime:
    """Store, queue, catalog, keys, workers and autoscaler of one server.

    Parameters:
        settings: everything configurable.
        clock: time source (tests may fake it).
    """

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or Clock()
        self.store = open_store(settings.db_url, busy_timeout=settings.db_busy_timeout, pool_size=settings.db_pool)
        #: Other servers may share this store (PostgreSQL): wake-ups, limits and bundles are shared.
        self.shared = not self.store.sqlite
        self.replica_id = secrets.token_hex(6)
        self.started_at = self.clock.now()
        self.notifier = Notifier()
        settings.home.mkdir(parents=True, exist_ok=True)
        self.secrets = SecretBox(load_key(settings.secret_key, settings.secret_key_file))
        self.metrics = metrics = Metrics()
        metrics.count_store(self.store)
        self.queue = JobQueue(
            self.store,
            self.notifier,
            self.clock,
            box=self.secrets,
            retention={"run": settings.retention_run, "runsync": settings.retention_runsync},
            retry_base=settings.retry_base,
            on_end=lambda ended: metrics.job_ended(ended.endpoint_id, ended.status, ended.delay_ms, ended.execution_ms),
        )
        self.catalog = Catalog(self.store, self.clock)
        self.access = Access(
            self.catalog,
            rate=settings.rate_limit,
            burst=settings.rate_burst,
            shared=self.shared,
            notifier=self.notifier,
        )
        self.calls = Calls(self.queue, self.catalog, self.access, self.metrics, max_attempts=settings.max_attempts)
        self.cluster = Cluster(self.store)
        self.scaler = Autoscaler(
            settings,
            self.catalog,
            self.queue,
            # The workers' records: the scaler hears from them when a worker is ready or cannot start.
            lambda events: WorkerPool(
                self.queue,
                self.catalog,
                self.clock,
                lease=settings.lease_seconds,
                cluster=self.cluster,
                replica_id=self.replica_id,
                events=events,
            ),
            self.metrics,
            secrets=self.endpoint_env,
            worker_socket=self.worker_socket,
        )
        self.pool = self.scaler.pool
        #: Usage per project, endpoint and version, rolled up by the leader.
        self.usage = UsageMeter(self.store, self.clock, retention_days=settings.usage_retention_days)
        #: Why a queued job waits, from what every replica reads in the store.
        self.waiting = WaitingReasons(self.pool, self.queue, self.catalog)
        self.bundles = Bundles(settings.blobs, self.store if self.shared else None)
        self.deployments = Deployments(self.catalog, self.bundles, self.queue, self.scaler, self.secrets, self.clock)
        self.rollouts = Rollouts(self.catalog, self.queue, self.deployments, self.clock)
        self.functions = Functions(self.access, self.deployments, self.clock)
        #: Routes that run by themselves; the leader fires them (`_lead`).
        self.scheduler = Scheduler(Schedules(self.store, self.clock), self.catalog, self.calls, self.queue, self.clock)
        self.serve_runs = ServeRuns(self.store, self.deployments, self.clock)
        #: The worker protocol, for both of its transports.
        self.workers = WorkerCalls(
            self.access, self.pool, self.scaler, self.metrics, take_timeout=settings.take_timeout
        )
        conninfo = self.store.conninfo
        self.relay = PgRelay(conninfo, self.notifier, sweep=settings.relay_sweep) if conninfo else None
        self.leadership = Leadership(self.store.conninfo, self._lead, self._follow, eligible=settings.workers)
        self.webhooks: WebhookOutbox | None = None
        #: job-take and job-done for local workers, without HTTP.
        self.channel = WorkerChannel(self.workers, self.access, self.metrics, settings.home, self.replica_id)
        #: While this replica leads: stopping endpoints at their expires_at (Covalent time
        #: limits), firing schedules, metering usage, and guarding canary rollouts.
        self.duties: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        #: Set on first start when an admin key was generated: printed once by `podium up`.
        self.new_admin_key: str | None = None

    async def start(self) -> None:
        make_private(self.settings)
        sort_by_endpoint_id(self.settings.logs)
        await self.store.migrate()
        project = await self.catalog.ensure_project(DEFAULT_PROJECT)
        await self._bootstrap_admin(project)
        self.webhooks = WebhookOutbox(
            self.queue,
            await self._webhook_secrets(project, self.secrets),
            retry_delay=self.settings.webhook_retry_delay,
            timeout=self.settings.webhook_timeout,
            metrics=self.metrics,
        )
        if self.scaler.backend.same_host and self.settings.workers:
            try:
                await self.channel.start()
            except OSError as exc:  # the workers speak HTTP only: slower, but they work
                log.warning("no worker channel (%s); local workers use HTTP only", exc)
        await self._beat()
        if self.relay is not None:
            await self.relay.start()
        self._background = [
            asyncio.create_task(self._every(1.0, self.pool.flush), name="podium-worker-records"),
            asyncio.create_task(self._every(2.0, self._beat), name="podium-heartbeat"),
        ]
        await self.leadership.start()

    async def close(self) -> None:
        self.scaler.builds.close()
        await self.leadership.close()
        for task in self._background:
            task.cancel()
        for task in self._background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.pool.flush()
            await self.cluster.leave(self.replica_id)
        if self.relay is not None:
            await self.relay.close()
        await self.channel.close()
        if self.webhooks is not None:
            await self.webhooks.close()
        await self.store.close()

    # -- leadership -----------------------------------------------------------------------------

    async def _lead(self) -> None:
        """This replica now runs the installation's duties. Workers the previous leader started
        died with it (or are being stopped by it): their tokens go."""
        await self.catalog.delete_worker_keys()
        assert self.webhooks is not None
        self.webhooks.start()
        self.scaler.start()
        self.duties = [
            asyncio.create_task(self._every(EXPIRE_EVERY, self.deployments.expire), name="podium-expiry"),
            asyncio.create_task(self._every(TICK_SECONDS, self.scheduler.tick), name="podium-schedules"),
            asyncio.create_task(self._every(self.settings.usage_rollup, self.meter), name="podium-usage"),
            asyncio.create_task(self._every(GUARD_EVERY, self.rollouts.guard), name="podium-rollout-guard"),
        ]
        await self._beat()

    async def _follow(self) -> None:
        """Another replica leads now (or this one is stopping): stop the duties, and the workers."""
        if self.duties:
            for task in self.duties:
                task.cancel()
            self.duties = []
            with contextlib.suppress(Exception):  # what ran until now, while its workers still count
                await self.meter()
        try:
            await self.scaler.close()
        finally:  # whatever stopping the workers ran into, this replica sends no more webhooks
            if self.webhooks is not None:
                await self.webhooks.stop()

    async def meter(self) -> None:
        """Roll usage up (the leader's duty), and count the worker-seconds it added."""
        rolled = await self.usage.rollup()
        for (project, endpoint), t in rolled.worker_seconds.items():
            for resource, seconds in (("cpu", t.cpu), ("gpu", t.gpu), ("memory_mb", t.memory_mb)):
                self.metrics.worker_seconds.labels(project, endpoint, resource).inc(seconds)

    async def _beat(self) -> None:
        """Say this replica is alive (and whether it leads); learn whether any other is."""
        now = self.clock.now()
        await self.cluster.beat(
            Replica(
                id=self.replica_id,
                url=self.settings.url,
                started_at=self.started_at,
                seen_at=now,
                leader=self.leadership.leading,
                runs_workers=self.settings.workers,
            )
        )
        if self.relay is not None:
            hellos = self.relay.hellos
            others = sum(1 for r in await self.cluster.live(now) if r.id != self.replica_id)
            # A replica that said hello while we read counts, even if the read missed its row.
            self.relay.others = others if self.relay.hellos == hellos else max(others, 1)

    @staticmethod
    async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` every `seconds`; a failure (the store unreachable a while) is logged, and
        the next round tries again."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception as exc:
                log.warning("%s failed: %s", getattr(job, "__name__", job), exc)

    async def _webhook_secrets(self, project: str, box: SecretBox) -> WebhookSecrets:
        """Each project's signing secrets. The default project's first one is PODIUM_WEBHOOK_SECRET,
        else the installation-wide secret file of earlier versions: receivers set up with either
        keep verifying. Once that secret is sealed in the store, the file (in clear) goes."""
        legacy = self.settings.webhook_secret_file
        seed = self.settings.webhook_secret or (legacy.read_text().strip() if legacy.exists() else None)
        hooks = WebhookSecrets(
            self.store,
            box,
            self.clock,
            window=self.settings.webhook_rotation_window,
            seeds={project: seed} if seed else None,
        )
        await hooks.ensure(project)
        if legacy.exists():
            legacy.unlink()
            log.info("the webhook secret file is now the default project's signing secret, in the store")
        return hooks

    async def _bootstrap_admin(self, project: str) -> None:
        """The operator key: PODIUM_ADMIN_KEY, or one made (and printed once) on first start."""
        key = self.settings.admin_key
        if key is not None:
            found = await self.access.lookup(key)
            if found is None:
                await self.catalog.create_key(
                    project, "admin", name="operator (PODIUM_ADMIN_KEY)", raw=key, operator=True
                )
            elif not found.operator:
                await self.catalog.set_operator(found.key_id)
            self.access.forget()
        elif not await self.catalog.has_admin_key():
            _, key = await self.catalog.create_key(project, "admin", name="operator (first start)", operator=True)
            self.new_admin_key = key
        if key is None:
            key = await self._saved_key()
        if key is not None:
            write_credentials(self.settings.credentials, self.settings.url, key)

    async def _saved_key(self) -> str | None:
        """The CLI's saved key, if it is still valid (its URL is refreshed: the port may change)."""
        try:
            saved = json.loads(self.settings.credentials.read_text())
        except (OSError, ValueError):
            return None
        key = saved.get("api_key") if isinstance(saved, dict) else None
        return key if isinstance(key, str) and await self.access.lookup(key) is not None else None

    # -- lookups shared by the routers ----------------------------------------------------------

    async def store_reachable(self) -> bool:
        """Whether the store answers within a few seconds (readiness)."""
        try:
            await asyncio.wait_for(self.catalog.ping(), 3.0)
        except Exception:
            return False
        return True

    async def version(self, ep: Endpoint) -> Version:
        """The version an endpoint points at (its route table, config and runtime)."""
        return await self.catalog.cached_version(ep.project_id, ep.version_id)

    def worker_socket(self) -> str | None:
        """Where the worker channel listens, for the local workers (None until it does)."""
        return self.channel.path

    async def endpoint_env(self, endpoint_id: str) -> dict[str, str]:
        """An endpoint's secrets, decrypted, for its workers' environment."""
        return {s.name: self.secrets.open(s.token) for s in await self.catalog.secrets(endpoint_id)}


def write_credentials(path: Path, url: str, key: str) -> None:
    """The CLI's credentials file: created with mode 600 before the key is written into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": url, "api_key": key}, f)
    os.chmod(path, 0o600)
