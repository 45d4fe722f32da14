"""The autoscaler: keeps each endpoint's workers between its min and max, driven by its queue.

It wakes on every tick and, for scale-from-zero latency, the moment a job is stored that no waiting
worker can take. Per endpoint it drains workers of versions the endpoint no longer points at,
starts workers while jobs wait (one at least while the endpoint is CREATING, to prove the version
loads), and stops workers idle longer than `idle_timeout`. A crashed worker's jobs are recovered at
once; a version whose workers cannot start puts the endpoint in ERROR with the log tail (its
waiting jobs stay queued, up to their ttl: the endpoint may be started or redeployed).

A redeploy of an endpoint that serves is health-gated: it waits as the endpoint's `pending`
version, for which one probe worker starts (whatever min_workers says) while the old version's
workers go on serving. When the probe has run the initializer the endpoint moves to that version
and the probe takes its jobs; when it fails, or passes `startup_timeout`, the version is marked
failed with the worker's error and log tail, and the endpoint stays on its version, ACTIVE.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from podium.config import Settings
from podium.core.errors import NotFound
from podium.core.volumes import Mounted, Volumes
from podium.core.workers import WorkerEvents, WorkerInfo, WorkerPool, WorkerState
from podium.dispatch.keys import SCALE_KEY, ep_key
from podium.dispatch.notify import wait_event
from podium.dispatch.queue import JobQueue
from podium.envs.builder import SERVER_PYTHON, EnvStore, Interpreter
from podium.envs.builds import Builds
from podium.logs import written_tail
from podium.metrics import Metrics
from podium.scaling.backend import Backend, WorkerSocket
from podium.scaling.backends import make_backend
from podium.scaling.policy import Load, desired
from podium.scaling.resources import Resources
from podium.store.catalog import Catalog
from podium.store.cluster import FORGET_AFTER
from podium.store.endpoints import EndpointState, scaling_columns
from podium.store.records import Endpoint, Version
from podium.store.versions import BuildState

log = logging.getLogger("podium.scaling")

#: An endpoint's secrets, decrypted, by endpoint id.
Secrets = Callable[[str], Awaitable[dict[str, str]]]

#: Workers of one version of an endpoint that may die before becoming ready before the endpoint is
#: put in ERROR (or, for a gated deploy's version, before that version is marked failed).
MAX_START_FAILURES = 3
#: Time between two passes under load (on average: see TICK_BURST), however often jobs wake it.
MIN_TICK_GAP = 0.25
#: Ticks that may start back to back before MIN_TICK_GAP spaces them.
TICK_BURST = 4
#: How often jobs past their ttl or retention are deleted.
REAP_EVERY = 5.0
#: A ready worker not heard from in this many lease periods is lost (frozen, or cut off): replaced.
SILENT_AFTER = 2
DEFAULT_STARTUP_TIMEOUT = 600.0


class Autoscaler:
    """Parameters:
    settings: the backend, the scaling defaults and the tick.
    catalog: endpoints and their versions.
    queue: the jobs that drive scaling.
    pool: builds the workers' records, given what it tells of them (this scaler: a worker
        ready, a worker that cannot start).
    metrics: where starts and readiness are measured.
    secrets: an endpoint's secrets, decrypted, for its workers' environment.
    worker_socket: where the server's worker channel listens, for workers on this machine.
    """

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        queue: JobQueue,
        pool: Callable[[WorkerEvents], WorkerPool],
        metrics: Metrics | None = None,
        secrets: Secrets | None = None,
        worker_socket: WorkerSocket = lambda: None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.catalog = catalog
        self.queue = queue
        self.pool = pool(self)
        self.backend: Backend = make_backend(settings, self._on_exit, worker_socket, catalog)
        self.backend_name = settings.backend
        #: Versions' environments: built before any of their workers starts.
        self.builds = Builds(EnvStore(settings.envs, sandboxed=settings.sandbox), catalog, self.wake)
        #: Workers that died before becoming ready, by (endpoint, version).
        self._start_failures: dict[tuple[str, str | None], int] = {}
        self._stopping: set[str] = set()
        #: Per endpoint, workers started by hand that other replicas hear from (read each pass).
        self._elsewhere: dict[str, list[WorkerInfo]] = {}
        #: Keys of exited workers still to delete (the store was unreachable then): ticks retry.
        self._spent_keys: set[str] = set()
        self._drains: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_reap = 0.0
        #: Why an endpoint's wanted workers are not started (no free GPU), for its status.
        self.waiting_for: dict[str, str] = {}
        #: What the last pass made of each endpoint's load (workers wanted, jobs, warm buffer).
        self.status: dict[str, dict[str, int]] = {}
        #: GPUs each local worker was started with; the idle one stopped to free GPUs, if any.
        self._gpus: dict[str, int] = {}
        self._making_room: str | None = None
        #: Seconds each local worker's on_exit hook may take, on top of the time it gets to drain.
        self._exit_grace: dict[str, float] = {}
        #: The error each endpoint's pass last failed with (logged once, not every tick).
        self._failing: dict[str, str] = {}
        #: An endpoint's secrets (decrypted) for its workers' environment.
        self.secrets = secrets
        # What another replica asks of workers only this one may know (see Notifier.announce).
        queue.notifier.on("stop", self._stop_announced)
        queue.notifier.on("restart", self._restart_here)
        queue.notifier.on("recycle", self._recycle_here)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="podium-autoscaler")

    def halt(self) -> None:
        """The server is stopping and no longer accepts connections: start no worker (it could
        not reach this server), and take no worker's exit for a failed start. `close` then
        stops the workers."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()

    async def close(self) -> None:
        self.halt()
        if self._task is not None:
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        workers = [w for w in self.pool.workers.values() if w.local]
        hooks = max((self._exit_grace.get(w.id, 0.0) for w in workers), default=0.0)
        await self.backend.shutdown(workers, min(self.settings.drain_grace, 10.0) + hooks)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # Under load every new job may wake us: at most TICK_BURST ticks start in any TICK_BURST *
        # MIN_TICK_GAP seconds, so ticks stay under 1 / MIN_TICK_GAP a second on average, while a job
        # arriving just after a few ticks (the one that drained the last worker, the one that saw it
        # go) is not kept waiting for the gap.
        began: deque[float] = deque([-math.inf] * TICK_BURST, maxlen=TICK_BURST)
        with self.queue.notifier.listen(SCALE_KEY) as ev:
            while True:
                began.append(loop.time())
                wait = self.settings.tick
                try:
                    await self.tick()
                    wait = await self._next_wait()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the store unreachable a while: the next tick tries again
                    log.exception("autoscaler tick failed")
                await wait_event(ev, wait)
                await asyncio.sleep(max(0.0, began[0] + TICK_BURST * MIN_TICK_GAP - loop.time()))

    async def _next_wait(self) -> float:
        """Until the next tick, or sooner when a running job's execution deadline comes first."""
        deadline = await self.queue.next_deadline()
        if deadline is None:
            return self.settings.tick
        return max(0.0, min(self.settings.tick, deadline - self.queue.clock.now()))

    def wake(self) -> None:
        self.queue.notifier.notify(SCALE_KEY)

    async def deployed(self, version: Version) -> bool:
        """A version was deployed: True when its environment must be built first (started now)."""
        return await self.builds.deployed(version)

    # -- one pass -------------------------------------------------------------------------------

    async def tick(self) -> None:
        await self._delete_spent_keys()
        await self.queue.recover()
        for held in await self.queue.time_out():
            log.info("job %s timed out on worker %s", held.id, held.worker_id)
            self.stop_job(held.worker_id, held.id)
        if time.monotonic() - self._last_reap >= REAP_EVERY:
            self._last_reap = time.monotonic()
            for held in await self.queue.reap():
                self.stop_job(held.worker_id, held.id)
            await self.pool.cluster.prune(self.queue.clock.now() - FORGET_AFTER)
        queued = await self.queue.queued_by_version()
        self._elsewhere = await self.pool.elsewhere()
        endpoints = await self.catalog.list_endpoints()
        known = {ep.id for ep in endpoints}
        for w in list(self.pool.workers.values()):
            if w.local and w.endpoint_id not in known:  # its endpoint was removed
                self._drain(w)
        for ep in endpoints:
            waiting, canary = _lanes(ep, queued.get(ep.id, {}))
            try:
                if ep.pending:
                    await self._pending(ep)
                # Jobs whose retry backoff has run out woke nobody when they became due.
                if waiting[0]:
                    self.queue.notifier.notify_one(ep_key(ep.id))
                if canary[0] and ep.rollout is not None:
                    self.queue.notifier.notify_one(ep_key(ep.id, ep.rollout.version_id))
                await self.reconcile(ep, *waiting, canary=canary)
                if self.waiting_for.get(ep.id) != ep.waiting_for:  # every replica's statuses say so
                    await self.catalog.set_waiting_for(ep.id, self.waiting_for.get(ep.id))
            except Exception as exc:  # one endpoint's failure never stops the others' pass
                if self._failing.get(ep.id) != repr(exc):
                    self._failing[ep.id] = repr(exc)
                    log.exception("autoscaling endpoint %s (%s) failed; the others go on", ep.name, ep.id)
            else:
                if self._failing.pop(ep.id, None) is not None:
                    log.info("autoscaling endpoint %s (%s) works again", ep.name, ep.id)

    async def reconcile(
        self, ep: Endpoint, queued: int, oldest_wait: float = 0.0, *, canary: tuple[int, float] = (0, 0.0)
    ) -> None:
        """Scale the endpoint's version to its queue, and a canary rollout's version to the jobs
        routed to it (each with its own workers and its own version's scaling settings); drain
        the workers of any other version, but a gated deploy's probe."""
        self.waiting_for.pop(ep.id, None)
        workers = self._heard_from([w for w in self.pool.for_endpoint(ep.id) if w.id not in self._stopping])
        workers += self._elsewhere.get(ep.id, [])  # counted like ours; every action below needs `local`
        live = ep.state in (EndpointState.CREATING, EndpointState.ACTIVE)
        current = [w for w in workers if w.version_id == ep.version_id and live]
        canaries = [w for w in workers if _canary(w, ep) and live]
        for w in workers:
            if w.local and w not in current and w not in canaries and not (live and _probes(w, ep)):
                self._drain(w)
        if not live:
            return
        await self._scale(ep, current, queued, oldest_wait)
        if ep.rollout is not None:
            version = await self.catalog.cached_version(ep.project_id, ep.rollout.version_id)
            await self._scale(ep, canaries, *canary, version=version)

    async def _scale(
        self,
        ep: Endpoint,
        current: list[WorkerInfo],
        queued: int,
        oldest_wait: float,
        *,
        version: Version | None = None,
    ) -> None:
        """Start or stop workers of one version of the endpoint: its own, or (`version`) its
        canary's, whose environment failing to build ends the rollout instead of the endpoint."""
        settings = ep.scaling() if version is None else scaling_columns(version.config)
        version_id = ep.version_id if version is None else version.id
        current = [w for w in current if await self._healthy(w, ep)]
        if version is None and ep.state == EndpointState.CREATING and any(w.ready_at is not None for w in current):
            # Started again before its workers drained: one of them is the proof the version loads.
            await self.catalog.set_state(ep.id, EndpointState.ACTIVE, only_from=EndpointState.CREATING)
        load = Load(
            queued=queued,
            oldest_wait=oldest_wait,
            running=sum(len(w.jobs) for w in current),
            workers=len(current),
            busy=sum(1 for w in current if w.jobs),
        )
        need = desired(settings, load, creating=version is None and ep.state == EndpointState.CREATING)
        if version is None:
            self.status[ep.id] = {
                "wanted_workers": need,
                "workers": load.workers,
                "idle_workers": load.workers - load.busy,
                "running_jobs": load.running,
                "queued_jobs": queued,
                "warm_buffer": ep.warm_buffer,
            }
        if need > len(current):
            env = await self.builds.status(ep.project_id, version_id)
            if env.interpreter is None:  # no worker starts before its environment is built
                if env.state == BuildState.FAILED:
                    failed = f"the environment of version {version_id} failed to build"
                    if version is None:
                        await self._set_error(ep.id, failed, env.error or "")
                    else:
                        await self._end_rollout(ep, version_id, failed)
                return
            for _ in range(need - len(current)):
                reason = self.backend.wait_reason(Resources.of(settings))
                if reason is not None:  # e.g. every GPU is taken: jobs wait, the status says why
                    self.waiting_for[ep.id] = reason
                    if queued or ep.state == EndpointState.CREATING:
                        self._make_room(ep)
                    break
                await self.spawn(ep, env.interpreter, version=version_id, settings=settings)
        surplus = len(current) - need
        now = self.pool.clock.now()
        for w in sorted(current, key=lambda w: w.idle_since):
            if surplus <= 0:
                break
            if w.local and w.state is WorkerState.IDLE and now - w.idle_since >= settings["idle_timeout"]:
                self._drain(w)
                surplus -= 1

    def _heard_from(self, workers: list[WorkerInfo]) -> list[WorkerInfo]:
        """Workers started elsewhere (`podium worker`) not heard from in SILENT_AFTER lease
        periods are dropped from status and health (their jobs come back through their leases);
        the others."""
        now = self.pool.clock.now()
        kept = []
        for w in workers:
            if not w.local and now - w.last_seen > SILENT_AFTER * self.settings.lease_seconds:
                log.info("worker %s (started elsewhere) has gone silent; forgetting it", w.id)
                self.pool.forget(w.id)
            else:
                kept.append(w)
        return kept

    def _make_room(self, ep: Endpoint) -> None:
        """Jobs (or a deploy) wait for GPUs that idle workers of other endpoints hold: stop the
        longest idle of those, one at a time, so its devices come back. min_workers keeps no GPU
        from jobs that wait; an endpoint with nothing waiting never takes another's."""
        if self._making_room in self.pool.workers or self.backend.refusal(Resources.of(ep.scaling())) is not None:
            return
        idle = [
            w
            for w in self.pool.workers.values()
            if w.local
            and w.endpoint_id != ep.id
            and w.state is WorkerState.IDLE
            and w.id not in self._stopping
            and self._gpus.get(w.id, 0) > 0
        ]
        if idle:
            w = min(idle, key=lambda w: w.idle_since)
            log.info("stopping idle worker %s to free its GPUs for %s", w.id, ep.name)
            self._making_room = w.id
            self._drain(w)

    async def _healthy(self, w: WorkerInfo, ep: Endpoint) -> bool:
        """False (and the worker is being replaced) when it is silent, stuck starting, or due to
        be recycled after the jobs it has done or the memory it holds."""
        if not w.local:
            return True
        now = self.pool.clock.now()
        if w.ready_at is None:
            return not await self._late(w, ep.project_id)
        if now - w.last_seen > SILENT_AFTER * self.settings.lease_seconds:
            log.warning("worker %s has not been heard from in %.0f s; replacing it", w.id, now - w.last_seen)
            self.pool.unhealthy(w)
            self._kill(w)
            return False
        if self.due_for_recycling(w.id, ep):
            self._drain(w)
            return False
        return True

    def due_for_recycling(self, worker_id: str, ep: Endpoint) -> bool:
        """Past max_jobs_per_worker jobs or max_worker_memory_mb (checked after each job too, so
        the worker is recycled before it takes another)."""
        w = self.pool.get(worker_id)
        if w is None or not w.local:
            return False
        if ep.max_jobs_per_worker and w.jobs_done >= ep.max_jobs_per_worker:
            return True
        limit_mb = ep.max_worker_memory_mb
        if limit_mb and (self.backend.memory_mb(w) or 0.0) > limit_mb:
            log.info("worker %s uses more than %d MB; recycling it", w.id, limit_mb)
            return True
        return False

    async def _late(self, w: WorkerInfo, project_id: str) -> bool:
        """True (and the worker is killed, its failure said) when it is still not ready past its
        version's startup_timeout."""
        assert w.version_id is not None  # workers this server starts run a version it names
        config = (await self.catalog.cached_version(project_id, w.version_id)).config
        limit = float(config.get("startup_timeout", DEFAULT_STARTUP_TIMEOUT))
        if self.pool.clock.now() - w.started_at <= limit:
            return False
        w.failure = f"the worker did not become ready within {limit:.0f} s (startup_timeout)"
        self._kill(w)
        return True

    def _kill(self, w: WorkerInfo) -> None:
        """Stop a worker at once; its jobs come back through _on_exit."""
        if w.id not in self._stopping:
            self._stopping.add(w.id)
            self.backend.signal(w, signal.SIGKILL)

    async def _pending(self, ep: Endpoint) -> None:
        """A redeploy waits while the current version serves, first for its environment (forgotten,
        the version marked failed, if the build fails), then for its probe worker, started here
        (`worker_ready` or `fail_endpoint` ends the wait). An endpoint that no longer serves
        (failed or started again meanwhile) is pointed at it at once: there is nothing to keep;
        a stopped one waits until it is started."""
        pending = ep.pending
        assert pending is not None  # the tick calls this only for an endpoint with one
        if ep.state == EndpointState.INACTIVE:
            return  # stopped meanwhile: the deploy waits until it is started
        env = await self.builds.status(ep.project_id, pending.version_id)
        version = await self.catalog.get_version(ep.project_id, pending.version_id)
        if env.interpreter is not None and version is not None:
            if ep.state != EndpointState.ACTIVE:
                await self.catalog.point_endpoint(
                    ep.project_id, ep.name, version, key_id=pending.key_id, message=pending.message
                )
                self.wake()
                return
            # One at a time: a probe being stopped is replaced once it has exited (and its exit
            # has said whether the version failed).
            probes = [w for w in self.pool.for_endpoint(ep.id) if _probes(w, ep)]
            if not probes:
                await self._probe(ep, version, env.interpreter)
            for w in probes:
                if w.ready_at is not None:  # its readiness was seen before the deploy was
                    await self._promote(ep, w)
                elif w.id not in self._stopping:
                    await self._late(w, ep.project_id)
        elif env.state == BuildState.FAILED:
            log.error(
                "endpoint %s stays on version %s: the environment of %s failed to build",
                ep.name,
                ep.version_id,
                pending.version_id,
            )
            await self.catalog.clear_pending(ep.id)

    async def _probe(self, ep: Endpoint, version: Version, interpreter: Interpreter) -> None:
        """Start the worker that proves a gated deploy's version starts. When it must wait for
        GPUs that this endpoint's own workers hold, it cannot prove anything before they stop:
        the endpoint is pointed at the version at once, as an ungated deploy is."""
        settings = scaling_columns(version.config)
        reason = self.backend.wait_reason(Resources.of(settings))
        if reason is None:
            await self.spawn(ep, interpreter, version=version.id, settings=settings)
            return
        if any(self._gpus.get(w.id, 0) for w in self.pool.for_endpoint(ep.id)):
            log.info("endpoint %s moves to version %s ungated: its own workers hold the GPUs", ep.name, version.id)
            pending = ep.pending
            assert pending is not None
            await self.catalog.point_endpoint(
                ep.project_id, ep.name, version, key_id=pending.key_id, message=pending.message
            )
            self.wake()
        else:
            self._make_room(ep)

    async def spawn(
        self,
        ep: Endpoint,
        interpreter: Interpreter = SERVER_PYTHON,
        *,
        version: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> WorkerInfo:
        """Start a worker of the endpoint's version (or of `version`, a gated deploy's, with
        that version's scaling `settings`)."""
        settings = settings or ep.scaling()
        version_id = version or ep.version_id
        config = (await self.catalog.cached_version(ep.project_id, version_id)).config
        volumes = await self._volumes(ep, config.get("volumes") or {})
        info = self.pool.new(f"w-{uuid.uuid4().hex[:12]}", ep.id, version_id, local=True)
        info.key_id, token = await self.catalog.create_key(ep.project_id, "worker", name=info.id, endpoint_id=ep.id)
        env = await self.secrets(ep.id) if self.secrets is not None else {}
        await self.backend.start(
            info,
            endpoint_name=ep.name,
            token=token,
            concurrency=settings["concurrency"],
            env=env,
            interpreter=interpreter,
            resources=Resources.of(settings),
            volumes=volumes,
        )
        self._gpus[info.id] = settings["gpus"]
        self._exit_grace[info.id] = float(config.get("exit_timeout", 0.0))
        log.info("started worker %s for %s (version %s)", info.id, ep.name, version_id)
        return info

    async def _volumes(self, ep: Endpoint, named: dict[str, str]) -> list[Mounted]:
        """The volumes the endpoint's version names; one removed since puts it in ERROR."""
        try:
            return await Volumes(self.catalog, self.settings.volumes).mounts(ep.project_id, named)
        except NotFound as exc:
            await self._set_error(ep.id, f"its workers cannot be given their volumes: {exc.detail}", "")
            raise

    def stop_job(self, worker_id: str | None, job_id: str, *, kill: bool = True) -> None:
        """A running job was cancelled or timed out: tell its worker through the stop channel,
        and with `kill` (a synchronous handler cannot be interrupted) replace a local worker.
        A worker this replica did not start may be talking to another replica: it is told too."""
        if not worker_id:
            return
        info = self._stop_here(worker_id, job_id, kill)
        if info is None or not info.local:
            self.queue.notifier.announce("stop", f"{worker_id} {job_id} {int(kill)}")

    def _stop_here(self, worker_id: str, job_id: str, kill: bool) -> WorkerInfo | None:
        info = self.pool.stop_job(worker_id, job_id)
        if info is not None and kill and info.local:
            self._kill(info)
        return info

    def _stop_announced(self, detail: str) -> None:
        worker_id, job_id, kill = detail.split(" ")
        self._stop_here(worker_id, job_id, kill == "1")

    def restart(self, endpoint_id: str) -> None:
        """Replace every worker of an endpoint (each drains; new ones start as needed), on
        whichever replica started them."""
        self._restart_here(endpoint_id)
        self.queue.notifier.announce("restart", endpoint_id)

    def _restart_here(self, endpoint_id: str) -> None:
        for w in self.pool.for_endpoint(endpoint_id):
            if w.local:
                self._drain(w)
        self.wake()

    def recycle(self, worker_id: str) -> None:
        """Replace a worker after its current job (RunPod's `refresh_worker` / `stopPod`)."""
        if not self._recycle_here(worker_id):
            self.queue.notifier.announce("recycle", worker_id)

    def _recycle_here(self, worker_id: str) -> bool:
        info = self.pool.get(worker_id)
        if info is None or not info.local:
            return False
        self._drain(info)
        self.wake()
        return True

    def _drain(self, w: WorkerInfo) -> None:
        if w.id in self._stopping:
            return
        self._stopping.add(w.id)
        self.pool.drain(w)
        grace = self.settings.drain_grace + self._exit_grace.get(w.id, 0.0)
        task = asyncio.create_task(self.backend.stop(w, grace))
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    # -- events ---------------------------------------------------------------------------------

    async def _on_exit(self, info: WorkerInfo, rc: int) -> None:
        """A worker's process ended, however it ended. Never raises (the backend's watcher runs
        it): with the store unreachable, a later tick deletes the worker's key and its jobs come
        back when their leases lapse."""
        self.pool.gone(info.id)
        self._gpus.pop(info.id, None)
        self._exit_grace.pop(info.id, None)
        intended = info.id in self._stopping
        self._stopping.discard(info.id)
        if info.key_id:
            self._spent_keys.add(info.key_id)
        try:
            await self._exited(info, rc, intended)
        except Exception as exc:
            log.warning("worker %s exited rc=%s; recording it failed: %s", info.id, rc, exc)

    async def _exited(self, info: WorkerInfo, rc: int, intended: bool) -> None:
        await self._delete_spent_keys()
        recovered = await self.queue.recover(worker_id=info.id)
        if self._closing:
            return
        log.info("worker %s exited rc=%s (recovered %d jobs)", info.id, rc, len(recovered))
        if info.ready_at is None and (info.failure is not None or not intended):
            n = self._start_failures.get((info.endpoint_id, info.version_id), 0) + 1
            self._start_failures[(info.endpoint_id, info.version_id)] = n
            if info.failure is not None or n >= MAX_START_FAILURES:
                await self.fail_endpoint(info, info.failure or f"worker exited with code {rc} before it was ready")
        self.wake()

    async def _delete_spent_keys(self) -> None:
        for key_id in list(self._spent_keys):
            await self.catalog.delete_key(key_id)
            self._spent_keys.discard(key_id)

    async def fail_endpoint(self, info: WorkerInfo, reason: str) -> None:
        """The worker's version cannot start. A gated deploy's version is marked failed with the
        reason and the worker's log tail (the endpoint keeps serving its own); the endpoint's
        own version puts it in ERROR with them. A worker started elsewhere fails it only while no
        worker has shown that the version loads (CREATING): one machine's missing package does
        not stop an endpoint that serves. A worker of a version the endpoint left fails nothing."""
        # As stored now: a deploy through another replica may be newer than this one's cache.
        ep = await self.catalog.get_endpoint(None, info.endpoint_id, fresh=True)
        if ep is None:
            return
        log_tail = written_tail(info.log_path)
        detail = f"--- worker log (last lines) ---\n{log_tail}" if log_tail else ""
        if _probes(info, ep):
            assert info.version_id is not None  # _probes: it runs the pending version
            if await self.catalog.refuse_pending(ep.id, info.version_id, f"{reason}\n{detail}".strip()):
                log.error(
                    "endpoint %s stays on version %s: version %s cannot start (%s)",
                    ep.name,
                    ep.version_id,
                    info.version_id,
                    reason,
                )
            self._start_failures.pop((ep.id, info.version_id), None)
            self.wake()
        elif _canary(info, ep):
            assert info.version_id is not None  # _canary: it runs the rollout's version
            self._start_failures.pop((ep.id, info.version_id), None)
            await self._end_rollout(ep, info.version_id, f"the canary cannot start: {reason}")
        elif info.version_id is not None and info.version_id != ep.version_id:
            log.warning(
                "worker %s of version %s (no longer deployed) could not start: %s", info.id, info.version_id, reason
            )
        elif not info.local and ep.state != EndpointState.CREATING:
            log.warning("worker %s (started elsewhere) cannot load its version: %s", info.id, reason)
        else:
            await self._set_error(info.endpoint_id, reason, detail)

    async def _end_rollout(self, ep: Endpoint, version_id: str, reason: str) -> None:
        """A canary that cannot start ends its rollout: every call goes to the endpoint's version
        again, and the history says why."""
        ended = await self.catalog.set_rollout(
            ep.id,
            None,
            version_id=version_id,
            action="abort",
            key_id=None,
            message=f"rollout aborted by Podium: {reason}",
            only_version=version_id,
        )
        if ended:
            log.error("endpoint %s: rollout of version %s aborted (%s)", ep.name, version_id, reason)
            self.wake()

    async def _set_error(self, endpoint_id: str, reason: str, detail: str) -> None:
        """ERROR with the reason (and what explains it). The jobs waiting for it stay queued
        (their status says why), until their ttl: the endpoint may be started, rolled back or
        redeployed meanwhile."""
        await self.catalog.set_state(endpoint_id, EndpointState.ERROR, error=f"{reason}\n{detail}".strip())
        for key in [k for k in self._start_failures if k[0] == endpoint_id]:
            del self._start_failures[key]
        log.error("endpoint %s is in ERROR (%s); its waiting jobs wait", endpoint_id, reason)

    async def worker_ready(self, info: WorkerInfo, ep: Endpoint) -> None:
        """A worker has run the initializer: the proof its endpoint's version loads (ACTIVE), or
        that a gated deploy's does (the endpoint moves to it, ACTIVE; the old workers drain)."""
        self._start_failures.pop((info.endpoint_id, info.version_id), None)
        if info.local and info.ready_at is not None:
            self.metrics.cold_starts.labels(info.endpoint_id).inc()
            self.metrics.start_to_ready.labels(info.endpoint_id).observe(info.ready_at - info.started_at)
        if _probes(info, ep):
            await self._promote(ep, info)
        elif info.version_id is None or info.version_id == ep.version_id:
            await self.catalog.set_state(ep.id, EndpointState.ACTIVE, only_from=EndpointState.CREATING)

    async def _promote(self, ep: Endpoint, probe: WorkerInfo) -> None:
        """The gated deploy's version has started: the endpoint moves to it, ACTIVE (unless it
        was stopped meanwhile: the deploy then waits for it to be started)."""
        if ep.state != EndpointState.ACTIVE:
            return
        pending = ep.pending
        assert pending is not None and probe.version_id is not None  # _probes: it runs the pending version
        version = await self.catalog.get_version(ep.project_id, probe.version_id)
        if version is not None:
            await self.catalog.point_endpoint(
                ep.project_id, ep.name, version, key_id=pending.key_id, message=pending.message, started=True
            )
            log.info("endpoint %s moves to version %s: worker %s is ready", ep.name, version.id, probe.id)
            self.wake()


def _probes(w: WorkerInfo, ep: Endpoint) -> bool:
    """Whether the worker runs the version a gated deploy of the endpoint waits for."""
    return ep.pending is not None and w.version_id == ep.pending.version_id and w.version_id != ep.version_id


def _canary(w: WorkerInfo, ep: Endpoint) -> bool:
    """Whether the worker runs the version of the endpoint's canary rollout."""
    return ep.rollout is not None and w.version_id == ep.rollout.version_id and w.version_id != ep.version_id


def _lanes(ep: Endpoint, queued: dict[str | None, tuple[int, float]]) -> tuple[tuple[int, float], tuple[int, float]]:
    """The endpoint's waiting jobs (how many, the oldest's wait) for its own version's workers,
    and for its canary's: those routed to the canary while a rollout is under way."""
    canary = ep.rollout.version_id if ep.rollout is not None else None
    own = [n for version, n in queued.items() if canary is None or version != canary]
    return (
        (sum(n for n, _ in own), max((oldest for _, oldest in own), default=0.0)),
        queued.get(canary, (0, 0.0)) if canary is not None else (0, 0.0),
    )
