"""Covalent deployments over Podium's catalog: deploy, read, list, tear down, inference keys.

A deployment is an endpoint (its id is the function id) whose version has runtime "covalent"; the
Covalent-only fields (title, description, tags, auth, HTTP methods, the sealed first inference
key) live in the version's config under "covalent". Inference keys are invoke keys bound to the
endpoint, named `covalent:<function id>`. Every error is a core DomainError.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from podium.bundle import version_id
from podium.clock import Clock
from podium.core.access import Access, Principal
from podium.core.deployments import Deployments
from podium.core.errors import InvalidRequest, NotFound
from podium.covalent.bundle import MANIFEST, CovalentBundle, build
from podium.covalent.models import CovalentConfig, FunctionService, RouteRecord
from podium.envs.requirements import Requirements
from podium.records import ServiceConfig
from podium.sdk.service import ROUTE_PATH, default_name, method_name
from podium.store.projects import new_key
from podium.store.records import Endpoint, Key

RUNTIME = "covalent"
SORTS = ("created_at", "updated_at", "title", "status")
#: A Covalent service stays up until torn down: one worker, started at deploy, never idled out.
SERVICE_CONFIG = ServiceConfig(min_workers=1, max_workers=1, idle_timeout=3600.0)
DEFAULT_DESCRIPTION = "Add a docstring to your service function to populate this section."


def key_name(function_id: str) -> str:
    return f"covalent:{function_id}"


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()


def stderr_text(error: str) -> str:
    """An endpoint's error with its worker-log tail as the plain lines the worker wrote (the log
    keeps them as JSON records, one a line)."""
    lines = []
    for line in error.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        lines.append(str(record["msg"]) if isinstance(record, dict) and "msg" in record else line)
    return "\n".join(lines)


@dataclass(frozen=True)
class Deployment:
    """One deployment as the routers need it: its endpoint row and its Covalent fields."""

    endpoint: Endpoint
    config: CovalentConfig

    @property
    def id(self) -> str:
        return self.endpoint.id

    def route(self, path: str) -> RouteRecord | None:
        path = "/" + path.strip("/")
        return next((r for r in self.config.routes if r.route == path), None)


def route_table(spec: FunctionService) -> list[dict[str, Any]]:
    """Podium's route table from the JSON endpoint records (the functions stay pickled: their
    parameters are checked by the worker)."""
    if not spec.endpoints:
        raise InvalidRequest("the service has no endpoints: add one with @service.endpoint(...)")
    table: list[dict[str, Any]] = []
    for i, ep in enumerate(spec.endpoints):
        if not ROUTE_PATH.match(ep.route):
            raise InvalidRequest(f"route {ep.route!r} must start with '/' and use letters, digits, '_', '-', '.'")
        if any(r["path"] == ep.route for r in table):
            raise InvalidRequest(f"route {ep.route} is declared twice; Podium serves one HTTP method per route")
        if any(r["method"] == method_name(ep.route) for r in table):
            raise InvalidRequest(f"route {ep.route} clashes with another route's method name")
        table.append(
            {
                "path": ep.route,
                "method": method_name(ep.route),
                "kind": "route",
                "streaming": ep.streaming,
                "is_async": False,
                "params": [],
                "var_keyword": True,
                "default": i == 0,
            }
        )
    return table


class Functions:
    """Parameters:
    access: who may see or call which deployment.
    deployments: what each deployment's endpoint runs.
    clock: when inference keys are made.
    """

    def __init__(self, access: Access, deployments: Deployments, clock: Clock) -> None:
        self.access = access
        self.deployments = deployments
        self.catalog = deployments.catalog
        self.box = deployments.secrets
        self.clock = clock

    # -- deploy ---------------------------------------------------------------------------------

    async def deploy(
        self, principal: Principal, spec: FunctionService, fetch: Callable[[str], bytes | None]
    ) -> Deployment:
        """Store the bundle and its version, create the endpoint (CREATING) and its first key."""
        routes = route_table(spec)
        try:  # reading, zipping and writing up to hundreds of MB: off the event loop
            bundle = await asyncio.to_thread(build, spec, fetch)
        except ValueError as exc:
            raise InvalidRequest(str(exc), code="invalid_asset") from None
        await self.deployments.bundles.put(bundle.sha256, bundle.data)
        token = new_key()
        title = spec.title or "service"
        config = CovalentConfig(
            title=title,
            description=spec.description or DEFAULT_DESCRIPTION,
            tags=spec.tag_list(),
            auth=spec.auth is not False,
            time_limit=spec.executor.time_limit,
            routes=[
                RouteRecord(
                    route=e.route,
                    method=e.method,
                    streaming=e.streaming,
                    name=e.name or method_name(e.route),
                    description=e.description or "",
                )
                for e in spec.endpoints
            ],
            token=self.box.seal(token),
        )
        name = f"{default_name(title)[:50].strip('-') or 'service'}-{secrets.token_hex(3)}"
        version = self._version(principal, bundle, name, routes, config)
        ep, _, _ = await self.deployments.deploy(principal, name, version, message=f"covalent-cloud deploy: {title}")
        await self.deployments.expire_at(ep, ep.created_at + config.time_limit)
        await self.catalog.create_key(
            principal.project_id, "invoke", name=key_name(ep.id), endpoint_id=ep.id, raw=token
        )
        return Deployment(ep, config)

    @staticmethod
    def _version(
        principal: Principal, bundle: CovalentBundle, name: str, routes: list[dict[str, Any]], config: CovalentConfig
    ) -> dict[str, Any]:
        """The version: the pickles' cloudpickle pinned in its environment, and their Python
        when it is not the server's own."""
        own = Requirements(()).resolved_python()
        reqs = Requirements(
            (f"cloudpickle=={bundle.header.cloudpickle_version}",),
            None if bundle.header.python == own else bundle.header.python,
        )
        meta = {
            "service": name,
            "entry": MANIFEST,
            "routes": routes,
            "runtime": RUNTIME,
            "config": {**SERVICE_CONFIG.as_dict(), RUNTIME: config.model_dump()},
            "requirements": reqs.as_dict(),
        }
        return {
            **meta,
            "id": version_id(bundle.sha256, {**meta, "project": principal.project_id}),
            "sha256": bundle.sha256,
            "size": len(bundle.data),
            "env_hash": reqs.env_hash(),
        }

    # -- reading --------------------------------------------------------------------------------

    async def of(self, ep: Endpoint) -> Deployment | None:
        """The Covalent deployment an endpoint is, or None for any other endpoint."""
        version = await self.catalog.cached_version(ep.project_id, ep.version_id)
        if version.runtime != RUNTIME:
            return None
        return Deployment(ep, CovalentConfig.model_validate(version.config[RUNTIME]))

    async def get(self, principal: Principal, function_id: str) -> Deployment:
        ep = await self.access.endpoint(principal, function_id)
        found = await self.of(ep)
        if found is None:
            raise NotFound("function", function_id)
        return found

    async def public(self, function_id: str) -> Deployment | None:
        """A deployment looked up without a key (to learn whether its routes need one)."""
        ep = await self.catalog.get_endpoint(None, function_id)
        return None if ep is None or ep.id != function_id else await self.of(ep)

    async def token(self, d: Deployment) -> str | None:
        """The deployment's first inference key, while it is not deleted."""
        token = self.box.open(d.config.token)
        return token if await self.access.lookup(token) is not None else None

    async def listing(
        self, principal: Principal, *, search: str | None, status: str | None, sort: str, descending: bool
    ) -> list[Deployment]:
        if sort not in SORTS:
            raise InvalidRequest(f"sort must be one of {', '.join(SORTS)}")
        found: list[Deployment] = []
        for ep in await self.catalog.list_endpoints(principal.project_id):
            d = await self.of(ep)
            if d is None or (status and ep.state != status.upper()):
                continue
            if search and search.lower() not in f"{d.config.title}\n{d.config.description}".lower():
                continue
            found.append(d)
        keys: dict[str, Callable[[Deployment], Any]] = {
            "created_at": lambda d: d.endpoint.created_at,
            "updated_at": lambda d: d.endpoint.updated_at,
            "title": lambda d: d.config.title.lower(),
            "status": lambda d: d.endpoint.state,
        }
        return sorted(found, key=keys[sort], reverse=descending)

    # -- changes --------------------------------------------------------------------------------

    async def teardown(self, d: Deployment) -> Deployment:
        """INACTIVE: the worker stops; calls are refused from now on."""
        await self.deployments.stop(d.endpoint)
        ep = await self.catalog.get_endpoint(d.endpoint.project_id, d.id)
        assert ep is not None
        return Deployment(ep, d.config)

    async def new_key(self, d: Deployment) -> tuple[str, str, float]:
        """(key id, key, created at): the key is shown once."""
        kid, key = await self.catalog.create_key(d.endpoint.project_id, "invoke", name=key_name(d.id), endpoint_id=d.id)
        return kid, key, self.clock.now()

    async def keys(self, d: Deployment) -> list[Key]:
        keys = await self.catalog.list_keys(d.endpoint.project_id)
        return [k for k in keys if k.name == key_name(d.id) and k.revoked_at is None]

    async def delete_key(self, d: Deployment, key_id: str) -> None:
        if not any(k.id == key_id for k in await self.keys(d)):
            raise NotFound("inference key", key_id)
        await self.catalog.revoke_key(d.endpoint.project_id, key_id)
        self.access.forget()
