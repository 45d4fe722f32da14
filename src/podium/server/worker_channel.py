"""job-take and job-done for the server's own local workers, over a Unix socket instead of HTTP.

A job costs its worker one exchange with the server (its result posted, its next job taken).
Over HTTP, reading, routing and answering that exchange cost the server about as much as storing
the result and claiming the next job; here each call is one frame each way (`podium.channel`) on
a connection the worker keeps. The local backend tells its workers where the socket is; workers
started by hand, on Ray, or by RunPod's library speak HTTP as before.

A connection's first frame names the worker (key, endpoint, worker id, version), as an HTTP
request's headers and path do, and every call is authorized again as an HTTP request is: a
revoked key or a worker told to stop is refused at once. The work and the answers, errors
included, are those of the HTTP calls (`WorkerCalls.take` and `.report_many`, `errors.answer`),
and calls are counted as theirs are. Ping, job-stream and job-stop stay on HTTP.

Calls (the header's `op`): `take`; `done` (`job`: its id, the body its result); `done-batch`
(the body `{job_id: result, ...}` of one batch). `done` and `done-batch` take the next job too
with `take: true`. A worker with batched routes adds `batch: {"/route": [size, wait_ms]}` to each:
its jobs then come as a list (one batch), `next` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from podium import _json, channel
from podium.core.access import WORKER, Access
from podium.core.errors import InvalidRequest
from podium.core.worker_calls import RESULT_LIMIT, WorkerCalls, batching
from podium.metrics import Metrics
from podium.server import errors
from podium.server.body import parse_json, too_large
from podium.server.worker_results import read_batch_results, read_result
from podium.sockets import SocketDir

log = logging.getLogger("podium.server")

#: The largest frame taken: a job-done's result limit, and room for its header.
FRAME_LIMIT = RESULT_LIMIT + 64 * 1024


@dataclass(frozen=True)
class Caller:
    """Who is at the other end of a connection, from its first frame."""

    key: str
    endpoint: str
    worker: str
    version: str | None

    @classmethod
    def parse(cls, header: dict[str, Any]) -> Caller:
        key, endpoint, worker, version = (header.get(k) for k in ("key", "endpoint", "worker", "version"))
        if not (isinstance(key, str) and isinstance(endpoint, str) and isinstance(worker, str)):
            raise ValueError("the first frame must name key, endpoint and worker")
        return cls(key, endpoint, worker, version if isinstance(version, str) else None)


class WorkerChannel:
    """The socket: `workers-<replica>.sock` (replicas may share a home) in the server's socket
    directory (`podium.sockets`). Sockets a killed server left there (nothing listens on them)
    are removed.

    Parameters:
        calls: what each call does (the HTTP calls' own).
        access: who may call.
        metrics: where calls are counted.
        home: the server's home (its socket directory).
        replica_id: this server's, in the socket's name.
    """

    def __init__(self, calls: WorkerCalls, access: Access, metrics: Metrics, home: Path, replica_id: str) -> None:
        self.calls = calls
        self.access = access
        self.metrics = metrics
        self.replica_id = replica_id
        self.path: str | None = None
        self._sockets = SocketDir(home)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._calls: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        path = str(self._sockets.socket(f"workers-{self.replica_id}.sock"))
        _remove_dead(Path(path).parent)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), path)
        self.path = path
        return path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.transport.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            self._sockets.remove()


def _remove_dead(directory: Path) -> None:
    for path in directory.glob("workers-*.sock"):
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(path))
            except ConnectionRefusedError:
                path.unlink(missing_ok=True)
            except OSError:
                pass


class _Connection(asyncio.Protocol):
    """One worker thread's connection: frames in, one call at a time, answers out."""

    transport: asyncio.Transport

    def __init__(self, channel: WorkerChannel) -> None:
        self.channel = channel
        self.buffer = bytearray()
        #: Bytes of an oversized frame still to drop, then answered 413.
        self.dropping = 0
        self.caller: Caller | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio's classes
        self.channel._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.channel._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.dropping:
            dropped = min(self.dropping, len(data))
            self.dropping -= dropped
            data = data[dropped:]
            if not self.dropping:
                self._too_large()
        self.buffer += data
        while len(self.buffer) >= channel.LENGTH.size:
            (size,) = channel.LENGTH.unpack_from(self.buffer)
            if size > FRAME_LIMIT:
                self.dropping = size - (len(self.buffer) - channel.LENGTH.size)
                self.buffer.clear()
                if self.dropping <= 0:
                    self.dropping = 0
                    self._too_large()
                return
            end = channel.LENGTH.size + size
            if len(self.buffer) < end:
                return
            frame = bytes(memoryview(self.buffer)[channel.LENGTH.size : end])
            del self.buffer[:end]
            self._frame(frame)

    def _frame(self, frame: bytes) -> None:
        try:
            header, body = channel.split_request(frame)
            if self.caller is None:
                self.caller = Caller.parse(header)
                return
        except ValueError as exc:  # not our worker's frames: nothing sensible to answer
            log.warning("worker channel: closing a connection that sent %s", exc)
            self.transport.close()
            return
        task = asyncio.get_running_loop().create_task(self._call(self.caller, header, body))
        self.channel._calls.add(task)
        task.add_done_callback(self.channel._calls.discard)

    async def _call(self, caller: Caller, header: dict[str, Any], body: bytes) -> None:
        op = header.get("op")
        method = "GET" if op == "take" else "POST"
        path = f"worker channel: {op}"  # what errors.answer logs a failure as
        try:
            status, answer = await self._answer(caller, op, header, body)
        except Exception as exc:
            response = errors.answer(exc, method, path) or errors.bug(method, path)
            status, answer = response.status_code, bytes(response.body)
        self.channel.metrics.request("worker", method, str(status)).inc()
        if not self.closed:
            self.transport.write(channel.answer(status, answer))

    async def _answer(self, caller: Caller, op: Any, header: dict[str, Any], body: bytes) -> tuple[int, bytes]:
        calls = self.channel.calls
        principal = await self.channel.access.caller(caller.key, WORKER, scoped=True)
        ep = await calls.attached(principal, caller.endpoint, caller.worker)
        batch = batching(header.get("batch"))
        if op == "take":
            jobs = await calls.take(caller.worker, ep, limit=1, alive=self._alive, version=caller.version, batch=batch)
            if not jobs:
                return 204, b""
            return 200, _json.dumpb(jobs if batch else jobs[0])
        job = header.get("job")
        if op == "done-batch":
            results = read_batch_results(parse_json(body, empty={}))
        elif op == "done" and isinstance(job, str):
            results = [(job, read_result(parse_json(body, empty={})))]
        else:
            raise InvalidRequest(f"the worker channel has no call {op!r} (take, done with a job id, done-batch)")
        answer = await calls.report_many(
            ep,
            caller.worker,
            results,
            take_next=header.get("take") is True,
            alive=self._alive,
            version=caller.version,
            batch=batch,
        )
        return 200, _json.dumpb(answer)

    async def _alive(self) -> bool:
        return not self.closed

    def _too_large(self) -> None:
        """The answer to a frame over FRAME_LIMIT, once all of it is dropped (its sender reads
        answers only after sending)."""
        response = too_large(RESULT_LIMIT).response()
        self.transport.write(channel.answer(response.status_code, bytes(response.body)))
