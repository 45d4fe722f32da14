"""Where workers run: what the autoscaler needs of a backend (local processes, Ray actors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from podium.core.workers import WorkerInfo
from podium.envs.builder import Interpreter
from podium.scaling.resources import Resources

#: Awaited with the worker and its exit code when it ends, however it ends.
ExitCallback = Callable[[WorkerInfo, int], Awaitable[None]]


class Backend(Protocol):
    async def start(
        self,
        info: WorkerInfo,
        *,
        endpoint_name: str,
        token: str,
        concurrency: int,
        env: dict[str, str],
        interpreter: Interpreter,
        resources: Resources,
    ) -> None:
        """Start the worker; its exit is reported through the backend's ExitCallback."""

    def signal(self, info: WorkerInfo, sig: int) -> None:
        """SIGTERM: finish the job in hand, take no more. SIGKILL: stop now."""

    async def stop(self, info: WorkerInfo, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""

    async def shutdown(self, workers: list[WorkerInfo], grace: float) -> None:
        """Stop every worker this backend started (the server is stopping)."""
