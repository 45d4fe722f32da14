"""The ASGI app's own parts: request counting, and hot routes answered ahead of FastAPI
(`podium.asgi` assembles the app from these and the routers)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.metrics import Metrics, surface
from podium.server.hotpath import HotPaths
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
