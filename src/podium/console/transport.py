"""httpx over ASGI, in process, with the answer streamed: httpx's own ASGITransport keeps the
whole body before it returns, so the console's HTTP client held a 160 MiB answer in memory only
to say it was over its 1 MB limit. Here the app's body messages are handed over one at a time
(the app waits while one is unread), and closing the response ends the app's call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

from podium.asgi_request import whole_request


class StreamingASGITransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        body = b"".join([part async for part in request.stream])
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.url.scheme,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "root_path": "",
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123),
        }
        closed = asyncio.Event()
        messages: asyncio.Queue[Message] = asyncio.Queue(maxsize=1)
        task = asyncio.ensure_future(self.app(scope, whole_request(body, closed), messages.put))

        async def next_message() -> Message | None:
            """The app's next message; None once it has ended (its failure raised)."""
            getter = asyncio.ensure_future(messages.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                return getter.result()
            getter.cancel()
            if not messages.empty():
                return messages.get_nowait()
            task.result()
            return None

        async def close() -> None:
            closed.set()
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        try:
            start = await next_message()
            while start is not None and start["type"] != "http.response.start":
                start = await next_message()
        except BaseException:
            await close()
            raise
        if start is None:
            await close()
            raise httpx.RemoteProtocolError("the app ended without answering", request=request)
        return httpx.Response(start["status"], headers=start.get("headers", []), stream=_Body(next_message, close))


class _Body(httpx.AsyncByteStream):
    def __init__(self, next_message: Callable[[], Awaitable[Message | None]], close: Callable[[], Awaitable[Any]]):
        self._next = next_message
        self._close = close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (message := await self._next()) is not None:
            if message["type"] != "http.response.body":
                continue
            if message.get("body"):
                yield bytes(message["body"])
            if not message.get("more_body", False):
                return

    async def aclose(self) -> None:
        await self._close()
