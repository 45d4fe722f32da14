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

    def refusal(self, resources: Resources) -> str | None:
        """Why a worker asking `resources` can never run here, e.g. more GPUs than the machine has
        (None: it can; a cluster that decides for itself answers None)."""

    def wait_reason(self, resources: Resources) -> str | None:
        """Why such a worker cannot start now, e.g. every GPU is taken (None: it can). The
        autoscaler asks before each start; waiting jobs stay queued meanwhile."""

    def signal(self, info: WorkerInfo, sig: int) -> None:
        """SIGTERM: finish the job in hand, take no more. SIGKILL: stop now."""

    async def stop(self, info: WorkerInfo, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""

    async def shutdown(self, workers: list[WorkerInfo], grace: float) -> None:
        """Stop every worker this backend started (the server is stopping)."""
