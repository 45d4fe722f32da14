"""The environments of this server: `GET /api/v1/envs` (podium envs ls) and `POST /api/v1/envs/gc`.

Environments are shared by every project's versions, so only the server's operator sees them.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from podium.envs.inventory import EnvRecord, inventory
from podium.server.admin.common import admin_caller, require_operator
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime

router = APIRouter(prefix="/api/v1/envs", tags=["admin"])


async def _records(request: Request) -> tuple[Runtime, list[EnvRecord]]:
    rt, principal = await admin_caller(request, "admin")
    require_operator(principal, "may manage environments")
    versions, endpoints = await rt.catalog.env_users()
    return rt, inventory(rt.scaler.builds.store, versions, endpoints, await rt.catalog.env_nodes())


@router.get("")
async def list_envs(request: Request) -> JSONAnswer:
    """Every environment: Python, packages, size, the versions recording it, the endpoints
    running it, the Ray nodes holding a copy, last use."""
    _, records = await _records(request)
    return JSONAnswer({"envs": [r.as_dict() for r in records]})


@router.post("/gc")
async def collect(request: Request) -> JSONAnswer:
    """Remove the environments no endpoint's current or pending version runs in (a rollback to a
    version whose environment was removed builds it again)."""
    rt, records = await _records(request)
    builds = rt.scaler.builds
    removed = [r for r in records if not r.endpoints and not builds.building(r.env.hash)]
    for r in removed:
        await asyncio.to_thread(builds.store.remove, r.env.hash)
    return JSONAnswer({"removed": [r.as_dict() for r in removed], "freed": sum(r.env.size for r in removed)})
