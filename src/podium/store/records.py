"""What the catalog returns: endpoints, versions, keys and projects as typed records.

Each record is read from its row once (`from_row`, which decodes the JSON columns) and is the
only shape the rest of the code sees; `as_dict` gives the mapping an answer carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from podium import _json
from podium.records import RouteRecord, VersionInfo
from podium.store.engine import Row

#: What each worker asks of the machine or cluster (scaling.resources.Resources).
RESOURCES = ("cpus", "gpus", "memory_mb")
#: The endpoint columns a version's config (or `podium scale`) sets.
SCALING = (
    "min_workers",
    "max_workers",
    "idle_timeout",
    "concurrency",
    "scaler",
    "target",
    "max_jobs_per_worker",
    "max_worker_memory_mb",
    "queue_cap",
    "warm_buffer",
    *RESOURCES,
)


@dataclass(frozen=True, slots=True)
class Pending:
    """A deploy that waits for its version's environment (`Endpoints.stage_endpoint`)."""

    version_id: str
    key_id: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A name pointed at a version, with its scaling settings and state."""

    id: str
    project_id: str
    name: str
    version_id: str
    state: str
    error: str | None
    min_workers: int
    max_workers: int
    idle_timeout: float
    concurrency: int
    scaler: str
    target: float | None
    max_jobs_per_worker: int
    max_worker_memory_mb: int
    queue_cap: int
    warm_buffer: int
    cpus: float
    gpus: int
    memory_mb: int
    pending: Pending | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> Endpoint:
        pending = _json.loads(row["pending"]) if row["pending"] else None
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            name=row["name"],
            version_id=row["version_id"],
            state=row["state"],
            error=row["error"],
            min_workers=row["min_workers"],
            max_workers=row["max_workers"],
            idle_timeout=row["idle_timeout"],
            concurrency=row["concurrency"],
            scaler=row["scaler"],
            target=row["target"],
            max_jobs_per_worker=row["max_jobs_per_worker"],
            max_worker_memory_mb=row["max_worker_memory_mb"],
            queue_cap=row["queue_cap"],
            warm_buffer=row["warm_buffer"],
            cpus=row["cpus"],
            gpus=row["gpus"],
            memory_mb=row["memory_mb"],
            pending=None if pending is None else Pending(pending["version_id"], pending["key_id"], pending["message"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    def scaling(self) -> dict[str, Any]:
        """The scaling settings, in `SCALING` order (what answers show and configs merge with)."""
        return {k: getattr(self, k) for k in SCALING}


@dataclass(frozen=True, slots=True)
class Repointing:
    """One entry of an endpoint's history: the version it was pointed at, when, by which key."""

    version_id: str
    key_id: str | None
    message: str | None
    at: float

    @classmethod
    def from_row(cls, row: Row) -> Repointing:
        return cls(version_id=row["version_id"], key_id=row["key_id"], message=row["message"], at=row["at"])


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """An endpoint's secret as stored: `token` is the value sealed by the secret box."""

    name: str
    token: str
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> SealedSecret:
        return cls(name=row["name"], token=row["value"], updated_at=row["updated_at"])


@dataclass(frozen=True, slots=True)
class Version:
    """An immutable upload of a service: its routes, config and environment."""

    id: str
    project_id: str
    sha256: str
    service: str
    entry: str
    runtime: str
    routes: list[RouteRecord]
    config: dict[str, Any]
    size: int
    message: str | None
    created_by: str | None
    created_at: float
    requirements: Any
    env_hash: str | None
    build_state: str | None
    build_error: str | None

    @classmethod
    def from_row(cls, row: Row) -> Version:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            sha256=row["sha256"],
            service=row["service"],
            entry=row["entry"],
            runtime=row["runtime"],
            routes=_json.loads(row["routes"]),
            config=_json.loads(row["config"]),
            size=row["size"],
            message=row["message"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            requirements=_json.loads(row["requirements"]) if row["requirements"] else None,
            env_hash=row["env_hash"],
            build_state=row["build_state"],
            build_error=row["build_error"],
        )

    def as_dict(self) -> dict[str, Any]:
        """Every column, the JSON ones decoded, in the table's order (the version answer)."""
        return {
            "id": self.id,
            "project_id": self.project_id,
            "sha256": self.sha256,
            "service": self.service,
            "entry": self.entry,
            "runtime": self.runtime,
            "routes": self.routes,
            "config": self.config,
            "size": self.size,
            "message": self.message,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "requirements": self.requirements,
            "env_hash": self.env_hash,
            "build_state": self.build_state,
            "build_error": self.build_error,
        }

    def info(self) -> VersionInfo:
        """What the call path needs of it."""
        return {
            "routes": self.routes,
            "config": self.config,
            "runtime": self.runtime,
            "requirements": self.requirements,
            "env_hash": self.env_hash,
        }


@dataclass(frozen=True, slots=True)
class Key:
    """An API key's stored record: never the key itself, nor its hash."""

    id: str
    project_id: str
    prefix: str
    role: str
    name: str | None
    endpoint_id: str | None
    created_at: float
    last_used_at: float | None
    revoked_at: float | None
    expires_at: float | None
    operator: bool

    @classmethod
    def from_row(cls, row: Row) -> Key:
        return cls(
            id=row["id"],
            project_id=row["project_id"],
            prefix=row["prefix"],
            role=row["role"],
            name=row["name"],
            endpoint_id=row["endpoint_id"],
            created_at=row["created_at"],
            last_used_at=row["last_used_at"],
            revoked_at=row["revoked_at"],
            expires_at=row["expires_at"],
            operator=row["operator"],
        )

    def as_dict(self) -> dict[str, Any]:
        """What the key listing shows of it."""
        return {
            "id": self.id,
            "prefix": self.prefix,
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
            "revoked_at": self.revoked_at,
            "expires_at": self.expires_at,
            "operator": self.operator,
        }


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    created_at: float

    @classmethod
    def from_row(cls, row: Row) -> Project:
        return cls(id=row["id"], name=row["name"], created_at=row["created_at"])

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}
