"""HTTP errors: one exception type, one JSON shape (`{"error", "detail"}`) for every answer, and
the core's domain errors mapped onto it (for RunPod, route calls and admin; Laminar has its own).

Clients that parse the body before checking the status (aiohttp's runpod client does) still work,
because even a 404 for an unknown path or a 500 is JSON with `Content-Type: application/json`.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from podium.core.errors import (
    AmbiguousId,
    Clash,
    Conflict,
    DomainError,
    EndpointUnavailable,
    Forbidden,
    InvalidRequest,
    InvalidSchedule,
    NotFound,
    QueueFull,
    RateLimited,
    Unauthorized,
    VolumeFull,
    WorkerGone,
)
from podium.errors import PodiumError
from podium.server.responses import JSONAnswer

log = logging.getLogger("podium.server")


class HTTPError(PodiumError):
    """An error answer: status code, a short machine-readable `error`, a human `detail`."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: Any = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers
        self.extra = extra or {}
        super().__init__(f"{status_code} {error}: {detail}")

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}

    def response(self) -> JSONAnswer:
        return JSONAnswer(self.body(), status_code=self.status_code, headers=self.headers)


def status_code_name(status: int) -> str:
    """`bad_request` for 400: a status's phrase as an error code (`http_499` for one without)."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return f"http_{status}"


def not_found(what: str, ref: str) -> HTTPError:
    return HTTPError(404, "not_found", f"no {what} {ref!r}")


#: The HTTP status of each domain error (the nearest class in its MRO decides).
STATUS: dict[type[DomainError], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    InvalidRequest: 400,
    InvalidSchedule: 422,
    Conflict: 422,
    AmbiguousId: 409,
    Clash: 409,
    VolumeFull: 507,
    RateLimited: 429,
    QueueFull: 429,
    EndpointUnavailable: 503,
    WorkerGone: 410,
    DomainError: 400,
}


def status_of(exc: DomainError) -> int:
    return next(STATUS[cls] for cls in type(exc).__mro__ if cls in STATUS)


def from_domain(exc: DomainError) -> HTTPError:
    """A domain error as Podium's JSON error answer."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return HTTPError(status_of(exc), exc.code, exc.detail, headers=headers or None, extra=exc.extra)


def store_unavailable(method: str, path: str, exc: OperationalError) -> JSONAnswer:
    # Locked, full, or gone: nothing was stored, and the client must know it was not.
    log.error("store unavailable on %s %s: %s", method, path, exc.orig)
    return JSONAnswer(
        {
            "error": "store_unavailable",
            "detail": "the job store is unavailable (locked, full or unreachable); nothing was stored, retry",
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


def answer(exc: Exception, method: str, path: str) -> JSONAnswer | None:
    """The answer to an error a request raised, or None for a bug (which CatchAll answers)."""
    if isinstance(exc, HTTPError):
        return exc.response()
    if isinstance(exc, DomainError):
        return from_domain(exc).response()
    if isinstance(exc, OperationalError):
        return store_unavailable(method, path, exc)
    return None


def install(app: FastAPI) -> None:
    async def on_error(request: Request, exc: Exception) -> JSONAnswer:
        response = answer(exc, request.method, request.url.path)
        assert response is not None, "registered only for the errors answer() maps"
        return response

    async def on_starlette(_: Request, exc: StarletteHTTPException) -> JSONAnswer:
        phrase = status_code_name(exc.status_code)
        detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
        if detail is None:
            detail = {404: "no such path", 405: "this path does not take that HTTP method"}.get(
                exc.status_code, HTTPStatus(exc.status_code).phrase
            )
        return JSONAnswer({"error": phrase, "detail": detail}, status_code=exc.status_code, headers=exc.headers)

    async def on_validation(_: Request, exc: RequestValidationError) -> JSONAnswer:
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return JSONAnswer({"error": "invalid_request", "detail": problems}, status_code=400)

    for kind in (HTTPError, DomainError, OperationalError):
        app.add_exception_handler(kind, on_error)
    app.add_exception_handler(StarletteHTTPException, on_starlette)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_middleware(CatchAll)


class CatchAll:
    """A bug's answer: a JSON 500, logged once, and the connection kept (Starlette's own handler
    for Exception re-raises after answering, which closes a keep-alive connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:  # too late for an answer of our own: end the broken one
                log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
                raise
            await bug(scope["method"], scope["path"])(scope, receive, send)


def bug(method: str, path: str) -> JSONAnswer:
    """The answer to an exception nothing maps (called in its `except` block: it logs it)."""
    log.exception("unhandled error on %s %s", method, path)
    return JSONAnswer({"error": "internal_error", "detail": "the server failed; see its log"}, status_code=500)
