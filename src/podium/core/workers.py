"""The workers of every endpoint and what each is doing: the only owner of worker state.

The worker protocol (take, done, stream, ping, the stop channel) and the scaler (a worker spawned,
draining, unhealthy, gone; a job to stop) change a worker's record here and nowhere else, on the
one injectable clock the queue uses. Records live in memory, where the replica that hears from
a worker acts on them; every second what changed is written to the store (`flush`), so status
and health, on any replica, read every worker of the installation (`view`). Local workers die with
the server that spawned them; a worker started by hand re-appears on its next take or ping.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from podium import _json
from podium.bounded import Bounded
from podium.clock import Clock
from podium.core.errors import NotFound, WorkerGone
from podium.dispatch.jobs import Job
from podium.dispatch.keys import ep_key, stop_key
from podium.dispatch.notify import wait_event
from podium.dispatch.queue import JobQueue
from podium.records import Batching
from podium.store.catalog import Catalog
from podium.store.cluster import Cluster
from podium.store.records import Endpoint, RecordedWorker

#: A worker not heard from in this many lease periods is no longer counted (as the scaler does).
SILENT_AFTER = 2


class WorkerState(StrEnum):
    STARTING = "STARTING"  #: process spawned, not yet asking for work
    IDLE = "IDLE"  #: ready, holding no job
    RUNNING = "RUNNING"  #: holding at least one job
    DRAINING = "DRAINING"  #: told to stop: finishes what it holds, takes nothing new
    UNHEALTHY = "UNHEALTHY"  #: reported a failure, or its pings stopped


@dataclass
class WorkerInfo:
    id: str
    endpoint_id: str
    version_id: str | None
    started_at: float
    state: WorkerState = WorkerState.STARTING
    ready_at: float | None = None
    last_seen: float = 0.0
    idle_since: float = 0.0
    jobs: set[str] = field(default_factory=set)
    #: Spawned by this server (it owns the process) rather than attached from elsewhere.
    local: bool = False
    log_path: Path | None = None
    key_id: str | None = None
    process: Any = None
    #: Where a worker placed on a Ray cluster runs: its node's address and its actor (else None).
    node: str | None = None
    actor_id: str | None = None
    failure: str | None = None
    #: Jobs this worker must stop (cancelled while running); handed out by the job-stop channel.
    stop: set[str] = field(default_factory=set)
    #: Jobs it has finished (for recycling after max_jobs_per_worker).
    jobs_done: int = 0
    #: The replica that records it (set by WorkerPool).
    replica_id: str = ""
    #: How a local worker's process began: "spawn" (a new interpreter) or "fork" (from its
    #: version's pre-imported parent, scaling/forkserver.py).
    started_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "version_id": self.version_id,
            "state": self.state.value,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "jobs": sorted(self.jobs),
            "jobs_done": self.jobs_done,
            "start_to_ready_s": None if self.ready_at is None else round(self.ready_at - self.started_at, 3),
            "pid": self.process.pid if self.process is not None else None,
            "local": self.local,
            "node": self.node,
            "actor_id": self.actor_id,
            "replica": self.replica_id,
            "placement": self.placement(),
            "failure": self.failure,
            "started_by": self.started_by,
        }

    def placement(self) -> dict[str, Any]:
        """Where it runs, as far as this replica knows: a Ray node and actor, or a process here."""
        if self.actor_id is not None:
            return {"node": self.node, "actor_id": self.actor_id}
        if self.process is not None:
            return {"host": socket.gethostname(), "pid": self.process.pid, "started_by": self.started_by}
        return {}

    def row(self) -> dict[str, Any]:
        """Its row in the store's `workers` table."""
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "version_id": self.version_id,
            "replica_id": self.replica_id,
            "state": self.state.value,
            "owned": self.local,
            "started_at": self.started_at,
            "ready_at": self.ready_at,
            "seen_at": self.last_seen,
            "jobs_done": self.jobs_done,
            "placement": _json.dumps(self.placement()),
            "failure": self.failure,
        }


def recorded_view(w: RecordedWorker, jobs: list[str]) -> dict[str, Any]:
    """A worker recorded by another replica, shaped as WorkerInfo.as_dict."""
    placement = w.placement
    return {
        "id": w.id,
        "endpoint_id": w.endpoint_id,
        "version_id": w.version_id,
        "state": w.state,
        "started_at": w.started_at,
        "ready_at": w.ready_at,
        "jobs": jobs,
        "jobs_done": w.jobs_done,
        "start_to_ready_s": None if w.ready_at is None else round(w.ready_at - w.started_at, 3),
        "pid": placement.get("pid"),
        "local": w.owned,
        "node": placement.get("node"),
        "actor_id": placement.get("actor_id"),
        "started_by": placement.get("started_by"),
        "replica": w.replica_id,
        "placement": placement,
        "failure": w.failure,
    }


@dataclass(frozen=True)
class Result:
    """A job-done post, as its transport read it (`server/worker_results.py`): a progress
    update, or the job's output or error."""

    progress: bool = False
    output: Any = None
    error: str | None = None
    error_info: dict[str, Any] | None = None
    retryable: bool = False
    #: The worker asks to be replaced after this job (RunPod's `refresh_worker`).
    stop_pod: bool = False


class WorkerEvents(Protocol):
    """What the pool tells whoever runs the workers (the autoscaler)."""

    async def worker_ready(self, info: WorkerInfo, ep: Endpoint) -> None:
        """A worker asked for work the first time (its endpoint may become ACTIVE)."""

    async def fail_endpoint(self, info: WorkerInfo, reason: str) -> None:
        """A worker started elsewhere reported that it cannot load its version."""


class WorkerPool:
    """Parameters:
    queue: the jobs workers take and finish.
    catalog: endpoints (which version each runs now).
    clock: the one time source of worker records and job leases.
    lease: seconds a taken job stays assigned without a heartbeat.
    cluster: where worker records are shared with the other replicas.
    replica_id: this replica's, on the records it writes.
    events: told when a worker becomes ready or cannot start.
    """

    def __init__(
        self,
        queue: JobQueue,
        catalog: Catalog,
        clock: Clock,
        *,
        lease: float,
        cluster: Cluster | None = None,
        replica_id: str = "",
        events: WorkerEvents | None = None,
    ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.clock = clock
        self.lease = lease
        self.cluster = cluster or Cluster(queue.store)
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.workers: dict[str, WorkerInfo] = {}
        #: What was last written to the store of each worker (`flush` writes only changes).
        self._saved: dict[str, dict[str, Any]] = {}
        self._exited: list[str] = []
        #: Workers known to have exited: a request of theirs still in flight must not revive them.
        self._gone: Bounded[str, None] = Bounded()
        self.events = events
        #: The store's records of workers, per endpoint, when last read for a `view`.
        self._recorded: dict[str | None, tuple[float, list[RecordedWorker]]] = {}

    # -- records --------------------------------------------------------------------------------

    def new(self, worker_id: str, endpoint_id: str, version_id: str | None, *, local: bool) -> WorkerInfo:
        """Record a worker being started."""
        now = self.clock.now()
        info = WorkerInfo(
            worker_id,
            endpoint_id,
            version_id,
            started_at=now,
            last_seen=now,
            idle_since=now,
            local=local,
            replica_id=self.replica_id,
        )
        self.workers[info.id] = info
        return info

    def get(self, worker_id: str) -> WorkerInfo | None:
        return self.workers.get(worker_id)

    def for_endpoint(self, endpoint_id: str) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if w.endpoint_id == endpoint_id]

    def is_gone(self, worker_id: str) -> bool:
        return worker_id in self._gone

    async def view(self, endpoint_id: str | None = None, *, recorded_within: float = 0.0) -> list[dict[str, Any]]:
        """Every live worker of the installation (of one endpoint, or all): this replica's own
        records as they are now, the others' as last written by the replica that heard from them
        (read again unless read less than `recorded_within` seconds ago)."""
        now = self.clock.now()
        since = now - SILENT_AFTER * self.lease
        read_at, recorded = self._recorded.get(endpoint_id, (0.0, []))
        if now - read_at >= recorded_within:
            recorded = await self.cluster.workers(endpoint_id, seen_after=since)
            self._recorded[endpoint_id] = (now, recorded)
        rows = {r.id: r for r in recorded}
        mine = [
            w
            for w in self.workers.values()
            if (endpoint_id is None or w.endpoint_id == endpoint_id)
            and (w.local or w.last_seen > since)
            # A worker started by hand may have moved on to another replica: the newer word wins.
            and not (w.id in rows and rows[w.id].seen_at > w.last_seen)
        ]
        for worker_id in [*(w.id for w in mine), *(r for r in rows if r in self._gone)]:
            rows.pop(worker_id, None)  # ours as they are now; exited ones, gone before the next flush
        held = await self.queue.held_by_workers(list(rows)) if rows else {}
        return [w.as_dict() for w in mine] + [recorded_view(r, held.get(r.id, [])) for r in rows.values()]

    async def elsewhere(self) -> dict[str, list[WorkerInfo]]:
        """Per endpoint, the workers started by hand that only other replicas hear from (a
        `podium worker` pointed at another replica or at the load balancer), as records to count,
        never to act on: they take this installation's jobs as much as the ones heard from here."""
        since = self.clock.now() - SILENT_AFTER * self.lease
        rows = [
            r
            for r in await self.cluster.workers(None, seen_after=since)
            if not r.owned and r.id not in self.workers and r.id not in self._gone
        ]
        held = await self.queue.held_by_workers([r.id for r in rows]) if rows else {}
        found: dict[str, list[WorkerInfo]] = {}
        for r in rows:
            found.setdefault(r.endpoint_id, []).append(
                WorkerInfo(
                    r.id,
                    r.endpoint_id,
                    r.version_id,
                    started_at=r.started_at,
                    state=WorkerState(r.state),
                    ready_at=r.ready_at,
                    last_seen=r.seen_at,
                    jobs=set(held.get(r.id, [])),
                    replica_id=r.replica_id,
                )
            )
        return found

    async def counts(self, endpoint_id: str) -> dict[str, int]:
        out = {"initializing": 0, "idle": 0, "running": 0, "draining": 0, "unhealthy": 0}
        for w in await self.view(endpoint_id):
            state = w["state"]
            out["initializing" if state == WorkerState.STARTING else state.lower()] += 1
        out["ready"] = out["idle"]
        return out

    async def flush(self) -> None:
        """Write what changed about this replica's workers since the last flush."""
        changed = []
        for w in list(self.workers.values()):
            row = w.row()
            if self._saved.get(w.id) != row:
                changed.append(row)
        exited, self._exited = self._exited, []
        if not changed and not exited:
            return
        try:
            await self.cluster.save_workers(changed, exited)
        except Exception:
            self._exited.extend(exited)  # tried again at the next flush
            raise
        for row in changed:
            self._saved[row["id"]] = row
        for worker_id in exited:
            self._saved.pop(worker_id, None)

    def check(self, worker_id: str, ep: Endpoint) -> None:
        """NotFound for a worker id of another endpoint (no acting on others' workers)."""
        info = self.workers.get(worker_id)
        if info is not None and info.endpoint_id != ep.id:
            raise NotFound("worker", worker_id)

    def _attach(self, worker_id: str, endpoint_id: str, version: str | None = None) -> WorkerInfo:
        """The worker's record; a worker started elsewhere is recorded on first sight, with the
        version it says it runs (one that says none takes whatever version is current)."""
        info = self.workers.get(worker_id)
        if info is None:
            info = self.new(worker_id, endpoint_id, version, local=False)
        elif info.version_id is None and not info.local:
            info.version_id = version
        return info

    def forget(self, worker_id: str) -> None:
        """A worker started elsewhere went silent: drop its record (it re-appears if it calls again)."""
        self.workers.pop(worker_id, None)

    # -- what the scaler decides ------------------------------------------------------------------

    def drain(self, info: WorkerInfo) -> None:
        """Take nothing new; a long-poll it holds ends now."""
        info.state = WorkerState.DRAINING
        self.queue.notifier.notify(ep_key(info.endpoint_id))

    def unhealthy(self, info: WorkerInfo, reason: str | None = None) -> None:
        info.state = WorkerState.UNHEALTHY
        if reason is not None:
            info.failure = reason

    def gone(self, worker_id: str) -> WorkerInfo | None:
        """The worker's process has exited: forget it, and refuse its late requests."""
        self._gone.put(worker_id, None)
        self._exited.append(worker_id)
        return self.workers.pop(worker_id, None)

    def stop_job(self, worker_id: str, job_id: str) -> WorkerInfo | None:
        """Tell a worker, through its stop channel, to drop a job (cancelled or timed out). The
        stopped job posts nothing, so it is released here: the worker is idle again."""
        info = self.workers.get(worker_id)
        if info is None:
            return None
        self._released(info, job_id)
        info.stop.add(job_id)
        self.queue.notifier.notify(stop_key(worker_id))
        return info

    # -- the worker protocol ----------------------------------------------------------------------

    async def take(
        self,
        worker_id: str,
        ep: Endpoint,
        *,
        limit: int,
        wait: float,
        alive: Callable[[], Awaitable[bool]],
        version: str | None = None,
        batch: Mapping[str, Batching] | None = None,
    ) -> list[dict[str, Any]]:
        """Claim up to `limit` jobs, waiting at most `wait` seconds for one; the jobs as the
        worker receives them. `alive` is asked after a wait, before claiming and after: a worker
        that hung up meanwhile gets nothing, and what was claimed for it goes back. `version`:
        the one a worker started elsewhere runs; once the endpoint has left it, WorkerGone
        tells that worker to stop (the scaler drains the workers it started itself; a worker
        that does not say its version gets no jobs of another). `batch`: the worker's batched
        routes (a job of one comes with the route's other queued jobs, `JobQueue.take_wait`)."""
        if self.is_gone(worker_id):
            raise WorkerGone(f"worker {worker_id} has exited; start a new one")
        info = self._attach(worker_id, ep.id, version)
        if version is not None and not info.local and info.version_id not in _serving(ep):
            self.drain(info)
            raise WorkerGone(
                f"endpoint {ep.name} moved to version {ep.version_id}; this worker runs "
                f"{info.version_id} and stops (start it again to run {ep.version_id})",
                code="version_retired",
            )
        now = self.clock.now()
        info.last_seen = now
        if info.ready_at is None:
            info.ready_at = info.idle_since = now
            if info.state is WorkerState.STARTING:
                info.state = WorkerState.IDLE
            if self.events is not None:
                await self.events.worker_ready(info, ep)
                # A gated deploy's first worker may have just made its version the endpoint's.
                ep = await self.catalog.get_endpoint(ep.project_id, ep.id) or ep
        if not self._may_take(info, ep):
            # Hold the poll as a real one would be held, so a RunPod worker does not spin on 204s.
            await self.queue.hold(wait)
            return []

        canary = _canary(ep)

        async def still_there() -> bool:
            """Asked at every wake-up: a redeploy, a drain or a rollout's step may have come while
            it waited (a rollout started or ended changes which jobs the worker may take)."""
            if self.is_gone(worker_id) or not await alive():
                return False
            now_ep = await self.catalog.get_endpoint(ep.project_id, ep.id)
            return now_ep is not None and self._may_take(info, now_ep) and _canary(now_ep) == canary

        taken = await self.queue.take_wait(
            ep.id,
            worker_id,
            lease=self.lease,
            timeout=wait,
            limit=limit,
            alive=still_there,
            batch=batch,
            version=info.version_id,
            canary=canary,
        )
        info.jobs.update(job.id for job in taken)
        if info.jobs and info.state is WorkerState.IDLE:
            info.state = WorkerState.RUNNING
        if taken and info.local and info.jobs_done == 0 and len(info.jobs) == len(taken):
            # A fresh worker's first jobs: part of their wait was its start-up.
            await self.queue.note_cold_start(taken, info.started_at, info.ready_at or now)
        return [self._job(job) for job in taken]

    @staticmethod
    def _may_take(info: WorkerInfo, ep: Endpoint) -> bool:
        """Draining workers and workers of a version the endpoint left take nothing new."""
        if info.state is WorkerState.DRAINING:
            return False
        return info.version_id is None or info.version_id in _serving(ep)

    def _job(self, job: Job) -> dict[str, Any]:
        """A taken job as its worker receives it."""
        given: dict[str, Any] = {
            "id": job.id,
            # Stored as JSON text, sent as is: decoding it only to encode it again cost the
            # server as much as the rest of a take for an input of a thousand floats.
            "input": _json.raw(job.input_json),
            "podium": {"route": job.route, "attempt": job.attempt, "kind": job.kind},
        }
        if job.webhook:
            given["webhook"] = job.webhook
        if job.policy is not None:
            given["policy"] = job.policy
        given.update(self.queue.worker_fields(job.secret))
        return given

    async def done(self, worker_id: str, ep: Endpoint, job_id: str, result: Result) -> None:
        """A job's progress, output or error. Posts for a job the worker no longer holds change
        nothing (progress races the result; a cancelled job may still report)."""
        if result.progress:
            await self.queue.progress(job_id, worker_id, result.output, endpoint_id=ep.id)
            return
        await self.queue.finish(
            job_id,
            worker_id,
            output=result.output,
            error=result.error,
            error_info=result.error_info,
            retryable=result.retryable,
            endpoint_id=ep.id,
        )
        info = self.workers.get(worker_id)
        if info is not None:
            self._released(info, job_id)

    def _released(self, info: WorkerInfo, job_id: str) -> None:
        if job_id in info.jobs:
            info.jobs.discard(job_id)
            info.jobs_done += 1
        if not info.jobs:
            info.idle_since = self.clock.now()
            if info.state is WorkerState.RUNNING:
                info.state = WorkerState.IDLE

    async def stream(self, worker_id: str, ep: Endpoint, job_id: str, value: Any) -> None:
        await self.queue.append_chunk(job_id, worker_id, value, endpoint_id=ep.id)

    async def ping(
        self,
        worker_id: str,
        ep: Endpoint,
        job_ids: list[str],
        *,
        unhealthy: str | None = None,
        version: str | None = None,
    ) -> None:
        """A heartbeat: extends the leases of the jobs the worker lists. `unhealthy`: the worker
        says it cannot serve, and why."""
        if self.is_gone(worker_id):
            return
        info = self._attach(worker_id, ep.id, version)
        info.last_seen = self.clock.now()
        if unhealthy is not None:
            self.unhealthy(info, unhealthy)
            if info.ready_at is None and not info.local and self.events is not None:
                await self.events.fail_endpoint(info, unhealthy)
        await self.queue.heartbeat(worker_id, job_ids, lease=self.lease, endpoint_id=ep.id)

    async def stop_requests(self, worker_id: str, ep: Endpoint, wait: float) -> list[str]:
        """The stop channel (a long-poll): ids of cancelled jobs the worker still runs."""
        if self.is_gone(worker_id):
            return []
        info = self._attach(worker_id, ep.id)
        with self.queue.notifier.listen(stop_key(worker_id)) as ev:
            if not info.stop:
                await wait_event(ev, wait)
        ids, info.stop = sorted(info.stop), set()
        return ids


def _canary(ep: Endpoint) -> str | None:
    """The version of the endpoint's canary rollout, if one is under way."""
    return None if ep.rollout is None else ep.rollout.version_id


def _serving(ep: Endpoint) -> tuple[str, ...]:
    """The versions whose workers take the endpoint's jobs: its own, and a canary's."""
    return (ep.version_id,) if ep.rollout is None else (ep.version_id, ep.rollout.version_id)
