"""Everything the console reads and does, in one place, as typed records.

Reads and actions go through the server's own HTTP API, in process (httpx over ASGI against this
same app), with the signed-in key: the admin API (`/api/v1`), RunPod's cancel, and route calls for
the HTTP client. So the console's permissions, validation, project isolation and error messages
are exactly the API's, and every action takes the path the CLI takes. Only what the API does not
serve (queue depth, per-minute statistics, stream chunks) is read from the runtime directly.
When the core changes, this module is the one to adapt.
"""

from __future__ import annotations

import contextlib
import functools
import statistics
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI

from podium import _json
from podium.core.access import ROLE_RANK
from podium.dispatch.jobs import Job
from podium.logs import render
from podium.records import RouteRecord, sample_arguments
from podium.server.auth import PROJECT_HEADER
from podium.server.runtime import Runtime

if TYPE_CHECKING:
    import httpx

#: The HTTP client renders answers up to this size; larger ones get a message instead.
CLIENT_RENDER_LIMIT = 1024 * 1024
#: Statistics and charts cover this much of the past.
WINDOW_SECONDS = 3600
#: Jobs read for statistics per endpoint (the newest first).
STATS_JOBS = 5000
CLIENT_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
#: The console supplies the signed-in key; these headers from the form are not forwarded.
CREDENTIAL_HEADERS = {"authorization", "x-api-key", PROJECT_HEADER, "host", "content-length"}


class ConsoleError(Exception):
    """An API answer the console shows as a message (its status and the API's own detail)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: the key's role and the project the console acts in."""

    role: str
    project: str
    operator: bool

    def can(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]


@dataclass(frozen=True)
class Project:
    id: str
    name: str


@dataclass(frozen=True)
class ServiceRow:
    """One row of the services view."""

    name: str
    endpoint_id: str
    state: str
    message: str
    version: str
    #: Where it came from: podium, runpod, covalent, digitalhub.
    origin: str
    workers: dict[str, int]
    queued: int
    jobs_last_hour: int
    p50_delay_ms: float | None
    p50_execution_ms: float | None


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None
    #: "initializer" when the service's initializer provides it (None: the caller does).
    source: str | None = None


@dataclass(frozen=True)
class RouteInfo:
    path: str
    method: str
    kind: str
    streaming: bool
    params: list[Param]
    #: The route RunPod's /run and Laminar's calls use.
    default: bool
    #: Arguments a first call may send and pass (records.sample_arguments).
    sample: dict[str, Any] = field(default_factory=dict)
    #: An OpenAI-compatible route (a RunPod handler that reads `openai_route`, too), and its
    #: model name when it declares one.
    openai: bool = False
    model: str | None = None


@dataclass(frozen=True)
class HistoryEntry:
    version: str
    at: float
    key_id: str | None
    message: str | None
    current: bool
    #: A canary rollout's step (start, percent, promote, abort, guard); None: a deploy or rollback.
    action: str | None = None


@dataclass(frozen=True)
class WorkerRow:
    id: str
    state: str
    started_at: float
    jobs_done: int
    jobs: list[str]


@dataclass(frozen=True)
class EndpointDetail:
    name: str
    endpoint_id: str
    state: str
    error: str | None
    version: str
    service: dict[str, Any]
    urls: dict[str, str]
    scaling: dict[str, Any]
    routes: list[RouteInfo]
    workers: list[WorkerRow]
    history: list[HistoryEntry]
    #: Why wanted workers are not started (e.g. waiting for a GPU).
    waiting_for: str | None = None
    #: A canary rollout under way: its share, and each version's calls, failures and p50.
    rollout: dict[str, Any] | None = None
    #: The last failed webhook deliveries of its jobs, newest first.
    failed_deliveries: list[dict[str, Any]] = field(default_factory=list)
    schedules: list[ScheduleRow] = field(default_factory=list)


@dataclass(frozen=True)
class ScheduleRow:
    """One of an endpoint's schedules, as its page lists it (times are ISO 8601, UTC)."""

    route: str
    #: "*/15 * * * * (Europe/Rome)" or "every 30s".
    when: str
    #: "code" (declared by its version) or "api" (added by an operator).
    source: str
    paused: bool
    next_fire_at: str
    last_fire_at: str | None
    last_job: str | None
    last_status: str | None
    skipped: int

    @classmethod
    def of(cls, s: dict[str, Any]) -> ScheduleRow:
        when = f"{s['cron']} ({s['timezone']})" if "cron" in s else f"every {s['every']:g}s"
        job = s["last_job"] or {}
        return cls(
            s["route"],
            when,
            s["source"],
            s["paused"],
            s["next_fire_at"],
            s["last_fire_at"],
            job.get("id"),
            job.get("status"),
            s["skipped"],
        )


@dataclass(frozen=True)
class ChartPoint:
    minute: int  #: minutes before now (59 = oldest)
    requests: int
    p50_ms: float | None
    p99_ms: float | None
    cold_starts: int


@dataclass(frozen=True)
class BatchSize:
    """How often batches of one size ran over the last hour (a batched route's jobs)."""

    size: int
    batches: int
    jobs: int


@dataclass(frozen=True)
class LogTail:
    lines: list[str]
    offsets: str


@dataclass(frozen=True)
class JobRow:
    id: str
    endpoint: str
    route: str
    status: str
    attempt: int
    max_attempts: int
    created_at: float
    delay_ms: int | None
    execution_ms: int | None
    error: str | None


@dataclass(frozen=True)
class JobDetail:
    row: JobRow
    endpoint_id: str
    input: Any
    output: Any
    error_info: dict[str, Any] | None
    attempt_errors: list[Any]
    progress: Any
    webhooks: list[dict[str, Any]]
    chunks: list[Any]
    finished_at: float | None
    #: Why it is still queued (reason, detail, since); None once it is not.
    waiting: dict[str, Any] | None = None


@dataclass(frozen=True)
class VersionRow:
    id: str
    service: str
    size: int
    message: str | None
    created_at: float
    endpoints: list[str]
    files: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True)
class KeyRow:
    id: str
    prefix: str
    name: str | None
    role: str
    created_at: float
    last_used_at: float | None
    expires_at: float | None
    revoked: bool


@dataclass(frozen=True)
class NewKey:
    id: str
    key: str
    role: str


@dataclass(frozen=True)
class ClientRequest:
    """A request typed into the HTTP client, sent to `/{endpoint}{path}` with the signed-in key."""

    endpoint: str
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: str


@dataclass(frozen=True)
class ClientResponse:
    status: int
    elapsed_ms: float
    headers: list[tuple[str, str]]
    size: int
    content_type: str
    #: The body as text, or None when it is too large or not text (see `notice`).
    text: str | None
    notice: str | None


class ConsoleData:
    """The console's view of one server, acting as one signed-in key.

    Parameters:
        app: the Podium app (its runtime and its routes).
        base_url: how the browser reached the server (for URLs shown in snippets and records).
        api_key: the signed-in key, sent with every in-process API request.
        project: the operator's chosen project, or None for the key's own.
    """

    def __init__(self, app: FastAPI, base_url: str, api_key: str, project: str | None = None) -> None:
        self.rt: Runtime = app.state.runtime
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"}
        if project:
            headers[PROJECT_HEADER] = project
        self._auth = headers
        self._app = app

    @functools.cached_property
    def _http(self) -> httpx.AsyncClient:
        """Made (and httpx loaded) at the first console request: a server may never serve one."""
        import httpx

        from podium.console.transport import StreamingASGITransport

        return httpx.AsyncClient(transport=StreamingASGITransport(self._app), base_url=self.base_url, timeout=60.0)

    async def close(self) -> None:
        if "_http" in vars(self):
            await self._http.aclose()

    async def _call(self, method: str, path: str, *, json: Any = None) -> Any:
        r = await self._http.request(method, path, headers=self._auth, json=json)
        body = _json.loads(r.content) if r.content else None
        if r.status_code >= 400:
            detail = body.get("detail") if isinstance(body, dict) else None
            raise ConsoleError(r.status_code, str(detail or body or r.reason_phrase))
        return body

    # -- who --------------------------------------------------------------------------------------

    async def whoami(self) -> tuple[Viewer, list[Project]]:
        """The signed-in key as it is now (a revoked or expired key raises ConsoleError 401), and
        the projects it may act in (every one for the operator)."""
        key = self._auth["Authorization"].removeprefix("Bearer ")
        principal = await self.rt.access.lookup(key)
        if principal is None or principal.role in ("worker", "metrics") or principal.endpoint_id is not None:
            raise ConsoleError(401, "this API key is not valid (revoked, expired or unknown)")
        projects = await self.projects()
        wanted = self._auth.get(PROJECT_HEADER)
        name = next((p.name for p in projects if p.name == wanted or p.id == wanted), None)
        own = next((p.name for p in projects if p.id == principal.project_id), None)
        return Viewer(principal.role, name or own or principal.project_id, principal.operator), projects

    async def projects(self) -> list[Project]:
        body = await self._call("GET", "/api/v1/projects")
        return [Project(p["id"], p["name"]) for p in body["projects"]]

    # -- services and endpoints ---------------------------------------------------------------------

    async def services(self) -> list[ServiceRow]:
        body = await self._call("GET", "/api/v1/endpoints")
        return [await self._service_row(ep) for ep in body["endpoints"]]

    async def _service_row(self, ep: dict[str, Any]) -> ServiceRow:
        queued = await self.rt.queue.waiting(ep["endpoint_id"])
        recent = await self._recent_jobs(ep["endpoint_id"])
        delays = [j.delay_ms for j in recent if j.delay_ms is not None]
        runs = [j.execution_ms for j in recent if j.execution_ms is not None]
        return ServiceRow(
            name=ep["name"],
            endpoint_id=ep["endpoint_id"],
            state=ep["state"],
            message=_state_message(ep, queued),
            version=ep["version"],
            origin=ep["origin"],
            # "ready" is RunPod's alias of idle: shown once.
            workers={k: v for k, v in ep["workers_by_state"].items() if v and k != "ready"},
            queued=queued,
            jobs_last_hour=len(recent),
            p50_delay_ms=statistics.median(delays) if delays else None,
            p50_execution_ms=statistics.median(runs) if runs else None,
        )

    async def _recent_jobs(self, endpoint_id: str) -> list[Job]:
        ep = await self.rt.catalog.get_endpoint(None, endpoint_id)
        if ep is None:
            return []
        since = time.time() - WINDOW_SECONDS
        found = await self.rt.queue.find(ep.project_id, endpoint_id=endpoint_id, limit=STATS_JOBS)
        return [j for j in found if j.created_at >= since]

    async def endpoint(self, name: str) -> EndpointDetail:
        ep = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}")
        hist = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}/history")
        planned = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}/schedules")
        return EndpointDetail(
            name=ep["name"],
            endpoint_id=ep["endpoint_id"],
            state=ep["state"],
            error=ep["error"],
            version=ep["version"],
            service=ep["service"],
            urls=ep["urls"],
            scaling=ep["scaling"],
            routes=[_route(r) for r in ep["routes"]],
            workers=[WorkerRow(w["id"], w["state"], w["started_at"], w["jobs_done"], w["jobs"]) for w in ep["workers"]],
            history=[
                HistoryEntry(h["version"], h["at"], h["key_id"], h["message"], h["current"], h.get("action"))
                for h in hist["history"]
            ],
            waiting_for=ep.get("waiting_for"),
            schedules=[ScheduleRow.of(s) for s in planned["schedules"]],
            failed_deliveries=(await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}/failed-deliveries"))[
                "deliveries"
            ],
            rollout=ep.get("rollout"),
        )

    async def charts(self, name: str) -> list[ChartPoint]:
        """Per minute over the last hour: requests, p50/p99 of delay + execution, cold starts."""
        ep = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}")
        now = time.time()
        buckets: list[list[Job]] = [[] for _ in range(WINDOW_SECONDS // 60)]
        for j in await self._recent_jobs(ep["endpoint_id"]):
            i = int((now - j.created_at) // 60)
            if 0 <= i < len(buckets):
                buckets[i].append(j)
        points = []
        for i, minute in enumerate(buckets):
            total = sorted((j.delay_ms or 0) + (j.execution_ms or 0) for j in minute if j.finished_at)
            points.append(
                ChartPoint(
                    minute=i,
                    requests=len(minute),
                    p50_ms=_quantile(total, 0.5),
                    p99_ms=_quantile(total, 0.99),
                    cold_starts=sum(1 for j in minute if j.cold_ms),
                )
            )
        return points

    async def batch_sizes(self, endpoint_id: str) -> list[BatchSize]:
        """The sizes of the batches its batched routes ran over the last hour, from the size
        each job records (so every replica reads the same)."""
        jobs_by_size = Counter(j.batch_size for j in await self._recent_jobs(endpoint_id) if j.batch_size)
        return [BatchSize(size, -(-n // size), n) for size, n in sorted(jobs_by_size.items())]

    async def logs(self, name: str, offsets: str = "", tail_lines: int = 200) -> LogTail:
        """Worker log lines since `offsets` (all workers' newest `tail_lines` when empty)."""
        query = urlencode({"tail_lines": tail_lines, "offsets": offsets})
        body = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}/logs?{query}")
        lines = [f"[{w['worker']}] {render(line)}" for w in body["workers"] for line in w["lines"]]
        return LogTail(lines, ",".join(f"{w['worker']}:{w['offset']}" for w in body["workers"]))

    async def act(self, name: str, action: str) -> None:
        """stop, start or restart an endpoint."""
        if action not in ("stop", "start", "restart"):
            raise ConsoleError(400, f"unknown action {action!r}")
        await self._call("POST", f"/api/v1/endpoints/{quote(name, safe='')}/{action}")

    async def schedule(self, name: str, route: str, action: str) -> None:
        """pause or resume one of an endpoint's schedules."""
        if action not in ("pause", "resume"):
            raise ConsoleError(400, f"unknown action {action!r}")
        path = quote(route.strip("/") or "-", safe="/")
        await self._call("POST", f"/api/v1/endpoints/{quote(name, safe='')}/schedules/{path}/{action}")

    async def end_rollout(self, name: str, step: str) -> None:
        """promote or abort the endpoint's canary rollout."""
        if step not in ("promote", "abort"):
            raise ConsoleError(400, f"unknown rollout step {step!r}")
        await self._call("POST", f"/api/v1/endpoints/{quote(name, safe='')}/rollout/{step}")

    async def rollback(self, name: str, version: str, message: str | None = None) -> None:
        body = {"version": version, **({"message": message} if message else {})}
        await self._call("POST", f"/api/v1/endpoints/{quote(name, safe='')}/rollback", json=body)

    async def scale(self, name: str, changes: dict[str, Any]) -> None:
        await self._call("PATCH", f"/api/v1/endpoints/{quote(name, safe='')}/scaling", json=changes)

    # -- jobs ---------------------------------------------------------------------------------------

    async def _names(self) -> dict[str, str]:
        body = await self._call("GET", "/api/v1/endpoints")
        return {ep["endpoint_id"]: ep["name"] for ep in body["endpoints"]}

    async def usage(self, since: str, by: str) -> dict[str, Any]:
        """The project's usage report (GET /api/v1/usage)."""
        return dict(await self._call("GET", f"/api/v1/usage?{urlencode({'since': since, 'by': by})}"))

    async def jobs(self, endpoint: str | None = None, status: str | None = None, limit: int = 200) -> list[JobRow]:
        params = {k: v for k, v in {"endpoint": endpoint, "status": status, "limit": limit}.items() if v}
        body = await self._call("GET", f"/api/v1/jobs?{urlencode(params)}")
        names = await self._names()
        return [_job_row(j, names) for j in body["jobs"]]

    async def job(self, job_id: str) -> JobDetail:
        j = await self._call("GET", f"/api/v1/jobs/{quote(job_id, safe='')}")
        names = await self._names()
        chunks = [c.value for c in await self.rt.queue.chunks(j["id"])]
        return JobDetail(
            row=_job_row(j, names),
            endpoint_id=j["endpoint_id"],
            input=j["input"],
            output=j["output"],
            error_info=j["error_info"],
            attempt_errors=j["attempt_errors"] or [],
            progress=j["progress"],
            webhooks=j.get("webhooks") or [],
            chunks=chunks,
            finished_at=j["finished_at"],
            waiting=j.get("waiting"),
        )

    async def cancel(self, job_id: str) -> str:
        """Cancel through RunPod's cancel (which also stops a running job's worker)."""
        j = await self._call("GET", f"/api/v1/jobs/{quote(job_id, safe='')}")
        body = await self._call("POST", f"/v2/{j['endpoint_id']}/cancel/{quote(job_id, safe='')}")
        return str(body["status"])

    async def retry(self, job_id: str) -> None:
        await self._call("POST", f"/api/v1/jobs/{quote(job_id, safe='')}/retry")

    async def redeliver(self, job_id: str) -> dict[str, Any]:
        """The job's webhook delivery, once sent again."""
        return dict(await self._call("POST", f"/api/v1/jobs/{quote(job_id, safe='')}/redeliver"))

    # -- versions -------------------------------------------------------------------------------------

    async def versions(self) -> list[VersionRow]:
        """The project's versions that an endpoint points or pointed at, newest first."""
        found: dict[str, dict[str, Any]] = {}
        used: dict[str, list[str]] = {}
        for name in (await self._names()).values():
            body = await self._call("GET", f"/api/v1/endpoints/{quote(name, safe='')}/versions")
            for v in body["versions"]:
                found.setdefault(v["id"], v)
                used.setdefault(v["id"], []).append(name + (" (current)" if v["current"] else ""))
        rows = [_version_row(v, used[v["id"]]) for v in found.values()]
        return sorted(rows, key=lambda v: v.created_at, reverse=True)

    async def version(self, version_id: str) -> VersionRow:
        v = await self._call("GET", f"/api/v1/versions/{quote(version_id, safe='')}")
        files = [(f["name"], f["size"]) for f in v.get("files", [])]
        return _version_row(v, [], files)

    async def new_endpoint(self, name: str, version_id: str, message: str | None) -> None:
        """Deploy a stored version under a new endpoint name (the deploy API checks the name)."""
        v = await self._call("GET", f"/api/v1/versions/{quote(version_id, safe='')}")
        spec = {k: v[k] for k in ("sha256", "service", "entry", "routes", "config", "size", "runtime")}
        if v.get("requirements") is not None:  # the same environment, so the same version id
            spec["requirements"] = v["requirements"]
        await self._call("POST", "/api/v1/deploy", json={"name": name, "version": spec, "message": message})

    # -- keys -----------------------------------------------------------------------------------------

    async def keys(self) -> list[KeyRow]:
        body = await self._call("GET", "/api/v1/keys")
        return [
            KeyRow(
                k["id"],
                k["prefix"],
                k.get("name"),
                k["role"],
                k["created_at"],
                k.get("last_used_at"),
                k.get("expires_at"),
                k.get("revoked_at") is not None,
            )
            for k in body["keys"]
        ]

    async def create_key(self, role: str, name: str | None) -> NewKey:
        body = await self._call("POST", "/api/v1/keys", json={"role": role, **({"name": name} if name else {})})
        return NewKey(body["id"], body["key"], body["role"])

    async def revoke_key(self, key_id: str) -> None:
        await self._call("DELETE", f"/api/v1/keys/{quote(key_id, safe='')}")

    # -- the HTTP client --------------------------------------------------------------------------------

    async def send(self, req: ClientRequest) -> ClientResponse:
        """Send a request to an endpoint's route path through this server, with the signed-in key."""
        if req.method not in CLIENT_METHODS:
            raise ConsoleError(400, f"method must be one of {', '.join(CLIENT_METHODS)}")
        path = req.path if req.path.startswith("/") else "/" + req.path
        headers = {k: v for k, v in req.headers if k.lower() not in CREDENTIAL_HEADERS}
        headers.update(self._auth)
        url = f"/{quote(req.endpoint, safe='')}{path}"
        http = self._http
        import httpx  # loaded with the client

        started = time.perf_counter()
        try:
            async with http.stream(req.method, url, headers=headers, content=req.body.encode() or None) as r:
                content = await _read_capped(r, CLIENT_RENDER_LIMIT)
        except httpx.HTTPError as exc:
            raise ConsoleError(502, f"the request failed: {exc}") from None
        elapsed = (time.perf_counter() - started) * 1000
        ctype = r.headers.get("content-type", "")
        text, notice = _renderable(content, ctype)
        job_id = r.headers.get("x-podium-job-id")
        if len(content) > CLIENT_RENDER_LIMIT and job_id:  # nobody reads the rest: stop making it
            with contextlib.suppress(ConsoleError):
                await self.cancel(job_id)
        declared = r.headers.get("content-length", "")
        return ClientResponse(
            status=r.status_code,
            elapsed_ms=round(elapsed, 1),
            headers=list(r.headers.items()),
            size=int(declared) if declared.isdigit() else len(content),
            content_type=ctype,
            text=text,
            notice=notice,
        )


async def _read_capped(r: httpx.Response, limit: int) -> bytes:
    """The body, or its first `limit` + 1 bytes: reading stops there (closing the response ends
    the call), so an answer of any size costs the server about `limit` of memory."""
    parts: list[bytes] = []
    size = 0
    async for part in r.aiter_bytes():
        parts.append(part)
        size += len(part)
        if size > limit:
            break
    return b"".join(parts)[: limit + 1]


def _renderable(content: bytes, ctype: str) -> tuple[str | None, str | None]:
    if len(content) > CLIENT_RENDER_LIMIT:
        return None, (
            f"The response body is over the console's limit of {CLIENT_RENDER_LIMIT:,} bytes: "
            "the console stopped reading it there and does not show it. Use curl to fetch it."
        )
    textual = not ctype or ctype.startswith("text/") or any(t in ctype for t in ("json", "xml", "yaml", "javascript"))
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        textual = False
    if not textual:
        return None, f"The response is not text ({ctype or 'unknown type'}, {len(content):,} bytes): it is not shown."
    return text, None


def _state_message(ep: dict[str, Any], queued: int) -> str:
    """Why an endpoint is as it is: the first line of its error, or why jobs wait."""
    if ep["state"] == "ERROR" and ep["error"]:
        return str(ep["error"]).strip().splitlines()[0]
    if ep["state"] == "INACTIVE":
        return "stopped: calls are refused until it is started" + (f"; {queued} jobs waiting" if queued else "")
    if queued and not any(ep["workers_by_state"].values()):
        return f"{queued} jobs wait for a worker to start"
    if queued:
        return f"{queued} jobs wait for a free worker"
    if ep["state"] == "CREATING":
        return "starting its first worker"
    return ""


def _route(r: RouteRecord) -> RouteInfo:
    params = [
        Param(p["name"], None if "default" not in p else _json.dumps(p["default"]), p.get("source"))
        for p in r.get("params", [])
    ]
    return RouteInfo(
        r["path"],
        r["method"],
        r["kind"],
        bool(r["streaming"]),
        params,
        bool(r.get("default")),
        sample_arguments(r),
        bool(r.get("openai")),
        r.get("model"),
    )


def _job_row(j: dict[str, Any], names: dict[str, str]) -> JobRow:
    return JobRow(
        id=j["id"],
        endpoint=names.get(j["endpoint_id"], j["endpoint_id"]),
        route=j["route"],
        status=j["status"],
        attempt=j["attempt"],
        max_attempts=j["max_attempts"],
        created_at=j["created_at"],
        delay_ms=j["delay_ms"],
        execution_ms=j["execution_ms"],
        error=j["error"],
    )


def _version_row(v: dict[str, Any], used: list[str], files: Iterable[tuple[str, int]] = ()) -> VersionRow:
    return VersionRow(v["id"], v["service"], v["size"], v.get("message"), v["created_at"], used, list(files))


def _quantile(values: list[int], q: float) -> float | None:
    if not values:
        return None
    return float(values[min(len(values) - 1, int(q * len(values)))])
