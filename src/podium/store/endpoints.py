"""Endpoints: a name pointed at a version, its scaling settings, state, history and secrets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, or_, select, update

from podium import _json
from podium.bounded import MISSING, Bounded
from podium.clock import Clock
from podium.names import ENDPOINT_NAME
from podium.records import ServiceConfig
from podium.store.engine import Store
from podium.store.projects import new_id
from podium.store.records import SCALING, Endpoint, Repointing, Rollout, SealedSecret, Version
from podium.store.tables import endpoint_history, endpoint_secrets, endpoints, versions

ENDPOINT_CACHE_SECONDS = 1.0


def scaling_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The scaling settings of a config, defaults filled in for older versions' configs."""
    full = ServiceConfig.from_dict(config).as_dict()
    return {k: full[k] for k in SCALING}


class EndpointState:
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    ERROR = "ERROR"


class Endpoints:
    """Endpoints, read on every call (so briefly cached), and changed by deploys and operators."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        # Endpoints are read on every call and change rarely: cached briefly, and dropped
        # whenever this process changes one (the TTL bounds staleness across server replicas).
        self._endpoints: Bounded[tuple[str | None, str], Endpoint | None] = Bounded(ttl=ENDPOINT_CACHE_SECONDS)
        #: Changes stored so far (`_changed`): a read begun before one may have loaded the row
        #: as it was, and must not cache it once the change is stored.
        self._generation = 0

    async def get_endpoint(self, project_id: str | None, ref: str, *, fresh: bool = False) -> Endpoint | None:
        """An endpoint by id or by name (within the project, when one is given); `fresh`: as
        stored now, not as cached (another replica may have changed it within the cache's TTL)."""
        hit = MISSING if fresh else self._endpoints.get((project_id, ref), MISSING)
        if hit is not MISSING:
            return hit
        generation = self._generation
        row = await self._load_endpoint(project_id, ref)
        if generation == self._generation:
            self._endpoints.put((project_id, ref), row)
        return row

    def _changed(self) -> None:
        """An endpoint's change is stored: what this process cached is dropped, and reads under
        way cache nothing (each may hold the row as it was)."""
        self._generation += 1
        self._endpoints.clear()

    async def _load_endpoint(self, project_id: str | None, ref: str) -> Endpoint | None:
        q = select(endpoints).where(or_(endpoints.c.id == ref, endpoints.c.name == ref))
        if project_id is not None:
            q = q.where(endpoints.c.project_id == project_id)
        async with self.store.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        by_id = [r for r in rows if r["id"] == ref]
        found = by_id or rows
        return Endpoint.from_row(found[0]) if found else None

    async def list_endpoints(self, project_id: str | None = None) -> list[Endpoint]:
        q = select(endpoints).order_by(endpoints.c.created_at)
        if project_id is not None:
            q = q.where(endpoints.c.project_id == project_id)
        async with self.store.read() as conn:
            rows = (await conn.execute(q)).mappings().all()
        return [Endpoint.from_row(r) for r in rows]

    async def point_endpoint(
        self,
        project_id: str,
        name: str,
        version: Version,
        *,
        key_id: str | None,
        message: str | None,
        started: bool = False,
        action: str | None = None,
    ) -> tuple[Endpoint, bool]:
        """Create the endpoint `name` at `version`, or re-point it: CREATING until a worker has
        loaded it, or ACTIVE at once when one already has (`started`: a gated deploy's first
        worker, or a promoted canary's, whose version's failed start, if any, is forgotten). A
        re-pointing ends a rollout under way (`action`: the step recorded, e.g. its promotion).
        Returns (endpoint, changed)."""
        ENDPOINT_NAME.check(name)
        now = self.clock.now()
        config = version.config
        current = await self._load_endpoint(project_id, name)
        if current is not None and current.name == name:
            if current.version_id == version.id and current.state != EndpointState.INACTIVE:
                return current, False
            async with self.store.tx() as conn:
                await conn.execute(
                    update(endpoints)
                    .where(endpoints.c.id == current.id)
                    .values(
                        version_id=version.id,
                        state=EndpointState.ACTIVE if started else EndpointState.CREATING,
                        error=None,
                        pending=None,
                        canary_version=None,
                        rollout=None,
                        updated_at=now,
                        **scaling_columns(config),
                    )
                )
                await self._history(conn, current.id, version.id, key_id, message, now, action=action)
                if started:
                    await conn.execute(update(versions).where(versions.c.id == version.id).values(start_error=None))
            self._changed()
            row = await self._load_endpoint(project_id, current.id)
            assert row is not None
            return row, True
        eid = new_id()
        async with self.store.tx() as conn:
            await conn.execute(
                insert(endpoints).values(
                    id=eid,
                    project_id=project_id,
                    name=name,
                    version_id=version.id,
                    state=EndpointState.CREATING,
                    created_at=now,
                    **scaling_columns(config),
                    updated_at=now,
                )
            )
            await self._history(conn, eid, version.id, key_id, message, now)
        self._changed()
        row = await self._load_endpoint(project_id, eid)
        assert row is not None
        return row, True

    @staticmethod
    async def _history(
        conn: Any,
        endpoint_id: str,
        version_id: str,
        key_id: str | None,
        message: str | None,
        at: float,
        error: str | None = None,
        *,
        action: str | None = None,
    ) -> None:
        await conn.execute(
            insert(endpoint_history).values(
                endpoint_id=endpoint_id,
                version_id=version_id,
                key_id=key_id,
                message=message,
                at=at,
                error=error,
                action=action,
            )
        )

    async def set_rollout(
        self,
        endpoint_id: str,
        rollout: Rollout | None,
        *,
        version_id: str,
        action: str,
        key_id: str | None,
        message: str,
        only_version: str | None = None,
    ) -> bool:
        """Start, change or end (None) the endpoint's canary rollout, and record the step in its
        history, in one transaction. `only_version`: only while the rollout under way is of that
        version (the leader's guard must not end a newer one). False when nothing changed."""
        now = self.clock.now()
        q = update(endpoints).where(endpoints.c.id == endpoint_id)
        async with self.store.tx() as conn:
            if only_version is not None:
                q = q.where(endpoints.c.canary_version == only_version)
            res = await conn.execute(
                q.values(
                    canary_version=None if rollout is None else rollout.version_id,
                    rollout=None if rollout is None else rollout.stored(),
                    updated_at=now,
                )
            )
            if not res.rowcount:
                return False
            await self._history(conn, endpoint_id, version_id, key_id, message, now, action=action)
        self._changed()
        return True

    async def stage_endpoint(
        self, endpoint_id: str, version_id: str, *, key_id: str | None, message: str | None
    ) -> None:
        """Remember a deploy that waits for its version's environment and first worker (the
        endpoint keeps its version meanwhile); `point_endpoint`, `clear_pending` or
        `refuse_pending` ends the wait."""
        pending = {"version_id": version_id, "key_id": key_id, "message": message}
        async with self.store.tx() as conn:
            await conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(pending=_json.dumps(pending), updated_at=self.clock.now())
            )
        self._changed()

    async def clear_pending(self, endpoint_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(pending=None))
        self._changed()

    async def refuse_pending(self, endpoint_id: str, version_id: str, error: str) -> bool:
        """The deploy waiting for `version_id` ends without it: its first worker failed with
        `error`. The version records it, the history keeps the deploy with it, and the endpoint
        stays as it was. False when that deploy no longer waits (another replaced it)."""
        now = self.clock.now()
        async with self.store.tx() as conn:
            raw = await conn.scalar(select(endpoints.c.pending).where(endpoints.c.id == endpoint_id))
            pending = _json.loads(raw) if raw else None
            if pending is None or pending["version_id"] != version_id:
                return False
            await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(pending=None))
            await conn.execute(update(versions).where(versions.c.id == version_id).values(start_error=error))
            await self._history(conn, endpoint_id, version_id, pending["key_id"], pending["message"], now, error)
        self._changed()
        return True

    async def set_scaling(self, endpoint_id: str, settings: dict[str, Any]) -> None:
        """Change an endpoint's scaling settings (no redeploy; the next deploy sets them again)."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(updated_at=self.clock.now(), **scaling_columns(settings))
            )
        self._changed()

    async def history(self, endpoint_id: str) -> list[Repointing]:
        """Every re-pointing of an endpoint, and every deploy that failed to (`error` set),
        newest first."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(endpoint_history)
                .where(endpoint_history.c.endpoint_id == endpoint_id)
                .order_by(endpoint_history.c.at.desc(), endpoint_history.c.id.desc())
            )
            return [Repointing.from_row(r) for r in res.mappings().all()]

    async def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint and its history (its versions and jobs stay)."""
        async with self.store.tx() as conn:
            await conn.execute(delete(endpoint_history).where(endpoint_history.c.endpoint_id == endpoint_id))
            await conn.execute(delete(endpoint_secrets).where(endpoint_secrets.c.endpoint_id == endpoint_id))
            await conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))
        self._changed()

    async def set_expiry(self, endpoint_id: str, expires_at: float | None) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(expires_at=expires_at))
        self._changed()

    async def expired_endpoints(self, now: float, states: tuple[str, ...]) -> list[Endpoint]:
        """Endpoints in one of `states` whose expiry has come."""
        q = select(endpoints).where(endpoints.c.expires_at <= now, endpoints.c.state.in_(states))
        async with self.store.tx() as conn:
            rows = (await conn.execute(q.order_by(endpoints.c.created_at))).mappings().all()
        return [Endpoint.from_row(r) for r in rows]

    async def set_state(
        self, endpoint_id: str, state: str, *, error: str | None = None, only_from: str | None = None
    ) -> bool:
        q = update(endpoints).where(endpoints.c.id == endpoint_id)
        if only_from is not None:
            q = q.where(endpoints.c.state == only_from)
        async with self.store.tx() as conn:
            res = await conn.execute(q.values(state=state, error=error, updated_at=self.clock.now()))
        self._changed()
        return bool(res.rowcount)

    async def set_waiting_for(self, endpoint_id: str, reason: str | None) -> None:
        """Why the autoscaler holds back the endpoint's workers (None: it does not), for every
        replica's status answers."""
        async with self.store.tx() as conn:
            await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(waiting_for=reason))
        self._changed()

    async def set_secret(self, endpoint_id: str, name: str, token: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(
                delete(endpoint_secrets).where(
                    endpoint_secrets.c.endpoint_id == endpoint_id, endpoint_secrets.c.name == name
                )
            )
            await conn.execute(
                insert(endpoint_secrets).values(
                    endpoint_id=endpoint_id, name=name, value=token, updated_at=self.clock.now()
                )
            )

    async def delete_secret(self, endpoint_id: str, name: str) -> bool:
        async with self.store.tx() as conn:
            res = await conn.execute(
                delete(endpoint_secrets).where(
                    endpoint_secrets.c.endpoint_id == endpoint_id, endpoint_secrets.c.name == name
                )
            )
        return bool(res.rowcount)

    async def secrets(self, endpoint_id: str) -> list[SealedSecret]:
        """An endpoint's secrets, still encrypted, by name."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(endpoint_secrets)
                .where(endpoint_secrets.c.endpoint_id == endpoint_id)
                .order_by(endpoint_secrets.c.name)
            )
            return [SealedSecret.from_row(r) for r in res.mappings().all()]
