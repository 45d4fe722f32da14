"""The console's plumbing: templates, who is signed in, CSRF checks, and the headers every page
carries (a Content-Security-Policy that allows no inline script)."""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute

from podium.console.data import ConsoleData, ConsoleError, Project, Viewer
from podium.console.sessions import COOKIE, Session, SessionStore, same
from podium.server.body import MB, read_body

if TYPE_CHECKING:
    from fastapi.templating import Jinja2Templates

HERE = Path(__file__).parent
STATIC = HERE / "static"
PREFIX = "/console"
LOGIN = f"{PREFIX}/login"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def _when(ts: float | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _ago(ts: float | None) -> str:
    if ts is None:
        return "never"
    s = max(0, int(time.time() - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit} ago"
    return f"{s}s ago"


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@functools.cache
def templates() -> Jinja2Templates:
    """The pages' templates, loaded (with jinja2) when the first page is rendered: many servers
    never serve one, and jinja2 with compiled templates costs memory."""
    from fastapi.templating import Jinja2Templates

    found = Jinja2Templates(directory=HERE / "templates")
    found.env.filters.update(when=_when, ago=_ago, ms=_ms, pretty=_pretty)
    return found


class SignInFirst(Exception):
    """No live session: the browser is sent to the sign-in page."""


def sessions(request: Request) -> SessionStore:
    """The console's sessions, in the server's store (one SessionStore per app, kept in its state)."""
    found: SessionStore | None = getattr(request.app.state, "console_sessions", None)
    if found is None:
        found = request.app.state.console_sessions = SessionStore(request.app.state.runtime.store)
    return found


@dataclass
class Console:
    """One signed-in request: the session, what the console may read and do, and who it is."""

    request: Request
    session: Session
    data: ConsoleData
    viewer: Viewer
    projects: list[Project]

    async def page(self, template: str, code: int = 200, **values: Any) -> HTMLResponse:
        flash, self.session.flash = self.session.flash, []
        if flash:  # shown once: consumed for every replica
            await sessions(self.request).save(self.session)
        return templates().TemplateResponse(
            self.request,
            template,
            {
                "viewer": self.viewer,
                "csrf": self.session.csrf,
                "flash": flash,
                "projects": self.projects,
                "path": self.request.url.path,
                **values,
            },
            status_code=code,
        )

    async def back(self, to: str, kind: str = "", message: str = "") -> RedirectResponse:
        """After an action: to `to` (a console path), with a message for that page. The session
        (its messages, its project pick) is saved first, for whichever replica serves that page."""
        if message:
            self.session.flash.append((kind, message))
        await sessions(self.request).save(self.session)
        return RedirectResponse(to if to.startswith(PREFIX + "/") or to == PREFIX else PREFIX, 303)


async def signed_in(request: Request) -> AsyncIterator[Console]:
    found = await sessions(request).get(request.cookies.get(COOKIE))
    if found is None:
        raise SignInFirst
    session, key = found
    data = ConsoleData(request.app, str(request.base_url), key, session.project)
    try:
        try:
            viewer, projects = await data.whoami()
        except ConsoleError:  # revoked or expired since sign-in
            await sessions(request).end(request.cookies.get(COOKIE))
            raise SignInFirst from None
        yield Console(request, session, data, viewer, projects if viewer.operator else [])
    finally:
        await data.close()


async def form(request: Request) -> dict[str, str]:
    """A url-encoded form (the console's forms post nothing else)."""
    raw = await read_body(request, MB)
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def check_csrf(console: Console, sent: str | None) -> None:
    if not same(sent, console.session.csrf):
        raise ConsoleError(403, "the form has expired (its CSRF token does not match): reload the page and try again")


async def acting(console: Console, request: Request, role: str) -> dict[str, str]:
    """The posted form of a state change, once its CSRF token and the key's role are checked."""
    fields = await form(request)
    check_csrf(console, fields.get("csrf"))
    if not console.viewer.can(role):
        raise ConsoleError(403, f"this key's role ({console.viewer.role}) may not do this; needs {role}")
    return fields


def as_json(value: Any, status: int = 200) -> JSONResponse:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    elif isinstance(value, list):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v for v in value]
    return JSONResponse(value, status_code=status)


class ConsoleRoute(APIRoute):
    """Every console answer carries the security headers; a missing session sends the browser to
    sign in, and an error from the API becomes a page (or, under /console/api, JSON)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            api = request.url.path.startswith(f"{PREFIX}/api/")
            try:
                response = await handler(request)
            except SignInFirst:
                response = as_json({"error": "signed out"}, 401) if api else RedirectResponse(LOGIN, 303)
            except ConsoleError as exc:
                response = (
                    as_json({"error": exc.message}, exc.status)
                    if api
                    else templates().TemplateResponse(
                        request,
                        "error.html",
                        {"status": exc.status, "message": exc.message, "viewer": None},
                        status_code=exc.status,
                    )
                )
            response.headers.update(SECURITY_HEADERS)
            if not request.url.path.startswith(f"{PREFIX}/static/"):
                response.headers["Cache-Control"] = "no-store"
            return response

        return run
