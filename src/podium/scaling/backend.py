"""Where workers run: what the autoscaler needs of a backend (local processes, Ray actors)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from podium.config import Settings
from podium.core.volumes import Mounted
from podium.core.workers import WorkerInfo
from podium.envs.builder import Interpreter
from podium.logs import endpoint_dir
from podium.names import WORKER_ID
from podium.sandbox import Sandboxing
from podium.scaling.resources import Resources

#: Awaited with the worker and its exit code when it ends, however it ends.
ExitCallback = Callable[[WorkerInfo, int], Awaitable[None]]
#: Where the server's worker channel listens, once it does (None: workers speak HTTP only).
WorkerSocket = Callable[[], str | None]


class Backend(Protocol):
    #: Whether its workers run sandboxed, said on start and by `podium status`.
    sandbox: Sandboxing
    #: Whether its workers run on this machine (and so may use the server's worker channel).
    same_host: bool

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
        volumes: Sequence[Mounted] = (),
    ) -> None:
        """Start the worker, given `volumes`; its exit is reported through the backend's
        ExitCallback."""

    def refusal(self, resources: Resources) -> str | None:
        """Why a worker asking `resources` can never run here, e.g. more GPUs than the machine has
        (None: it can; a cluster that decides for itself answers None)."""

    def wait_reason(self, resources: Resources) -> str | None:
        """Why such a worker cannot start now, e.g. every GPU is taken (None: it can). The
        autoscaler asks before each start; waiting jobs stay queued meanwhile."""

    def memory_mb(self, info: WorkerInfo) -> float | None:
        """Resident memory of the worker's processes in MB (None where it is not measured)."""

    def signal(self, info: WorkerInfo, sig: int) -> None:
        """SIGTERM: finish the job in hand, take no more. SIGKILL: stop now."""

    async def stop(self, info: WorkerInfo, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""

    async def shutdown(self, workers: list[WorkerInfo], grace: float) -> None:
        """Stop every worker this backend started (the server is stopping)."""


def worker_args(info: WorkerInfo, concurrency: int) -> list[str]:
    """The interpreter's arguments that run a worker (whatever starts it adds `--parent-pid`)."""
    args = [
        "-m",
        "podium.worker",
        "--endpoint",
        info.endpoint_id,
        "--worker-id",
        info.id,
        "--concurrency",
        str(concurrency),
    ]
    if info.version_id:
        args += ["--version", info.version_id]
    return args


def worker_log(settings: Settings, info: WorkerInfo) -> Path:
    """Where the worker's output goes (`<logs>/<endpoint id>/<worker id>.log`), set on `info`."""
    log_dir = endpoint_dir(settings.logs, info.endpoint_id)
    log_dir.mkdir(parents=True, exist_ok=True)
    info.log_path = log_dir / f"{WORKER_ID.check(info.id)}.log"
    return info.log_path


def worker_env(*, token: str, url: str, ping_interval: float) -> dict[str, str]:
    """What a worker reads from its environment: its key, the server's URL, its ping period."""
    return {
        "PODIUM_API_KEY": token,
        "PODIUM_URL": url,
        "PODIUM_PING_INTERVAL": str(ping_interval),
        "PYTHONUNBUFFERED": "1",
    }
