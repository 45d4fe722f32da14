"""An ASGI `receive` for a request whose whole body is already in hand, for the two places that
call an ASGI app in process: the console's transport to the server's own app, and the worker's
HTTP-app routes (`sdk/httpapp.py`). Standard library only: the SDK imports it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def whole_request(body: bytes, closed: asyncio.Event) -> Callable[[], Awaitable[dict[str, Any]]]:
    """`receive`: the body in one message, then `http.disconnect` once `closed` is set (the
    answer is over, or its reader went away)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await closed.wait()
        return {"type": "http.disconnect"}

    return receive
