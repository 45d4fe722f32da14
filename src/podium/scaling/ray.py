"""The `ray` worker backend: each worker is a named actor on an existing Ray cluster.

The actor runs the same `python -m podium.worker` process a local worker is, as its child on
the node Ray placed it on, so the worker runtime, its HTTP link to the server (at
`Settings.worker_url`) and its SIGTERM drain are unchanged; the actor's method returns the exit
code, which the backend awaits to report the exit. An actor killed (`ray kill`, a lost node)
surfaces as RayActorError: reported as an exit by SIGKILL, so the worker is replaced and its jobs
recover through their leases. The worker's output is collected from the actor into the same log
file a local worker writes, so `podium logs` and the ERROR log tail work alike.

Actors are owned by this server's Ray driver (not detached): if the server dies, Ray ends them.
Ray is imported only here, and only when this backend is chosen.

Sandboxing (`podium.sandbox`) is decided per node: where the node has a working bwrap,
the worker runs in a box as a local worker does (its bundle, fetched once per node and version
into the node's cache, shown read-only), with its memory limit; elsewhere it runs as before, its
bundle in the same cache. Each worker's log, and the server's, say which it got.

Version environments are per node: before the actor starts a worker of a version with
requirements, it builds that version's environment on its own node (`environment`), with the
local backend's builder, cache key and lock, under the node's PODIUM_NODE_HOME; once per node and
requirement set, whichever endpoint asks. The build's log joins the version's build log on the
server, the store records which nodes hold which environment (`podium envs ls`), and a node that
cannot build fails the worker with the installer's error: never the actor's own Python instead.
Versions without requirements run on the Python the actor runs on (which has Podium, or it could
not run the actor).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium import sandbox
from podium.config import Settings
from podium.core.volumes import Mounted
from podium.core.workers import WorkerInfo
from podium.envs.builder import SERVER_PYTHON, EnvBuildError, EnvStore, Interpreter
from podium.errors import ConfigError
from podium.logs import stamp
from podium.sandbox import BoxedProcess, Sandboxing
from podium.scaling.backend import ExitCallback, worker_args, worker_env, worker_log
from podium.scaling.cpus import thread_env
from podium.scaling.resources import Resources
from podium.worker.link import ServerLink
from podium.worker.runtime import MEMORY_ENV, unpack

log = logging.getLogger("podium.scaling")

#: The Ray namespace Podium's actors are named in (`ray.get_actor(name, namespace="podium")`).
NAMESPACE = "podium"
#: Seconds one collection of a worker's output waits for something new.
OUTPUT_WAIT = 1.0
#: Bytes of output an actor keeps for the server when it is not collected in time.
OUTPUT_KEEP = 4 * 2**20
#: Seconds to wait for a killed actor's end to be reported before giving up on it.
KILL_WAIT = 30.0
INSTALL_HINT = "the ray backend needs Ray: pip install 'podium[ray]'"

#: Tries to join a reachable cluster before its workers fail, and the pause between them (seconds).
JOIN_TRIES = 3
JOIN_PAUSE = 2.0

#: Told (environment hash, Ray node id, node address) when a worker starts in a node's copy of
#: an environment: the store records which nodes hold which.
NodeEnvCallback = Callable[[str, str, str], Awaitable[None]]


def import_ray() -> Any:
    """The `ray` module, or a ConfigError saying how to install it."""
    # The server's own SIGTERM handling stands: Ray's crash handler (read at import) would print a
    # stack trace on every stop.
    os.environ.setdefault("RAY_DISABLE_FAILURE_SIGNAL_HANDLER", "1")
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def actor_name(endpoint_name: str, worker_id: str) -> str:
    """What operators and `ray.get_actor` find a worker by."""
    return f"podium-{endpoint_name}-{worker_id}"


def actor_options(resources: Resources) -> dict[str, Any]:
    """Ray's reservation for one worker: `num_cpus`, `num_gpus`, and `memory` in bytes (none when 0)."""
    options: dict[str, Any] = {"num_cpus": resources.cpus, "num_gpus": resources.gpus}
    if resources.memory_mb:
        options["memory"] = resources.memory_mb * 2**20
    return options


def node_home() -> str:
    """Where a node keeps what it caches for workers: the bundles they fetch from the server
    (their PODIUM_HOME) and the environments built there (`envs/`). PODIUM_NODE_HOME in the
    node's environment (that of `ray start`), else `$TMPDIR/podium-ray`."""
    return os.environ.get("PODIUM_NODE_HOME") or os.path.join(tempfile.gettempdir(), "podium-ray")


@dataclass(frozen=True)
class NodeBuild:
    """What a node made of a version's environment."""

    node_id: str
    #: The node's copy (None: it could not be built, and `error` says why).
    interpreter: Interpreter | None
    #: Whether this call built it (False: the node had it, or another worker built it meanwhile).
    built: bool
    #: The build's part of the node's log for the environment.
    log: bytes = b""
    error: str | None = None


def reachable(address: str, timeout: float = 5.0) -> None:
    """ConnectionError unless `address` (host:port, or ray://host:port) accepts a connection: Ray
    itself would retry an unreachable cluster for minutes, while workers wait."""
    if address == "auto":  # the cluster of this machine, found by Ray (which fails fast without one)
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from None


class WorkerActor:
    """One worker process, on the node Ray placed this actor on (an async actor: `run` awaits
    the process while `output` and `signal` are served)."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | BoxedProcess | None = None
        self.buffer = bytearray()
        self.more = asyncio.Event()
        self.finished = False
        self.stopping = False

    async def where(self) -> str:
        """The address of this actor's node."""
        import ray

        node_ip: Callable[[], str] = ray.util.get_node_ip_address
        return node_ip()

    async def sandboxing(self, wanted: bool) -> Sandboxing:
        """Whether workers on this node run sandboxed."""
        return sandbox.sandboxing(wanted)

    async def environment(self, wanted: Interpreter, version: str, sandboxed: bool) -> NodeBuild:
        """The version's environment on this node: found, or built here with the server's
        builder (its cache key, its lock: one build per node and requirement set, however many
        workers wait for it), in a box where `sandboxed` asks and this node's bwrap works."""
        import ray

        assert wanted.env is not None and wanted.requirements is not None  # a version with requirements
        node_id: str = ray.get_runtime_context().get_node_id()
        key = wanted.env.name
        store = EnvStore(Path(node_home()) / "envs", sandboxed=sandboxed)
        found = store.interpreter(key)
        if found is not None:
            return NodeBuild(node_id, found, built=False)
        logged = store.log_path(key)
        start = logged.stat().st_size if logged.exists() else 0
        node_ip: Callable[[], str] = ray.util.get_node_ip_address
        try:
            found = await asyncio.to_thread(store.build, key, wanted.requirements, version, node_ip())
        except EnvBuildError as exc:
            return NodeBuild(node_id, None, built=True, log=_read_from(logged, start), error=exc.message)
        log = _read_from(logged, start)
        return NodeBuild(node_id, found, built=bool(log), log=log)

    async def bundle(self, url: str, token: str, endpoint_id: str, worker_id: str, version_id: str) -> Path:
        """The version's bundle, unpacked in this node's cache unless it already is: fetched once
        per node and version, and shown read-only to a boxed worker, as on the local backend."""
        link = ServerLink(url, token, endpoint_id, worker_id)
        try:
            return await asyncio.to_thread(unpack, link, Path(node_home()).resolve() / "cache" / "bundles", version_id)
        finally:
            link.close()

    async def run(
        self,
        interpreter: Interpreter,
        args: list[str],
        env: dict[str, str],
        boxed: bool = False,
        memory_mb: int = 0,
        volumes: Sequence[tuple[str, Path, str]] = (),
        bundle: Path | None = None,
    ) -> int:
        """Run the worker to its end and return its exit code: on the version's environment as
        built on this node (`environment`), or, for a version without requirements, on this
        actor's own Python (the server's means nothing here); in a box when `boxed` (this node's
        bwrap works: see `sandboxing`), shown its `bundle`."""
        if interpreter.env is None:
            interpreter = Interpreter(sys.executable)
        mounts, where = sandbox.volume_settings(volumes, boxed=boxed)
        settings = {**env, **where, "PODIUM_HOME": node_home()}
        if interpreter.env is None:
            settings["PYTHONPATH"] = os.pathsep.join(map(str, sandbox.server_pythonpath()))
        child_env = interpreter.environ(sandbox.worker_environ({}, settings))
        if "CUDA_VISIBLE_DEVICES" in os.environ:  # the GPUs Ray gave this actor, whatever `env` says
            child_env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        gpus = len([d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d])
        limits = sandbox.Limits(f"ray-{os.getpid()}", memory_mb=memory_mb, gpus=gpus)
        try:
            if self.stopping:  # told to stop before it started
                return 0
            if boxed:
                limits.prepare()
                if memory_mb and limits.address_limit:
                    child_env[MEMORY_ENV] = str(memory_mb)
                box = sandbox.Box(
                    python=interpreter.python, env=interpreter.env, bundle=bundle, gpus=limits.gpus > 0, volumes=mounts
                )
                self.proc = await sandbox.spawn(
                    box, [interpreter.python, *args], env=child_env, out=asyncio.subprocess.PIPE, limits=limits
                )
            else:
                self.proc = await asyncio.create_subprocess_exec(
                    interpreter.python,
                    *args,
                    "--parent-pid",
                    str(os.getpid()),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                    env=child_env,
                    start_new_session=True,
                )
            assert self.proc.stdout is not None
            while chunk := await self.proc.stdout.read(65536):
                self.buffer += chunk
                del self.buffer[:-OUTPUT_KEEP]
                self.more.set()
            return await self.proc.wait()
        finally:
            limits.release()
            self.finished = True
            self.more.set()

    async def output(self, wait: float) -> tuple[bytes, bool]:
        """What the worker wrote since the last call (waiting up to `wait` seconds for some), and
        whether that was the last of it."""
        if not self.buffer and not self.finished:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.more.wait(), wait)
        data = bytes(self.buffer)
        self.buffer.clear()
        self.more.clear()
        return data, self.finished

    async def signal(self, sig: int) -> None:
        """SIGTERM: the worker finishes its job in hand and exits."""
        self.stopping = True
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)


def _read_from(path: Path, offset: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read()


@dataclass
class _Placed:
    """A worker's actor, as this server knows it."""

    name: str
    handle: Any
    resources: Resources
    #: Set when the worker has ended (before its exit is reported).
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class RayBackend:
    """Places workers as named actors on the Ray cluster at `settings.ray_address` (else
    RAY_ADDRESS, else the one running on this machine); never starts a cluster of its own.

    Parameters:
        settings: the cluster's address, the URL workers reach the servers at, where logs go.
        on_exit: awaited with the worker and its exit code when it ends, however it ends.
        on_node_env: awaited when a worker starts in a node's copy of its environment.
    """

    #: Its workers run on the cluster's nodes: they speak HTTP.
    same_host = False

    def __init__(self, settings: Settings, on_exit: ExitCallback, on_node_env: NodeEnvCallback) -> None:
        self.settings = settings
        self.on_exit = on_exit
        self.on_node_env = on_node_env
        self._ray: Any = None
        self._actor_class: Any = None
        self._connecting = asyncio.Lock()
        #: Joining the cluster: begun by the first worker start (only the leading replica starts
        #: workers), ended by `shutdown` (this replica stops leading, or stops).
        self._joined: concurrent.futures.Future[Any] | None = None
        self._placed: dict[str, _Placed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sandbox = (
            Sandboxing(
                True,
                "workers are sandboxed on the Ray nodes that have bubblewrap (each worker's log says whether it is)",
            )
            if settings.sandbox
            else sandbox.sandboxing(False)
        )
        if settings.public_url is None and settings.url.startswith(("http://127.", "http://localhost")):
            log.warning(
                "workers on Ray reach this server at %s: set PODIUM_PUBLIC_URL when the cluster has other machines",
                settings.worker_url,
            )

    def _join_in_background(self) -> concurrent.futures.Future[Any]:
        """Join the cluster as a driver, in a thread of its own (ray.init from the main thread
        would also replace the server's SIGTERM handler)."""
        joined: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def join() -> None:
            try:
                joined.set_result(self._join())
            except Exception as exc:
                log.error("%s", exc)
                joined.set_exception(exc)

        threading.Thread(target=join, name="podium-ray-join", daemon=True).start()
        return joined

    def _join(self) -> Any:
        ray = import_ray()
        address = self.settings.ray_address or "auto"
        reachable(address)
        # Ray warns that it left the server's SIGTERM handler alone (not the main thread): noise.
        ray_log = logging.getLogger("ray._private.worker")
        level = ray_log.level
        ray_log.setLevel(logging.ERROR)
        try:
            # A cluster that accepts connections may still refuse a driver a moment (a Ray Client
            # server starting the process that serves it, on a busy head): a few tries.
            for attempt in range(1, JOIN_TRIES + 1):
                try:
                    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
                    break
                except Exception as exc:
                    with contextlib.suppress(Exception):
                        ray.shutdown()
                    if attempt == JOIN_TRIES:
                        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {exc}") from exc
                    log.warning("joining the Ray cluster at %s failed (%s); trying again", address, exc)
                    time.sleep(JOIN_PAUSE)
        finally:
            ray_log.setLevel(level)
        log.info(
            "workers run on the Ray cluster at %s; they reach this server at %s", address, self.settings.worker_url
        )
        self._actor_class = ray.remote(WorkerActor)
        return ray

    def refusal(self, resources: Resources) -> str | None:
        """The cluster decides what it can place (a worker it cannot place fails at its
        startup_timeout, saying what it asked for)."""
        return None

    def wait_reason(self, resources: Resources) -> str | None:
        return None

    def memory_mb(self, info: WorkerInfo) -> float | None:
        """Not measured: Ray's own memory monitor watches its nodes."""
        return None

    async def _connect(self) -> Any:
        """The `ray` module once joined; a failed join is tried again (the cluster may be back)."""
        async with self._connecting:
            if self._joined is None or (self._joined.done() and self._joined.exception() is not None):
                self._joined = self._join_in_background()
            self._ray = await asyncio.wrap_future(self._joined)
            return self._ray

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
        """Create the worker's actor with the endpoint's resources; `env` (the endpoint's
        secrets) joins the worker's environment on its node, and `volumes` (under
        PODIUM_VOLUMES_ROOT, which every node mounts) are given to it there."""
        worker_log(self.settings, info)
        try:
            await self._connect()
        except (ConnectionError, ConfigError) as exc:
            info.failure = str(exc)
            self._follow(self.on_exit(info, 1))
            return
        name = actor_name(endpoint_name, info.id)
        try:
            handle = self._actor_class.options(
                name=name, namespace=NAMESPACE, max_restarts=0, **actor_options(resources)
            ).remote()
        except Exception as exc:  # e.g. a reservation Ray refuses
            info.failure = f"Ray did not accept the worker's actor: {exc}"
            self._follow(self.on_exit(info, 1))
            return
        info.actor_id = handle._actor_id.hex()
        placed = self._placed[info.id] = _Placed(name, handle, resources)
        # The key and secrets go as `run`'s arguments, never the actor's: Ray keeps those to restart it.
        child_env = {
            **(env or {}),
            **thread_env(resources.cpus, env or {}),
            **worker_env(token=token, url=self.settings.worker_url, ping_interval=self.settings.ping_interval),
        }
        shared = [tuple(v) for v in volumes]
        launch = (interpreter, worker_args(info, concurrency), child_env, resources.memory_mb, shared)
        self._follow(self._watch(info, placed, launch))

    def _follow(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch(self, info: WorkerInfo, placed: _Placed, launch: tuple[Any, ...]) -> None:
        try:
            rc = await self._run(info, placed, launch)
        except Exception:  # whatever went wrong here, the worker's exit is still reported
            log.exception("following worker %s on Ray failed", info.id)
            rc = 1
        finally:
            placed.ended.set()
            self._placed.pop(info.id, None)
        with contextlib.suppress(Exception):  # the actor may be gone already
            self._ray.kill(placed.handle, no_restart=True)
        await self.on_exit(info, rc)

    async def _run(self, info: WorkerInfo, placed: _Placed, launch: tuple[Any, ...]) -> int:
        """The worker's exit code; its output appended to its log meanwhile."""
        ray = self._ray
        assert info.log_path is not None
        try:
            info.node = await placed.handle.where.remote()  # returns once Ray has placed the actor
            boxing: Sandboxing = await placed.handle.sandboxing.remote(self.settings.sandbox)
            self._note(info, f"on node {info.node}, {boxing.status}", level="info" if boxing.on else "warning")
            interpreter, args, env, memory_mb, shared = launch
            if interpreter.requirements is not None:
                interpreter = await self._environment(info, placed, interpreter)
                if interpreter is None:
                    return 1
            bundle = None
            if boxing.on and info.version_id:
                bundle = await placed.handle.bundle.remote(
                    self.settings.worker_url, env["PODIUM_API_KEY"], info.endpoint_id, info.id, info.version_id
                )
            done = placed.handle.run.remote(interpreter, args, env, boxing.on, memory_mb, shared, bundle)
            with info.log_path.open("ab") as out:
                finished = False
                while not finished:
                    data, finished = await placed.handle.output.remote(OUTPUT_WAIT)
                    out.write(data)
                    out.flush()
            return int(await done)
        except ray.exceptions.RayActorError as exc:
            self._note(info, f"the Ray actor {placed.name} ended: {str(exc).splitlines()[0]}")
            if info.node is None and info.failure is not None:  # stopped while waiting for a node
                r = placed.resources
                info.failure += (
                    f"; Ray never placed its actor: no node had {r.cpus:g} CPUs, {r.gpus} GPUs"
                    f" and {r.memory_mb} MB of memory free for it"
                )
            return -signal.SIGKILL
        except ray.exceptions.RayError as exc:
            self._note(info, f"the Ray actor {placed.name} failed: {exc}")
            return 1

    async def _environment(self, info: WorkerInfo, placed: _Placed, wanted: Interpreter) -> Interpreter | None:
        """The worker's environment on its node (built there unless it was), its build's log
        added to the version's; None, and the worker's failure says why, when the node cannot
        build it."""
        assert wanted.env is not None and info.version_id is not None  # a version with requirements
        key = wanted.env.name
        began = time.monotonic()
        made: NodeBuild = await placed.handle.environment.remote(wanted, info.version_id, self.settings.sandbox)
        if made.log:
            await asyncio.to_thread(EnvStore(self.settings.envs).append_log, key, made.log)
        if made.interpreter is None:
            info.failure = (
                f"the environment of version {info.version_id} could not be built on node {info.node}: {made.error}"
            )
            self._note(info, info.failure)
            return None
        done = (
            f"built on node {info.node} in {time.monotonic() - began:.1f} s"
            if made.built
            else f"found on node {info.node}"
        )
        self._note(info, f"environment {key} {done}", level="info")
        try:
            await self.on_node_env(key, made.node_id, info.node or "")
        except Exception as exc:  # the record is for `podium envs ls`: the worker starts regardless
            log.warning("recording environment %s on node %s failed: %s", key, info.node, exc)
        return made.interpreter

    @staticmethod
    def _note(info: WorkerInfo, message: str, level: str = "error") -> None:
        """A line in the worker's log (as the worker writes them), and in the server's."""
        log.log(logging.INFO if level == "info" else logging.WARNING, "worker %s: %s", info.id, message)
        assert info.log_path is not None
        entry = {
            "time": stamp(time.time()),
            "level": level,
            "logger": "podium.scaling",
            "msg": message,
            "worker": info.id,
        }
        with info.log_path.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    def signal(self, info: WorkerInfo, sig: int = signal.SIGTERM) -> None:
        """SIGTERM goes to the worker (it drains); SIGKILL ends its actor, and the worker with it."""
        placed = self._placed.get(info.id)
        if placed is None:
            return
        if sig == signal.SIGKILL:
            with contextlib.suppress(Exception):
                self._ray.kill(placed.handle, no_restart=True)
        else:
            placed.handle.signal.remote(sig)

    async def stop(self, info: WorkerInfo, grace: float) -> None:
        """SIGTERM (finish the current job, take no more), then SIGKILL after `grace` seconds."""
        placed = self._placed.get(info.id)
        if placed is None:
            return
        self.signal(info, signal.SIGTERM)
        try:
            await asyncio.wait_for(placed.ended.wait(), grace)
        except TimeoutError:
            self.signal(info, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(placed.ended.wait(), KILL_WAIT)

    async def shutdown(self, workers: list[WorkerInfo], grace: float) -> None:
        """Drain the workers, then end by name every actor this server still has, and leave the cluster."""
        await asyncio.gather(*(self.stop(w, grace) for w in workers if w.local))
        if self._ray is None:
            return
        left = [placed.name for placed in self._placed.values()]
        for name in left:
            await asyncio.to_thread(self._kill_by_name, name)
        log.info("left the Ray cluster (%d actors drained, %d ended by name)", len(workers), len(left))
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        await asyncio.to_thread(self._ray.shutdown)
        self._ray = self._joined = None
        self._placed.clear()

    def _kill_by_name(self, name: str) -> None:
        try:
            handle = self._ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # gone already
            return
        self._ray.kill(handle, no_restart=True)
