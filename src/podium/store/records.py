"""What the catalog returns: endpoints, versions, keys and projects as typed records.

Each record is read from its row once (`from_row`, which decodes the JSON columns) and is the
only shape the rest of the code sees; `as_dict` gives the mapping an answer carries."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from podium import _json
from podium.records import RouteRecord
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

R = TypeVar("R")


#: Each record type's field names, in order (a handful of types: looked up once each).
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def from_columns(cls: type[R], row: Row, **given: Any) -> R:
    """The record `cls` read from its row: each field is the column of its name, but for those
    `given` (JSON decoded, or a column named otherwise)."""
    return cls(**{name: given[name] if name in given else row[name] for name in _fields(cls)})


def columns(record: Any) -> dict[str, Any]:
    """Every field of a record, in its order."""
    return {name: getattr(record, name) for name in _fields(type(record))}


@dataclass(frozen=True, slots=True)
class Pending:
    """A deploy that waits for its version's environment and first worker (`Endpoints.stage_endpoint`)."""

    version_id: str
    key_id: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Rollout:
    """A canary rollout (`Endpoints.set_rollout`): `percent` of new calls go to `version_id`, the
    rest to the endpoint's own version; the leader aborts it past `max_failure_rate`."""

    version_id: str
    percent: int
    max_failure_rate: float | None
    key_id: str | None
    started_at: float

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _fields(Rollout)}

    def stored(self) -> str:
        """The `rollout` column: all but the version (the `canary_version` column)."""
        return _json.dumps({k: v for k, v in self.as_dict().items() if k != "version_id"})


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
    #: A canary rollout under way, if any.
    rollout: Rollout | None
    created_at: float
    updated_at: float
    #: When the leader stops it (a Covalent executor's time limit); None: never.
    expires_at: float | None
    #: Why the leader does not start the workers it wants (e.g. no free GPU); None: nothing.
    waiting_for: str | None

    @classmethod
    def from_row(cls, row: Row) -> Endpoint:
        pending = _json.loads(row["pending"]) if row["pending"] else None
        rollout = _json.loads(row["rollout"]) if row["rollout"] else None
        return from_columns(
            cls,
            row,
            pending=None if pending is None else Pending(pending["version_id"], pending["key_id"], pending["message"]),
            rollout=None if rollout is None else Rollout(row["canary_version"], **rollout),
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
    #: Set for a deploy that never became current: why its version's first worker failed.
    error: str | None = None
    #: A step of a canary rollout (`RolloutStep`); None: the endpoint was pointed at the version.
    action: str | None = None

    @property
    def repointed(self) -> bool:
        """Whether the endpoint ran this version from then on (a rollback may go back to it)."""
        return self.error is None and self.action in (None, "promote")

    @classmethod
    def from_row(cls, row: Row) -> Repointing:
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class SealedSecret:
    """An endpoint's secret as stored: `token` is the value sealed by the secret box."""

    name: str
    token: str
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> SealedSecret:
        return from_columns(cls, row, token=row["value"])


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
    start_error: str | None

    @classmethod
    def from_row(cls, row: Row) -> Version:
        return from_columns(
            cls,
            row,
            routes=_json.loads(row["routes"]),
            config=_json.loads(row["config"]),
            requirements=_json.loads(row["requirements"]) if row["requirements"] else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """Every column, the JSON ones decoded, in the table's order (the version answer)."""
        return columns(self)

    @classmethod
    def missing(cls, project_id: str, version_id: str) -> Version:
        """What a version that is not there reads as: no routes, no config, no environment."""
        return cls(
            id=version_id,
            project_id=project_id,
            sha256="",
            service="",
            entry="",
            runtime="podium",
            routes=[],
            config={},
            size=0,
            message=None,
            created_by=None,
            created_at=0.0,
            requirements=None,
            env_hash=None,
            build_state=None,
            build_error=None,
            start_error=None,
        )


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
        return from_columns(cls, row)

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
        return from_columns(cls, row)

    def as_dict(self) -> dict[str, Any]:
        return columns(self)


@dataclass(frozen=True, slots=True)
class RecordedWorker:
    """A worker as the replica that last heard from it wrote it down (`Cluster.workers`)."""

    id: str
    endpoint_id: str
    version_id: str | None
    replica_id: str
    state: str
    #: Started by a replica (it owns the process or actor) rather than by hand.
    owned: bool
    started_at: float
    ready_at: float | None
    seen_at: float
    jobs_done: int
    #: Where it runs: host and pid, or Ray node and actor ({} when unknown).
    placement: dict[str, Any]
    failure: str | None

    @classmethod
    def from_row(cls, row: Row) -> RecordedWorker:
        return from_columns(
            cls, row, owned=bool(row["owned"]), placement=_json.loads(row["placement"]) if row["placement"] else {}
        )


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery of the outbox (`server/webhooks.py`), its attempts decoded."""

    id: str
    job_id: str
    url: str
    #: waiting (its job is not final yet) -> pending -> delivered | failed; redeliver (asked
    #: for again: sent once) -> delivered | failed
    state: str
    tries: int
    next_at: float | None
    #: The body, fixed when the job ended, so that every attempt sends the same bytes.
    body: str | None
    attempts: list[dict[str, Any]]
    #: The job's project (set with the body): its signing secret signs every attempt.
    project_id: str | None

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        return from_columns(cls, row, attempts=_json.loads(row["attempts"]) or [])
