"""Running the server in this process: uvicorn with a shutdown that releases held long-polls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from podium.config import Settings
from podium.server.runtime import Runtime


def run(settings: Settings, on_started: Callable[[Runtime], None] | None = None) -> None:
    """Serve until SIGINT/SIGTERM; `on_started` is called once the runtime is up."""
    import uvicorn

    from podium.server.app import create_app

    runtime = Runtime(settings)
    config = uvicorn.Config(
        create_app(settings, runtime, on_started=(lambda: on_started(runtime)) if on_started else None),
        host=settings.host, port=settings.port, log_level="warning", access_log=False,
        loop="auto", http="auto", timeout_graceful_shutdown=5,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            runtime.queue.close()  # answer held long-polls now, so shutdown is not held up
            await super().shutdown(sockets)

    Server(config).run()
