"""Which workers exist, for which endpoint and version, and what each is doing.

Kept in memory: local workers die with the server that spawned them, and a worker started by hand
re-appears here on its next take or ping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


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
    state: WorkerState = WorkerState.STARTING
    started_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    last_seen: float = field(default_factory=time.time)
    idle_since: float = field(default_factory=time.time)
    jobs: set[str] = field(default_factory=set)
    #: Spawned by this server (it owns the process) rather than attached from elsewhere.
    local: bool = False
    log_path: Path | None = None
    key_id: str | None = None
    process: Any = None
    failure: str | None = None
    #: Jobs this worker must stop (cancelled while running); handed out by the job-stop channel.
    stop: set[str] = field(default_factory=set)
    #: Jobs it has finished (for recycling after max_jobs_per_worker).
    jobs_done: int = 0

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
        }


class Registry:
    def __init__(self) -> None:
        self.workers: dict[str, WorkerInfo] = {}
        #: Workers known to have exited: a request of theirs still in flight must not revive them.
        self._gone: dict[str, None] = {}

    def add(self, info: WorkerInfo) -> WorkerInfo:
        self.workers[info.id] = info
        return info

    def get(self, worker_id: str) -> WorkerInfo | None:
        return self.workers.get(worker_id)

    def remove(self, worker_id: str) -> WorkerInfo | None:
        self._gone[worker_id] = None
        if len(self._gone) > 10_000:
            del self._gone[next(iter(self._gone))]
        return self.workers.pop(worker_id, None)

    def is_gone(self, worker_id: str) -> bool:
        return worker_id in self._gone

    def attach(self, worker_id: str, endpoint_id: str) -> WorkerInfo:
        """The worker's record; a worker started elsewhere is recorded on first sight."""
        info = self.workers.get(worker_id)
        if info is None:
            info = self.add(WorkerInfo(worker_id, endpoint_id, None))
        return info

    def for_endpoint(self, endpoint_id: str) -> list[WorkerInfo]:
        return [w for w in self.workers.values() if w.endpoint_id == endpoint_id]

    def seen(self, worker_id: str, endpoint_id: str) -> tuple[WorkerInfo, bool]:
        """Note a worker's sign of life; returns (info, first time ready)."""
        now = time.time()
        info = self.attach(worker_id, endpoint_id)
        info.last_seen = now
        became_ready = info.ready_at is None
        if became_ready:
            info.ready_at = now
            info.idle_since = now
            if info.state is WorkerState.STARTING:
                info.state = WorkerState.IDLE
        return info, became_ready

    def took(self, info: WorkerInfo, job_ids: list[str]) -> None:
        info.jobs.update(job_ids)
        if info.jobs and info.state is WorkerState.IDLE:
            info.state = WorkerState.RUNNING

    def released(self, worker_id: str, job_id: str) -> None:
        info = self.workers.get(worker_id)
        if info is None:
            return
        if job_id in info.jobs:
            info.jobs.discard(job_id)
            info.jobs_done += 1
        if not info.jobs:
            info.idle_since = time.time()
            if info.state is WorkerState.RUNNING:
                info.state = WorkerState.IDLE

    def counts(self, endpoint_id: str) -> dict[str, int]:
        out = {"initializing": 0, "idle": 0, "running": 0, "draining": 0, "unhealthy": 0}
        for w in self.for_endpoint(endpoint_id):
            key = {WorkerState.STARTING: "initializing"}.get(w.state, w.state.value.lower())
            out[key] += 1
        out["ready"] = out["idle"]
        return out
