"""API keys on every request: `Authorization: Bearer KEY`, a raw `Authorization: KEY` (RunPod
workers send that), or `x-api-key: KEY`; the operator may pick a project with `X-Podium-Project`.
What a key may do is decided by the core (`podium.core.access`); this reads it off the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from podium.core.access import Principal
from podium.store.records import Endpoint

if TYPE_CHECKING:
    from podium.server.runtime import Runtime

PROJECT_HEADER = "x-podium-project"


def presented_key(request: HTTPConnection) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, rest = auth.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else auth.strip()
    return request.headers.get("x-api-key") or None


def runtime(request: HTTPConnection) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def caller(request: HTTPConnection, role: str | None, *, scoped: bool = False) -> Principal:
    """Who is calling, allowed to act as `role` (see `Access.caller`; `scoped`: the route keeps
    an endpoint-bound key to its endpoint)."""
    return await runtime(request).access.caller(
        presented_key(request),
        role,
        project=request.headers.get(PROJECT_HEADER),
        scoped=scoped,
        client=request.client.host if request.client else None,
    )


async def endpoint_caller(request: HTTPConnection, role: str, ref: str) -> tuple[Principal, Endpoint]:
    """Who is calling, and the endpoint `ref` names among those it may see."""
    principal = await caller(request, role, scoped=True)
    return principal, await runtime(request).access.endpoint(principal, ref)
