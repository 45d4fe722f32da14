"""Running the server in this process: uvicorn with a shutdown that releases held long-polls."""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import Any

from podium.config import Settings
from podium.server.runtime import Runtime


def run(settings: Settings, on_started: Callable[[Runtime], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; `on_started` is called once the runtime is up."""
    import uvicorn

    from podium.asgi import create_app

    runtime = Runtime(settings)

    def started() -> None:
        # What start-up made (modules, routes, the store's engine) lives as long as the server:
        # out of the collector's full passes, whose pauses over it were the call path's p99.
        gc.collect()
        gc.freeze()
        if on_started is not None:
            on_started(runtime)

    # uvicorn has no timeout for reading a request's headers or body (its keep-alive timeout
    # only covers the time between requests), so a client trickling bytes holds a connection
    # as long as it likes. Exposed beyond a trusted network, Podium goes behind a reverse proxy
    # that sets one (docs/cluster.md, "In front of the server").
    config = uvicorn.Config(
        create_app(settings, runtime, on_started=started),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=5,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # Answer held long-polls now, so shutdown is not held up; and start no worker while
            # connections drain: it could not reach a server that no longer listens.
            runtime.queue.close()
            runtime.scaler.halt()
            await super().shutdown(sockets)

    Server(config).run()
