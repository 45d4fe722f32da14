"""Following a job as it runs: its chunks as they are stored, then its final row.

Route calls turn these events into chunked bytes, SSE calls into `data:` frames, OpenAI calls into
OpenAI's events (a `Framing`); all read the same stored chunks, so every stream is the same stream
whichever way it is watched.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from podium import _json
from podium.dispatch.jobs import Job
from podium.dispatch.keys import job_key
from podium.dispatch.notify import wait_event
from podium.dispatch.states import FINAL, JobStatus
from podium.server.runtime import Runtime


@dataclass(frozen=True)
class Chunk:
    value: Any


@dataclass(frozen=True)
class Idle:
    """Nothing happened for a while (SSE sends a keep-alive comment)."""


@dataclass(frozen=True)
class End:
    job: Job | None  # None: the job is gone (its ttl ran out)


async def follow(rt: Runtime, job_id: str, idle_after: float) -> AsyncIterator[Chunk | Idle | End]:
    """The job's chunks in order, an Idle after each `idle_after` seconds of silence, then End."""
    seq = -1
    with rt.notifier.listen(job_key(job_id)) as ev:
        while True:
            chunks = await rt.queue.chunks(job_id, seq)
            for c in chunks:
                seq = c.seq
                yield Chunk(c.value)
            if chunks:
                continue
            job = await rt.queue.get(job_id)
            if job is None or job.status in FINAL:
                if job is not None:  # chunks stored between our last read and the end
                    for c in await rt.queue.chunks(job_id, seq):
                        yield Chunk(c.value)
                yield End(job)
                return
            if not await wait_event(ev, idle_after):
                yield Idle()


def chunk_bytes(value: Any) -> bytes:
    """A yielded value as bytes: text as UTF-8, bytes as they were, anything else as a JSON line."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    return _json.dumpb(value) + b"\n"


class Framing(Protocol):
    """How a surface writes a stream: each chunk, then what ends it once the job completed, or
    what ends it when the job failed after the first chunk (None: the connection is cut)."""

    def chunk(self, value: Any) -> bytes: ...

    def end(self, returned: Any) -> bytes: ...

    def failed(self, error: Exception) -> bytes | None: ...


class RawBytes:
    """A route's chunks as raw bytes (`chunk_bytes`); a streaming route that returned instead of
    yielding sends its value as the one chunk."""

    def chunk(self, value: Any) -> bytes:
        return chunk_bytes(value)

    def end(self, returned: Any) -> bytes:
        return b"" if returned is None else chunk_bytes(returned)

    def failed(self, error: Exception) -> bytes | None:
        return None


class Streaming(StreamingResponse):
    """A stream that calls `abandoned` when its client leaves before the stream ended."""

    def __init__(self, body: AsyncIterator[bytes], abandoned: Callable[[], Awaitable[None]] | None, **kw: Any) -> None:
        super().__init__(body, **kw)
        self.abandoned = abandoned
        self.ended = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.ended and self.abandoned is not None:
                await self.abandoned()


async def first_chunk_response(
    rt: Runtime,
    job_id: str,
    failure: Callable[[Job], Exception],
    *,
    media_type: str,
    end_quietly: bool = False,
    framing: Framing | None = None,
    abandoned: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """A streaming route's answer as it yields, each chunk written by `framing` (raw bytes by
    default). The headers wait for the first chunk, so a route that fails at once still gets its
    surface's error answer (`failure`). A failure after that ends the stream: with the framing's
    error event where it has one, else with an error (the connection is cut, so the client
    cannot take a partial answer for a whole one), or quietly with `end_quietly` where the
    surface's clients expect it. One silent for `route_wait`
    seconds ends the stream (the job goes on); `abandoned` is called when the client leaves
    before the stream ended."""
    frames = framing or RawBytes()

    async def chunks() -> AsyncIterator[bytes]:
        async for event in follow(rt, job_id, rt.settings.route_wait):
            if isinstance(event, Chunk):
                yield frames.chunk(event.value)
            elif isinstance(event, End):
                job = event.job
                if job is not None and job.status != JobStatus.COMPLETED:
                    raise failure(job)
                returned = _json.loads(job.output_json) if job is not None and job.output_json else None
                tail = frames.end(returned)
                if tail:
                    yield tail
                return
            else:
                return

    gen = chunks()
    try:
        first = await anext(gen)
    except StopAsyncIteration:
        return Response(b"", media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        yield first
        try:
            async for chunk in gen:
                yield chunk
        except Exception as exc:
            response.ended = True
            last = frames.failed(exc)
            if last is not None:
                yield last
            elif not end_quietly:
                raise
        response.ended = True

    response = Streaming(
        body(),
        abandoned,
        media_type=media_type,
        headers={"X-Podium-Job-Id": job_id, "Cache-Control": "no-cache"},
    )
    return response


def chunk_content(value: Any) -> Any:
    """A yielded value as SSE content: bytes become text, everything else stays a JSON value."""
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"]).decode(errors="replace")
    return value


def outputs(value: Any) -> dict[str, dict[str, Any]]:
    """Laminar's outputs: one per key of a dict result, else one named `output`."""
    if isinstance(value, dict):
        return {str(k): {"value": node_input(v)} for k, v in value.items()}
    return {"output": {"value": node_input(value)}}


def node_input(value: Any) -> Any:
    """An output value as every Laminar client accepts it: lmnr 0.1.1 and 0.3.7 parse it as
    `NodeInput` (a string or a list of chat messages, under pydantic v2, which turns no number
    into a string) and raise on a 200 that carries anything else, numbers and lists of strings
    included. Those two pass as they are; every other value travels as its JSON text."""
    if isinstance(value, str) or (isinstance(value, list) and all(_is_chat_message(v) for v in value)):
        return value
    return _json.dumps(value)


def _is_chat_message(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"role", "content"}
        and isinstance(value["role"], str)
        and isinstance(value["content"], str)
    )


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + _json.dumpb(data) + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"


async def sse_frames(rt: Runtime, job_id: str, error_text: Any) -> AsyncIterator[bytes]:
    """`NodeChunk` frames, keep-alive comments while waiting, then exactly one terminal frame."""
    async for event in follow(rt, job_id, rt.settings.sse_keepalive):
        if isinstance(event, Chunk):
            yield sse({"type": "NodeChunk", "content": chunk_content(event.value)})
        elif isinstance(event, Idle):
            yield KEEPALIVE
        else:
            job = event.job
            if job is not None and job.status == "COMPLETED":
                value = _json.loads(job.output_json)
                yield sse({"type": "GraphRunOutput", "outputs": outputs(value), "runId": job_id})
            else:
                yield sse({"type": "RunEndpointEventError", "error": error_text(job), "runId": job_id})
