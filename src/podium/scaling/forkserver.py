"""Starting local worker processes: spawned, or forked from their version's pre-imported parent.

A version whose first worker took longer than `fork_after` seconds to become ready (slow imports:
the runpod package, torch) gets a zygote (`podium.worker.zygote`) on the version's interpreter,
holding those imports; its next workers are forked from it and skip them. One zygote per endpoint,
version and environment (an endpoint's secrets are part of it; a worker's token, GPUs and cores are not).
Starting one of an endpoint's workers on another version or environment retires the endpoint's old
zygote (it exits once the workers it forked have). Whenever a zygote is missing, not ready yet,
dead or does not answer, the worker is spawned as before: the optimisation never costs a start.

Sandboxed (`podium.sandbox`), a zygote runs in a box of its version and its workers stay in
it; it listens in a directory of its own, the only one of the server's the box shows.

A forked worker is not the server's child. It says its pid itself, on the connection its fork
request came on, with the kernel's credentials attached (SO_PASSCRED: the pid as the server sees
it, whatever PID namespace the zygote is in); its zygote reports its exit status later on the
same connection, kept open per worker. The worker's log is opened by the server and passed along
with the request (SCM_RIGHTS): a boxed zygote does not see the logs' directory. `ForkedProcess`
gives the worker the face of the asyncio process the local backend uses (pid, returncode, wait,
send_signal), signalling through a pidfd so a reused pid is never hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import signal
import socket
import struct
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from podium import _json, sandbox
from podium.config import Settings
from podium.core.workers import WorkerInfo
from podium.envs.builder import Interpreter
from podium.sandbox import Box, BoxedProcess, Limits
from podium.sockets import SocketDir
from podium.worker.runtime import CORES_ENV

log = logging.getLogger("podium.scaling")

#: Variables that differ between two workers of one version; the rest of a worker's environment is
#: its zygote's, so a change to them (an endpoint's secrets) means another zygote.
PER_WORKER = frozenset({"PODIUM_API_KEY", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", CORES_ENV})
#: Zygotes of one key that may die unasked before workers of that key are only ever spawned.
MAX_FAILURES = 3
#: The exit code of a zygote that refuses to fork (podium.worker.zygote.UNFIT).
UNFIT = 78
#: Seconds a fork request may take before the worker is spawned instead.
FORK_TIMEOUT = 10.0
#: The exit code reported for a forked worker whose zygote died before it (its status is lost).
UNKNOWN_EXIT = 255
SUPPORTED = hasattr(os, "pidfd_open")
#: The name of a boxed zygote's socket in its listening directory.
ZYGOTE_SOCKET = "zygote.sock"
#: struct ucred: pid, uid, gid.
UCRED = struct.Struct("3i")

#: A process the local backend follows: spawned, boxed, or forked.
Process = asyncio.subprocess.Process | BoxedProcess


@dataclass(frozen=True)
class Sandboxed:
    """What a boxed worker is started with: its box and its limits."""

    box: Box
    limits: Limits


class ForkedProcess:
    """A worker forked by a zygote, as the local backend sees a process."""

    started_by = "fork"

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already exited: the zygote's report follows
            self._pidfd = None
        self._exited = asyncio.Event()
        self._task = asyncio.create_task(self._follow(reader, writer))

    async def _follow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        code: int | None = None
        try:
            line = await reader.readline()
            if line:
                code = int(_json.loads(line)["exit"])
        except (OSError, ValueError, KeyError):
            pass
        finally:
            writer.close()
        if code is None:  # the zygote died first: the worker follows it (it watches its parent)
            await self._gone()
            code = UNKNOWN_EXIT
        self.returncode = code
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set()

    async def _gone(self) -> None:
        if self._pidfd is None:
            return
        loop = asyncio.get_running_loop()
        gone = asyncio.Event()
        loop.add_reader(self._pidfd, gone.set)
        try:
            await gone.wait()
        finally:
            loop.remove_reader(self._pidfd)

    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, sig)


@dataclass(eq=False)
class Zygote:
    key: str
    endpoint_id: str
    process: Process
    socket: Path
    limits: Limits | None = None
    retired: bool = False
    watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    def ready(self) -> bool:
        """Alive and listening (it creates its socket once its imports are done)."""
        return self.process.returncode is None and self.socket.exists()


class ForkServers:
    """Starts local workers (forked when their version's zygote can, else spawned) and keeps the
    zygotes: started after a slow first start, retired with their version, stopped with the server.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.enabled = SUPPORTED and settings.fork_after >= 0
        self._zygotes: dict[str, Zygote] = {}
        #: The key of each endpoint's latest worker: its other zygotes are retired.
        self._current: dict[str, str] = {}
        #: Keys whose first worker was fast enough, or is being watched, or whose zygotes failed.
        self._settled: set[str] = set()
        self._failures: Counter[str] = Counter()
        self._alive: set[Zygote] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets = SocketDir(settings.home)
        #: The limits of each boxed worker that was spawned (released when it exits).
        self._limits: dict[str, Limits] = {}

    async def start(
        self,
        info: WorkerInfo,
        cmd: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        interpreter: Interpreter,
        boxed: Sandboxed | None = None,
    ) -> Process | ForkedProcess:
        """Start `cmd` (`python -m podium.worker ...`) for `info`: forked when its zygote is ready,
        else spawned (in its box, when `boxed`)."""
        key = _key(info, interpreter, env)
        if self.enabled:
            self._switch(info.endpoint_id, key)
            zygote = self._zygotes.get(key)
            if zygote is not None and zygote.ready():
                fork_env = boxed.box.environ(env) if boxed is not None else env
                try:
                    proc = await asyncio.wait_for(
                        self._fork(zygote, _worker_args(cmd), fork_env, log_path), FORK_TIMEOUT
                    )
                except (OSError, ValueError, KeyError, TimeoutError) as exc:
                    log.warning("forking worker %s failed (%s); spawning it", info.id, exc or type(exc).__name__)
                    if isinstance(exc, TimeoutError):  # a stuck zygote: do not ask it again
                        self._retire(zygote, signal.SIGKILL)
                else:
                    info.started_by = "fork"
                    log.info(
                        "worker %s forked (pid %d) from the fork server of version %s",
                        info.id,
                        proc.pid,
                        info.version_id,
                    )
                    if boxed is not None:  # it lives in its zygote's box, under its limits
                        boxed.limits.release()
                    return proc
        spawned: Process
        with log_path.open("ab") as out:
            if boxed is not None:
                spawned = await sandbox.spawn(boxed.box, cmd, env=env, out=out, limits=boxed.limits)
                self._limits[info.id] = boxed.limits
            else:
                spawned = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=env,
                    start_new_session=True,
                )
        info.started_by = "spawn"
        if self.enabled and info.version_id and key not in self._zygotes and key not in self._settled:
            self._settled.add(key)
            self._track(self._after_first(key, info, spawned, env, log_path, interpreter, boxed))
        return spawned

    def exited(self, info: WorkerInfo) -> None:
        """A worker's process has ended: its cgroups go (a spawned boxed worker's)."""
        limits = self._limits.pop(info.id, None)
        if limits is not None:
            limits.release()

    async def close(self) -> None:
        """Stop every zygote (the server is stopping; its workers were stopped first)."""
        self.enabled = False
        for task in list(self._tasks):
            task.cancel()
        for z in list(self._alive):
            self._retire(z)
        alive = list(self._alive)
        await asyncio.gather(*(_stop(z.process) for z in alive), return_exceptions=True)
        for z in alive:  # their watchers were cancelled above
            if z.limits is not None:
                z.limits.release()
        self._sockets.remove()

    # -- zygotes --------------------------------------------------------------------------------

    def _switch(self, endpoint_id: str, key: str) -> None:
        """A worker of `endpoint_id` starts with `key`: retire the endpoint's zygote of another."""
        old = self._current.get(endpoint_id)
        self._current[endpoint_id] = key
        if old is not None and old != key:
            self._settled.discard(old)
            zygote = self._zygotes.get(old)
            if zygote is not None:
                log.info("retiring the fork server of %s for endpoint %s (not its current version)", old, endpoint_id)
                self._retire(zygote)

    def _retire(self, zygote: Zygote, sig: int = signal.SIGTERM) -> None:
        """No more forks from it; SIGTERM: it exits once its workers have."""
        zygote.retired = True
        if self._zygotes.get(zygote.key) is zygote:
            del self._zygotes[zygote.key]
        with contextlib.suppress(ProcessLookupError):
            zygote.process.send_signal(sig)

    async def _after_first(
        self,
        key: str,
        info: WorkerInfo,
        proc: Process,
        env: dict[str, str],
        log_path: Path,
        interpreter: Interpreter,
        boxed: Sandboxed | None,
    ) -> None:
        """Once the version's first worker is ready: a zygote if it was slow to get there."""
        while info.ready_at is None:
            if proc.returncode is not None:
                self._settled.discard(key)  # it never ran: the next worker decides
                return
            await asyncio.sleep(0.1)
        took = info.ready_at - info.started_at
        if took < self.settings.fork_after or self._current.get(info.endpoint_id) != key:
            return
        log.info(
            "worker %s took %.2f s to become ready: starting a fork server for version %s",
            info.id,
            took,
            info.version_id,
        )
        await self._launch(key, info, env, log_path, interpreter, boxed)

    async def _launch(
        self,
        key: str,
        info: WorkerInfo,
        env: dict[str, str],
        worker_log: Path,
        interpreter: Interpreter,
        boxed: Sandboxed | None,
    ) -> None:
        assert info.version_id is not None
        log_path = worker_log.parent / "forkserver" / f"{info.version_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        shared = {k: v for k, v in env.items() if k not in PER_WORKER}
        args = ["-m", "podium.worker.zygote", "--endpoint", info.endpoint_id, "--version", info.version_id]
        proc: Process
        limits = None
        if boxed is not None:
            listen = self._sockets.socket(key)
            listen.mkdir(mode=0o700, exist_ok=True)
            sock = listen / ZYGOTE_SOCKET
            box = replace(boxed.box, listen=listen)
            limits = Limits(f"zygote-{key}", memory_mb=boxed.limits.memory_mb, gpus=boxed.limits.gpus)
            limits.prepare()
            args += ["--socket", f"{sandbox.BOX_RUN}/listen/{ZYGOTE_SOCKET}"]
            if box.bundle is not None:
                args += ["--bundle", box.bundle_path()]
            with log_path.open("ab") as out:
                proc = await sandbox.spawn(box, [interpreter.python, *args], env=shared, out=out, limits=limits)
        else:
            sock = self._sockets.socket(f"{key}.sock")
            bundle = self.settings.home.resolve() / "cache" / "bundles" / info.version_id
            args += ["--socket", str(sock), "--bundle", str(bundle), "--server-pid", str(os.getpid())]
            with log_path.open("ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    interpreter.python,
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env=shared,
                    start_new_session=True,
                )
        zygote = Zygote(key, info.endpoint_id, proc, sock, limits)
        self._zygotes[key] = zygote
        self._alive.add(zygote)
        self._track(self._watch(zygote))

    async def _watch(self, zygote: Zygote) -> None:
        rc = await zygote.process.wait()
        self._alive.discard(zygote)
        if zygote.limits is not None:
            zygote.limits.release()
        if zygote.retired:
            return
        if self._zygotes.get(zygote.key) is zygote:
            del self._zygotes[zygote.key]
        self._failures[zygote.key] += MAX_FAILURES if rc == UNFIT else 1
        if self._failures[zygote.key] < MAX_FAILURES:
            self._settled.discard(zygote.key)  # the next spawned worker may bring up another
        log.warning("the fork server of %s exited (rc=%s); its workers will be spawned", zygote.key, rc)

    async def _fork(self, zygote: Zygote, args: list[str], env: dict[str, str], log_path: Path) -> ForkedProcess:
        conn = await asyncio.to_thread(_request_fork, zygote.socket, args, env, log_path)
        try:
            pid = await asyncio.to_thread(_forked_pid, conn)
            conn.setblocking(False)
            reader, writer = await asyncio.open_unix_connection(sock=conn)
        except BaseException:
            conn.close()
            raise
        return ForkedProcess(pid, reader, writer)

    def _track(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _request_fork(path: Path, args: list[str], env: dict[str, str], log_path: Path) -> socket.socket:
    """Ask the zygote for a worker: the request line, with the worker's log as an open file."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(FORK_TIMEOUT)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        conn.connect(str(path))
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            request = _json.dumpb({"argv": args, "env": env}) + b"\n"
            sent = socket.send_fds(conn, [request], [fd])
            conn.sendall(request[sent:])
        finally:
            os.close(fd)
    except BaseException:
        conn.close()
        raise
    return conn


def _forked_pid(conn: socket.socket) -> int:
    """The forked worker's pid as this server sees it: the credentials the kernel attached to
    the line the worker itself wrote (`{"pid": n}`, n being its pid in its zygote's namespace)."""
    line, pid = b"", None
    while not line.endswith(b"\n"):
        data, ancillary, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(UCRED.size))
        if not data:
            raise ConnectionError("the fork server closed the connection")
        for level, kind, cred in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = int(UCRED.unpack(cred[: UCRED.size])[0])
        line += data
    if "pid" not in _json.loads(line):
        raise ValueError(f"not a fork server's answer: {line[:200]!r}")
    if pid is None:
        raise ValueError("the fork server's answer carried no credentials")
    return pid


def _key(info: WorkerInfo, interpreter: Interpreter, env: dict[str, str]) -> str:
    """What a zygote is for: endpoint, version, interpreter and the environment its workers share."""
    h = hashlib.sha256(f"{info.endpoint_id}\0{info.version_id}\0{interpreter.python}".encode())
    h.update(_json.dumpb(sorted((k, v) for k, v in env.items() if k not in PER_WORKER)))
    return h.hexdigest()[:16]


def _worker_args(cmd: list[str]) -> list[str]:
    """The worker's own arguments from its command line (`python -m podium.worker ARGS`)."""
    if cmd[1:3] != ["-m", "podium.worker"]:
        raise ValueError(f"not a worker command: {cmd[:3]}")
    return cmd[3:]


async def _stop(proc: Process, grace: float = 5.0) -> None:
    try:
        await asyncio.wait_for(proc.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
