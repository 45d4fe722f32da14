"""Versions (immutable uploads of a service) and the builds of their environments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, literal, select, update
from sqlalchemy.exc import IntegrityError

from podium import _json
from podium.clock import Clock
from podium.store.engine import Store
from podium.store.records import Endpoint, Version
from podium.store.tables import endpoints, project_blobs, versions


class BuildState:
    """A version's environment: being built, usable, or failed to build (see podium.envs)."""

    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class Versions:
    """Versions, kept parsed once read (they never change), and their builds."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        # Versions never change: each is kept, parsed, once read (its build is read afresh).
        self._versions: dict[str, Version] = {}

    async def own_blob(self, project_id: str, sha256: str) -> None:
        """The project may use this bundle from now on (it uploaded it)."""
        if await self.owns_blob(project_id, sha256):
            return
        try:
            async with self.store.tx() as conn:
                await conn.execute(
                    insert(project_blobs).values(project_id=project_id, sha256=sha256, created_at=self.clock.now())
                )
        except IntegrityError:  # recorded concurrently
            pass

    async def owns_blob(self, project_id: str, sha256: str) -> bool:
        """Whether the project uploaded this bundle or has a version of it."""
        async with self.store.tx() as conn:
            found = await conn.scalar(
                select(literal(1)).where(project_blobs.c.project_id == project_id, project_blobs.c.sha256 == sha256)
            )
        return found is not None

    async def put_version(self, project_id: str, version: dict[str, Any]) -> Version:
        """Store a version unless the same content is already there; returns the stored one.
        The project owns its bundle from then on."""
        existing = await self.get_version(project_id, version["id"])
        if existing is not None:
            return existing
        await self.own_blob(project_id, version["sha256"])
        try:
            async with self.store.tx() as conn:
                await conn.execute(
                    insert(versions).values(
                        id=version["id"],
                        project_id=project_id,
                        sha256=version["sha256"],
                        service=version["service"],
                        entry=version["entry"],
                        runtime=version.get("runtime", "podium"),
                        routes=_json.dumps(version["routes"]),
                        config=_json.dumps(version["config"]),
                        size=version["size"],
                        message=version.get("message"),
                        created_by=version.get("created_by"),
                        created_at=self.clock.now(),
                        requirements=_json.dumps(version["requirements"]) if version.get("requirements") else None,
                        env_hash=version.get("env_hash"),
                        build_state=BuildState.BUILDING if version.get("env_hash") else None,
                    )
                )
        except IntegrityError:
            pass
        stored = await self.get_version(project_id, version["id"])
        assert stored is not None
        return stored

    async def cached_version(self, project_id: str, version_id: str) -> Version:
        """A version as the call path reads it: kept once read (an empty one for a missing
        version). Its build fields are as they were then: `get_version` reads the build."""
        version = self._versions.get(version_id)
        if version is None:
            version = await self.get_version(project_id, version_id)
            if version is None:
                return Version.missing(project_id, version_id)
            self._versions[version_id] = version
        return version

    async def get_version(self, project_id: str, version_id: str) -> Version | None:
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(versions).where(versions.c.id == version_id, versions.c.project_id == project_id)
            )
            row = res.mappings().first()
        return None if row is None else Version.from_row(row)

    async def version_ids(self, project_id: str, prefix: str, limit: int) -> list[str]:
        """Ids of the project's versions that start with `prefix` (at most `limit` of them)."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(versions.c.id)
                .where(versions.c.project_id == project_id, versions.c.id.startswith(prefix, autoescape=True))
                .limit(limit)
            )
            return [i for i in res.scalars() if i.startswith(prefix)]  # SQLite's LIKE ignores case

    async def start_build(self, version_id: str) -> None:
        """A deploy asks for the version's environment again (a failed build is retried)."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(versions)
                .where(versions.c.id == version_id, versions.c.env_hash.is_not(None))
                .values(build_state=BuildState.BUILDING, build_error=None)
            )

    async def finish_build(self, env_hash: str, state: str, error: str | None = None) -> None:
        """An environment's build ended: every version waiting for it learns how."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(versions)
                .where(versions.c.env_hash == env_hash, versions.c.build_state == BuildState.BUILDING)
                .values(build_state=state, build_error=error)
            )

    async def env_users(self) -> tuple[list[Version], list[Endpoint]]:
        """Versions that have an environment, and every endpoint (its current and pending
        version): what `podium envs ls` shows and `gc` keeps."""
        async with self.store.tx() as conn:
            vs = (await conn.execute(select(versions).where(versions.c.env_hash.is_not(None)))).mappings().all()
            eps = (await conn.execute(select(endpoints))).mappings().all()
        return [Version.from_row(v) for v in vs], [Endpoint.from_row(e) for e in eps]
