"""The call path's busiest requests, answered ahead of FastAPI's routing and middleware.

Every job costs a submit (/run, /runsync, a route call) and a worker exchange (job-take,
job-done); matching a path against every router and passing each message through seven middleware
layers cost more per request than storing the job. These few routes are matched here, in front of
the whole app, by one regex each and answered by the very handler functions FastAPI registers, so
the OpenAPI description, the other routes and the answers are the same either way: errors go
through `errors.answer` (a bug is a logged JSON 500, as CatchAll makes it), and each request is
counted as CountRequests counts the others.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from podium.core.errors import InvalidRequest
from podium.metrics import Metrics, surface
from podium.server import errors, routes_api, runpod_api, worker_api

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class HotRoute:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    #: The handler's query parameters, with the converter of each (int or str).
    query: dict[str, Callable[[str], Any]]
    #: The metrics label of its requests (`podium.metrics.surface`).
    surface: str


def hot(method: str, path: str, handler: Handler) -> HotRoute:
    """A route whose `{name}` segments become the handler's keyword arguments, as in FastAPI."""
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    regex = regex.replace("(?P<route>[^/]+)", "(?P<route>.+)")  # `{route:path}`
    pattern = re.compile(f"^{regex}$")
    hints = typing.get_type_hints(handler)
    query: dict[str, Callable[[str], Any]] = {
        name: int if int in _types(hints.get(name)) else str
        for name in inspect.signature(handler).parameters
        if name != "request" and name not in pattern.groupindex
    }
    return HotRoute(method, pattern, handler, query, surface(path))


def _types(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


ROUTES = (
    hot("POST", "/v2/{endpoint_id}/runsync", runpod_api.runsync),
    hot("POST", "/v2/{endpoint_id}/run", runpod_api.run),
    hot("GET", "/v2/{endpoint_id}/status/{job_id}", runpod_api.status),
    hot("GET", "/v2/{endpoint_id}/job-take/{worker_id}", worker_api.job_take),
    hot("POST", "/v2/{endpoint_id}/job-done/{worker_id}/{job_id}", worker_api.job_done),
    hot("GET", "/v2/{endpoint_id}/ping/{worker_id}", worker_api.ping),
    hot("POST", "/{endpoint}/{route}", routes_api.call_route),
)


def first_segments(paths: Iterable[str]) -> frozenset[str]:
    """The literal first segments of route paths (`/api/v1/jobs` -> `api`)."""
    return frozenset(p.split("/")[1] for p in paths if p[1:2] not in ("", "{"))


class HotPaths:
    """The outermost ASGI app: answers the ROUTES itself, hands everything else to the app.

    Parameters:
        paths: the path templates of the app's routes. A path one of them spells out literally
            (`/v2/endpoint/run`) is that route's, never a hot one's; nor is a POST whose first
            segment starts other routes (`api`, `v1`, `console`, …) a route call.
        metrics: where answered requests are counted.
    """

    def __init__(self, app: ASGIApp, paths: list[str], metrics: Metrics) -> None:
        self.app = app
        self.literal = frozenset(p for p in paths if "{" not in p)
        self.surfaces = first_segments(paths)
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            for route in ROUTES:
                if route.method == method:
                    match = route.pattern.match(path)
                    if match is not None and not self._elsewhere(route, path):
                        await self._serve(route, match.groupdict(), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    def _elsewhere(self, route: HotRoute, path: str) -> bool:
        """Whether the path is another route's, though the hot route's pattern matches it."""
        if path in self.literal:
            return True
        return route.handler is routes_api.call_route and path.split("/")[1] in self.surfaces

    async def _serve(self, route: HotRoute, params: dict[str, str], scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        method, path = scope["method"], scope["path"]
        try:
            if scope["query_string"]:
                for name, convert in route.query.items():
                    raw = request.query_params.get(name)
                    if raw is not None:
                        params[name] = _convert(name, raw, convert)
            response = await route.handler(request, **params)
        except Exception as exc:
            response = errors.answer(exc, method, path) or errors.bug(method, path)
        try:
            await response(scope, receive, send)
        finally:
            self.metrics.request(route.surface, method, str(response.status_code)).inc()


def _convert(name: str, raw: str, convert: Callable[[str], Any]) -> Any:
    try:
        return convert(raw)
    except ValueError:
        raise InvalidRequest(f"query: {name}: not a valid {convert.__name__}") from None
