"""OpenAI-compatible routes, as RunPod serves them: `/v2/{endpoint}/openai/v1/chat/completions`,
`/completions`, `/embeddings` (POST) and `/models` (GET), so that the `openai` clients, and the
tools built on them, reach an endpoint by their `base_url`.

A request becomes a job whose input is `{"openai_route": "/v1/chat/completions", "openai_input":
BODY}` (RunPod's shape, which worker-vllm reads), on the endpoint's OpenAI route of that path (a
Podium service's `openai=True` route) or else on its RunPod handler. The worker yields the whole
OpenAI object, or with `"stream": true` OpenAI's chunks: objects, lists of them (worker-vllm's
batches) or raw `data:` text; this router answers the object as the body, or the chunks as
server-sent events as they come, ending with `data: [DONE]`. A client that leaves a stream
cancels its job. Errors are OpenAI's `{"error": {"message", "type", "code"}}`, with the status the
clients turn into their typed errors.
"""

from __future__ import annotations

import ast
import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response

from podium import _json
from podium.core.access import Principal
from podium.core.calls import Failure, Outcome, Target, answered_status, error_of, failure_of
from podium.core.errors import DomainError, NotFound
from podium.dispatch.jobs import Job
from podium.dispatch.states import FINAL
from podium.records import RouteRecord, default_route
from podium.server.auth import endpoint_caller, runtime
from podium.server.body import read_object
from podium.server.cancels import cancel_job
from podium.server.errors import HTTPError, from_domain
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.server.streams import first_chunk_response, sse
from podium.store.records import Endpoint

router = APIRouter(prefix="/v2/{endpoint_id}/openai/v1", tags=["openai"])

#: The body field each route cannot do without, as OpenAI's API requires it.
REQUIRED = {"/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input"}
#: OpenAI's error `type` for each status (5xx: server_error).
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
DONE = b"data: [DONE]\n\n"


class OpenAIError(HTTPError):
    """Answered as `{"error": {"message", "type", "code"}}`, the shape OpenAI's clients parse."""

    def __init__(self, status_code: int, message: str, code: str | int | None = None, kind: str | None = None) -> None:
        super().__init__(status_code, str(code) if code is not None else "error", message)
        self.code = code
        fallback = "server_error" if status_code >= 500 else "invalid_request_error"
        self.kind = kind or TYPES.get(status_code, fallback)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.detail, "type": self.kind, "code": self.code}}


@contextlib.contextmanager
def openai_errors() -> Iterator[None]:
    """Every error a request raises, in OpenAI's words (the one place this surface maps them)."""
    try:
        yield
    except OpenAIError:
        raise
    except DomainError as exc:
        raise _from_http(from_domain(exc)) from None
    except HTTPError as exc:
        raise _from_http(exc) from None


def _from_http(exc: HTTPError) -> OpenAIError:
    error = OpenAIError(exc.status_code, str(exc.detail), exc.error)
    error.headers = exc.headers
    return error


def _worker_error(text: str | None) -> dict[str, Any]:
    """An OpenAI error a RunPod worker reported (worker-vllm yields `{"error": {...}}`, which the
    runpod SDK passes on as its Python text); {} for any other error."""
    if not text or not text.startswith("{") or len(text) > 65536:
        return {}
    for parse in (_json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except Exception:
            continue
        if isinstance(value, dict):
            inner = value.get("error", value)
            return inner if isinstance(inner, dict) and isinstance(inner.get("message"), str) else {}
    return {}


def failure(job: Job) -> OpenAIError:
    """A job that did not complete, as OpenAI's error: the worker's own OpenAI error with its
    code as the status, a route's HTTP error or refused arguments as theirs, else a 5xx."""
    how, info = failure_of(job), error_of(job)
    if how == Failure.INVALID_ARGUMENTS:
        return OpenAIError(400, info.get("message") or str(job.error), "invalid_arguments")
    if how == Failure.HTTP_ERROR:
        return OpenAIError(answered_status(job) or 500, info.get("message") or str(job.error))
    if how == Failure.WORKER_LOST:
        return OpenAIError(502, str(job.error), "worker_lost")
    if how in (Failure.TIMED_OUT, Failure.CANCELLED):
        return OpenAIError(502, f"the job ended {job.status}", job.status.lower())
    reported = _worker_error(job.error)
    if reported:
        code = reported.get("code")
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        kind = reported.get("type")
        return OpenAIError(status, reported["message"], code, kind if isinstance(kind, str) else None)
    message = f"{info['type']}: {info.get('message')}" if info.get("type") else str(job.error)
    return OpenAIError(500, message.splitlines()[0] if message else "the worker failed", "route_error")


class OpenAIEvents:
    """A job's chunks as OpenAI's server-sent events (`podium.server.streams.Framing`): raw `data:`
    text passes as it is, an object or a list of objects becomes one event each; `[DONE]` ends it."""

    def __init__(self) -> None:
        self.sent = False
        self.done = False

    def chunk(self, value: Any) -> bytes:
        self.sent = True
        if isinstance(value, str):
            self.done = self.done or DONE.strip() in value.encode()
            return value.encode()
        return b"".join(sse(item) for item in (value if isinstance(value, list) else [value]))

    def end(self, returned: Any) -> bytes:
        """[DONE] (unless the worker sent it); a worker that returned its whole answer instead
        of streaming sends it first."""
        body = b"" if self.sent or returned is None else self.chunk(returned)
        return body if self.done else body + DONE

    def failed(self, error: Exception) -> bytes | None:
        """A failure after the first event: OpenAI's error event, which its clients raise (no
        [DONE], so none takes the partial answer for a whole one)."""
        return sse(error.body()) if isinstance(error, HTTPError) else None


def whole(output: Any) -> Any:
    """The OpenAI object of a job's output: a generator's one yield comes back as a list of one
    (`return_aggregate_stream`)."""
    return output[0] if isinstance(output, list) and len(output) == 1 else output


def own_routes(routes: list[RouteRecord]) -> list[RouteRecord]:
    """A service's `openai=True` routes (a RunPod handler marked `openai` reads the route itself)."""
    return [r for r in routes if r.get("openai") and r["kind"] == "route"]


async def _target(rt: Runtime, principal: Principal, ep: Endpoint, openai_route: str) -> Target:
    """The service's OpenAI route of that path, or else a RunPod handler (which reads
    `openai_route` itself)."""
    routes = await rt.calls.routes(ep)
    if own_routes(routes):
        with contextlib.suppress(NotFound):
            target = await rt.calls.target(principal, ep, openai_route.strip("/"))
            if target.route.get("openai"):
                return target
    elif default_route(routes)["kind"] == "handler":
        return await rt.calls.target(principal, ep)
    served = ", ".join(r["path"] for r in own_routes(routes)) or "none"
    raise NotFound(
        "route",
        openai_route,
        detail=f"endpoint {ep.name} serves no OpenAI route {openai_route} (its OpenAI routes: {served})",
    )


async def _answer(rt: Runtime, outcome: Outcome) -> Response:
    if not outcome.ended:
        raise OpenAIError(504, f"the job is still running; poll its status: job {outcome.job_id}", "timeout")
    assert outcome.job is not None
    if not outcome.completed:
        raise failure(outcome.job)
    output = whole(_json.loads(outcome.job.output_json) if outcome.job.output_json else None)
    return JSONAnswer(output, headers={"X-Podium-Job-Id": outcome.job_id})


async def _call(request: Request, endpoint_id: str, openai_route: str) -> Response:
    with openai_errors():
        rt = runtime(request)
        principal, ep = await endpoint_caller(request, "invoke", endpoint_id)
        body = await read_object(request, rt.settings.max_body)
        required = REQUIRED[openai_route]
        if required not in body:
            raise OpenAIError(400, f"{required} is required", "missing_required_parameter")
        if "stream" in body and not isinstance(body["stream"], bool):
            raise OpenAIError(400, "stream must be true or false", "invalid_type")
        stream = body.get("stream") is True
        outcome = await rt.calls.call(
            principal,
            await _target(rt, principal, ep, openai_route),
            {"openai_route": openai_route, "openai_input": body},
            kind="openai",
            wait=None if stream else rt.settings.route_wait,
            idempotency_key=request.headers.get("idempotency-key"),
            check_args=False,
        )
        if not stream:
            return await _answer(rt, outcome)
        job_id = outcome.job_id

        async def abandoned() -> None:
            job = await rt.queue.get(job_id)
            if job is not None and job.status not in FINAL:
                await cancel_job(rt, ep, job)

        return await first_chunk_response(
            rt, job_id, failure, media_type="text/event-stream", framing=OpenAIEvents(), abandoned=abandoned
        )


@router.post("/chat/completions", response_model=None)
async def chat_completions(request: Request, endpoint_id: str) -> Response:
    """OpenAI's chat completion: `{model, messages, stream, ...}`."""
    return await _call(request, endpoint_id, "/v1/chat/completions")


@router.post("/completions", response_model=None)
async def completions(request: Request, endpoint_id: str) -> Response:
    """OpenAI's (legacy) text completion: `{model, prompt, stream, ...}`."""
    return await _call(request, endpoint_id, "/v1/completions")


@router.post("/embeddings", response_model=None)
async def embeddings(request: Request, endpoint_id: str) -> Response:
    """OpenAI's embeddings: `{model, input}`."""
    return await _call(request, endpoint_id, "/v1/embeddings")


@router.get("/models", response_model=None)
async def models(request: Request, endpoint_id: str) -> Response:
    """The models the endpoint answers to: a service's OpenAI routes' `model` names (default:
    its name); a RunPod worker is asked (`{"openai_route": "/v1/models"}`, as worker-vllm reads it)."""
    with openai_errors():
        rt = runtime(request)
        principal, ep = await endpoint_caller(request, "invoke", endpoint_id)
        routes = await rt.calls.routes(ep)
        names = list(dict.fromkeys(r.get("model") or ep.name for r in own_routes(routes)))
        if names:
            created = int(ep.created_at)
            data = [{"id": n, "object": "model", "created": created, "owned_by": "podium"} for n in names]
            return JSONAnswer({"object": "list", "data": data})
        target = await _target(rt, principal, ep, "/v1/models")
        outcome = await rt.calls.call(
            principal,
            target,
            {"openai_route": "/v1/models"},
            kind="openai",
            wait=rt.settings.route_wait,
            check_args=False,
        )
        return await _answer(rt, outcome)


#: What this router serves, for the answer to any other path under it.
SERVED = "POST /v1/chat/completions, POST /v1/completions, POST /v1/embeddings, GET /v1/models"


@router.api_route(
    "/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False, response_model=None
)
async def unknown(request: Request, endpoint_id: str, rest: str) -> Response:
    """Any other path or method under `/openai/v1/` (`/v1/responses`, say): OpenAI's 404 naming what is served."""
    raise OpenAIError(
        404, f"Podium serves no OpenAI route {request.method} /v1/{rest} (it serves {SERVED})", "unknown_route"
    )
