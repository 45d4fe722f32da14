"""The ASGI app: one router per wire surface, JSON errors everywhere, the runtime in app.state."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from podium.server.responses import JSONAnswer

from podium._version import __version__
from podium.config import Settings
from podium.server import admin, errors, laminar_api, ops, routes_api, runpod_api, worker_api
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

    app = FastAPI(
        title="Podium",
        version=__version__,
        default_response_class=JSONAnswer,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.runtime = rt
    errors.install(app)
    # laminar_api before runpod_api (/v2/endpoint/run), routes_api last (its catch-all).
    for module in (ops, admin, laminar_api, runpod_api, worker_api, routes_api):
        app.include_router(module.router)
    return app
