"""The ASGI app: one router per wire surface, JSON errors everywhere, the runtime in app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium import console
from podium._version import __version__
from podium.config import Settings
from podium.metrics import Metrics, surface
from podium.server import (
    admin,
    covalent_api,
    digitalhub_api,
    envs_api,
    errors,
    laminar_api,
    ops,
    routes_api,
    runpod_api,
    worker_api,
)
from podium.server.hotpath import HotPaths
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.server.user_content import Sandbox


class CountRequests:
    """Counts every HTTP request by surface, method and status (a pure ASGI middleware: it does
    not buffer streaming answers)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.request(surface(scope["path"]), scope["method"], str(status)).inc()


class PodiumAPI(FastAPI):
    """FastAPI, with the hot routes answered in front of it: ahead of its middleware stack and of
    FastAPI's own per-request work (its OpenTelemetry checks cost more than a hot route's routing);
    every answer that may carry user content is sandboxed (`podium.server.user_content`)."""

    def __init__(self, metrics: Metrics, user_content_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.user_content_url = user_content_url
        #: Path templates of every route (set once the routers are included).
        self.paths: list[str] = []
        self._outer: Sandbox | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._outer is None:
            hot = HotPaths(self._whole, [*self.paths, "/docs", "/openapi.json"], self.metrics)
            self._outer = Sandbox(hot, self.user_content_url)
        scope["app"] = self
        await self._outer(scope, receive, send)

    async def _whole(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    runtime: Runtime | None = None,
    on_started: Callable[[], None] | None = None,
) -> FastAPI:
    rt = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        if on_started is not None:
            on_started()
        try:
            yield
        finally:
            await rt.close()

    app = PodiumAPI(
        rt.metrics,
        rt.settings.user_content_url,
        title="Podium",
        version=__version__,
        default_response_class=JSONAnswer,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = rt
    # laminar_api before runpod_api (/v2/endpoint/run), routes_api last (its catch-all);
    # covalent_api (/fn/..., /api/v2/envs) before routes_api too; digitalhub_api before admin (it
    # hands POST /api/v1/projects without a `kind` to admin).
    routers = (ops.router, digitalhub_api.router, *admin.ROUTERS, envs_api.router, laminar_api.router,
               covalent_api.router, runpod_api.router, worker_api.router, console.router, routes_api.router)
    app.add_middleware(CountRequests, metrics=rt.metrics)
    errors.install(app)
    for router in routers:
        app.include_router(router)
    app.paths = [r.path for router in routers for r in router.routes if isinstance(r, APIRoute)]
    return app
