"""Answers that may carry user content never act as the console's origin.

Route calls, HTTP apps, DigitalHub service URLs and job outputs answer with what a tenant's code
made, on the same origin as the console. Every answer outside the console's pages and the API docs
(the server's own HTML) is therefore sandboxed: `Content-Security-Policy: sandbox` gives a
tenant's text/html page an opaque origin without scripts (it cannot read /console pages with the
viewer's cookie), and `X-Content-Type-Options: nosniff` keeps JSON and text from being read as
HTML or script. The console sets its own policy (`podium.console.web`).

An operator may also give user content an origin of its own (PODIUM_USER_CONTENT_URL, a second
name for this server): the URLs handed out for user content use it, and the server's own pages
are not served on it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.server.responses import JSONAnswer

#: The server's own pages, by first path segment (endpoint names cannot take these).
OWN_PAGES = frozenset({"console", "docs"})
NOT_HERE = JSONAnswer(
    {"error": "not_found", "detail": "the console is not served on the user content origin"}, status_code=404
)
SANDBOX = [(b"content-security-policy", b"sandbox"), (b"x-content-type-options", b"nosniff")]


def sandboxed(path: str) -> bool:
    return path.split("/", 2)[1] not in OWN_PAGES


def content_base(request: HTTPConnection) -> str:
    """Where user content is served: PODIUM_USER_CONTENT_URL, else where this request came."""
    own: str | None = request.app.state.runtime.settings.user_content_url
    return own.rstrip("/") if own else str(request.base_url).rstrip("/")


def content_host(request: HTTPConnection) -> tuple[str, int]:
    """The host and port of `content_base` (DigitalHub's service URLs have no scheme)."""
    url = urlsplit(content_base(request))
    return url.hostname or "127.0.0.1", url.port or (443 if url.scheme == "https" else 80)


class Sandbox:
    """A pure ASGI wrapper (streamed answers stay streamed): adds SANDBOX to every answer whose
    path is not one of the server's own pages; an app's own nosniff header is replaced, its own
    Content-Security-Policy kept (browsers enforce every policy they are sent). Asked for by the
    name of `user_content_url`, the server's own pages are not found."""

    def __init__(self, app: ASGIApp, user_content_url: str | None = None) -> None:
        self.app = app
        self.content_host = urlsplit(user_content_url).netloc.lower().encode() if user_content_url else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not sandboxed(scope["path"]):
            if self.content_host is not None and self._host(scope) == self.content_host:
                await NOT_HERE(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return

        async def send_sandboxed(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*kept, *SANDBOX]}
            await send(message)

        await self.app(scope, receive, send_sandboxed)

    @staticmethod
    def _host(scope: Scope) -> bytes:
        return next((v.lower() for k, v in scope["headers"] if k == b"host"), b"")
