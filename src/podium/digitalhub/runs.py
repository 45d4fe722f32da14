"""Serve runs over Podium endpoints: a run deploys its function as an endpoint (one per run), stop
and resume move the endpoint's state, delete removes it; the run's DigitalHub status is read off
the endpoint each time, so it never disagrees with what Podium serves.

A run's service answers without a key (the SDK's `run.invoke()` sends none), so its URL carries a
capability token: random, kept sealed, replaced on stop and dropped on delete.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock
from podium.core.access import Principal
from podium.core.deployments import Deployments
from podium.core.errors import InvalidRequest
from podium.digitalhub.build import ENTRY, build, with_id
from podium.digitalhub.records import Entity, Records
from podium.names import ENDPOINT_NAME
from podium.store.endpoints import EndpointState
from podium.store.engine import Store
from podium.store.records import Endpoint

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: A run's DigitalHub state for each endpoint state (RUNNING only once a worker ran init).
STATES = {
    EndpointState.CREATING: "PENDING",
    EndpointState.ACTIVE: "RUNNING",
    EndpointState.INACTIVE: "STOPPED",
    EndpointState.ERROR: "ERROR",
}


@dataclass(frozen=True)
class Where:
    """How the SDK reaches this server (the host and port it called), for service URLs."""

    host: str
    port: int


def split_envs(spec: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """A run's `spec.envs` (`[{name, value}]`): the values, and what is stored in their place
    (names only: values live sealed with the endpoint)."""
    envs = spec.get("envs") or []
    if not isinstance(envs, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("value"), str) for e in envs
    ):
        raise InvalidRequest('spec.envs must be a list of {"name": ..., "value": "..."} with string values')
    values = {e["name"]: e["value"] for e in envs}
    bad = sorted(n for n in values if not ENV_NAME.match(n) or n.upper().startswith(("PODIUM_", "RUNPOD_")))
    if bad:
        raise InvalidRequest(f"spec.envs names must look like MY_SETTING (not PODIUM_* or RUNPOD_*): {', '.join(bad)}")
    return values, [{"name": n, "value": ""} for n in values]


def endpoint_name(function: str, run_id: str) -> str:
    """`dh-<function>-<run>`, made of what an endpoint name may hold whatever the two were."""
    slug = re.sub(r"[^a-z0-9-]+", "-", function.lower()).strip("-")[:40] or "function"
    run = re.sub(r"[^a-z0-9]+", "", run_id.lower())[:8] or "run"
    return ENDPOINT_NAME.check(f"dh-{slug}-{run}")


def service_path(project: str, run_id: str, token: str) -> str:
    return f"/api/v1/-/{project}/runs/{run_id}/service/{token}"


class ServeRuns:
    """Serve runs of one server: deploy, stop, resume, remove, and their status.

    Parameters:
        store: where runs are kept (beside DigitalHub's other entities).
        deployments: what each run's endpoint runs.
        clock: the time records are stamped with.
    """

    def __init__(self, store: Store, deployments: Deployments, clock: Clock) -> None:
        self.deployments = deployments
        self.catalog = deployments.catalog
        self.box = deployments.secrets
        self.records = Records(store, clock)

    def _seal(self) -> str:
        return self.box.seal(secrets.token_urlsafe(24))

    def token(self, run: Entity) -> str | None:
        return None if run.token is None else self.box.open(run.token)

    def token_matches(self, run: Entity, presented: str) -> bool:
        token = self.token(run)
        return token is not None and hmac.compare_digest(token.encode(), presented.encode())

    async def deploy(self, principal: Principal, run: Entity, function: Entity, envs: dict[str, str]) -> Endpoint:
        """Store the function's version for this run and point a new endpoint at it; `envs` (the
        run's `spec.envs`) reach its workers as the endpoint's secrets, sealed at rest."""
        spec = run.body.get("spec") or {}
        params = spec.get("init_parameters") or {}
        if not isinstance(params, dict):
            raise InvalidRequest("spec.init_parameters must be an object")
        replicas = spec.get("replicas") or 1
        if not isinstance(replicas, int) or not 1 <= replicas <= 16:
            raise InvalidRequest("spec.replicas must be a whole number from 1 to 16")
        built = build(function.name, function.body.get("spec") or {}, params, replicas)
        await self.deployments.bundles.put(built.version["sha256"], built.data)
        ep, _, _ = await self.deployments.deploy(
            principal,
            endpoint_name(function.name, run.id),
            with_id(built.version, principal.project_id),
            message=f"DigitalHub run {run.id} of {run.dh_project}/{function.name}",
            secrets=envs,
        )
        await self.records.set_serving(principal.project_id, run.id, ep.id, self._seal())
        return ep

    async def endpoint(self, run: Entity) -> Endpoint | None:
        if run.endpoint_id is None:
            return None
        return await self.catalog.get_endpoint(None, run.endpoint_id)

    async def stop(self, principal: Principal, run: Entity) -> None:
        ep = await self.endpoint(run)
        if ep is not None:
            await self.deployments.stop(ep)
            await self.records.set_serving(principal.project_id, run.id, ep.id, self._seal())

    async def resume(self, run: Entity) -> None:
        """As `podium start`: CREATING until a worker has run init again."""
        ep = await self.endpoint(run)
        if ep is not None:
            await self.deployments.start(ep)

    async def remove(self, principal: Principal, run: Entity) -> None:
        ep = await self.endpoint(run)
        if ep is not None:
            await self.deployments.remove(ep)
        await self.records.delete(principal.project_id, run.id)

    async def status(self, run: Entity, where: Where) -> dict[str, Any]:
        """The run's status as DigitalHub Core reports it; `service` only while it serves."""
        status = dict(run.body.get("status") or {})
        ep = await self.endpoint(run)
        if ep is None:
            return {**status, "state": status.get("state") or "CREATED"}
        state = STATES.get(ep.state, "UNKNOWN")
        out: dict[str, Any] = {**status, "state": state, "message": _message(ep)}
        out.pop("service", None)
        token = self.token(run)
        if state == "RUNNING" and token is not None:
            out["service"] = {
                "name": ep.name,
                "type": "ClusterIP",
                "clusterIP": where.host,
                "ports": [
                    {"name": f"port{where.port}", "port": where.port, "protocol": "TCP", "targetPort": where.port}
                ],
                "url": f"{where.host}:{where.port}{service_path(run.dh_project, run.id, token)}",
            }
        return out


def _message(ep: Endpoint) -> str:
    if ep.state == EndpointState.ERROR:
        # The first line says why (the worker's log tail follows it; run.logs() has it whole).
        first = str(ep.error or "unknown error").splitlines()[0]
        return f"the service failed to start: {first.split(f'importing {ENTRY} failed: ', 1)[-1]}"

    return {
        EndpointState.CREATING: f"starting endpoint {ep.name}: init runs in a new worker",
        EndpointState.ACTIVE: f"serving as Podium endpoint {ep.name}",
        EndpointState.INACTIVE: f"endpoint {ep.name} is stopped",
    }.get(ep.state, "")
