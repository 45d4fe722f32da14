"""Schedules: list an endpoint's (or the project's), add one to a route, pause, resume, remove.

A schedule is addressed by its endpoint and route (`/api/v1/endpoints/{ref}/schedules/{route}`;
the route `/`, written `-` in the path, is the endpoint's default route).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import Field

from podium.core.schedules import Listed, spec
from podium.server.admin.common import admin_caller
from podium.server.admin.models import Strict, parse
from podium.server.body import read_object
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.records import Endpoint

router = APIRouter(prefix="/api/v1", tags=["admin"])


class ScheduleIn(Strict):
    """A schedule an operator adds: `cron` (read in `timezone`) or `every` (seconds)."""

    route: str = Field(min_length=1, max_length=255)
    cron: str | None = Field(default=None, max_length=255)
    every: float | None = None
    timezone: str = Field(default="UTC", max_length=64)
    #: The job input of each fire; none: the route's defaults.
    input: Any = None
    overlap: bool = False
    #: Where each fire's job posts its final status (signed, like any job's webhook).
    webhook: str | None = Field(default=None, max_length=2048)


def iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def schedule_view(found: Listed) -> dict[str, Any]:
    """A schedule as the API, `podium schedules ls --json` and the console show it."""
    s = found.schedule
    when: dict[str, Any] = {"cron": s.cron} if s.cron is not None else {"every": s.every}
    return {
        "endpoint": found.endpoint,
        "endpoint_id": s.endpoint_id,
        "route": s.route,
        "source": s.source,
        **when,
        "timezone": s.timezone,
        "input": s.input,
        "overlap": s.overlap,
        "webhook": s.webhook,
        "paused": s.paused,
        "next_fire_at": iso(s.next_fire_at),
        "last_fire_at": iso(s.last_fire_at),
        "last_job": None if s.last_job_id is None else {"id": s.last_job_id, "status": found.last_status},
        "skipped": s.skipped,
        "last_skipped_at": iso(s.last_skipped_at),
    }


async def _views(rt: Runtime, eps: list[Endpoint]) -> JSONAnswer:
    return JSONAnswer({"schedules": [schedule_view(s) for s in await rt.scheduler.listed(eps)]})


async def _one(rt: Runtime, ep: Endpoint, route: str) -> JSONAnswer:
    found = [s for s in await rt.scheduler.listed([ep]) if s.schedule.route == route]
    return JSONAnswer(schedule_view(found[0]))


def _route(route: str) -> str:
    return "/" if route == "-" else "/" + route.strip("/")


@router.get("/schedules")
async def list_schedules(request: Request) -> JSONAnswer:
    """The project's schedules, endpoint by endpoint."""
    rt, principal = await admin_caller(request, "read", scoped=True)
    eps = [ep for ep in await rt.catalog.list_endpoints(principal.project_id) if principal.sees(ep.id)]
    return await _views(rt, eps)


@router.get("/endpoints/{ref}/schedules")
async def endpoint_schedules(request: Request, ref: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read", scoped=True)
    return await _views(rt, [await rt.access.endpoint(principal, ref)])


@router.post("/endpoints/{ref}/schedules", status_code=201)
async def add_schedule(request: Request, ref: str) -> JSONAnswer:
    """Run a route by itself: a cron expression or a period; a 422 names a bad expression or zone."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    body = parse(ScheduleIn, await read_object(request, 256 * 1024), "schedule")
    definition = spec(
        cron=body.cron,
        every=body.every,
        timezone=body.timezone,
        input=body.input,
        overlap=body.overlap,
        webhook=body.webhook,
    )
    added = await rt.scheduler.add(principal, ep, body.route, definition)
    answer = await _one(rt, ep, added.route)
    answer.status_code = 201
    return answer


@router.post("/endpoints/{ref}/schedules/{route:path}/pause")
async def pause_schedule(request: Request, ref: str, route: str) -> JSONAnswer:
    """It stops firing until resumed (a code-declared one stays paused across redeploys)."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    s = await rt.scheduler.pause(ep, _route(route))
    return await _one(rt, ep, s.route)


@router.post("/endpoints/{ref}/schedules/{route:path}/resume")
async def resume_schedule(request: Request, ref: str, route: str) -> JSONAnswer:
    """It fires again from its next tick after now (the ticks it missed are not caught up)."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    s = await rt.scheduler.resume(ep, _route(route))
    return await _one(rt, ep, s.route)


@router.delete("/endpoints/{ref}/schedules/{route:path}")
async def remove_schedule(request: Request, ref: str, route: str) -> JSONAnswer:
    """Remove an operator's schedule (one declared in code goes with a deploy that drops it)."""
    rt, principal = await admin_caller(request, "deploy", scoped=True)
    ep = await rt.access.endpoint(principal, ref)
    await rt.scheduler.remove(ep, _route(route))
    return JSONAnswer({"removed": True, "endpoint": ep.name, "route": _route(route)})
