"""Projects, API keys, versions and endpoints: the store's queries that are not queue semantics."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from typing import Any

from sqlalchemy import delete, insert, literal, or_, select, update
from sqlalchemy.exc import IntegrityError

from podium import _json
from podium.bounded import MISSING, Bounded
from podium.clock import Clock
from podium.records import ServiceConfig, VersionInfo
from podium.store.engine import Row, Store
from podium.store.tables import (
    api_keys,
    endpoint_history,
    endpoint_secrets,
    endpoints,
    projects,
    versions,
)

DEFAULT_PROJECT = "default"
ENDPOINT_CACHE_SECONDS = 1.0
KEY_PREFIX = "pod_live_"
_ALPHABET = string.ascii_letters + string.digits


#: What each worker asks of the machine or cluster (scaling.resources.Resources).
RESOURCES = ("cpus", "gpus", "memory_mb")
#: The endpoint columns a version's config (or `podium scale`) sets.
SCALING = ("min_workers", "max_workers", "idle_timeout", "concurrency", "scaler", "target",
           "max_jobs_per_worker", "max_worker_memory_mb", "queue_cap", *RESOURCES)


def scaling_columns(config: dict[str, Any]) -> dict[str, Any]:
    """The scaling settings of a config, defaults filled in for older versions' configs."""
    full = ServiceConfig.from_dict(config).as_dict()
    return {k: full[k] for k in SCALING}


def new_id(n: int = 14) -> str:
    """A random lowercase id (endpoint ids look like RunPod's)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_key() -> str:
    """A recognisable prefix plus 40 base62 characters (~238 bits)."""
    return KEY_PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(40))


def key_prefix(key: str) -> str:
    """The part of a key that may be shown and stored beside its hash."""
    return key[: len(KEY_PREFIX) + 4] if key.startswith(KEY_PREFIX) else key[:4]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class EndpointState:
    CREATING = "CREATING"
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    ERROR = "ERROR"


class BuildState:
    """A version's environment: being built, usable, or failed to build (see podium.envs)."""

    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


class Catalog:
    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()
        # Endpoint rows are read on every call and change rarely: cached briefly, and dropped
        # whenever this process changes one (the TTL bounds staleness across server replicas).
        self._endpoints: Bounded[tuple[str | None, str], Row | None] = Bounded(ttl=ENDPOINT_CACHE_SECONDS)
        # Versions never change: their parsed route table and config are kept once read.
        self._versions: dict[str, VersionInfo] = {}

    # -- projects -------------------------------------------------------------------------------

    async def ping(self) -> None:
        """One round trip to the database (raises when it is unreachable)."""
        async with self.store.read() as conn:
            await conn.scalar(select(literal(1)))

    async def ensure_project(self, name: str = DEFAULT_PROJECT) -> str:
        async with self.store.tx() as conn:
            pid = await conn.scalar(select(projects.c.id).where(projects.c.name == name))
            if pid is not None:
                return str(pid)
        try:
            async with self.store.tx() as conn:
                pid = new_id(12)
                await conn.execute(
                    insert(projects).values(id=pid, name=name, created_at=self.clock.now())
                )
                return pid
        except IntegrityError:  # created concurrently
            return await self.ensure_project(name)

    # -- keys -----------------------------------------------------------------------------------

    async def create_key(
        self,
        project_id: str,
        role: str,
        *,
        name: str | None = None,
        endpoint_id: str | None = None,
        raw: str | None = None,
        expires_at: float | None = None,
        operator: bool = False,
    ) -> tuple[str, str]:
        """Store a key's hash; returns (key id, the key itself: shown once, never stored)."""
        key = raw or new_key()
        kid = new_id(12)
        async with self.store.tx() as conn:
            await conn.execute(
                insert(api_keys).values(
                    id=kid,
                    project_id=project_id,
                    key_hash=hash_key(key),
                    prefix=key_prefix(key),
                    role=role,
                    name=name,
                    endpoint_id=endpoint_id,
                    created_at=self.clock.now(),
                    expires_at=expires_at,
                    operator=operator,
                )
            )
        return kid, key

    async def key_by_hash(self, key_hash: str) -> Row | None:
        """A live key (not revoked, not expired) by its hash."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(api_keys).where(
                    api_keys.c.key_hash == key_hash,
                    api_keys.c.revoked_at.is_(None),
                    or_(api_keys.c.expires_at.is_(None), api_keys.c.expires_at > self.clock.now()),
                )
            )
            row = res.mappings().first()
        # The lookup matched on the index; compare again in constant time all the same.
        return row if row is not None and hmac.compare_digest(row["key_hash"], key_hash) else None

    async def set_operator(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(operator=True))

    async def list_keys(self, project_id: str) -> list[Row]:
        """A project's user keys (never worker tokens), newest first: no hashes, only prefixes."""
        cols = [api_keys.c[n] for n in ("id", "prefix", "name", "role", "created_at", "last_used_at",
                                        "revoked_at", "expires_at", "operator")]
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(*cols)
                .where(api_keys.c.project_id == project_id, api_keys.c.role != "worker")
                .order_by(api_keys.c.created_at.desc())
            )
            return list(res.mappings().all())

    async def revoke_key(self, project_id: str, key_id: str) -> bool:
        async with self.store.tx() as conn:
            res = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.project_id == project_id,
                       api_keys.c.role != "worker", api_keys.c.revoked_at.is_(None))
                .values(revoked_at=self.clock.now())
            )
        return bool(res.rowcount)

    async def touch_key(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=self.clock.now())
            )

    # -- projects (more) ------------------------------------------------------------------------

    async def create_project(self, name: str) -> str | None:
        """A new project's id; None if the name is taken."""
        try:
            async with self.store.tx() as conn:
                pid = new_id(12)
                await conn.execute(insert(projects).values(id=pid, name=name, created_at=self.clock.now()))
                return pid
        except IntegrityError:
            return None

    async def list_projects(self) -> list[Row]:
        async with self.store.tx() as conn:
            res = await conn.execute(select(projects).order_by(projects.c.created_at))
            return list(res.mappings().all())

    async def project(self, ref: str) -> Row | None:
        """A project by id or name."""
        async with self.store.tx() as conn:
            res = await conn.execute(select(projects).where(or_(projects.c.id == ref, projects.c.name == ref)))
            return res.mappings().first()

    # -- endpoint secrets -----------------------------------------------------------------------

    async def set_secret(self, endpoint_id: str, name: str, token: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(
                delete(endpoint_secrets)
                .where(endpoint_secrets.c.endpoint_id == endpoint_id, endpoint_secrets.c.name == name)
            )
            await conn.execute(
                insert(endpoint_secrets).values(
                    endpoint_id=endpoint_id, name=name, value=token, updated_at=self.clock.now()
                )
            )

    async def delete_secret(self, endpoint_id: str, name: str) -> bool:
        async with self.store.tx() as conn:
            res = await conn.execute(
                delete(endpoint_secrets)
                .where(endpoint_secrets.c.endpoint_id == endpoint_id, endpoint_secrets.c.name == name)
            )
        return bool(res.rowcount)

    async def secrets(self, endpoint_id: str) -> list[Row]:
        """An endpoint's secrets, still encrypted, by name."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(endpoint_secrets)
                .where(endpoint_secrets.c.endpoint_id == endpoint_id)
                .order_by(endpoint_secrets.c.name)
            )
            return list(res.mappings().all())

    async def has_admin_key(self) -> bool:
        async with self.store.tx() as conn:
            found = await conn.scalar(
                select(api_keys.c.id).where(api_keys.c.role == "admin", api_keys.c.revoked_at.is_(None))
            )
            return found is not None

    async def delete_key(self, key_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(delete(api_keys).where(api_keys.c.id == key_id))

    async def delete_worker_keys(self) -> None:
        """Worker tokens die with their workers; a restarted server starts with none."""
        async with self.store.tx() as conn:
            await conn.execute(delete(api_keys).where(api_keys.c.role == "worker"))

    # -- versions -------------------------------------------------------------------------------

    async def put_version(self, project_id: str, version: dict[str, Any]) -> Row:
        """Store a version unless the same content is already there; returns the stored row."""
        existing = await self.get_version(project_id, version["id"])
        if existing is not None:
            return existing
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
        row = await self.get_version(project_id, version["id"])
        assert row is not None
        return row

    async def version_info(self, project_id: str, version_id: str) -> VersionInfo:
        """A version's routes, config, runtime and environment (its requirement set and hash),
        parsed (empty ones for a missing version)."""
        info = self._versions.get(version_id)
        if info is None:
            row = await self.get_version(project_id, version_id)
            if row is None:
                return {"routes": [], "config": {}, "runtime": "podium", "requirements": None, "env_hash": None}
            info = {
                "routes": _json.loads(row["routes"]),
                "config": _json.loads(row["config"]),
                "runtime": row["runtime"],
                "requirements": _json.loads(row["requirements"]) if row["requirements"] else None,
                "env_hash": row["env_hash"],
            }
            self._versions[version_id] = info
        return info

    async def get_version(self, project_id: str, version_id: str) -> Row | None:
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(versions).where(versions.c.id == version_id, versions.c.project_id == project_id)
            )
            return res.mappings().first()

    # -- endpoints ------------------------------------------------------------------------------

    async def get_endpoint(self, project_id: str | None, ref: str) -> Row | None:
        """An endpoint by id or by name (within the project, when one is given)."""
        hit = self._endpoints.get((project_id, ref), MISSING)
        if hit is not MISSING:
            return hit
        row = await self._load_endpoint(project_id, ref)
        self._endpoints.put((project_id, ref), row)
        return row

    async def _load_endpoint(self, project_id: str | None, ref: str) -> Row | None:
        q = select(endpoints).where(or_(endpoints.c.id == ref, endpoints.c.name == ref))
        if project_id is not None:
            q = q.where(endpoints.c.project_id == project_id)
        async with self.store.tx() as conn:
            rows = (await conn.execute(q)).mappings().all()
        by_id = [r for r in rows if r["id"] == ref]
        return (by_id or rows or [None])[0]  # type: ignore[list-item]

    async def list_endpoints(self, project_id: str | None = None) -> list[Row]:
        q = select(endpoints).order_by(endpoints.c.created_at)
        if project_id is not None:
            q = q.where(endpoints.c.project_id == project_id)
        async with self.store.tx() as conn:
            return list((await conn.execute(q)).mappings().all())

    async def point_endpoint(
        self,
        project_id: str,
        name: str,
        version: Row,
        *,
        key_id: str | None,
        message: str | None,
    ) -> tuple[Row, bool]:
        """Create the endpoint `name` at `version`, or re-point it. Returns (row, changed)."""
        now = self.clock.now()
        config = _json.loads(version["config"])
        self._endpoints.clear()
        current = await self._load_endpoint(project_id, name)
        if current is not None and current["name"] == name:
            if current["version_id"] == version["id"] and current["state"] != EndpointState.INACTIVE:
                return current, False
            async with self.store.tx() as conn:
                await conn.execute(
                    update(endpoints)
                    .where(endpoints.c.id == current["id"])
                    .values(version_id=version["id"], state=EndpointState.CREATING, error=None,
                            pending=None, updated_at=now, **scaling_columns(config))
                )
                await self._history(conn, current["id"], version["id"], key_id, message, now)
            row = await self._load_endpoint(project_id, current["id"])
            assert row is not None
            return row, True
        eid = new_id()
        async with self.store.tx() as conn:
            await conn.execute(
                insert(endpoints).values(
                    id=eid,
                    project_id=project_id,
                    name=name,
                    version_id=version["id"],
                    state=EndpointState.CREATING,
                    created_at=now,
                    **scaling_columns(config),
                    updated_at=now,
                )
            )
            await self._history(conn, eid, version["id"], key_id, message, now)
        row = await self._load_endpoint(project_id, eid)
        assert row is not None
        return row, True

    @staticmethod
    async def _history(
        conn: Any, endpoint_id: str, version_id: str, key_id: str | None, message: str | None, at: float
    ) -> None:
        await conn.execute(
            insert(endpoint_history).values(
                endpoint_id=endpoint_id, version_id=version_id, key_id=key_id, message=message, at=at
            )
        )

    async def stage_endpoint(
        self, endpoint_id: str, version_id: str, *, key_id: str | None, message: str | None
    ) -> None:
        """Remember a deploy that waits for its version's environment (the endpoint keeps its
        version meanwhile); `point_endpoint` (or `clear_pending`) ends the wait."""
        pending = {"version_id": version_id, "key_id": key_id, "message": message}
        async with self.store.tx() as conn:
            await conn.execute(
                update(endpoints).where(endpoints.c.id == endpoint_id)
                .values(pending=_json.dumps(pending), updated_at=self.clock.now())
            )
        self._endpoints.clear()

    async def clear_pending(self, endpoint_id: str) -> None:
        async with self.store.tx() as conn:
            await conn.execute(update(endpoints).where(endpoints.c.id == endpoint_id).values(pending=None))
        self._endpoints.clear()

    async def start_build(self, version_id: str) -> None:
        """A deploy asks for the version's environment again (a failed build is retried)."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(versions).where(versions.c.id == version_id, versions.c.env_hash.is_not(None))
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

    async def env_users(self) -> tuple[list[Row], list[Row]]:
        """Versions that have an environment (id, project, hash), and every endpoint's current
        and pending version: what `podium envs ls` shows and `gc` keeps."""
        async with self.store.tx() as conn:
            vs = (await conn.execute(
                select(versions.c.id, versions.c.project_id, versions.c.env_hash)
                .where(versions.c.env_hash.is_not(None))
            )).mappings().all()
            eps = (await conn.execute(
                select(endpoints.c.id, endpoints.c.name, endpoints.c.version_id, endpoints.c.pending)
            )).mappings().all()
        return list(vs), list(eps)

    async def set_scaling(self, endpoint_id: str, settings: dict[str, Any]) -> None:
        """Change an endpoint's scaling settings (no redeploy; the next deploy sets them again)."""
        async with self.store.tx() as conn:
            await conn.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id)
                .values(updated_at=self.clock.now(), **scaling_columns(settings))
            )
        self._endpoints.clear()

    async def history(self, endpoint_id: str) -> list[Row]:
        """Every re-pointing of an endpoint, newest first."""
        async with self.store.tx() as conn:
            res = await conn.execute(
                select(endpoint_history)
                .where(endpoint_history.c.endpoint_id == endpoint_id)
                .order_by(endpoint_history.c.at.desc(), endpoint_history.c.id.desc())
            )
            return list(res.mappings().all())

    async def remove_endpoint(self, endpoint_id: str) -> None:
        """Delete an endpoint and its history (its versions and jobs stay)."""
        async with self.store.tx() as conn:
            await conn.execute(delete(endpoint_history).where(endpoint_history.c.endpoint_id == endpoint_id))
            await conn.execute(delete(endpoint_secrets).where(endpoint_secrets.c.endpoint_id == endpoint_id))
            await conn.execute(delete(endpoints).where(endpoints.c.id == endpoint_id))
        self._endpoints.clear()

    async def set_state(
        self, endpoint_id: str, state: str, *, error: str | None = None, only_from: str | None = None
    ) -> bool:
        q = update(endpoints).where(endpoints.c.id == endpoint_id)
        if only_from is not None:
            q = q.where(endpoints.c.state == only_from)
        async with self.store.tx() as conn:
            res = await conn.execute(q.values(state=state, error=error, updated_at=self.clock.now()))
        self._endpoints.clear()
        return bool(res.rowcount)
