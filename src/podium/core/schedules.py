"""Routes that run by themselves: schedules declared in code or added by an operator, fired by
the leader as ordinary jobs.

Each tick (`Scheduler.tick`, every TICK_SECONDS on the leader) keeps the code-declared schedules
in step with each endpoint's current version (a redeploy keeps them unless the new code no longer
declares them; an operator's stay), then fires the schedules whose time has come:

- A fire is a job stored through `Calls.submit` like any other, in the transaction that moves the
  schedule's `next_fire_at` past the tick it read (a compare-and-set, `Schedules.advance`): a
  failover or a restart that reads the same tick again stores nothing, so a tick fires once.
- Ticks missed while no leader ran are not caught up: a schedule that is due fires once, then at
  its next tick after now (coalescing).
- While the previous fire's job is queued or running, a fire is skipped and counted as skipped,
  unless the schedule allows overlap. A stopped (or failed) endpoint's schedules pass their ticks
  without firing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock
from podium.core.access import Principal
from podium.core.calls import Calls, check_arguments, check_webhook
from podium.core.errors import Conflict, InvalidRequest, InvalidSchedule, NotFound, QueueFull
from podium.core.options import JobOptions
from podium.dispatch.queue import JobQueue
from podium.dispatch.states import UNFINISHED
from podium.dispatch.submit import Superseded
from podium.ids import uuid7
from podium.records import RouteRecord, ScheduleRecord
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint
from podium.store.schedules import Schedule, Schedules, Spec
from podium.timetable import Every, check_cron, next_fire, zone
from podium.timetable import InvalidSchedule as BadTimetable

log = logging.getLogger("podium.schedules")

#: How often the leader looks for schedules that are due.
TICK_SECONDS = 1.0
#: The route that addresses an endpoint's default route (a RunPod worker file's handler).
DEFAULT_ROUTE = "/"
#: Endpoint states whose schedules pass their ticks without firing.
NOT_FIRING = (EndpointState.INACTIVE, EndpointState.ERROR)


def spec(
    *,
    cron: str | None,
    every: float | None,
    timezone: str = "UTC",
    input: Any = None,
    overlap: bool = False,
    webhook: str | None = None,
) -> Spec:
    """A checked schedule definition: InvalidSchedule names the expression, zone or period."""
    if (cron is None) == (every is None):
        raise InvalidSchedule("a schedule has either a cron expression or a period (every), not both or neither")
    try:
        zone(timezone)
        if cron is not None:
            check_cron(cron, timezone)
        elif every is not None:
            Every(every)
    except BadTimetable as exc:
        raise InvalidSchedule(str(exc), code=f"invalid_{exc.field}") from None
    return Spec(cron=cron, every=every, timezone=timezone, input=input, overlap=overlap, webhook=webhook)


def declared(route: RouteRecord) -> Spec | None:
    """The schedule a route's code declares (None: none)."""
    record: ScheduleRecord | None = route.get("schedule")
    if record is None:
        return None
    return spec(
        cron=record.get("cron"),
        every=record.get("every"),
        timezone=record["timezone"],
        input=record.get("input"),
        overlap=record["overlap"],
    )


def check_routes(routes: list[RouteRecord]) -> None:
    """A deploy's route table: each declared schedule must be usable (else InvalidSchedule)."""
    for route in routes:
        try:
            declared(route)
        except InvalidSchedule as exc:
            raise InvalidSchedule(f"route {route['path']}: {exc.detail}", code=exc.code) from None


def route_path(route: str) -> str:
    """A route as schedules address it: `/path`, or `/` for the endpoint's default route."""
    return "/" + route.strip("/")


@dataclass(frozen=True)
class Listed:
    """A schedule as listed: its endpoint's name, and how its last fire's job stands (None: it
    never fired, or the job's record is gone)."""

    schedule: Schedule
    endpoint: str
    last_status: str | None


class Scheduler:
    """Parameters:
    schedules: the schedules table.
    catalog: endpoints and their versions' route tables.
    calls: how a fire's job is stored (the one call path).
    queue: how the last fire's job stands.
    clock: when ticks are due.
    """

    def __init__(self, schedules: Schedules, catalog: Catalog, calls: Calls, queue: JobQueue, clock: Clock) -> None:
        self.schedules = schedules
        self.catalog = catalog
        self.calls = calls
        self.queue = queue
        self.clock = clock

    # -- what operators do ------------------------------------------------------------------------

    async def listed(self, eps: list[Endpoint]) -> list[Listed]:
        """The schedules of `eps`, their code-declared ones as their current versions say (kept
        in step here too, so that a deploy's schedules are listed before the leader's next tick)."""
        names = {ep.id: ep.name for ep in eps}
        found = [s for s in await self.schedules.find() if s.endpoint_id in names]
        if await self._sync(eps, found):
            found = [s for s in await self.schedules.find() if s.endpoint_id in names]
        out = []
        for s in found:
            job = await self.queue.get(s.last_job_id) if s.last_job_id else None
            out.append(Listed(s, names[s.endpoint_id], None if job is None else str(job.status)))
        return out

    async def add(self, principal: Principal, ep: Endpoint, route: str, definition: Spec) -> Schedule:
        """An operator's schedule on a route of `ep` (one per route)."""
        path = route_path(route)
        target = await self.calls.target(principal, ep, None if path == DEFAULT_ROUTE else path)
        if definition.input is not None and target.route["kind"] == "route":
            if not isinstance(definition.input, dict):
                raise InvalidRequest(f"route {target.route['path']} takes keyword arguments: input must be an object")
            check_arguments(target.route, definition.input)
        if definition.webhook is not None:
            await check_webhook(definition.webhook)
        first = self._next(definition, self.clock.now())
        if not await self.schedules.add(ep.project_id, ep.id, path, definition, source="api", next_fire_at=first):
            raise Conflict(
                f"route {path} of {ep.name} has a schedule already; remove it first (podium schedules rm)",
                code="schedule_exists",
            )
        return await self.get(ep, path)

    async def get(self, ep: Endpoint, route: str) -> Schedule:
        path = route_path(route)
        found = next((s for s in await self.schedules.find(endpoint_id=ep.id) if s.route == path), None)
        if found is None:
            raise NotFound("schedule", f"{ep.name} {path}", detail=f"endpoint {ep.name} has no schedule on {path}")
        return found

    async def pause(self, ep: Endpoint, route: str) -> Schedule:
        s = await self.get(ep, route)
        await self.schedules.set_paused(s.id, True)
        return await self.get(ep, route)

    async def resume(self, ep: Endpoint, route: str) -> Schedule:
        """Fires again from its next tick after now (the ticks it was paused for are not caught up)."""
        s = await self.get(ep, route)
        if s.paused:
            await self.schedules.set_paused(s.id, False, self._next(_spec_of(s), self.clock.now()))
        return await self.get(ep, route)

    async def remove(self, ep: Endpoint, route: str) -> None:
        s = await self.get(ep, route)
        if s.source == "code":
            raise Conflict(
                f"the schedule of {ep.name} {s.route} is declared in its code: pause it, or deploy code "
                "that no longer declares it",
                code="schedule_in_code",
            )
        await self.schedules.remove(s.id)

    # -- what the leader does ---------------------------------------------------------------------

    async def tick(self) -> None:
        """Keep code schedules in step with their endpoints' versions, then fire those due."""
        # Schedules first: one read before the endpoints cannot belong to an endpoint created
        # after them, so a schedule missing its endpoint is one whose endpoint was removed.
        found = await self.schedules.find()
        eps = {ep.id: ep for ep in await self.catalog.list_endpoints()}
        orphans = [s.id for s in found if s.endpoint_id not in eps]
        await self.schedules.remove(*orphans)
        if await self._sync(list(eps.values()), found):
            found = await self.schedules.find()
        now = self.clock.now()
        for s in found:
            ep = eps.get(s.endpoint_id)
            if ep is not None and not s.paused and s.next_fire_at <= now:
                try:
                    await self._fire(s, ep, now)
                except Exception:  # one schedule's trouble does not keep the others from firing
                    log.exception("schedule %s %s could not fire", ep.name, s.route)

    async def _fire(self, s: Schedule, ep: Endpoint, now: float) -> None:
        after = self._next(_spec_of(s), s.next_fire_at)
        upcoming = after if after > now else self._next(_spec_of(s), now)  # missed ticks: once
        if ep.state in NOT_FIRING:
            await self.schedules.pass_over(s, upcoming, skipped_at=None)
            return
        if not s.overlap and s.last_job_id and await self._running(s.last_job_id):
            if await self.schedules.pass_over(s, upcoming, skipped_at=now):
                log.info("schedule %s %s skipped: job %s still runs", ep.name, s.route, s.last_job_id)
            return
        principal = Principal(key_id=f"schedule:{s.id}", project_id=s.project_id, role="invoke")
        job_id = uuid7()
        try:
            target = await self.calls.target(principal, ep, None if s.route == DEFAULT_ROUTE else s.route)
            await self.calls.submit(
                principal,
                ep,
                target.route,
                {} if s.input is None else s.input,
                kind="schedule",
                job_id=job_id,
                options=JobOptions(webhook=s.webhook),
                guard=Schedules.advance(s, upcoming, now, job_id),
            )
        except Superseded:  # another leader fired this tick
            return
        except (NotFound, QueueFull, InvalidRequest) as exc:  # route gone, queue full, webhook refused
            if await self.schedules.pass_over(s, upcoming, skipped_at=now):
                log.warning("schedule %s %s skipped: %s", ep.name, s.route, exc.detail)

    async def _running(self, job_id: str) -> bool:
        job = await self.queue.get(job_id)
        return job is not None and job.status in UNFINISHED

    async def _sync(self, eps: list[Endpoint], found: list[Schedule]) -> bool:
        """Code schedules as the endpoints' current versions declare them; True if any changed."""
        by_endpoint: dict[str, dict[str, Schedule]] = {}
        for s in found:
            by_endpoint.setdefault(s.endpoint_id, {})[s.route] = s
        changed = False
        now = self.clock.now()
        for ep in eps:
            mine = by_endpoint.get(ep.id, {})
            routes = (await self.catalog.cached_version(ep.project_id, ep.version_id)).routes
            wanted: dict[str, Spec] = {}
            for r in routes:
                try:
                    definition = declared(r)
                except InvalidSchedule as exc:  # stored before deploys checked schedules
                    log.warning("endpoint %s route %s: %s", ep.name, r["path"], exc.detail)
                    continue
                if definition is not None:
                    wanted[r["path"]] = definition
            gone = [old.id for old in mine.values() if old.source == "code" and old.route not in wanted]
            await self.schedules.remove(*gone)
            changed |= bool(gone)
            for path, definition in wanted.items():
                current = mine.get(path)
                if current is None:
                    await self.schedules.add(
                        ep.project_id, ep.id, path, definition, source="code", next_fire_at=self._next(definition, now)
                    )
                    changed = True
                elif current.source != "code" or not definition.of(current):
                    await self.schedules.redefine(
                        current, definition, source="code", next_fire_at=self._next(definition, now)
                    )
                    changed = True
        return changed

    @staticmethod
    def _next(definition: Spec, after: float) -> float:
        return next_fire(definition.cron, definition.every, definition.timezone, after)


def _spec_of(s: Schedule) -> Spec:
    return Spec(cron=s.cron, every=s.every, timezone=s.timezone, input=s.input, overlap=s.overlap, webhook=s.webhook)
