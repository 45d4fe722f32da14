"""The `local` worker backend: one subprocess per worker, logs to files under $PODIUM_HOME/logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence

from podium import channel, sandbox
from podium.config import Settings
from podium.core.volumes import Mounted
from podium.core.workers import WorkerInfo
from podium.envs.builder import SERVER_PYTHON, Interpreter
from podium.scaling.backend import ExitCallback, WorkerSocket, worker_args, worker_env, worker_log
from podium.scaling.cpus import CpuPool, machine_cores, thread_env
from podium.scaling.forkserver import ForkServers, Sandboxed
from podium.scaling.gpus import GpuPool, detect
from podium.scaling.resources import Resources
from podium.worker.link import ServerLink
from podium.worker.runtime import CORES_ENV, MEMORY_ENV, unpack

log = logging.getLogger("podium.scaling")


def group_rss_mb(pgid: int) -> float:
    """Resident memory of a worker's process group in MB (Linux /proc; 0 where unavailable)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 of stat: the process group
                continue
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


class LocalBackend:
    """Spawns `python -m podium.worker` processes and reports their exit.

    Parameters:
        settings: where the server listens and where logs go.
        on_exit: awaited with the worker and its exit code when a process ends, however it ends.
        worker_socket: where the server's worker channel (`server/worker_channel.py`) listens,
            asked at each start: None while it does not, and its workers speak HTTP only.
    """

    #: Its workers run on this machine: they can reach the server's worker channel.
    same_host = True

    def __init__(self, settings: Settings, on_exit: ExitCallback, worker_socket: WorkerSocket) -> None:
        self.settings = settings
        self.on_exit = on_exit
        self.worker_socket = worker_socket
        self._watchers: set[asyncio.Task[None]] = set()
        #: Spawns workers, or forks them from their version's pre-imported parent.
        self.forks = ForkServers(settings)
        self.sandbox = sandbox.sandboxing(settings.sandbox)
        (log.info if self.sandbox.on else log.warning)("local %s", self.sandbox.status)
        self.gpus = GpuPool(detect())
        self.cpus = CpuPool(machine_cores())
        if self.gpus.devices:
            log.info("GPUs for local workers: %s", ", ".join(self.gpus.devices))

    def refusal(self, resources: Resources) -> str | None:
        return self.gpus.refusal(resources.gpus)

    def memory_mb(self, info: WorkerInfo) -> float | None:
        return None if info.process is None else group_rss_mb(info.process.pid)

    def wait_reason(self, resources: Resources) -> str | None:
        return self.gpus.wait_reason(resources.gpus)

    def _devices(self, info: WorkerInfo, resources: Resources) -> dict[str, str]:
        """The worker's own GPUs, as its environment names them. Where the machine has GPUs,
        a worker asking none gets `CUDA_VISIBLE_DEVICES=""`: it sees no device, so it cannot
        take memory on one another worker owns. Without GPUs the environment is left alone."""
        devices = self.gpus.take(info.id, resources.gpus)
        if not self.gpus.devices:
            return {}
        if devices:
            log.info("worker %s gets GPU %s", info.id, ",".join(devices))
        # nvidia-smi numbers devices in PCI bus order; CUDA's default order may differ.
        return {
            "CUDA_VISIBLE_DEVICES": ",".join(devices),
            "CUDA_DEVICE_ORDER": os.environ.get("CUDA_DEVICE_ORDER", "PCI_BUS_ID"),
        }

    async def start(
        self,
        info: WorkerInfo,
        *,
        endpoint_name: str,
        token: str,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        interpreter: Interpreter = SERVER_PYTHON,
        resources: Resources = Resources(),
        volumes: Sequence[Mounted] = (),
    ) -> None:
        """Spawn the worker on `interpreter` (the version's environment, or the server's Python);
        `env` (the endpoint's secrets) joins its environment."""
        log_path = worker_log(self.settings, info)
        settings = worker_env(token=token, url=self.settings.url, ping_interval=self.settings.ping_interval)
        settings.update(self._devices(info, resources))
        settings.update(thread_env(resources.cpus, env or {}))
        cores = self.cpus.take(info.id, resources.cpus)
        if cores:
            settings[CORES_ENV] = ",".join(map(str, cores))
        channel_path = self.worker_socket()
        if channel_path is not None:
            settings[channel.ENV] = channel_path
        if interpreter.env is None:  # the server's Python: Podium from where the server has it
            settings["PYTHONPATH"] = os.pathsep.join(map(str, sandbox.server_pythonpath()))
        cmd = [interpreter.python, *worker_args(info, concurrency)]
        mounts, where = sandbox.volume_settings(volumes, boxed=self.sandbox.on)
        settings.update(where)
        boxed: Sandboxed | None = None
        try:
            if self.sandbox.on:
                boxed = await self._box(info, token, interpreter, resources, mounts)
                if resources.memory_mb and boxed.limits.address_limit:
                    settings[MEMORY_ENV] = str(resources.memory_mb)
            else:
                # Unboxed, it watches the server to exit with it (a box dies with its parent).
                settings["PODIUM_HOME"] = str(self.settings.home.resolve())
                cmd += ["--parent-pid", str(os.getpid())]
            child_env = interpreter.environ(sandbox.worker_environ(env or {}, settings))
            info.process = await self.forks.start(
                info, cmd, env=child_env, log_path=log_path, interpreter=interpreter, boxed=boxed
            )
        except BaseException:  # nothing started: its devices and cores are free again
            self.gpus.release(info.id)
            self.cpus.release(info.id)
            if boxed is not None:
                boxed.limits.release()
            raise
        if boxed is not None:
            log.info("worker %s sandboxed: %s", info.id, boxed.limits.describe())
        task = asyncio.create_task(self._watch(info))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _box(
        self,
        info: WorkerInfo,
        token: str,
        interpreter: Interpreter,
        resources: Resources,
        volumes: list[sandbox.Mount],
    ) -> Sandboxed:
        """The worker's box: its version's bundle, unpacked here first (the box shows it
        read-only), its volumes, and its limits."""
        bundle = None
        if info.version_id:
            link = ServerLink(self.settings.url, token, info.endpoint_id, info.id)
            try:
                bundle = await asyncio.to_thread(
                    unpack, link, self.settings.home.resolve() / "cache" / "bundles", info.version_id
                )
            finally:
                link.close()
        box = sandbox.Box(
            python=interpreter.python,
            env=interpreter.env,
            bundle=bundle,
            channel=self.worker_socket(),
            gpus=resources.gpus > 0,
            volumes=volumes,
        )
        limits = sandbox.Limits(info.id, memory_mb=resources.memory_mb, gpus=resources.gpus)
        limits.prepare()
        return Sandboxed(box, limits)

    async def _watch(self, info: WorkerInfo) -> None:
        rc = await info.process.wait()
        # The worker leads its own process group: take down whatever it left behind.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(info.process.pid, signal.SIGKILL)
        self.gpus.release(info.id)
        self.cpus.release(info.id)
        self.forks.exited(info)
        await self.on_exit(info, rc)

    def signal(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        """SIGTERM goes to the worker (it drains); SIGKILL to its whole process group."""
        proc = info.process
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if sig == signal.SIGKILL:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)

    async def stop(self, info: WorkerInfo, grace: float) -> None:
        """SIGTERM (finish the current job, take no more), then SIGKILL after `grace` seconds."""
        proc = info.process
        if proc is None or proc.returncode is not None:
            return
        self.signal(info, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            self.signal(info, signal.SIGKILL)
            await proc.wait()

    async def shutdown(self, workers: list[WorkerInfo], grace: float) -> None:
        await asyncio.gather(*(self.stop(w, grace) for w in workers if w.local))
        for task in list(self._watchers):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await self.forks.close()
