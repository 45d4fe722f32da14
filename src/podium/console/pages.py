"""The console's pages and the few JSON answers its scripts poll. Thin: each reads or acts through
ConsoleData and renders a template."""

from __future__ import annotations

import mimetypes
import re
import secrets
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from podium.console.data import (
    CLIENT_METHODS,
    CLIENT_RENDER_LIMIT,
    ClientRequest,
    ConsoleError,
)
from podium.console.sessions import COOKIE, LOGIN_COOKIE, MAX_AGE, same
from podium.console.snippets import snippets
from podium.console.web import (
    LOGIN,
    PREFIX,
    STATIC,
    Console,
    ConsoleRoute,
    acting,
    as_json,
    check_csrf,
    form,
    sessions,
    signed_in,
    templates,
)
from podium.core.access import KEY_ROLES, METRICS, WORKER
from podium.core.errors import RateLimited
from podium.dispatch.states import JobStatus
from podium.server.body import MB, read_json
from podium.store.records import SCALING

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
Signed = Annotated[Console, Depends(signed_in)]

STATIC_FILES = {p.name for p in STATIC.iterdir() if p.is_file()}
HEADER_LINE = re.compile(r"^([A-Za-z0-9!#$%&'*+.^_`|~-]+):\s*(.*)$")


def _cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


# -- signing in and out ----------------------------------------------------------------------------


def _login_page(request: Request, error: str | None = None, status: int = 200) -> HTMLResponse:
    nonce = secrets.token_urlsafe(24)
    response = templates().TemplateResponse(
        request, "login.html", {"csrf": nonce, "error": error, "viewer": None}, status_code=status
    )
    _cookie(response, request, LOGIN_COOKIE, nonce, 3600)
    return response


@router.get("/login")
async def login_page(request: Request) -> Response:
    if await sessions(request).get(request.cookies.get(COOKIE)) is not None:
        return RedirectResponse(PREFIX, 303)
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    if not same(fields.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
        return _login_page(request, "The sign-in form expired: please try again.", 403)
    key = fields.get("api_key", "").strip()
    try:
        client = request.client.host if request.client else None
        principal = await request.app.state.runtime.access.identify(key, client) if key else None
    except RateLimited as exc:
        return _login_page(request, f"Too many invalid keys: {exc.detail}.", 429)
    if principal is None or principal.role in (WORKER, METRICS):
        return _login_page(request, "That API key is not valid (unknown, revoked or expired).", 401)
    if principal.endpoint_id is not None:
        return _login_page(request, "That key is bound to one endpoint: sign in with a key of the project.", 403)
    response = RedirectResponse(PREFIX, 303)
    _cookie(response, request, COOKIE, await sessions(request).create(key), int(MAX_AGE))
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request, c: Signed) -> Response:
    check_csrf(c, (await form(request)).get("csrf"))
    await sessions(request).end(request.cookies.get(COOKIE))
    response = RedirectResponse(LOGIN, 303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.post("/project")
async def switch_project(request: Request, c: Signed) -> Response:
    """The operator's project switcher."""
    fields = await form(request)
    check_csrf(c, fields.get("csrf"))
    wanted = fields.get("project", "")
    if not c.viewer.operator or wanted not in {p.name for p in c.projects}:
        raise ConsoleError(404, f"no project {wanted!r}")
    c.session.project = wanted  # saved by back()
    return await c.back(PREFIX, "ok", f"Now in project {wanted}.")


# -- services and endpoints --------------------------------------------------------------------------


@router.get("")
async def services(c: Signed) -> Response:
    return await c.page("services.html", services=await c.data.services())


@router.get("/api/services")
async def services_json(c: Signed) -> JSONResponse:
    return as_json(await c.data.services())


@router.get("/endpoints/{name}")
async def endpoint_page(request: Request, c: Signed, name: str) -> Response:
    ep = await c.data.endpoint(name)
    base = str(request.base_url).rstrip("/")
    return await c.page(
        "endpoint.html",
        ep=ep,
        snippets=snippets(ep, base),
        scaling_fields=SCALING,
        batch_sizes=await c.data.batch_sizes(ep.endpoint_id),
    )


@router.get("/api/endpoints/{name}")
async def endpoint_json(c: Signed, name: str) -> JSONResponse:
    return as_json(await c.data.endpoint(name))


@router.get("/api/endpoints/{name}/charts")
async def charts(c: Signed, name: str) -> JSONResponse:
    return as_json(await c.data.charts(name))


@router.get("/api/endpoints/{name}/logs")
async def logs(c: Signed, name: str, offsets: str = "") -> JSONResponse:
    return as_json(await c.data.logs(name, offsets))


@router.post("/endpoints/{name}/rollback")
async def rollback(request: Request, c: Signed, name: str) -> Response:
    fields = await acting(c, request, "deploy")
    version = fields.get("version", "")
    await c.data.rollback(name, version, fields.get("message") or None)
    return await c.back(f"{PREFIX}/endpoints/{name}", "ok", f"{name} now runs version {version}.")


@router.post("/endpoints/{name}/rollout/{step}")
async def end_rollout(request: Request, c: Signed, name: str, step: Literal["promote", "abort"]) -> Response:
    await acting(c, request, "deploy")
    await c.data.end_rollout(name, step)
    done = {"promote": "the canary is promoted", "abort": "the rollout is aborted"}[step]
    return await c.back(f"{PREFIX}/endpoints/{name}", "ok", f"{name}: {done}.")


def _setting(value: str) -> Any:
    """A scaling field as typed in the form: a number when it reads as one."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@router.post("/endpoints/{name}/scaling")
async def scaling(request: Request, c: Signed, name: str) -> Response:
    fields = await acting(c, request, "deploy")
    current = (await c.data.endpoint(name)).scaling
    changes = {
        k: _setting(fields[k].strip())
        for k in SCALING
        if fields.get(k, "").strip() and str(current.get(k)) != fields[k].strip()
    }
    if changes:
        await c.data.scale(name, changes)
    return await c.back(
        f"{PREFIX}/endpoints/{name}",
        "ok",
        f"Scaling of {name} changed: {', '.join(changes)}." if changes else "Nothing changed.",
    )


@router.post("/endpoints/{name}/schedules/{action}")
async def schedule_action(request: Request, c: Signed, name: str, action: Literal["pause", "resume"]) -> Response:
    fields = await acting(c, request, "deploy")
    route = fields.get("route", "")
    await c.data.schedule(name, route, action)
    done = {"pause": "paused", "resume": "resumed"}[action]
    return await c.back(f"{PREFIX}/endpoints/{name}", "ok", f"The schedule of {name} {route} is {done}.")


# After /rollback and /scaling, which this path would shadow.
@router.post("/endpoints/{name}/{action}")
async def endpoint_action(
    request: Request, c: Signed, name: str, action: Literal["stop", "start", "restart"]
) -> Response:
    fields = await acting(c, request, "deploy")
    await c.data.act(name, action)
    done = {"stop": "stopped", "start": "starting", "restart": "restarting its workers"}[action]
    return await c.back(fields.get("next", PREFIX), "ok", f"{name}: {done}.")


# -- jobs ------------------------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs(c: Signed, endpoint: str = "", status: str = "") -> Response:
    if status and status not in JobStatus.__members__:
        raise ConsoleError(400, f"status must be one of {', '.join(JobStatus.__members__)}")
    rows = await c.data.jobs(endpoint or None, status or None)
    names = sorted(s.name for s in await c.data.services())
    return await c.page(
        "jobs.html", jobs=rows, endpoints=names, statuses=list(JobStatus.__members__), endpoint=endpoint, status=status
    )


@router.get("/jobs/{job_id}")
async def job_page(c: Signed, job_id: str) -> Response:
    return await c.page("job.html", job=await c.data.job(job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel(request: Request, c: Signed, job_id: str) -> Response:
    await acting(c, request, "invoke")
    status = await c.data.cancel(job_id)
    return await c.back(f"{PREFIX}/jobs/{job_id}", "ok", f"Job {job_id} is {status}.")


@router.post("/jobs/{job_id}/retry")
async def retry(request: Request, c: Signed, job_id: str) -> Response:
    await acting(c, request, "invoke")
    await c.data.retry(job_id)
    return await c.back(f"{PREFIX}/jobs/{job_id}", "ok", f"Job {job_id} is queued again.")


@router.post("/jobs/{job_id}/redeliver")
async def redeliver(request: Request, c: Signed, job_id: str) -> Response:
    await acting(c, request, "deploy")
    hook = await c.data.redeliver(job_id)
    kind = "ok" if hook["state"] == "delivered" else "error"
    last = hook["attempts"][-1] if hook["attempts"] else {}
    result = last.get("status_code") or last.get("error") or "not sent yet"
    return await c.back(f"{PREFIX}/jobs/{job_id}", kind, f"Webhook sent again: {hook['state']} ({result}).")


# -- the HTTP client -----------------------------------------------------------------------------------


@router.get("/client")
async def client_page(c: Signed, endpoint: str = "") -> Response:
    names = sorted(s.name for s in await c.data.services())
    return await c.page(
        "client.html", endpoints=names, endpoint=endpoint, methods=CLIENT_METHODS, limit=CLIENT_RENDER_LIMIT
    )


def _headers(text: str) -> list[tuple[str, str]]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = HEADER_LINE.match(line.strip())
        if m is None:
            raise ConsoleError(400, f"header line {n} is not `Name: value`: {line.strip()[:80]!r}")
        out.append((m.group(1), m.group(2)))
    return out


@router.post("/api/client/send")
async def client_send(request: Request, c: Signed) -> JSONResponse:
    """Send one request of the HTTP client (JSON in: endpoint, method, path, headers, body)."""
    check_csrf(c, request.headers.get("x-csrf-token"))
    if not c.viewer.can("invoke"):
        raise ConsoleError(403, f"this key's role ({c.viewer.role}) may not call endpoints; needs invoke")
    body = await read_json(request, 21 * MB, empty={})
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k, ""), str) for k in ("endpoint", "method", "path", "headers", "body")
    ):
        raise ConsoleError(400, "send endpoint, method, path, headers and body as strings")
    if not body.get("endpoint"):
        raise ConsoleError(400, "pick an endpoint")
    req = ClientRequest(
        endpoint=body["endpoint"],
        method=body.get("method", "GET").upper(),
        path=body.get("path") or "/",
        headers=_headers(body.get("headers", "")),
        body=body.get("body", ""),
    )
    return as_json(await c.data.send(req))


# -- versions ----------------------------------------------------------------------------------------------


@router.get("/versions")
async def versions(c: Signed) -> Response:
    rows = await c.data.versions()
    names = sorted(s.name for s in await c.data.services())
    detail = [await c.data.version(v.id) for v in rows]
    return await c.page("versions.html", versions=list(zip(rows, detail, strict=True)), endpoints=names)


@router.post("/versions/{version_id}/deploy")
async def deploy_version(request: Request, c: Signed, version_id: str) -> Response:
    fields = await acting(c, request, "deploy")
    name = fields.get("endpoint", "")
    await c.data.rollback(name, version_id, fields.get("message") or f"deploy {version_id} from the console")
    return await c.back(f"{PREFIX}/endpoints/{name}", "ok", f"{name} now runs version {version_id}.")


@router.post("/versions/{version_id}/new-endpoint")
async def new_endpoint(request: Request, c: Signed, version_id: str) -> Response:
    fields = await acting(c, request, "deploy")
    name = fields.get("name", "").strip()
    await c.data.new_endpoint(name, version_id, fields.get("message") or None)
    return await c.back(f"{PREFIX}/endpoints/{name}", "ok", f"Endpoint {name} created from version {version_id}.")


# -- usage -----------------------------------------------------------------------------------------------------

#: The usage chart's size (an inline SVG), in its own units.
CHART_W, CHART_H = 640, 160


def usage_bars(rows: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
    """One bar per row (CPU core-seconds), scaled to the chart: x, width, height, label, value."""
    if not rows:
        return []
    top = max(r["worker_seconds"]["cpu"] for r in rows) or 1.0
    width = CHART_W / len(rows)
    return [
        {
            "x": round(i * width + width * 0.1, 1),
            "width": round(width * 0.8, 1),
            "height": round(CHART_H * r["worker_seconds"]["cpu"] / top, 1),
            "label": r[label],
            "value": r["worker_seconds"]["cpu"],
        }
        for i, r in enumerate(rows)
    ]


@router.get("/usage")
async def usage_page(c: Signed, since: str = "30d", by: Literal["endpoint", "day", "version"] = "day") -> Response:
    report = await c.data.usage(since, by)
    return await c.page(
        "usage.html",
        report=report,
        bars=usage_bars(report["rows"], by),
        chart=(CHART_W, CHART_H),
        since=since,
        by=by,
    )


# -- keys ------------------------------------------------------------------------------------------------------


@router.get("/keys")
async def keys(c: Signed) -> Response:
    if not c.viewer.can("admin"):
        raise ConsoleError(403, "only an admin key may manage keys")
    return await c.page("keys.html", keys=await c.data.keys(), new_key=None, roles=KEY_ROLES)


@router.post("/keys")
async def create_key(request: Request, c: Signed) -> Response:
    """The new key is in this page's answer and nowhere else (not stored, not redirected to)."""
    fields = await acting(c, request, "admin")
    new = await c.data.create_key(fields.get("role", "invoke"), fields.get("name") or None)
    return await c.page("keys.html", keys=await c.data.keys(), new_key=new, roles=KEY_ROLES)


@router.post("/keys/{key_id}/revoke")
async def revoke_key(request: Request, c: Signed, key_id: str) -> Response:
    await acting(c, request, "admin")
    await c.data.revoke_key(key_id)
    return await c.back(f"{PREFIX}/keys", "ok", f"Key {key_id} is revoked.")


# -- files -----------------------------------------------------------------------------------------------------


@router.get("/static/{name}", response_model=None)
async def static(name: str) -> Response:
    if name not in STATIC_FILES:
        raise ConsoleError(404, f"no console file {name!r}")
    kind = "text/javascript" if name.endswith(".js") else mimetypes.guess_type(name)[0]
    return FileResponse(
        STATIC / name, media_type=kind or "application/octet-stream", headers={"Cache-Control": "max-age=300"}
    )
