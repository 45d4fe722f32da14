"""What an endpoint runs, for every surface that deploys: the admin API (`podium deploy`, rollback,
stop, start), Covalent function services and DigitalHub service runs.

A deploy stores the version and points the endpoint at it. Deploys are health-gated: when the
endpoint serves another version (ACTIVE), the deploy is staged instead, and the old version keeps
serving until the new one's environment is built and a first worker of it has run the initializer
(`Autoscaler` finishes it: the endpoint moves to the new version, or stays where it is and the
version is marked failed). A first deploy, or one to an endpoint that serves nothing, points at
once (CREATING, then ACTIVE or ERROR). Stopping, starting, removing
and the expiry of endpoints with a time limit (`expires_at`, which the leader enforces) are here
too, so that each surface only maps its own request onto these and its answer back.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from podium.clock import Clock
from podium.core.access import Principal
from podium.dispatch.queue import JobQueue
from podium.store.blobs import Bundles
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint, Version
from podium.store.secretbox import SecretBox

log = logging.getLogger("podium.deployments")

#: Endpoint states in which an endpoint serves (or is about to).
SERVING = (EndpointState.ACTIVE, EndpointState.CREATING)
#: How often the leader stops the endpoints past their `expires_at`.
EXPIRE_EVERY = 1.0


class Scaling(Protocol):
    """What deploys ask of whoever runs the workers (the autoscaler)."""

    async def deployed(self, version: Version) -> bool:
        """A version was deployed: True when its environment must be built first (started now)."""

    def wake(self) -> None:
        """Look at the endpoints again now (a change of state or version)."""

    def restart(self, endpoint_id: str) -> None:
        """Replace every worker of the endpoint (each finishes its job in hand)."""


class Deployments:
    """Parameters:
    catalog: endpoints, versions, history, secrets.
    bundles: where version bundles are kept.
    queue: the jobs a removed endpoint leaves waiting.
    scaling: builds environments and runs the workers.
    secrets: seals endpoint secrets at rest.
    clock: the time expiries are measured on.
    """

    def __init__(
        self,
        catalog: Catalog,
        bundles: Bundles,
        queue: JobQueue,
        scaling: Scaling,
        secrets: SecretBox,
        clock: Clock,
    ) -> None:
        self.catalog = catalog
        self.bundles = bundles
        self.queue = queue
        self.scaling = scaling
        self.secrets = secrets
        self.clock = clock

    async def deploy(
        self,
        principal: Principal,
        name: str,
        version: dict[str, Any],
        *,
        message: str | None,
        secrets: dict[str, str] | None = None,
    ) -> tuple[Endpoint, bool, Version]:
        """Store `version` (the same content is the same version) and point the endpoint `name` at
        it, or stage it while its environment builds (for an endpoint that serves or is about to)
        or until its first worker is ready (for one that serves). `secrets` become the
        endpoint's (sealed). Returns (endpoint, changed, version)."""
        stored = await self.catalog.put_version(
            principal.project_id, {**version, "message": message, "created_by": principal.key_id}
        )
        current = await self.catalog.get_endpoint(principal.project_id, name)
        current = current if current is not None and current.name == name else None
        building = await self.scaling.deployed(stored)
        if current is not None and _waits(current, stored.id, building):
            await self.catalog.stage_endpoint(current.id, stored.id, key_id=principal.key_id, message=message)
            staged = await self.catalog.get_endpoint(principal.project_id, current.id)
            assert staged is not None
            ep, changed = staged, True
        else:
            if current is not None and current.pending is not None:  # the latest deploy wins
                await self.catalog.clear_pending(current.id)
            ep, changed = await self.catalog.point_endpoint(
                principal.project_id, name, stored, key_id=principal.key_id, message=message
            )
        if secrets:
            await self.set_secrets(ep, secrets)
        self.scaling.wake()
        return ep, changed, stored

    async def point(self, principal: Principal, ep: Endpoint, version: Version, *, message: str) -> None:
        """Point an existing endpoint at a version it ran before, or any of its project's (a
        rollback, or a deploy of a stored version from the console)."""
        await self.catalog.point_endpoint(
            principal.project_id, ep.name, version, key_id=principal.key_id, message=message
        )
        self.scaling.wake()

    async def set_secrets(self, ep: Endpoint, values: dict[str, str]) -> None:
        """Seal and store them; the endpoint's workers are replaced so that they see them."""
        for name, value in values.items():
            await self.catalog.set_secret(ep.id, name, self.secrets.seal(value))
        self.scaling.restart(ep.id)

    async def delete_secret(self, ep: Endpoint, name: str) -> bool:
        if not await self.catalog.delete_secret(ep.id, name):
            return False
        self.scaling.restart(ep.id)
        return True

    async def stop(self, ep: Endpoint) -> None:
        """INACTIVE: its workers drain and stop; calls are refused until it is started again."""
        await self.catalog.set_state(ep.id, EndpointState.INACTIVE)
        self.scaling.wake()

    async def start(self, ep: Endpoint) -> None:
        """A stopped (or failed) endpoint back: CREATING until a worker has loaded its version
        again (an environment that failed to build is tried again). Workers of the stopped
        endpoint that still drain are replaced, so that a new one runs the initializer."""
        if ep.state not in (EndpointState.INACTIVE, EndpointState.ERROR):
            return
        version = await self.catalog.get_version(ep.project_id, ep.version_id)
        if version is not None:
            await self.scaling.deployed(version)
        # Replaced before the endpoint may start workers again: a worker started for CREATING
        # must not be among those replaced (it would be, were this after `set_state`).
        self.scaling.restart(ep.id)
        await self.catalog.set_state(ep.id, EndpointState.CREATING)
        self.scaling.wake()

    async def expire_at(self, ep: Endpoint, expires_at: float) -> None:
        """The leader stops the endpoint (INACTIVE, saying why) once `expires_at` has come."""
        await self.catalog.set_expiry(ep.id, expires_at)

    async def expire(self) -> None:
        """Stop the serving endpoints past their `expires_at` (the leader, every EXPIRE_EVERY)."""
        stopped = 0
        for ep in await self.catalog.expired_endpoints(self.clock.now(), SERVING):
            assert ep.expires_at is not None
            reason = f"deployment {ep.id} reached its time limit ({ep.expires_at - ep.created_at:g} s)"
            stopped += await self.catalog.set_state(ep.id, EndpointState.INACTIVE, error=reason)
        if stopped:
            log.info("%d endpoint(s) reached their time limit", stopped)
            self.scaling.wake()

    async def remove(self, ep: Endpoint) -> int:
        """Cancel its waiting jobs (running ones finish) and delete it; returns how many were
        cancelled. Job records stay readable until their retention ends; the name is free again."""
        cancelled = await self.queue.purge(ep.id)
        await self.catalog.remove_endpoint(ep.id)
        self.scaling.wake()
        return cancelled


def _waits(current: Endpoint, version_id: str, building: bool) -> bool:
    """Whether a deploy of `version_id` waits while `current` keeps its version: until a first
    worker has loaded it, when the endpoint serves; until its environment is built, when the
    endpoint is about to serve (CREATING). A stopped or failed endpoint has nothing to keep."""
    if current.version_id == version_id:
        return False
    return current.state == EndpointState.ACTIVE or building and current.state in SERVING
