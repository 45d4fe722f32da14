"""The worker's side of the worker protocol, over keep-alive HTTP/1.1 connections, and job-take
and job-done over the server's worker channel when it has one for us (a local worker).

Plain `http.client`, one connection per thread: a worker makes a few small requests per job, and
the standard library does them at a fraction of a general-purpose client's cost (and import time,
which a cold start pays).
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit

from podium import _json, channel
from podium.records import Batching, batching_wire

log = logging.getLogger("podium.worker")

#: Longer than any server's long-poll window, so a held job-take is never cut short by us.
POLL_TIMEOUT = 120.0


class LinkError(Exception):
    """The server could not be reached, or it answered with an error."""

    #: Whether the same call may succeed later (the worker waits and tries again).
    transient = False


class Unreachable(LinkError):
    """No answer: connection refused or lost, or timed out. Worth retrying."""

    transient = True


class Refused(LinkError):
    """The server answered 4xx or 5xx."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"{status}: {body[:500].decode(errors='replace')}")
        self.status = status
        self.body = body
        # 5xx (the store unreachable a moment, the server restarting) and 429 pass; a key or an
        # endpoint the server refuses stays refused.
        self.transient = status >= 500 or status == 429

    @property
    def detail(self) -> str:
        """The server's own sentence (its JSON error's `detail`), else the answer as text."""
        try:
            answer = _json.loads(self.body)
        except _json.JSONDecodeError:
            answer = None
        detail = answer.get("detail") if isinstance(answer, dict) else None
        if isinstance(detail, str):
            return detail
        return self.body[:500].decode(errors="replace") or f"HTTP {self.status}"


#: How a kept-alive connection the server closed while idle fails the next request on it.
STALE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, http.client.RemoteDisconnected)


class _Connections:
    """One keep-alive connection per thread to one server, reopened after any failure."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.headers = headers
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            conn = kind(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        for fresh in (False, True):
            conn = self._connection()
            reused = conn.sock is not None
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except STALE:
                # The server closed this kept-alive connection while it sat idle (uvicorn does
                # after 5 s): the request never reached it. Once more, on a new connection.
                self.close()
                if fresh or not reused:
                    raise Unreachable(f"{method} {path}: the server closed the connection") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise Unreachable(f"{method} {path}: {exc or type(exc).__name__}") from exc
        if resp.will_close:
            self.close()
        return resp.status, data

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _Channel:
    """The server's worker channel (`podium.channel`): one connection per thread, each opened
    with the frame that says who we are; reopened after any failure."""

    def __init__(self, path: str, hello: bytes, timeout: float) -> None:
        self.path = path
        self.hello = hello
        self.timeout = timeout
        self._local = threading.local()

    def call(self, header: dict[str, Any], body: bytes = b"") -> tuple[int, bytes]:
        """The answer's status and body; Unreachable when the channel fails."""
        try:
            sock, reader = self._connection()
            sock.sendall(channel.request(header, body))
            (size,) = channel.LENGTH.unpack(_exactly(reader, channel.LENGTH.size))
            frame = _exactly(reader, size)
        except OSError as exc:
            self.close()
            raise Unreachable(f"worker channel, {header.get('op')}: {exc or type(exc).__name__}") from exc
        (status,) = channel.SHORT.unpack_from(frame)
        return status, frame[channel.SHORT.size :]

    def _connection(self) -> tuple[socket.socket, BinaryIO]:
        opened: tuple[socket.socket, BinaryIO] | None = getattr(self._local, "conn", None)
        if opened is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sock.sendall(self.hello)
            except OSError:
                sock.close()
                raise
            opened = self._local.conn = (sock, sock.makefile("rb"))
        return opened

    def close(self) -> None:
        opened = getattr(self._local, "conn", None)
        if opened is not None:
            self._local.conn = None
            opened[1].close()
            opened[0].close()


def _given(found: Any) -> list[dict[str, Any]]:
    """Jobs as the server hands them: one job, or a list (a batch)."""
    if isinstance(found, dict):
        return [found]
    return [job for job in found if isinstance(job, dict)] if isinstance(found, list) else []


def _exactly(reader: BinaryIO, n: int) -> bytes:
    data = reader.read(n)
    if len(data) < n:
        raise ConnectionResetError("the server closed the worker channel")
    return data


class ServerLink:
    """job-take / job-done / job-stream / ping for one worker of one endpoint.

    Parameters:
        url: the server's base URL.
        key: a worker token (or any key allowed to run this endpoint's jobs).
        endpoint: endpoint id or name.
        worker_id: this worker's id, unique per process.
        version: the version it runs, told to the server so a worker started by hand is given
            only that version's jobs (and told to stop once the endpoint leaves it).
        socket_path: the server's worker channel, for job-take and job-done (local workers: the
            server says where, in PODIUM_WORKER_SOCKET).
    """

    def __init__(
        self,
        url: str,
        key: str,
        endpoint: str,
        worker_id: str,
        version: str | None = None,
        socket_path: str | None = None,
    ) -> None:
        self.base = f"/v2/{endpoint}"
        self.worker_id = worker_id
        self.version = version
        headers = {"Authorization": f"Bearer {key}", "User-Agent": "podium-worker"}
        self.http = _Connections(url, headers, POLL_TIMEOUT)
        # Pings come from their own thread, on their own connection, with a shorter timeout.
        self.ping_http = _Connections(url, headers, 10.0)
        hello = {"key": key, "endpoint": endpoint, "worker": worker_id, "version": version}
        self.channel = _Channel(socket_path, channel.request(hello), POLL_TIMEOUT) if socket_path else None

    def close(self) -> None:
        self.http.close()
        self.ping_http.close()
        if self.channel is not None:
            self.channel.close()

    def _query(self, **params: Any) -> str:
        """`?name=value&...` with this worker's version, when it has one."""
        if self.version is not None:
            params["version"] = self.version
        return f"?{urlencode(params)}" if params else ""

    def take(self, in_progress: bool = False, batch: dict[str, Batching] | None = None) -> list[dict[str, Any]]:
        """The next job, as a list of one; with `batch` (this worker's batched routes), a job of
        one comes with the route's other queued jobs. Empty when there is none; Refused(410)
        when the server tells this worker to stop."""
        wire = batching_wire(batch) if batch else None
        if self.channel is not None:
            header: dict[str, Any] = {"op": "take"}
            if wire:
                header["batch"] = wire
            return self._jobs(*self.channel.call(header))
        extra = {"batch": _json.dumps(wire)} if wire else {}
        query = self._query(job_in_progress=int(in_progress), **extra)
        return self._jobs(*self.http.request("GET", f"{self.base}/job-take/{self.worker_id}{query}"))

    @staticmethod
    def _jobs(status: int, data: bytes) -> list[dict[str, Any]]:
        if status == 204 or not data:
            return []
        if status >= 400:
            raise Refused(status, data)
        return _given(_json.loads(data))

    def _post(
        self, path: str, body: Any, *, call: dict[str, Any] | None = None, attempts: int = 30
    ) -> tuple[int, bytes]:
        """Post until the server has it: a result must not be lost to a server restart. `call`:
        the same over the worker channel, when there is one."""
        data = _json.dumpb(body)
        delay = 0.1
        for attempt in range(attempts):
            try:
                if call is not None and self.channel is not None:
                    status, answer = self.channel.call(call, data)
                else:
                    status, answer = self.http.request("POST", path, data)
                if status < 500:
                    if status >= 400:
                        log.error("server refused %s: %s %s", path, status, answer[:500])
                    return status, answer
            except Unreachable as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("posting to server failed (%s); retrying", exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        return 503, b""

    def done(
        self, results: dict[str, dict[str, Any]], *, take: bool = False, batch: dict[str, Batching] | None = None
    ) -> list[dict[str, Any]]:
        """Report the results of one job or one batch (by job id); with `take`, also claim the
        next job (or batch, see `take`) if one is waiting: one exchange instead of two under load."""
        wire = batching_wire(batch) if batch else None
        params: dict[str, Any] = {"take": 1} if take else {}
        call: dict[str, Any] = {"op": "done", "take": take}
        if wire:
            params["batch"] = _json.dumps(wire)
            call["batch"] = wire
        if len(results) == 1:
            ((job_id, body),) = results.items()
            path = f"{self.base}/job-done/{self.worker_id}/{job_id}"
            call["job"] = job_id
            payload: Any = body
        else:
            path = f"{self.base}/job-done-batch/{self.worker_id}"
            call["op"] = "done-batch"
            payload = results
        status, answer = self._post(path + self._query(**params) if params else path, payload, call=call)
        if not take or status != 200:
            return []
        reply = _json.loads(answer) if answer else None
        return _given(reply.get("next")) if isinstance(reply, dict) else []

    def progress(self, job_id: str, value: Any) -> None:
        self.done({job_id: {"status": "IN_PROGRESS", "output": value}})

    def chunk(self, job_id: str, value: Any) -> None:
        self._post(f"{self.base}/job-stream/{self.worker_id}/{job_id}", {"output": value})

    def ping(self, job_ids: list[str]) -> None:
        query = self._query(job_id=",".join(job_ids)) if job_ids else self._query()
        self.ping_http.request("GET", f"{self.base}/ping/{self.worker_id}{query}")

    def hello(self) -> float | None:
        """One ping that must succeed: Refused when the server will not have this worker (a key
        too weak for the worker protocol, an endpoint it may not see). Returns how often the
        server wants pings, when it says."""
        status, data = self.ping_http.request("GET", f"{self.base}/ping/{self.worker_id}{self._query()}")
        if status >= 400:
            raise Refused(status, data)
        answer = _json.loads(data) if data else None
        interval = answer.get("ping_interval") if isinstance(answer, dict) else None
        return float(interval) if isinstance(interval, int | float) and interval > 0 else None

    def unhealthy(self, reason: str) -> None:
        body = _json.dumpb({"status": "unhealthy", "reason": reason})
        self.ping_http.request("POST", f"{self.base}/ping/{self.worker_id}", body)

    def get_json(self, path: str) -> Any:
        return _json.loads(self.get_bytes(path))

    def get_bytes(self, path: str) -> bytes:
        status, data = self.http.request("GET", path)
        if status >= 400:
            raise Refused(status, data)
        return data
