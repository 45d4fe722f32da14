"""Answers that may carry user content never act as the console's origin.

Route calls, HTTP apps, DigitalHub service URLs and job outputs answer with what a tenant's code
made, on the same origin as the console. Every answer outside the console's pages and the API docs
(the server's own HTML) is therefore sandboxed: `Content-Security-Policy: sandbox` gives a
tenant's text/html page an opaque origin without scripts (it cannot read /console pages with the
viewer's cookie), and `X-Content-Type-Options: nosniff` keeps JSON and text from being read as
HTML or script. The console sets its own policy (`podium.console.web`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The server's own pages, by first path segment (endpoint names cannot take these).
OWN_PAGES = frozenset({"console", "docs"})
SANDBOX = [(b"content-security-policy", b"sandbox"), (b"x-content-type-options", b"nosniff")]


def sandboxed(path: str) -> bool:
    return path.split("/", 2)[1] not in OWN_PAGES


class Sandbox:
    """A pure ASGI wrapper (streamed answers stay streamed): adds SANDBOX to every answer whose
    path is not one of the server's own pages; an app's own nosniff header is replaced, its own
    Content-Security-Policy kept (browsers enforce every policy they are sent)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not sandboxed(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_sandboxed(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*kept, *SANDBOX]}
            await send(message)

        await self.app(scope, receive, send_sandboxed)
