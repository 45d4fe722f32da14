"""Usage per project, endpoint and version, rolled up by the hour for charging teams back.

The leader rolls up every `PODIUM_USAGE_ROLLUP` seconds what happened since the last mark: jobs
that ended (one each, and their execution seconds) and the lifetimes of workers as every replica
records them (`workers`), idle or busy, times what each worker's endpoint reserves (CPU cores,
GPUs, memory MB). Both are read from the store, so usage adds up across replicas; the sums and
the new mark are written in one transaction (the mark moved only if it was still the one read),
so a restart or a new leader neither loses nor counts a second twice. A worker's last seconds
before it exits, past the last roll-up, are not counted (at most one roll-up period). Hours older
than the retention (`PODIUM_USAGE_RETENTION_DAYS`, 400) are deleted.
"""

from __future__ import annotations

import importlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select, update

from podium.clock import Clock
from podium.store.engine import Store
from podium.store.tables import endpoints, jobs, usage_hours, usage_marks, workers

HOUR = 3600.0
DAY = 86400.0
#: Jobs that ended within this many seconds are left to the next roll-up (a replica may still be
#: committing one that ended just before the mark).
LAG = 2.0
#: A worker whose record was written this recently is alive now; an older record ends where it was
#: last written (its replica is gone).
ALIVE_WITHIN = 10.0
MARK = "rollup"
GROUPS = ("endpoint", "version", "day")


@dataclass
class Tally:
    jobs: int = 0
    execution: float = 0.0
    cpu: float = 0.0
    gpu: float = 0.0
    memory_mb: float = 0.0

    def add(self, other: Tally) -> None:
        self.jobs += other.jobs
        self.execution += other.execution
        self.cpu += other.cpu
        self.gpu += other.gpu
        self.memory_mb += other.memory_mb


@dataclass(frozen=True)
class Rolled:
    """What one roll-up added: worker-seconds by (project, endpoint) and resource."""

    worker_seconds: dict[tuple[str, str], Tally] = field(default_factory=dict)


def _hours(start: float, end: float) -> list[tuple[float, float]]:
    """[start, end) split at hour boundaries: (hour start, seconds in it)."""
    out = []
    while start < end:
        hour = start - start % HOUR
        upto = min(end, hour + HOUR)
        out.append((hour, upto - start))
        start = upto
    return out


class UsageMeter:
    """Parameters:
    store: where jobs, workers and the hourly usage are.
    clock: the time source.
    retention_days: hours older than this are deleted at each roll-up.
    """

    def __init__(self, store: Store, clock: Clock | None = None, *, retention_days: float = 400.0) -> None:
        self.store = store
        self.clock = clock or Clock()
        self.retention = retention_days * DAY

    async def rollup(self) -> Rolled:
        """Add what happened since the mark (the leader calls it); what it added."""
        now = self.clock.now()
        upto = now - LAG
        sums: dict[tuple[str, str, str, float], Tally] = defaultdict(Tally)
        rolled = Rolled()
        async with self.store.tx() as conn:
            mark = await conn.scalar(select(usage_marks.c.at).where(usage_marks.c.name == MARK))
            since = 0.0 if mark is None else float(mark)
            if upto <= since:
                return rolled
            # A job's version: the one it was pinned to, else its worker's, else (its worker's
            # record gone) the endpoint's current one.
            pinned = func.coalesce(jobs.c.version_id, workers.c.version_id, endpoints.c.version_id)
            ended = await conn.execute(
                select(jobs.c.project_id, jobs.c.endpoint_id, pinned, jobs.c.finished_at, jobs.c.execution_ms)
                .select_from(
                    jobs.outerjoin(workers, workers.c.id == jobs.c.worker_id).outerjoin(
                        endpoints, endpoints.c.id == jobs.c.endpoint_id
                    )
                )
                .where(jobs.c.finished_at > since, jobs.c.finished_at <= upto)
            )
            for project, endpoint, version, finished, ms in ended.all():
                t = sums[(project, endpoint, version or "", finished - finished % HOUR)]
                t.jobs += 1
                t.execution += (ms or 0) / 1000
            alive = await conn.execute(
                select(
                    workers.c.endpoint_id,
                    workers.c.version_id,
                    workers.c.started_at,
                    workers.c.seen_at,
                    endpoints.c.project_id,
                    endpoints.c.cpus,
                    endpoints.c.gpus,
                    endpoints.c.memory_mb,
                )
                .select_from(workers.join(endpoints, endpoints.c.id == workers.c.endpoint_id))
                .where(workers.c.seen_at > since)
            )
            for endpoint, version, started, seen, project, cpus, gpus, memory_mb in alive.all():
                end = upto if seen >= now - ALIVE_WITHIN else min(seen, upto)
                for hour, seconds in _hours(max(started, since), end):
                    t = Tally(cpu=seconds * cpus, gpu=seconds * gpus, memory_mb=seconds * memory_mb)
                    sums[(project, endpoint, version or "", hour)].add(t)
                    rolled.worker_seconds.setdefault((project, endpoint), Tally()).add(t)
            for (project, endpoint, version, hour), t in sums.items():
                await conn.execute(self._add(project, endpoint, version, hour, t))
            if mark is None:
                await conn.execute(insert(usage_marks).values(name=MARK, at=upto))
            else:
                moved = await conn.execute(
                    update(usage_marks).where(usage_marks.c.name == MARK, usage_marks.c.at == mark).values(at=upto)
                )
                if moved.rowcount != 1:  # another leader rolled up meanwhile: this one is undone
                    raise RuntimeError("usage was rolled up by another replica meanwhile")
            await conn.execute(delete(usage_hours).where(usage_hours.c.hour < now - self.retention))
        return rolled

    def _add(self, project: str, endpoint: str, version: str, hour: float, t: Tally) -> Any:
        """INSERT … ON CONFLICT DO UPDATE adding to the hour's sums, in the store's dialect."""
        dialect = importlib.import_module("sqlalchemy.dialects." + ("sqlite" if self.store.sqlite else "postgresql"))
        values = {
            "jobs": t.jobs,
            "execution_seconds": t.execution,
            "cpu_seconds": t.cpu,
            "gpu_seconds": t.gpu,
            "memory_mb_seconds": t.memory_mb,
        }
        stmt = dialect.insert(usage_hours).values(
            project_id=project, endpoint_id=endpoint, version_id=version, hour=hour, **values
        )
        return stmt.on_conflict_do_update(
            index_elements=["project_id", "endpoint_id", "version_id", "hour"],
            set_={k: usage_hours.c[k] + stmt.excluded[k] for k in values},
        )

    async def report(self, project_id: str, since: float, by: str) -> list[dict[str, Any]]:
        """The project's usage since `since` (Unix seconds), one row per endpoint, per endpoint
        and version, or per day (UTC, all endpoints), as `by` says."""
        u = usage_hours
        async with self.store.read() as conn:
            res = await conn.execute(
                select(
                    u.c.endpoint_id,
                    endpoints.c.name,
                    u.c.version_id,
                    u.c.hour,
                    u.c.jobs,
                    u.c.execution_seconds,
                    u.c.cpu_seconds,
                    u.c.gpu_seconds,
                    u.c.memory_mb_seconds,
                )
                .select_from(u.outerjoin(endpoints, endpoints.c.id == u.c.endpoint_id))
                .where(u.c.project_id == project_id, u.c.hour >= since - since % HOUR)
            )
            found = res.all()
        groups: dict[tuple[str, ...], Tally] = defaultdict(Tally)
        for endpoint_id, name, version, hour, n, execution, cpu, gpu, memory_mb in found:
            if by == "day":
                group: tuple[str, ...] = (time.strftime("%Y-%m-%d", time.gmtime(hour)),)
            else:
                group = (endpoint_id, name or endpoint_id) + ((version,) if by == "version" else ())
            groups[group].add(Tally(n, execution, cpu, gpu, memory_mb))
        rows = []
        for group, t in sorted(groups.items()):
            row: dict[str, Any]
            if by == "day":
                row = {"day": group[0]}
            else:
                row = {"endpoint_id": group[0], "endpoint": group[1]}
                if by == "version":
                    row["version"] = group[2]
            row |= {
                "jobs": t.jobs,
                "execution_seconds": round(t.execution, 3),
                "worker_seconds": {"cpu": round(t.cpu, 3), "gpu": round(t.gpu, 3), "memory_mb": round(t.memory_mb, 3)},
            }
            rows.append(row)
        return rows
