"""Canary rollouts: a second version of an endpoint takes a share of its new calls.

A rollout is state in the store (`endpoints.rollout`), so every replica splits calls the same
way (`Calls.split`, by a hash of the job id: `core/split.py`) and the leader's guard sees it.
Each version keeps its own workers and scaling (the autoscaler runs both; a canary's workers
take only the jobs routed to it). Each step is one transaction that changes the rollout and
records the step, who took it and when, in the endpoint's history:

    start (a version, a percent) ─percent─▶ another percent
          ├──promote──▶ the endpoint points at the canary (the old version drains)
          ├──abort────▶ every call goes to the endpoint's version again
          └──guard────▶ aborted by the leader: the canary failed too often

A re-pointing (a deploy, a rollback) ends a rollout too: the endpoint then runs one version.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from podium.clock import Clock
from podium.core.access import Principal
from podium.core.deployments import Deployments
from podium.core.errors import Conflict, InvalidRequest
from podium.dispatch.counts import Figures
from podium.dispatch.queue import JobQueue
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Endpoint, Rollout, Version

log = logging.getLogger("podium.rollouts")

#: Calls of the canary (ended since the rollout started) before its guard may judge it.
GUARD_MIN_CALLS = 20
#: How often the leader looks at the canaries' failure rates.
GUARD_EVERY = 1.0
#: The window of the figures `podium status` shows for each version (seconds).
FIGURES_WINDOW = 300.0


@dataclass(frozen=True)
class RolloutView:
    """A rollout as answers show it: its two versions and how each has done lately."""

    rollout: Rollout
    current: Figures
    canary: Figures

    def as_dict(self, ep: Endpoint) -> dict[str, Any]:
        r = self.rollout
        return {
            **r.as_dict(),
            "window_seconds": FIGURES_WINDOW,
            "versions": [
                {"version": ep.version_id, "role": "current", "percent": 100 - r.percent, **self.current.as_dict()},
                {"version": r.version_id, "role": "canary", "percent": r.percent, **self.canary.as_dict()},
            ],
        }


class Rollouts:
    """Parameters:
    catalog: endpoints (their rollout) and their history.
    queue: the jobs each version ran (figures, the guard).
    deployments: stores a canary's version and builds its environment; promotes it.
    clock: when each step happened.
    """

    def __init__(self, catalog: Catalog, queue: JobQueue, deployments: Deployments, clock: Clock) -> None:
        self.catalog = catalog
        self.queue = queue
        self.deployments = deployments
        self.clock = clock

    async def deploy(
        self,
        principal: Principal,
        ep: Endpoint,
        version: dict[str, Any],
        percent: int,
        *,
        max_failure_rate: float | None,
        message: str | None,
    ) -> Version:
        """Store a new version (`podium deploy --canary`) and start a rollout of it."""
        _check(ep, percent, max_failure_rate)
        stored = await self.catalog.put_version(
            principal.project_id, {**version, "message": message, "created_by": principal.key_id}
        )
        await self.start(principal, ep, stored, percent, max_failure_rate=max_failure_rate)
        return stored

    async def start(
        self,
        principal: Principal,
        ep: Endpoint,
        version: Version,
        percent: int,
        *,
        max_failure_rate: float | None,
    ) -> None:
        """Send `percent` of the endpoint's new calls to `version` (one of its project's), the
        rest to the version it runs. Its environment is built first; its workers start as its
        calls need them."""
        _check(ep, percent, max_failure_rate)
        if version.id == ep.version_id:
            raise Conflict(f"endpoint {ep.name} runs version {version.id} already", code="version_current")
        if ep.rollout is not None and ep.rollout.version_id != version.id:
            raise Conflict(
                f"endpoint {ep.name} has a rollout of version {ep.rollout.version_id} under way; "
                "promote or abort it first",
                code="rollout_under_way",
            )
        await self.deployments.scaling.deployed(version)
        rollout = Rollout(version.id, percent, max_failure_rate, principal.key_id, self.clock.now())
        await self._step(ep, rollout, version.id, "start", principal.key_id, _describe(rollout))

    async def set_percent(
        self, principal: Principal, ep: Endpoint, percent: int, *, max_failure_rate: float | None = None
    ) -> None:
        """Change the canary's share (and its guard, when given) of the rollout under way."""
        rollout = _under_way(ep)
        guard = rollout.max_failure_rate if max_failure_rate is None else max_failure_rate
        _check(ep, percent, guard)
        changed = Rollout(rollout.version_id, percent, guard, rollout.key_id, rollout.started_at)
        await self._step(ep, changed, rollout.version_id, "percent", principal.key_id, _describe(changed))

    async def promote(self, principal: Principal, ep: Endpoint) -> None:
        """The endpoint points at the canary (every call goes to it); the old version's workers
        drain as after a redeploy. A canary that has completed calls is known to start: the
        endpoint stays ACTIVE."""
        rollout = _under_way(ep)
        version = await self.catalog.get_version(ep.project_id, rollout.version_id)
        assert version is not None  # versions are never deleted while an endpoint names them
        ran = await self.queue.figures(ep.id, rollout.version_id, rollout.started_at)
        await self.catalog.point_endpoint(
            ep.project_id,
            ep.name,
            version,
            key_id=principal.key_id,
            message=f"canary promoted (was at {rollout.percent} %)",
            started=ran.calls > ran.failures,
            action="promote",
        )
        self.deployments.scaling.wake()

    async def abort(self, principal: Principal, ep: Endpoint) -> None:
        """Every new call goes to the endpoint's version again; the canary's workers drain."""
        rollout = _under_way(ep)
        await self._step(ep, None, rollout.version_id, "abort", principal.key_id, "rollout aborted")

    async def view(self, ep: Endpoint) -> RolloutView | None:
        """The rollout under way and each version's calls, failures and p50 over FIGURES_WINDOW."""
        if ep.rollout is None:
            return None
        since = self.clock.now() - FIGURES_WINDOW
        return RolloutView(
            ep.rollout,
            await self.queue.figures(ep.id, ep.version_id, since),
            await self.queue.figures(ep.id, ep.rollout.version_id, since),
        )

    async def guard(self) -> None:
        """Abort each rollout whose canary failed more often than its `max_failure_rate`, over at
        least GUARD_MIN_CALLS calls since it started (the leader, every GUARD_EVERY)."""
        for ep in await self.catalog.list_endpoints():
            rollout = ep.rollout
            if rollout is None or rollout.max_failure_rate is None:
                continue
            seen = await self.queue.figures(ep.id, rollout.version_id, rollout.started_at)
            if seen.calls < GUARD_MIN_CALLS or seen.failure_rate <= rollout.max_failure_rate:
                continue
            message = (
                f"rollout aborted by its guard: the canary failed {seen.failures} of {seen.calls} calls "
                f"({seen.failure_rate:.0%}), more than --max-failure-rate {rollout.max_failure_rate:g}"
            )
            if await self.catalog.set_rollout(
                ep.id,
                None,
                version_id=rollout.version_id,
                action="guard",
                key_id=None,
                message=message,
                only_version=rollout.version_id,
            ):
                log.warning("endpoint %s: %s", ep.name, message)
                self.deployments.scaling.wake()

    async def _step(
        self, ep: Endpoint, rollout: Rollout | None, version_id: str, action: str, key_id: str | None, message: str
    ) -> None:
        await self.catalog.set_rollout(
            ep.id, rollout, version_id=version_id, action=action, key_id=key_id, message=message
        )
        self.deployments.scaling.wake()


def _check(ep: Endpoint, percent: int, max_failure_rate: float | None) -> None:
    if not 1 <= percent <= 99:
        raise InvalidRequest(
            f"a canary's share is 1 to 99 percent, not {percent} (promote it for 100, abort it for 0)",
            code="invalid_percent",
        )
    if max_failure_rate is not None and not 0 <= max_failure_rate < 1:
        raise InvalidRequest(
            f"max_failure_rate is a fraction from 0 to 1 (0.05: 5 %), not {max_failure_rate:g}",
            code="invalid_failure_rate",
        )
    if ep.state != EndpointState.ACTIVE:
        raise Conflict(
            f"endpoint {ep.name} is {ep.state}: a canary shares the calls of an endpoint that serves (ACTIVE)",
            code="endpoint_not_active",
        )
    if ep.pending is not None:
        raise Conflict(
            f"endpoint {ep.name} is moving to version {ep.pending.version_id} (a deploy waits for its first "
            "worker); start the rollout once it is done",
            code="deploy_pending",
        )


def _under_way(ep: Endpoint) -> Rollout:
    if ep.rollout is None:
        raise Conflict(f"endpoint {ep.name} has no rollout under way", code="no_rollout")
    return ep.rollout


def _describe(rollout: Rollout) -> str:
    guard = "" if rollout.max_failure_rate is None else f", aborts past a failure rate of {rollout.max_failure_rate:g}"
    return f"canary at {rollout.percent} %{guard}"
