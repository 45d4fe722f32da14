"""Deploying from Python, and the client a deployment gives back.

``podium.deploy(svc)(**init_kwargs)`` bundles the directory of the module that defines `svc`,
uploads it, points the endpoint at it and returns a :class:`Deployment` at once (CREATING);
``podium.deploy("path/")(**init_kwargs)`` takes what `podium deploy` takes (a directory or a
.py file) and reads it as the CLI does, so a service with requirements is never imported here;
``podium.get_deployment(d, wait=True)`` waits until it is ACTIVE. Routes become methods: `/hello`
is ``d.hello(...)`` and ``await d.async_hello(...)``; a streaming route gives bytes chunks as the
route yields them. ``d.hello.submit(...)`` runs it as a job and returns at once with a
:class:`~podium.client.jobs.Job` to follow (``.output()``, ``.stream()``, ``.cancel()``).
"""

from __future__ import annotations

import inspect
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from podium import _json
from podium.bundle import Bundle, describe, make_bundle
from podium.client import schedules
from podium.client.http import Connection, raise_for
from podium.client.jobs import Endpoint, Job
from podium.errors import APIError, DeploymentError, ServiceDefinitionError
from podium.records import RouteRecord
from podium.sdk.service import Service

#: States a deployment passes through on its way to ACTIVE.
PENDING = ("CREATING",)
#: Lines of an installer's error a failed build reports (and of a failed start's error).
BUILD_ERROR_LINES = 20


def follow_build(
    conn: Connection, version_id: str, on_line: Callable[[str], None] | None = None, timeout: float = 3600.0
) -> dict[str, Any]:
    """Wait while a version's environment builds, handing each new line of its build log to
    `on_line`; returns the build's record (state None: the version has no environment).

    Raises DeploymentError with the first lines of the installer's error when the build fails.
    """
    path = f"/api/v1/versions/{version_id}/build"
    build: dict[str, Any] = conn.request("GET", path)
    deadline = time.monotonic() + timeout
    show = on_line if build["state"] == "building" else None
    while True:
        for line in build["lines"] if show else ():
            show(line)  # type: ignore[misc]
        if build["state"] != "building":
            break
        if time.monotonic() > deadline:
            raise DeploymentError(f"the environment of version {version_id} is still building after {timeout:.0f} s")
        time.sleep(0.3)
        build = conn.request("GET", path, params={"offset": build["offset"]})
    if build["state"] == "failed":
        first = "\n".join((build["error"] or "").splitlines()[:BUILD_ERROR_LINES])
        raise DeploymentError(f"the environment of version {version_id} failed to build:\n{first}")
    return build


def refusal(conn: Connection, ep: dict[str, Any]) -> str | None:
    """Why a deploy (`ep` as the deploy answered it, reloaded) did not become current: a gated
    deploy's first worker failed, and the endpoint stayed on its version; or another deploy, a
    rollback or a rollout's end replaced it meanwhile. None when it became current (or the
    canary), or still waits."""
    deployed = ep.get("deployed")
    canary = (ep.get("rollout") or {}).get("version_id")
    if deployed is None or deployed in (ep["version"], ep.get("pending_version"), canary):
        return None
    error = conn.request("GET", f"/api/v1/versions/{deployed}").get("start_error")
    if not error:
        return (
            f"version {deployed} is not current: endpoint {ep['name']} runs version {ep['version']}; "
            f"another step replaced it meanwhile (podium history {ep['name']})"
        )
    first = "\n".join(error.splitlines()[:BUILD_ERROR_LINES])
    return f"version {deployed} did not start; endpoint {ep['name']} stays on version {ep['version']}:\n{first}"


def upload(
    conn: Connection,
    bundle: Bundle,
    version: dict[str, Any],
    name: str,
    message: str | None = None,
    *,
    canary: int | None = None,
    max_failure_rate: float | None = None,
) -> dict[str, Any]:
    """Send the bundle unless the server has it, then deploy the version as endpoint `name`
    (with `canary`: as a canary taking that percent of its calls)."""
    try:
        conn.request("GET", f"/api/v1/blobs/{bundle.sha256}")
    except APIError as exc:
        if exc.status_code != 404:
            raise
        conn.request("PUT", f"/api/v1/blobs/{bundle.sha256}", content=bundle.data)
    body: dict[str, Any] = {"name": name, "version": version, "message": message}
    if canary is not None:
        body.update(canary=canary, max_failure_rate=max_failure_rate)
    return conn.request("POST", "/api/v1/deploy", json=body)  # type: ignore[no-any-return]


def _module_file(svc: Service) -> Path:
    func = svc.initializer or next(iter(svc.routes.values())).func
    module = sys.modules.get(func.__module__)
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        raise ServiceDefinitionError(
            f"service {svc.name} is not defined in a .py file (module {func.__module__}); "
            "put it in a file next to your notebook and import it from there"
        )
    return Path(file).resolve()


def _check_init_kwargs(svc: Service, init_kwargs: dict[str, Any]) -> None:
    if init_kwargs and svc.initializer is None:
        raise TypeError(f"service {svc.name} has no initializer to take {', '.join(init_kwargs)}")
    if svc.initializer is not None:
        try:
            inspect.signature(svc.initializer).bind(**init_kwargs)
        except TypeError as exc:
            raise TypeError(f"{svc.initializer.__name__}(): {exc}") from None
    _check_json(init_kwargs)


def _check_json(init_kwargs: dict[str, Any]) -> None:
    try:
        _json.dumps(init_kwargs)
    except TypeError as exc:
        raise TypeError(f"init arguments must be JSON values: {exc}") from None


def deploy(
    svc: Service | str | os.PathLike[str],
    *,
    name: str | None = None,
    message: str | None = None,
    url: str | None = None,
    api_key: str | None = None,
    entry: str | None = None,
    service: str | None = None,
    **overrides: Any,
) -> Callable[..., Deployment]:
    """``deploy(svc)(**init_kwargs)``: deploy and return the deployment's client at once.

    Parameters:
    svc: a service made with @podium.service, or what `podium deploy` takes: a directory (entry
        app.py, main.py, handler.py...) or one .py file. A path is read as the CLI reads it: a
        service that declares requirements is read from its syntax tree, never imported, so
        they need not be installed here.
    name: the endpoint's name (default: the service's).
    message: what changed (kept in the history).
    url, api_key: the server (default: PODIUM_URL/PODIUM_API_KEY, else the credentials file).
    entry: with a directory, the entry file in it; service: which service, when it has several.
    overrides: replace the service's scaling settings (min_workers, max_workers, ...).
    """
    if not isinstance(svc, Service | str | os.PathLike):
        raise TypeError(
            f"deploy() takes a service made with @podium.service or a path to one, not {type(svc).__name__}"
        )
    if isinstance(svc, Service) and (entry or service):
        raise TypeError("deploy(): entry= and service= go with a path, not a service object")

    def with_init(**init_kwargs: Any) -> Deployment:
        if isinstance(svc, Service):
            _check_init_kwargs(svc, init_kwargs)
            file = _module_file(svc)
            bundle = make_bundle(file.parent, entry=file.name)
            version = describe(bundle, svc, overrides, init_kwargs)
        else:
            _check_json(init_kwargs)
            bundle = make_bundle(Path(svc), entry)
            version = describe(bundle, service, overrides, init_kwargs)
        conn = Connection(url, api_key)
        return Deployment(upload(conn, bundle, version, name or version["service"], message), conn)

    return with_init


def get_deployment(
    ref: str | Deployment,
    *,
    wait: bool = False,
    timeout: float = 600.0,
    progress: bool = False,
    url: str | None = None,
    api_key: str | None = None,
) -> Deployment:
    """The deployment `ref` (id, name or a Deployment), reloaded; with `wait`, once it is ACTIVE
    (after its version's environment is built: with `progress`, the build log goes to stderr).

    Raises DeploymentError if it is (or becomes) ERROR, carrying the initializer's error and log
    tail, if its environment fails to build, if the version a redeploy gave it fails to start
    (the deployment stays on its version), or if it is still not ACTIVE after `timeout` seconds.
    """
    if isinstance(ref, Deployment):
        conn, ident, deployed = ref._conn, ref.id, ref.info.get("deployed")
    else:
        conn, ident, deployed = Connection(url, api_key), ref, None
    start = time.monotonic()
    if wait:
        first = conn.request("GET", f"/api/v1/endpoints/{ident}")
        follow_build(
            conn, deployed or first["pending_version"] or first["version"], _print_line if progress else None, timeout
        )
    delay = 0.05
    while True:
        d = Deployment(conn.request("GET", f"/api/v1/endpoints/{ident}"), conn)
        if d.status == "ERROR":
            raise DeploymentError(f"deployment {d.name} ({d.id}) failed: {d.info.get('error')}")
        if not wait or (d.status == "ACTIVE" and not d.info.get("pending_version")):
            why = refusal(conn, {**d.info, "deployed": deployed}) if wait else None
            if why is not None:
                raise DeploymentError(f"deployment {d.name} ({d.id}): {why}")
            break
        if d.status not in PENDING and not d.info.get("pending_version"):  # a redeploy pending: it waits
            raise DeploymentError(f"deployment {d.name} ({d.id}) is {d.status}; deploy it again")
        elapsed = time.monotonic() - start
        if progress:
            sys.stderr.write(f"\r{d.name}: {d.status} ({elapsed:.0f} s)")
            sys.stderr.flush()
        if elapsed > timeout:
            raise DeploymentError(f"deployment {d.name} ({d.id}) still {d.status} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    if progress:
        sys.stderr.write(f"\r{d.name}: {d.status}\n")
    return d


def _print_line(line: str) -> None:
    sys.stderr.write(line + "\n")


class Deployment:
    """A deployed service: identity, state, and one method per route (keyword arguments only)."""

    def __init__(self, info: dict[str, Any], conn: Connection) -> None:
        self.info = info
        self._conn = conn
        self._methods = {r["method"]: r for r in info.get("routes", [])}
        self._endpoint: Endpoint | None = None

    @property
    def id(self) -> str:
        return str(self.info["endpoint_id"])

    @property
    def name(self) -> str:
        return str(self.info["name"])

    @property
    def status(self) -> str:
        """The state: CREATING, ACTIVE, INACTIVE or ERROR (as of the last load)."""
        return str(self.info["state"])

    @property
    def address(self) -> str:
        """Base URL of the routes: POST {address}/{route}."""
        return f"{self._conn.url}/{self.id}"

    def schedules(self) -> list[dict[str, Any]]:
        """Its schedules: `cron` or `every`, `timezone`, `paused`, next and last fire, last job."""
        return schedules.list_schedules(self._conn, self.id)

    def add_schedule(
        self,
        route: str,
        *,
        cron: str | None = None,
        every: float | str | None = None,
        timezone: str = "UTC",
        input: Any = None,
        overlap: bool = False,
        webhook: str | None = None,
    ) -> dict[str, Any]:
        """Run `route` by itself on `cron` (in `timezone`) or `every` (seconds, or like "30s");
        `input` as its job input (default: the route's defaults); `webhook`: where each fire's
        job posts its final status."""
        return schedules.add_schedule(
            self._conn,
            self.id,
            route,
            cron=cron,
            every=every,
            timezone=timezone,
            input=input,
            overlap=overlap,
            webhook=webhook,
        )

    def pause_schedule(self, route: str) -> dict[str, Any]:
        return schedules.change_schedule(self._conn, self.id, route, "pause")

    def resume_schedule(self, route: str) -> dict[str, Any]:
        return schedules.change_schedule(self._conn, self.id, route, "resume")

    def remove_schedule(self, route: str) -> None:
        schedules.remove_schedule(self._conn, self.id, route)

    def teardown(self) -> None:
        """Stop it: workers drain and stop, calls are refused until it is deployed again."""
        self.info = self._conn.request("POST", f"/api/v1/endpoints/{self.id}/stop")

    def rollout(
        self, version: str | None = None, *, percent: int, max_failure_rate: float | None = None
    ) -> dict[str, Any] | None:
        """Send `percent` of new calls to `version` (already deployed: its id or a prefix) as a
        canary, or change the share of the rollout under way (no version). `max_failure_rate`:
        Podium aborts the rollout once the canary fails more often (over at least 20 calls).
        Returns the rollout, both versions and their figures (`rollout_status` reads it again)."""
        body: dict[str, Any] = {"percent": percent}
        if version is not None:
            body["version"] = version
        if max_failure_rate is not None:
            body["max_failure_rate"] = max_failure_rate
        self.info = self._conn.request("PUT", f"/api/v1/endpoints/{self.id}/rollout", json=body)
        return self.info.get("rollout")

    def rollout_status(self) -> dict[str, Any] | None:
        """The rollout under way (None: none): each version's share, calls, failures and p50."""
        rollout: dict[str, Any] | None = self._conn.request("GET", f"/api/v1/endpoints/{self.id}/rollout")["rollout"]
        return rollout

    def promote_rollout(self) -> None:
        """Every call goes to the canary: the deployment moves to it, the old version drains."""
        self.info = self._conn.request("POST", f"/api/v1/endpoints/{self.id}/rollout/promote")

    def abort_rollout(self) -> None:
        """Every call goes back to the deployment's current version; the canary drains."""
        self.info = self._conn.request("POST", f"/api/v1/endpoints/{self.id}/rollout/abort")

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        is_async = attr.startswith("async_")
        route = self.__dict__.get("_methods", {}).get(attr[len("async_") :] if is_async else attr)
        if route is None:
            raise AttributeError(
                f"deployment {self.info.get('name')} has no route method {attr!r} "
                f"(routes: {', '.join(sorted(self.__dict__.get('_methods', {}))) or 'none'})"
            )
        if is_async:
            return self._async_method(attr, route)
        return self._method(attr, route)

    def __dir__(self) -> list[str]:
        names = list(self._methods) + [f"async_{m}" for m in self._methods]
        return sorted(set(super().__dir__()) | set(names))

    def __repr__(self) -> str:
        return f"<Deployment {self.info.get('name')} {self.id} {self.status}>"

    def _path(self, route: RouteRecord) -> str:
        return f"/{self.id}/{route['path'].lstrip('/')}"

    def _method(self, attr: str, route: RouteRecord) -> RouteMethod:
        return RouteMethod(self, attr, route)

    def _jobs(self) -> Endpoint:
        """The deployment's jobs, RunPod-style (made once: it holds a connection)."""
        if self._endpoint is None:
            self._endpoint = Endpoint(self.id, url=self._conn.url, api_key=self._conn.key)
        return self._endpoint

    def _async_method(self, attr: str, route: RouteRecord) -> Callable[..., Any]:
        conn = self._conn

        def client() -> httpx.AsyncClient:
            # One per call: a deployment may be used from several event loops (notebooks, tests).
            return httpx.AsyncClient(base_url=conn.url, headers=dict(conn.http.headers), timeout=conn.http.timeout)

        async def call(*args: Any, **kwargs: Any) -> Any:
            _keywords_only(attr, args)
            async with client() as http:
                r = await http.post(self._path(route), json=kwargs)
                raise_for(r)
                return r.json()

        async def stream(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
            _keywords_only(attr, args)
            async with client() as http, http.stream("POST", self._path(route), json=kwargs) as r:
                if r.status_code >= 400:
                    await r.aread()
                    raise_for(r)
                async for chunk in r.aiter_bytes():
                    yield chunk

        chosen = stream if route["streaming"] else call
        chosen.__name__ = attr
        return chosen


class RouteMethod:
    """One route as a method: called, its result (a stream of bytes for a streaming route);
    `submit`, a job to follow."""

    def __init__(self, deployment: Deployment, attr: str, route: RouteRecord) -> None:
        self.deployment = deployment
        self.route = route
        self.__name__ = attr

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        _keywords_only(self.__name__, args)
        d = self.deployment
        if self.route["streaming"]:
            return d._conn.stream("POST", d._path(self.route), json=kwargs)
        return d._conn.request("POST", d._path(self.route), json=kwargs)

    def submit(self, *args: Any, **kwargs: Any) -> Job:
        """Queue the call as a job (`Prefer: respond-async`) and return at once; the job's
        ``output()`` is the route's result, its ``stream()`` a streaming route's chunks."""
        _keywords_only(self.__name__, args)
        d = self.deployment
        sent = d._conn.request("POST", d._path(self.route), json=kwargs, headers={"Prefer": "respond-async"})
        return Job(d._jobs(), sent["id"])

    def __repr__(self) -> str:
        return f"<route {self.route['path']} of {self.deployment!r}>"


def _keywords_only(attr: str, args: tuple[Any, ...]) -> None:
    if args:
        raise TypeError(
            f"{attr}() takes keyword arguments only (got {len(args)} positional); call it as {attr}(name=value, ...)"
        )
