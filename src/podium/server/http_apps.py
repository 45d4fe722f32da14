"""Requests to HTTP-app services (ASGI/WSGI apps): the request travels as a job, the worker calls
the app, and its answer comes back as it was sent (status, headers, streamed body).

Podium's own credentials (`Authorization`, `x-api-key`) are consumed here and never reach the app.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from podium.core.access import Principal
from podium.core.calls import Target
from podium.records import RouteRecord
from podium.sdk.httpapp import START
from podium.server.body import MB, read_body
from podium.server.errors import HTTPError
from podium.server.runtime import Runtime
from podium.server.streams import Chunk, End, Idle, chunk_bytes, follow
from podium.store.records import Endpoint

LIMIT = 20 * MB
#: Not passed to the app: Podium's credentials, and hop-by-hop headers.
DROP_REQUEST = {
    "authorization",
    "x-api-key",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "upgrade",
    "te",
    "proxy-authorization",
}
DROP_RESPONSE = {"connection", "keep-alive", "transfer-encoding", "content-length"}


async def http_call(
    rt: Runtime,
    principal: Principal,
    ep: Endpoint,
    route: RouteRecord,
    request: Request,
    endpoint: str,
    subpath: str,
    failure: Any,
) -> Response:
    body = await read_body(request, LIMIT)
    payload = {
        "method": request.method,
        "root_path": f"/{endpoint}",
        "path": "/" + subpath,
        "query_string": request.url.query,
        "headers": [[k, v] for k, v in request.headers.items() if k.lower() not in DROP_REQUEST],
        "body": base64.b64encode(body).decode(),
    }
    # A whole HTTP request, not keyword arguments: the app itself answers a bad one.
    job_id = (await rt.calls.call(principal, Target(ep, route), payload, check_args=False)).job_id
    events = follow(rt, job_id, rt.settings.route_wait)
    start: dict[str, Any] | None = None
    async for event in events:
        if isinstance(event, Chunk) and isinstance(event.value, dict) and START in event.value:
            start = event.value[START]
            break
        if isinstance(event, End):
            if event.job is None:
                raise HTTPError(504, "timeout", "the request expired before the app answered")
            raise failure(event.job)
        if isinstance(event, Idle):
            raise HTTPError(504, "timeout", f"the app has not answered; job {job_id}", extra={"id": job_id})
    assert start is not None

    async def rest() -> AsyncIterator[bytes]:
        async for ev in events:
            if isinstance(ev, Chunk):
                yield chunk_bytes(ev.value)
            else:
                return

    headers = [(k, v) for k, v in start["headers"] if k.lower() not in DROP_RESPONSE]
    response = StreamingResponse(rest(), status_code=start["status"])
    response.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    response.raw_headers.append((b"x-podium-job-id", job_id.encode()))
    return response
