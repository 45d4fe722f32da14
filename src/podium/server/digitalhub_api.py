"""DigitalHub Core's REST surface, enough for the real `digitalhub` SDK and its Python runtime:
projects, functions, tasks and serve runs under /api/v1, run actions (stop, resume, logs), the
run's service URL, and the console's gateway proxy.

Entities are kept as the SDK sent them (`podium.digitalhub.records`); a serve run deploys its
function as an ordinary endpoint and version (`podium.digitalhub.runs`) and every request to its
service is a job on the one call path. Lists are Spring pages; errors carry the texts the SDK
maps ("No such EntityName", "Duplicated entity", "missing spec").
"""

from __future__ import annotations

import base64
from collections.abc import AsyncGenerator, Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Scope

from podium import _json
from podium.core.access import Principal
from podium.core.errors import DomainError, InvalidRequest, NotFound
from podium.digitalhub.build import source_code
from podium.digitalhub.records import Entity, new_entity_id
from podium.digitalhub.runs import Where, service_path, split_envs
from podium.dispatch.jobs import Job
from podium.logs import tail, worker_logs
from podium.names import DIGITALHUB_ID
from podium.server.admin import keys as admin_keys
from podium.server.auth import caller, runtime
from podium.server.body import MB, read_body, read_object
from podium.server.errors import HTTPError, status_of
from podium.server.http_apps import http_call
from podium.server.responses import JSONAnswer
from podium.server.routes_api import error_text
from podium.server.user_content import content_host

#: The collections of a project this surface keeps (the SDK's entity types, plural in paths).
TYPES = {"functions": "function", "tasks": "task", "runs": "run"}
LIMIT = 16 * MB
#: Request bodies and answers through the gateway proxy (read no further than this).
PROXY_LIMIT = 4 * MB
ANY = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


class DigitalHubError(HTTPError):
    """Answered as DigitalHub Core does: `{"status", "error", "message"}`."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(status_code, HTTPStatus(status_code).phrase, message)

    def body(self) -> dict[str, Any]:
        return {"status": self.status_code, "error": self.error, "message": self.detail}


def _dh(exc: DomainError) -> DigitalHubError:
    """The core's errors in DigitalHub's words (the one place this surface maps them): the SDK
    picks its exception by status and by these texts."""
    if isinstance(exc, NotFound):
        return DigitalHubError(404, f"No such EntityName: {exc.what} {exc.ref}")
    return DigitalHubError(status_of(exc), exc.detail)


class DigitalHubRoute(APIRoute):
    """Every route of this router answers domain errors in DigitalHub's shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as exc:
                return _dh(exc).response()

        return guarded


router = APIRouter(prefix="/api/v1", tags=["digitalhub"], route_class=DigitalHubRoute)


def _where(request: Request) -> Where:
    """Where the run's service is served (the user content origin, when the operator set one)."""
    return Where(*content_host(request))


def _page(items: list[dict[str, Any]], page: int, size: int) -> JSONAnswer:
    """A Spring Data page, as Core's list endpoints answer."""
    size = max(1, min(size, 1000))
    page = max(0, page)
    total = len(items)
    pages = (total + size - 1) // size
    content = items[page * size : (page + 1) * size]
    return JSONAnswer(
        {
            "content": content,
            "totalElements": total,
            "totalPages": pages,
            "size": size,
            "number": page,
            "numberOfElements": len(content),
            "first": page == 0,
            "last": page >= pages - 1,
            "empty": not content,
            "pageable": {"pageNumber": page, "pageSize": size, "offset": page * size},
        }
    )


def _matches(body: dict[str, Any], filters: dict[str, str]) -> bool:
    spec = body.get("spec") or {}
    return all(str(body.get(k, spec.get(k))) == v for k, v in filters.items())


def _entity_body(entity: Entity) -> dict[str, Any]:
    body = dict(entity.body)
    body.setdefault("status", {"state": "CREATED"})
    return body


class Surface:
    """One request's view: who calls, in which DigitalHub project."""

    def __init__(self, request: Request, principal: Principal, project: str) -> None:
        self.request = request
        self.principal = principal
        self.project = project
        self.runs = runtime(request).serve_runs
        self.records = self.runs.records

    async def get(self, type_: str, ref: str) -> Entity:
        found = await self.records.get(self.principal.project_id, self.project, type_, ref)
        if found is None:
            raise NotFound(type_, ref)
        return found

    async def show(self, entity: Entity) -> dict[str, Any]:
        body = _entity_body(entity)
        if entity.type == "run":
            status = await self.runs.status(entity, _where(self.request))
            if "service" in status and not self.principal.can("invoke"):
                # Its URL carries the token that calls the service without a key: invoke keys and up.
                status["service"] = {k: v for k, v in status["service"].items() if k != "url"}
            body["status"] = status
        return body


async def _surface(request: Request, project: str, role: str) -> Surface:
    """The caller, allowed to act as `role`, in the DigitalHub project `project` ("-": none yet)."""
    surface = Surface(request, await caller(request, role), project)
    if project != "-" and await surface.records.get(surface.principal.project_id, project, "project", project) is None:
        raise NotFound("project", project)
    return surface


# -- projects ------------------------------------------------------------------------------------


@router.post("/projects", response_model=None, include_in_schema=False)
async def create_project(request: Request) -> Response:
    """DigitalHub's project (its body has a `kind`), or else Podium's own (admin API). The admin API
    documents the path: two operations of one path and method would be one too many in OpenAPI."""
    raw = await read_body(request, LIMIT)
    try:
        body = _json.loads(raw) if raw.strip() else {}
    except _json.JSONDecodeError:
        body = None
    if not isinstance(body, dict) or "kind" not in body:
        return await admin_keys.create_project(_replay(request, request.method, request.scope["headers"], raw))
    surface = await _surface(request, "-", "deploy")
    name = body.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("missing spec: a project needs a name")
    DIGITALHUB_ID.check(name)
    if await surface.records.get(surface.principal.project_id, name, "project", name) is not None:
        raise DigitalHubError(400, f"Duplicated entity: project {name}")
    body = {**body, "id": DIGITALHUB_ID.check(body.get("id") or name), "key": body.get("key") or f"store://{name}"}
    entity = await surface.records.put(surface.principal.project_id, name, "project", body, row_id=new_entity_id())
    return JSONAnswer(_entity_body(entity))


@router.get("/projects/{name}")
async def get_project(request: Request, name: str) -> JSONAnswer:
    surface = await _surface(request, name, "read")
    return JSONAnswer(_entity_body(await surface.get("project", name)))


@router.put("/projects/{name}")
async def update_project(request: Request, name: str) -> JSONAnswer:
    surface = await _surface(request, name, "deploy")
    entity = await surface.get("project", name)
    body = await read_object(request, LIMIT)
    saved = await surface.records.put(
        surface.principal.project_id, name, "project", {**body, "id": entity.body["id"]}, row_id=entity.id
    )
    return JSONAnswer(_entity_body(saved))


@router.delete("/projects/{name}")
async def delete_project(request: Request, name: str) -> JSONAnswer:
    """The project's record; its runs are stopped and removed with their endpoints first."""
    surface = await _surface(request, name, "deploy")
    entity = await surface.get("project", name)
    for run in await surface.records.list(surface.principal.project_id, name, "run"):
        await surface.runs.remove(surface.principal, run)
    for type_ in ("task", "function"):
        for other in await surface.records.list(surface.principal.project_id, name, type_):
            await surface.records.delete(surface.principal.project_id, other.id)
    await surface.records.delete(surface.principal.project_id, entity.id)
    return JSONAnswer(True)


# -- functions, tasks, runs ----------------------------------------------------------------------


def _type(collection: str) -> str:
    if collection not in TYPES:
        raise NotFound("collection", collection)
    return TYPES[collection]


@router.get("/-/{project}/{collection}")
async def list_entities(request: Request, project: str, collection: str, page: int = 0, size: int = 25) -> JSONAnswer:
    """Newest first, filtered by `kind`, `name`, `function`, `task` or `state` when given."""
    type_ = _type(collection)
    surface = await _surface(request, project, "read")
    filters = {k: v for k, v in request.query_params.items() if k in ("kind", "name", "function", "task")}
    shown = [await surface.show(e) for e in await surface.records.list(surface.principal.project_id, project, type_)]
    state = request.query_params.get("state")
    items = [b for b in shown if _matches(b, filters) and (state is None or b["status"].get("state") == state)]
    return _page(items, page, size)


@router.post("/-/{project}/{collection}")
async def create_entity(request: Request, project: str, collection: str) -> JSONAnswer:
    """A function is checked (inline Python source that compiles); a serve run is deployed."""
    type_ = _type(collection)
    surface = await _surface(request, project, "deploy")
    body = await read_object(request, LIMIT)
    if not isinstance(body.get("kind"), str) or not isinstance(body.get("spec"), dict):
        raise InvalidRequest(f"missing spec: a {type_} needs a kind and a spec")
    body = {**body, "id": DIGITALHUB_ID.check(body.get("id") or new_entity_id()), "project": project}
    if await surface.records.get(surface.principal.project_id, project, type_, body["id"]) is not None:
        raise DigitalHubError(400, f"Duplicated entity: {type_} {body['id']}")
    if type_ == "function":
        if body["kind"] != "python":
            raise InvalidRequest(f"function kind {body['kind']!r} is not supported (Podium runs kind python)")
        source_code(body["spec"])
    function: Entity | None = None
    envs: dict[str, str] = {}
    if type_ == "run":
        function = await _function_of(surface, body)
        envs, kept = split_envs(body["spec"])
        body = {**body, "spec": {**body["spec"], "envs": kept}}
    entity = await surface.records.put(surface.principal.project_id, project, type_, body)
    if function is not None:
        try:
            await surface.runs.deploy(surface.principal, entity, function, envs)
        except DomainError:
            await surface.records.delete(surface.principal.project_id, entity.id)
            raise
        entity = await surface.get("run", entity.id)
    return JSONAnswer(await surface.show(entity))


async def _function_of(surface: Surface, run: dict[str, Any]) -> Entity:
    """A serve run's function (`spec.function` is `python://project/name:id`)."""
    if not run["kind"].endswith("+serve:run"):
        raise InvalidRequest(f"run kind {run['kind']!r} is not supported: Podium runs serve runs (python+serve)")
    ref = run["spec"].get("function")
    if not isinstance(ref, str) or ":" not in ref.partition("://")[2]:
        raise InvalidRequest("missing spec: a run needs spec.function (python://project/name:id)")
    return await surface.get("function", ref.rpartition(":")[2])


@router.get("/-/{project}/{collection}/{entity_id}")
async def get_entity(request: Request, project: str, collection: str, entity_id: str) -> JSONAnswer:
    surface = await _surface(request, project, "read")
    return JSONAnswer(await surface.show(await surface.get(_type(collection), entity_id)))


@router.put("/-/{project}/{collection}/{entity_id}")
async def update_entity(request: Request, project: str, collection: str, entity_id: str) -> JSONAnswer:
    """The SDK saves what it changed (metadata, spec); a run's status stays the server's."""
    type_ = _type(collection)
    surface = await _surface(request, project, "deploy")
    entity = await surface.get(type_, entity_id)
    body = await read_object(request, LIMIT)
    if type_ == "run":  # env values are set once, at creation; never kept here
        spec: dict[str, Any] = body["spec"] if isinstance(body.get("spec"), dict) else {}
        body = {**body, "spec": {**spec, "envs": split_envs(spec)[1]}}
    saved = await surface.records.put(
        surface.principal.project_id, project, type_, {**body, "id": entity.id, "status": entity.body.get("status")}
    )
    return JSONAnswer(await surface.show(saved))


@router.delete("/-/{project}/{collection}/{entity_id}")
async def delete_entity(
    request: Request, project: str, collection: str, entity_id: str, cascade: bool = False
) -> JSONAnswer:
    """A run's endpoint goes with it (queued requests are cancelled); `cascade` removes a
    function's runs too."""
    surface = await _surface(request, project, "deploy")
    await _delete(surface, await surface.get(_type(collection), entity_id), cascade)
    return JSONAnswer(True)


@router.delete("/-/{project}/{collection}")
async def delete_versions(
    request: Request, project: str, collection: str, name: str = "", cascade: bool = False
) -> JSONAnswer:
    """Every version of the entity `name` (the SDK's `delete_all_versions`)."""
    type_ = _type(collection)
    surface = await _surface(request, project, "deploy")
    if not name:
        raise InvalidRequest("name the entity whose versions to delete (?name=...)")
    found = [e for e in await surface.records.list(surface.principal.project_id, project, type_) if e.name == name]
    if not found:
        raise NotFound(type_, name)
    for entity in found:
        await _delete(surface, entity, cascade)
    return JSONAnswer(True)


async def _delete(surface: Surface, entity: Entity, cascade: bool) -> None:
    if entity.type == "run":
        await surface.runs.remove(surface.principal, entity)
        return
    if entity.type == "function" and cascade:
        for type_ in ("run", "task"):
            for other in await surface.records.list(surface.principal.project_id, entity.dh_project, type_):
                if str((other.body.get("spec") or {}).get("function", "")).endswith(f":{entity.id}"):
                    await _delete(surface, other, cascade)
    await surface.records.delete(surface.principal.project_id, entity.id)


# -- run actions ---------------------------------------------------------------------------------


@router.post("/-/{project}/runs/{run_id}/stop")
async def stop_run(request: Request, project: str, run_id: str) -> JSONAnswer:
    surface = await _surface(request, project, "deploy")
    run = await surface.get("run", run_id)
    await surface.runs.stop(surface.principal, run)
    return JSONAnswer(await surface.show(await surface.get("run", run_id)))


@router.post("/-/{project}/runs/{run_id}/resume")
async def resume_run(request: Request, project: str, run_id: str) -> JSONAnswer:
    surface = await _surface(request, project, "deploy")
    run = await surface.get("run", run_id)
    await surface.runs.resume(run)
    return JSONAnswer(await surface.show(run))


@router.get("/-/{project}/runs/{run_id}/logs")
async def run_logs(request: Request, project: str, run_id: str) -> JSONAnswer:
    """One log record per worker of the run's endpoint; `content` is base64, as the SDK reads it."""
    surface = await _surface(request, project, "read")
    run = await surface.get("run", run_id)
    ep = await surface.runs.endpoint(run)
    if ep is None:
        return JSONAnswer([])
    files = worker_logs(runtime(request).settings.logs, ep.id)
    return JSONAnswer(
        [
            {
                "id": f"{run.id}-{f.stem}",
                "name": f.stem,
                "kind": "log",
                "project": project,
                "metadata": {
                    "project": project,
                    "name": f.stem,
                    "created": run.created_at,
                    "updated": f.stat().st_mtime,
                },
                "spec": {"run": run.id, "pod": f.stem},
                "status": {},
                "content": base64.b64encode(tail(f, 1000).encode()).decode(),
            }
            for f in files
        ]
    )


# -- the run's service, and the gateway proxy ----------------------------------------------------


def _service_failure(job: Job) -> DigitalHubError:
    return DigitalHubError(500, error_text(job))


async def _serve(request: Request, run: Entity, subpath: str) -> Response:
    """A request to the run's service, as a job of its endpoint (the one call path)."""
    rt = runtime(request)
    ep = await rt.serve_runs.endpoint(run)
    if ep is None:
        raise DigitalHubError(404, f"run {run.id} serves nothing")
    principal = Principal(key_id=f"dh-run-{run.id}"[:32], project_id=run.project_id, role="invoke")
    route = (await rt.calls.routes(ep))[0]
    prefix = service_path(run.dh_project, run.id, "-").rpartition("/")[0]
    return await http_call(rt, principal, ep, route, request, prefix.lstrip("/"), subpath, _service_failure)


@router.api_route("/-/{project}/runs/{run_id}/service/{token}", methods=ANY, include_in_schema=False)
@router.api_route("/-/{project}/runs/{run_id}/service/{token}/{path:path}", methods=ANY, include_in_schema=False)
async def run_service(request: Request, project: str, run_id: str, token: str, path: str = "") -> Response:
    """The run's `status.service.url`: no key, the token in the path is the credential."""
    rt = runtime(request)
    runs = rt.serve_runs
    run = await runs.records.by_id(run_id)
    if run is None or run.type != "run" or run.dh_project != project or not runs.token_matches(run, token):
        raise DigitalHubError(404, "no service at this URL (the run was stopped or deleted)")
    return await _serve(request, run, path)


async def proxy(request: Request, project: str, run_id: str) -> Response:
    """Core's gateway for the console's HTTP client: `X-Proxy-URL` (under the run's service URL)
    and `X-Proxy-Method`; the answer is always 200, text only, the upstream status and headers
    as `X-Proxy-Status` and `X-Proxy-<Name>`."""
    surface = await _surface(request, project, "invoke")
    run = await surface.get("run", run_id)
    service = (await surface.runs.status(run, _where(request))).get("service")
    if service is None:
        raise DigitalHubError(400, f"run {run_id} has no service (it is not RUNNING)")
    target = request.headers.get("x-proxy-url") or ""
    bare = target.removeprefix("http://").removeprefix("https://")
    if not bare.startswith(service["url"]):
        raise DigitalHubError(400, f"X-Proxy-URL must start with the run's service URL {service['url']}")
    rest, _, query = bare[len(service["url"]) :].partition("?")
    if rest and not rest.startswith("/"):
        raise DigitalHubError(400, f"X-Proxy-URL must start with the run's service URL {service['url']}")
    method = (request.headers.get("x-proxy-method") or "GET").upper()
    if method not in ANY:
        raise DigitalHubError(400, f"X-Proxy-Method must be one of {', '.join(ANY)}")
    body = await read_body(request, PROXY_LIMIT)
    upstream = await _serve(_forwarded(request, method, query, body), run, rest.lstrip("/"))
    content = await _read_capped(upstream, PROXY_LIMIT)
    content_type = upstream.headers.get("content-type", "")
    if not (content_type.startswith("text/") or content_type.startswith("application/json")):
        answered = content_type or "no content type"
        raise DigitalHubError(400, f"the service answered {answered}; the proxy passes text and JSON only")
    exposed = {
        f"X-Proxy-{k.title()}": v for k, v in upstream.headers.items() if k not in ("content-length", "x-podium-job-id")
    }
    exposed["X-Proxy-Status"] = str(upstream.status_code)
    headers = {**exposed, "Access-Control-Expose-Headers": ", ".join(exposed)}
    return Response(content, status_code=200, media_type=content_type, headers=headers)


async def _read_capped(upstream: Response, limit: int) -> bytes:
    """The service's answer, read up to `limit`: past it, reading stops, so an answer of any size
    costs the server about `limit` of memory."""
    body: AsyncGenerator[bytes | str, None] = upstream.body_iterator  # type: ignore[attr-defined]
    parts: list[bytes] = []
    size = 0
    try:
        async for part in body:
            parts.append(part if isinstance(part, bytes) else part.encode())
            size += len(parts[-1])
            if size > limit:
                break
    finally:
        await body.aclose()
    if size > limit:
        raise DigitalHubError(
            502,
            f"the service's answer is over the proxy's {limit // MB} MB limit; call its service URL to read all of it",
        )
    return b"".join(parts)


for _method in ANY:  # one operation per method, so the OpenAPI description stays valid
    router.add_api_route(
        "/-/{project}/runs/{run_id}/proxy",
        proxy,
        methods=[_method],
        response_model=None,
        operation_id=f"digitalhub_run_proxy_{_method.lower()}",
    )


def _forwarded(request: Request, method: str, query: str, body: bytes) -> Request:
    """The request the service sees: the proxy's headers without X-Proxy-* and Authorization,
    `X-Forwarded-For` added and `Accept` set as Core sets it."""
    headers = [
        (k, v)
        for k, v in request.headers.raw
        if not k.lower().startswith(b"x-proxy-") and k.lower() not in (b"authorization", b"accept", b"content-length")
    ]
    client = request.client.host if request.client else "127.0.0.1"
    headers += [
        (b"x-forwarded-for", client.encode()),
        (b"accept", b"application/json, text/plain"),
        (b"content-length", str(len(body)).encode()),
    ]
    return _replay(request, method, headers, body, query=query)


def _replay(
    request: Request, method: str, headers: list[tuple[bytes, bytes]], body: bytes, *, query: str | None = None
) -> Request:
    """The request again, with this method, headers and (already read) body."""
    scope: Scope = {**request.scope, "method": method, "headers": headers}
    if query is not None:
        scope["query_string"] = query.encode()
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(scope, receive)
