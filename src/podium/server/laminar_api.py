"""Laminar-style calls: POST /v1/pipeline/run and POST /v2/endpoint/run.

The named endpoint's default route is called with `inputs` as keyword arguments and `env` as the
job's environment. The answer is `{"outputs": {NAME: {"value": V}}, "runId": ID}`, or with
`"stream": true` server-sent events: `NodeChunk` frames, then one `GraphRunOutput` or
`RunEndpointEventError`. Errors are 400 `{"error_code", "error_message"}` in Laminar's style.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from podium import _json
from podium.core.calls import Failure, answered_status, error_of, failure_of
from podium.core.errors import DomainError, EndpointUnavailable, InvalidRequest, NotFound
from podium.core.options import JobOptions, parse_env
from podium.dispatch.jobs import Job
from podium.server.auth import caller, runtime
from podium.server.body import MB, read_json
from podium.server.errors import HTTPError, from_domain, status_of
from podium.server.responses import JSONAnswer
from podium.server.routes_api import error_text, event_stream
from podium.server.streams import outputs

router = APIRouter(tags=["laminar"])

LIMIT = 20 * MB


class LaminarError(HTTPError):
    """Answered as `{"error_code", "error_message"}`, the shape Laminar clients parse."""

    def __init__(self, code: str, message: str, status_code: int = 400) -> None:
        super().__init__(status_code, code, message)

    def body(self) -> dict[str, Any]:
        return {"error_code": self.error, "error_message": self.detail}


def _failure(job: Job) -> LaminarError:
    """A required argument is checked where the initializer's defaults are known: on the worker."""
    message = error_text(job)
    how = failure_of(job)
    if how == Failure.INVALID_ARGUMENTS:
        code = "api.missingGraphInput" if "missing" in message else "api.invalidRequest"
        return LaminarError(code, error_of(job).get("message") or message)
    if how == Failure.HTTP_ERROR:
        return LaminarError("api.invalidRequest", message, answered_status(job) or 400)
    return LaminarError("api.GraphRunningError", message)


def _laminar(exc: DomainError) -> HTTPError:
    """The core's errors in Laminar's words (the one place this surface maps them). Key and rate
    errors keep Podium's own shape, as for every surface."""
    if isinstance(exc, NotFound) and exc.what == "endpoint":
        return LaminarError("api.noTargetPipeline", f"no endpoint named {exc.ref!r}")
    if isinstance(exc, (InvalidRequest, EndpointUnavailable)):
        return LaminarError("api.invalidRequest", exc.detail, status_of(exc))
    return from_domain(exc)


async def _run(request: Request, target_key: str) -> Response:
    rt = runtime(request)
    principal = await caller(request, "invoke", scoped=True)  # its endpoint: `access.endpoint` below
    body = await read_json(request, LIMIT)
    if not isinstance(body, dict):
        raise LaminarError("api.invalidRequest", "request body must be a JSON object")
    target = body.get(target_key)
    if not isinstance(target, str) or not target:
        raise LaminarError("api.invalidRequest", f'"{target_key}" must name an endpoint')
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise LaminarError("api.invalidRequest", '"inputs" must be an object of named inputs')
    if "env" not in body:
        raise LaminarError("api.invalidRequest", '"env" is required (an object, {} for none)')
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise LaminarError("api.invalidRequest", '"metadata" must be an object')
    try:
        env = parse_env(body["env"])
        outcome = await rt.calls.call(
            principal,
            await rt.calls.target(principal, target),
            inputs,
            options=JobOptions(env=env),
            wait=None if body.get("stream") else rt.settings.route_wait,
        )
    except DomainError as exc:
        raise _laminar(exc) from None
    job_id = outcome.job_id
    if body.get("stream"):
        return event_stream(rt, job_id)
    if not outcome.ended:
        raise LaminarError("api.timeout", f"run {job_id} is still going; its runId is {job_id}", 504)
    assert outcome.job is not None
    if not outcome.completed:
        raise _failure(outcome.job)
    return JSONAnswer({"outputs": outputs(_json.loads(outcome.job.output_json)), "runId": job_id})


@router.post("/v1/pipeline/run", response_model=None)
async def pipeline_run(request: Request) -> Response:
    """`{pipeline, inputs, env, metadata, stream, traceId, parentSpanId}`."""
    return await _run(request, "pipeline")


@router.post("/v2/endpoint/run", response_model=None)
async def endpoint_run(request: Request) -> Response:
    """`{endpoint, inputs, env, metadata, stream}`."""
    return await _run(request, "endpoint")
