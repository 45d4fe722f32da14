"""HTTP-app services: an ASGI app (FastAPI, Starlette) or a WSGI app (Flask) served by Podium.

The request travels as a job, like every call; the worker calls the app in process, as serverless
HTTP adapters for AWS Lambda do. The route is a generator: its first chunk is the response start
`{"$http": {"status", "headers"}}`, the rest are the body's bytes as the app sends them, so
streaming responses stream. An ASGI app's lifespan (startup: load the model) runs once per worker.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import io
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from podium.asgi_request import whole_request
from podium.records import ServiceConfig
from podium.sdk.context import run_async
from podium.sdk.service import Route, Service

#: The one route of an HTTP-app service (every path and method reaches the app through it).
HTTP_ROUTE = "/http"
START = "$http"
#: Module attributes looked at for an app, in order.
APP_NAMES = ("app", "application", "api")


def app_kind(obj: Any) -> str | None:
    """ "asgi", "wsgi", or None for an object that is neither."""
    if obj is None or isinstance(obj, type) or not callable(obj):
        return None
    if hasattr(obj, "wsgi_app"):  # Flask
        return "wsgi"
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else getattr(obj, "__call__", None)
    if call is None:
        return None
    try:
        params = [
            p
            for p in inspect.signature(call).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        return None
    if len(params) == 3 and inspect.iscoroutinefunction(call):
        return "asgi"
    if len(params) == 2 and not inspect.iscoroutinefunction(call):
        return "wsgi"
    return None


def find_app(namespace: dict[str, Any]) -> tuple[str, Any] | None:
    for name in APP_NAMES:
        kind = app_kind(namespace.get(name))
        if kind is not None:
            return kind, namespace[name]
    return None


def http_service(app: Any, kind: str, name: str, config: ServiceConfig | None = None) -> Service:
    """Wrap an ASGI or WSGI app as a service with one streaming route of kind "http"."""
    if kind == "asgi":
        adapter = AsgiAdapter(app)
        svc = Service(adapter.startup, name=name, config=config)
        func: Callable[..., Any] = adapter.call
    else:
        svc = Service(None, name=name, config=config)
        func = wsgi_caller(app)
    svc._add(Route(path=HTTP_ROUTE, func=func, streaming=True, kind="http"), default=True)
    return svc


def _body(request: dict[str, Any]) -> bytes:
    return base64.b64decode(request.get("body") or "")


def _headers(request: dict[str, Any]) -> list[tuple[str, str]]:
    return [(str(k), str(v)) for k, v in request.get("headers", [])]


def _start(status: int, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return {START: {"status": status, "headers": [[k, v] for k, v in headers]}}


class AsgiAdapter:
    """Calls an ASGI app in the worker's event loop; runs its lifespan once."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task[None] | None = None
        self._shutdown: asyncio.Event | None = None

    def startup(self) -> None:
        """The service's initializer: the app's lifespan startup (if it has one)."""
        run_async(self._start_lifespan())

    async def _start_lifespan(self) -> None:
        started: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._shutdown = asyncio.Event()
        sent_startup = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_startup
            if not sent_startup:
                sent_startup = True
                return {"type": "lifespan.startup"}
            assert self._shutdown is not None
            await self._shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] in ("lifespan.startup.complete", "lifespan.startup.failed") and not started.done():
                failed = message["type"].endswith("failed")
                started.set_result(str(message.get("message") or "") if failed else "")

        async def run() -> None:
            try:
                await self.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
            except BaseException:
                if not started.done():  # an app without lifespan support: nothing to start
                    started.set_result("")
                    return
                raise
            if not started.done():
                started.set_result("")

        self._lifespan = asyncio.ensure_future(run())
        failure = await started
        if failure:
            raise RuntimeError(f"the app's startup failed: {failure}")

    async def call(self, request: dict[str, Any]) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = asyncio.Event()
        receive = whole_request(_body(request), done)

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]
                await queue.put(_start(message["status"], headers))
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                if chunk:
                    await queue.put(bytes(chunk))
                if not message.get("more_body", False):
                    await queue.put(None)

        root = request.get("root_path", "")
        path = root + (request.get("path") or "/")  # ASGI: `path` includes `root_path`
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.get("method", "GET").upper(),
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": root,
            "query_string": (request.get("query_string") or "").encode("latin-1"),
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in _headers(request)],
            "client": ("127.0.0.1", 0),
            "server": ("podium", 80),
            "state": {},
        }
        app_task = asyncio.ensure_future(self.app(scope, receive, send))
        app_task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (item := await queue.get()) is not None:
                yield item
            await app_task  # raises the app's exception, if it failed
        finally:
            done.set()
            if not app_task.done():
                app_task.cancel()


def wsgi_caller(app: Any) -> Callable[[dict[str, Any]], Iterator[Any]]:
    """A generator route that calls a WSGI app and yields its start, then its body."""

    def call(request: dict[str, Any]) -> Iterator[Any]:
        body = _body(request)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.get("method", "GET").upper(),
            "SCRIPT_NAME": request.get("root_path", ""),
            "PATH_INFO": request.get("path") or "/",
            "QUERY_STRING": request.get("query_string") or "",
            "SERVER_NAME": "podium",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
        for k, v in _headers(request):
            key = k.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = v
            elif key != "CONTENT_LENGTH":
                environ[f"HTTP_{key}"] = v
        started: list[dict[str, Any]] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            started[:] = [_start(int(status.split()[0]), list(headers))]
            return lambda data: None  # the legacy write() callable; apps that use it are rare

        result = app(environ, start_response)
        try:
            sent_start = False
            for chunk in result:
                if not sent_start:
                    sent_start = True
                    yield started[0]
                if chunk:
                    yield bytes(chunk)
            if not sent_start:
                yield started[0]
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    return call
