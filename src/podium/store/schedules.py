"""Schedules as stored: one per route of an endpoint, with when it fires next and how it last did.

Firing is a compare-and-set on `next_fire_at`: the statement that moves it on matches only the
value the leader read, and runs in the transaction that stores the fire's job (`advance`). A
second leader (after a failover) or a restarted one that read the same tick changes no row, so
its job is not stored: a tick fires once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Update, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from podium import _json
from podium.clock import Clock
from podium.store.engine import Row, Store
from podium.store.projects import new_id
from podium.store.records import from_columns
from podium.store.tables import endpoints, schedules


@dataclass(frozen=True, slots=True)
class Schedule:
    """A route that runs by itself: a cron expression (in `timezone`) or a period of `every` s."""

    id: str
    project_id: str
    endpoint_id: str
    route: str
    #: "code": declared by the endpoint's current version; "api": added by an operator.
    source: str
    cron: str | None
    every: float | None
    timezone: str
    #: Each fire's job input; None: the route's defaults.
    input: Any
    overlap: bool
    #: Where each fire's job posts its final status; None: nowhere.
    webhook: str | None
    paused: bool
    next_fire_at: float
    last_fire_at: float | None
    last_job_id: str | None
    skipped: int
    last_skipped_at: float | None
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Schedule:
        raw = row["input"]
        return from_columns(cls, row, input=None if raw is None else _json.loads(raw))


@dataclass(frozen=True, slots=True)
class Spec:
    """What a schedule is (its code's declaration, or an operator's): when, with what, overlap."""

    cron: str | None
    every: float | None
    timezone: str
    input: Any
    overlap: bool
    webhook: str | None = None

    def of(self, s: Schedule) -> bool:
        """Whether `s` is this spec already."""
        return (s.cron, s.every, s.timezone, s.input, s.overlap, s.webhook) == (
            self.cron,
            self.every,
            self.timezone,
            self.input,
            self.overlap,
            self.webhook,
        )

    def columns(self) -> dict[str, Any]:
        return {
            "cron": self.cron,
            "every": self.every,
            "timezone": self.timezone,
            "input": None if self.input is None else _json.dumps(self.input),
            "overlap": self.overlap,
            "webhook": self.webhook,
        }


class Schedules:
    """The schedules table's queries."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def find(self, *, project_id: str | None = None, endpoint_id: str | None = None) -> list[Schedule]:
        q = select(schedules).order_by(schedules.c.endpoint_id, schedules.c.route)
        if project_id is not None:
            q = q.where(schedules.c.project_id == project_id)
        if endpoint_id is not None:
            q = q.where(schedules.c.endpoint_id == endpoint_id)
        async with self.store.read() as conn:
            return [Schedule.from_row(r) for r in (await conn.execute(q)).mappings().all()]

    async def due(self, now: float) -> list[Schedule]:
        """The schedules not paused whose next fire has come."""
        q = select(schedules).where(schedules.c.next_fire_at <= now, schedules.c.paused.is_(False))
        async with self.store.read() as conn:
            return [Schedule.from_row(r) for r in (await conn.execute(q.order_by(schedules.c.next_fire_at))).mappings()]

    async def add(
        self, project_id: str, endpoint_id: str, route: str, spec: Spec, *, source: str, next_fire_at: float
    ) -> bool:
        """Store a new schedule; False when the route has one already."""
        try:
            async with self.store.tx() as conn:
                await conn.execute(
                    insert(schedules).values(
                        id=new_id(),
                        project_id=project_id,
                        endpoint_id=endpoint_id,
                        route=route,
                        source=source,
                        next_fire_at=next_fire_at,
                        skipped=0,
                        paused=False,
                        created_at=self.clock.now(),
                        **spec.columns(),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def redefine(self, s: Schedule, spec: Spec, *, source: str, next_fire_at: float) -> None:
        """A schedule's new definition (its code changed): it fires on the new one from now."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(schedules)
                .where(schedules.c.id == s.id)
                .values(source=source, next_fire_at=next_fire_at, **spec.columns())
            )

    async def set_paused(self, schedule_id: str, paused: bool, next_fire_at: float | None = None) -> None:
        values: dict[str, Any] = {"paused": paused}
        if next_fire_at is not None:
            values["next_fire_at"] = next_fire_at
        async with self.store.tx() as conn:
            await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**values))

    async def remove(self, *schedule_ids: str) -> None:
        if not schedule_ids:
            return
        async with self.store.tx() as conn:
            await conn.execute(delete(schedules).where(schedules.c.id.in_(schedule_ids)))

    async def remove_orphans(self) -> None:
        """Drop the schedules of endpoints that were removed."""
        async with self.store.tx() as conn:
            await conn.execute(delete(schedules).where(schedules.c.endpoint_id.not_in(select(endpoints.c.id))))

    @staticmethod
    def advance(s: Schedule, next_fire_at: float, now: float, job_id: str) -> Update:
        """The statement that moves `s` past the tick it read, naming the job it fired: it
        changes no row when another leader fired that tick first, or the schedule was paused
        since it was read."""
        return (
            update(schedules)
            .where(schedules.c.id == s.id, schedules.c.next_fire_at == s.next_fire_at, schedules.c.paused.is_(False))
            .values(next_fire_at=next_fire_at, last_fire_at=now, last_job_id=job_id)
        )

    async def pass_over(self, s: Schedule, next_fire_at: float, *, skipped_at: float | None) -> bool:
        """Move `s` past the tick it read without a job: `skipped_at` records a skip (its
        previous job still ran); None passes over a tick quietly (its endpoint is stopped)."""
        values: dict[str, Any] = {"next_fire_at": next_fire_at}
        if skipped_at is not None:
            values.update(skipped=schedules.c.skipped + 1, last_skipped_at=skipped_at)
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(schedules)
                .where(schedules.c.id == s.id, schedules.c.next_fire_at == s.next_fire_at)
                .values(**values)
            )
            return bool(res.rowcount)
