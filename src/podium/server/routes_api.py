"""Route calls (Covalent-style): POST /{endpoint}/{route} with a JSON object of keyword arguments.

Answered with the route's JSON return value; a streaming route answers chunked bytes as the worker
produces them. These calls take the same path as RunPod jobs: stored, taken, finished.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.engine import RowMapping

from podium import _json
from podium.dispatch.notify import wait_event
from podium.dispatch.queue import job_key
from podium.dispatch.states import FINAL, WORKER_LOST, JobStatus
from podium.server.body import MB, read_object
from podium.server.calls import check_arguments, check_callable, find_route, submit
from podium.server.errors import HTTPError
from podium.server.runtime import Runtime

router = APIRouter(tags=["routes"])

ROUTE_LIMIT = 20 * MB


def failure(row: RowMapping) -> HTTPError:
    """The error answer for a job that did not complete."""
    info = _json.loads(row["error_info"]) or {}
    extra = {"id": row["id"]}
    if row["status"] == JobStatus.FAILED and info.get("type") == "InvalidArguments":
        return HTTPError(400, "invalid_arguments", info.get("message") or row["error"], extra=extra)
    if row["error"] == WORKER_LOST:
        return HTTPError(502, "worker_lost", row["error"], extra=extra)
    if row["status"] != JobStatus.FAILED:
        return HTTPError(502, row["status"].lower(), row["error"] or row["status"], extra=extra)
    extra.update(type=info.get("type"), message=info.get("message"), traceback=info.get("traceback"))
    return HTTPError(500, "route_error", row["error"], extra=extra)


def encode_chunk(value: Any) -> bytes:
    """A yielded value as bytes: text as UTF-8, bytes as they were, anything else as a JSON line."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    return _json.dumpb(value) + b"\n"


async def _chunks(rt: Runtime, job_id: str) -> AsyncIterator[bytes]:
    """Yield a job's chunks as they are stored; raise the job's failure at the end, if any."""
    seq = -1
    with rt.notifier.listen(job_key(job_id)) as ev:
        while True:
            chunks = await rt.queue.chunks(job_id, seq)
            for c in chunks:
                seq = c["seq"]
                yield encode_chunk(_json.loads(c["data"]))
            if chunks:
                continue
            row = await rt.queue.get(job_id)
            if row is None:
                return
            if row["status"] in FINAL:
                for c in await rt.queue.chunks(job_id, seq):
                    yield encode_chunk(_json.loads(c["data"]))
                if row["status"] != JobStatus.COMPLETED:
                    raise failure(row)
                return
            await wait_event(ev, rt.settings.route_wait)


async def _streaming(rt: Runtime, job_id: str) -> Response:
    """Headers wait for the first chunk, so a route that fails at once still gets a real error."""
    gen = _chunks(rt, job_id)
    try:
        first = await anext(gen)
    except StopAsyncIteration:
        return Response(b"", media_type="application/octet-stream")

    async def body() -> AsyncIterator[bytes]:
        yield first
        async for chunk in gen:
            yield chunk

    return StreamingResponse(body(), media_type="application/octet-stream",
                             headers={"X-Podium-Job-Id": job_id, "Cache-Control": "no-cache"})


@router.post("/{endpoint}/{route:path}", response_model=None)
async def call_route(request: Request, endpoint: str, route: str) -> Response:
    rt: Runtime = request.app.state.runtime
    principal = await rt.keys.authenticate(request)
    ep = await rt.endpoint(principal, endpoint)
    kwargs = await read_object(request, ROUTE_LIMIT)
    routes = await rt.routes(ep)
    spec = find_route(routes, route)
    if spec is None:
        known = ", ".join(r["path"] for r in routes)
        raise HTTPError(404, "not_found", f"endpoint {ep['name']} has no route /{route} (routes: {known})")
    check_arguments(spec, kwargs)
    check_callable(ep)
    job_id = await submit(rt, principal, ep, spec, kwargs, kind="route")
    if spec["streaming"]:
        return await _streaming(rt, job_id)
    row = await rt.queue.wait_final(job_id, rt.settings.route_wait)
    assert row is not None
    if row["status"] not in FINAL:
        raise HTTPError(
            504, "timeout",
            f"the route is still running; poll /v2/{ep['id']}/status/{job_id}",
            extra={"id": job_id},
        )
    if row["status"] != JobStatus.COMPLETED:
        raise failure(row)
    return Response(row["output"], media_type="application/json", headers={"X-Podium-Job-Id": job_id})
