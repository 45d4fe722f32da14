"""Reading request bodies: size-capped while streaming in, parsed as JSON whatever the Content-Type."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from podium import _json
from podium.server.errors import HTTPError

MB = 1024 * 1024


def size_text(size: int) -> str:
    """`20 MB`, `0.5 MB`, or `64 KiB` for a limit too small to read in megabytes."""
    return f"{size / MB:g} MB" if size >= MB // 4 else f"{size / 1024:g} KiB"


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, "payload_too_large", f"request body is over the {size_text(limit)} limit")


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` (not after buffering it all)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int, *, empty: Any = None) -> Any:
    """The body parsed as JSON; `empty` when there is no body; 400 when it is not JSON."""
    return parse_json(await read_body(request, limit), empty=empty)


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    """A body parsed as JSON; `empty` when there is none; 400 when it is not JSON."""
    if not raw.strip():
        return empty
    try:
        return _json.loads(raw)
    except _json.JSONDecodeError as exc:
        raise HTTPError(400, "invalid_json", f"request body is not valid JSON: {exc}") from None


async def read_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object ({} when empty)."""
    body = await read_json(request, limit, empty={})
    if not isinstance(body, dict):
        raise HTTPError(400, "invalid_request", "request body must be a JSON object")
    return body
