"""The whole ASGI app: one router per wire surface and the console, JSON errors everywhere, the
runtime in app.state. It lives above `server` and `console`, the two layers it puts together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from podium import console
from podium._version import __version__
from podium.config import Settings
from podium.server import (
    admin,
    covalent_api,
    digitalhub_api,
    envs_api,
    errors,
    laminar_api,
    openai_api,
    ops,
    routes_api,
    runpod_api,
    worker_api,
)
from podium.server.app import CountRequests, PodiumAPI
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime


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
    # covalent_api (/fn/..., /api/v2/envs) before routes_api too; openai_api before runpod_api
    # (whose unknown /v2 paths are 404s); digitalhub_api before admin (it hands POST
    # /api/v1/projects without a `kind` to admin).
    routers = (
        ops.router,
        digitalhub_api.router,
        *admin.ROUTERS,
        envs_api.router,
        laminar_api.router,
        covalent_api.router,
        openai_api.router,
        runpod_api.router,
        worker_api.router,
        console.router,
        routes_api.router,
    )
    app.add_middleware(CountRequests, metrics=rt.metrics)
    errors.install(app)
    for router in routers:
        app.include_router(router)
    app.paths = [r.path for router in routers for r in router.routes if isinstance(r, APIRoute)]
    return app
