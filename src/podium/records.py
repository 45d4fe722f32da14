"""The records the layers pass to each other, defined once.

A version's route table is JSON (stored with the version, sent to workers and clients); these
TypedDicts name its shape so that the SDK that builds it, deploy validation, the routers, the
worker that checks it and the clients all agree on it. `ServiceConfig` is what a service asks of
its endpoint (scaling, resources, timeouts, volumes), recorded with each version. Only the standard
library, `podium.errors` and `podium.names` are imported here: the authoring SDK and the store use
these records alike.
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired

# pydantic validates these (deploy) and needs typing_extensions.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from podium.errors import ServiceDefinitionError
from podium.names import VOLUME_NAME

#: route: a function of keyword arguments; handler: RunPod-style `handler(job)`; http: an ASGI or
#: WSGI app that receives whole HTTP requests.
RouteKind = Literal["route", "handler", "http"]


class Param(TypedDict):
    """One keyword argument of a route."""

    name: str
    required: bool
    default: NotRequired[Any]
    #: JSON Schema of its annotation, when it has one the server can describe.
    schema: NotRequired[dict[str, Any]]
    #: "initializer": the service's initializer provides it (a caller may still send it).
    source: NotRequired[str]


class ScheduleRecord(TypedDict):
    """When a route runs by itself (`schedule=` on `@svc.endpoint`): exactly one of `cron`
    (in `timezone`) and `every` (seconds)."""

    cron: NotRequired[str]
    every: NotRequired[float]
    timezone: str
    #: The job's input (keyword arguments; a handler's job input); none: the route's defaults.
    input: NotRequired[Any]
    #: Fire even while the previous fire's job still runs.
    overlap: bool


class RouteRecord(TypedDict):
    """One route of a version's route table."""

    path: str
    #: The client method name (`/custom-endpoint` -> `custom_endpoint`).
    method: str
    kind: RouteKind
    streaming: bool
    is_async: bool
    params: list[Param]
    #: Takes any keyword (`**kwargs`): arguments are not checked against `params`.
    var_keyword: bool
    #: The route /run and /runsync call.
    default: NotRequired[bool]
    #: An OpenAI-compatible route (its path is OpenAI's, like `/v1/chat/completions`): called with
    #: OpenAI's request body, its text framed as OpenAI's objects (`podium.worker.openai_route`).
    #: On a handler: a RunPod worker that reads `openai_route` itself (its source says so).
    openai: NotRequired[bool]
    #: The model name `/v2/{endpoint}/openai/v1/models` lists for it (an OpenAI route's).
    model: NotRequired[str]
    returns: NotRequired[dict[str, Any]]
    #: The route runs by itself on this schedule (the leader fires it; `podium schedules`).
    schedule: NotRequired[ScheduleRecord]


#: Default execution timeout: 24 hours (RunPod's endpoints default lower; long jobs are our case).
DEFAULT_TIMEOUT_S = 86400.0


@dataclass(frozen=True)
class ServiceConfig:
    """Settings a service asks for; the endpoint starts from these (`podium scale` changes them).

    Scaling: `min_workers`/`max_workers`, `idle_timeout` (seconds without a job before an idle
    worker stops), `concurrency` (jobs at once per worker), `scaler` ("request-count": workers =
    ceil((waiting + running) / target), target defaulting to `concurrency`; "queue-delay": add a
    worker while the oldest waiting job has waited more than `target` seconds, default 4),
    `queue_cap` (waiting jobs past which /run answers 429), `max_jobs_per_worker` and
    `max_worker_memory_mb` (recycle a worker after its current job; 0: never), `warm_buffer` (idle
    workers kept beyond the jobs running, within max_workers, so a burst skips cold starts).
    Resources, per worker: `cpus` (may be fractional), `gpus` (whole devices; on the local
    backend each worker gets its own through CUDA_VISIBLE_DEVICES), `memory_mb` (0: no
    reservation). The local backend hands out GPUs; a Ray cluster reserves all three.
    Jobs: `execution_timeout` (seconds), `retries` (route errors retried, with exponential backoff
    and jitter) limited to `retry_on` exception types when given, `startup_timeout` (seconds a
    worker may take to load before the version is declared broken), `exit_timeout` (seconds an
    `on_exit` hook may take when a worker stops).
    Volumes: `{"weights": "/models"}` shows the project's volume `weights` to each worker at
    `/models` (in its sandbox; `podium.volume("weights")` says where it is in any case).
    """

    min_workers: int = 0
    max_workers: int = 2
    idle_timeout: float = 60.0
    concurrency: int = 1
    #: Seconds a job may run before it ends TIMED_OUT (a request's policy.executionTimeout wins).
    execution_timeout: float = DEFAULT_TIMEOUT_S
    scaler: str = "request-count"
    target: float | None = None
    queue_cap: int = 10_000
    max_jobs_per_worker: int = 0
    max_worker_memory_mb: int = 0
    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = ()
    startup_timeout: float = 600.0
    cpus: float = 1.0
    gpus: int = 0
    memory_mb: int = 0
    warm_buffer: int = 0
    exit_timeout: float = 30.0
    volumes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_workers < 0:
            raise ServiceDefinitionError("min_workers must be >= 0")
        if self.max_workers < 1 or self.max_workers < self.min_workers:
            raise ServiceDefinitionError("max_workers must be >= 1 and >= min_workers")
        if self.max_workers > MAX_WORKERS or self.concurrency > MAX_CONCURRENCY:
            raise ServiceDefinitionError(
                f"max_workers may be at most {MAX_WORKERS} and concurrency at most {MAX_CONCURRENCY}"
            )
        if self.idle_timeout < 0:
            raise ServiceDefinitionError("idle_timeout must be >= 0 seconds")
        if self.concurrency < 1:
            raise ServiceDefinitionError("concurrency must be >= 1")
        if not 5 <= self.execution_timeout <= 7 * 86400:
            raise ServiceDefinitionError("execution_timeout must be between 5 seconds and 7 days")
        if self.scaler not in SCALERS:
            raise ServiceDefinitionError(f"scaler must be one of {', '.join(SCALERS)}")
        if self.target is not None and self.target <= 0:
            raise ServiceDefinitionError("target must be > 0")
        if self.queue_cap < 1:
            raise ServiceDefinitionError("queue_cap must be >= 1")
        if self.max_jobs_per_worker < 0 or self.max_worker_memory_mb < 0:
            raise ServiceDefinitionError("max_jobs_per_worker and max_worker_memory_mb must be >= 0")
        if not 0 <= self.retries <= 20:
            raise ServiceDefinitionError("retries must be between 0 and 20")
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on):
            raise ServiceDefinitionError("retry_on must be a tuple of exception classes")
        if self.startup_timeout <= 0:
            raise ServiceDefinitionError("startup_timeout must be > 0 seconds")
        if not whole(self.warm_buffer) or self.warm_buffer < 0:
            raise ServiceDefinitionError(f"warm_buffer must be a whole number >= 0 (got {self.warm_buffer!r})")
        if not 0 < self.exit_timeout <= 3600:
            raise ServiceDefinitionError("exit_timeout must be between 0 and 3600 seconds")
        self._check_resources()
        check_volumes(self.volumes)

    def _check_resources(self) -> None:
        if isinstance(self.cpus, bool) or not isinstance(self.cpus, int | float) or not self.cpus > 0:
            raise ServiceDefinitionError(f"cpus must be a number > 0, like 2 or 0.5 (got {self.cpus!r})")
        if not whole(self.gpus) or self.gpus < 0:
            raise ServiceDefinitionError(f"gpus must be a whole number of devices >= 0 (got {self.gpus!r})")
        if not whole(self.memory_mb) or self.memory_mb < 0:
            raise ServiceDefinitionError(f"memory_mb must be a whole number >= 0 (got {self.memory_mb!r})")

    def retryable(self, exc: BaseException) -> bool:
        """Whether a route error may be retried (it still needs retries left)."""
        return self.retries > 0 and (not self.retry_on or isinstance(exc, self.retry_on))

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["retry_on"] = [f"{t.__module__}.{t.__qualname__}" for t in self.retry_on]
        out["volumes"] = dict(self.volumes)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceConfig:
        """Settings as recorded (retry_on names are not classes again: they only document)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"retry_on"}
        return cls(**{k: v for k, v in data.items() if k in known})


def whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


#: Where a volume may not be shown: the system the sandbox shows, and its own places.
RESERVED_MOUNTS = (
    *("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"),
    *("/etc", "/proc", "/dev", "/sys", "/run", "/tmp", "/home"),
)


def check_volumes(volumes: Any) -> None:
    """`{volume name: absolute path in the worker}`: names of the volume's shape, paths absolute,
    normalised, distinct and clear of the system's (the sandbox mounts them over nothing it needs)."""
    if not isinstance(volumes, dict):
        raise ServiceDefinitionError('volumes must be a dict like {"weights": "/models"}')
    seen: set[str] = set()
    for name, path in volumes.items():
        if not VOLUME_NAME.match(name):
            raise ServiceDefinitionError(f"volume name {name!r}: {VOLUME_NAME.looks}")
        if not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) != path or path == "/":
            raise ServiceDefinitionError(
                f"volume {name} must be shown at an absolute, normalised path like /models (got {path!r})"
            )
        if any(path == r or path.startswith(r + "/") for r in RESERVED_MOUNTS):
            raise ServiceDefinitionError(
                f"volume {name} cannot be shown at {path}: {', '.join(RESERVED_MOUNTS)} are the sandbox's"
            )
        if any(path == p or path.startswith(p + "/") or p.startswith(path + "/") for p in seen):
            raise ServiceDefinitionError(f"volume {name}'s path {path} overlaps another volume's")
        seen.add(path)


#: Upper bounds, so a typo cannot start thousands of processes or threads on one machine.
MAX_WORKERS = 256
MAX_CONCURRENCY = 1024

#: The scaler policies an endpoint may use.
SCALERS = ("request-count", "queue-delay")


#: A value of each JSON type for a sample call's required argument.
_PLACEHOLDERS: dict[str, Any] = {"string": "", "number": 0, "integer": 0, "boolean": False, "array": [], "object": {}}


def default_route(routes: list[RouteRecord]) -> RouteRecord:
    """The route /run and /runsync reach: the one marked default, else the first."""
    return next((r for r in routes if r.get("default")), routes[0])


def required_argument(param: Param) -> bool:
    """Whether a call must send it: it has no default and the initializer does not provide it."""
    return param["required"] and param.get("source") != "initializer"


def sample_arguments(route: RouteRecord) -> dict[str, Any]:
    """Keyword arguments a first call may send and pass: each default, and a placeholder of its
    type for each required argument ({} for a handler, whose input is its own)."""
    if route["kind"] != "route":
        return {}
    out: dict[str, Any] = {}
    for p in route["params"]:
        if "default" in p and p.get("source") != "initializer":
            out[p["name"]] = p["default"]
        elif required_argument(p):
            out[p["name"]] = _placeholder(p.get("schema", {}))
    return out


def _placeholder(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value of the schema's type: the first of an enum or union, an object with a placeholder
    for each required property (a model's, through its `$ref`), else the type's empty value."""
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return _placeholder(defs.get(str(schema["$ref"]).rsplit("/", 1)[-1], {}), defs)
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind is None and schema.get("anyOf"):
        return _placeholder(schema["anyOf"][0], defs)
    if kind == "object" and "properties" in schema:
        return {k: _placeholder(schema["properties"][k], defs) for k in schema.get("required", [])}
    value = _PLACEHOLDERS.get(kind) if isinstance(kind, str) else None
    return value.copy() if isinstance(value, (list, dict)) else value


#: The most calls one batch may hold.
MAX_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Batching:
    """How a batched route's calls are taken: up to `size` queued jobs of the route in one
    exchange, and, while more than one was found (other callers are about), up to `wait_ms` more
    for the batch to fill. A lone call never waits."""

    size: int
    wait_ms: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 1 <= self.size <= MAX_BATCH_SIZE:
            raise ServiceDefinitionError(f"batch_size must be a whole number from 1 to {MAX_BATCH_SIZE}")
        if (
            isinstance(self.wait_ms, bool)
            or not isinstance(self.wait_ms, int | float)
            or not 0 <= self.wait_ms <= 10_000
        ):
            raise ServiceDefinitionError("batch_wait_ms must be a number of milliseconds from 0 to 10000")


def batching_wire(rules: dict[str, Batching]) -> dict[str, list[float]]:
    """A worker's batched routes as its take requests carry them: `{"/embed": [32, 5]}`."""
    return {path: [rule.size, rule.wait_ms] for path, rule in rules.items()}


def parse_batching(value: Any) -> dict[str, Batching]:
    """The inverse of `batching_wire`; ValueError for anything else."""
    if not isinstance(value, dict):
        raise ValueError("batch must be an object of route paths to [size, wait_ms]")
    out = {}
    for path, rule in value.items():
        if not (isinstance(path, str) and isinstance(rule, list) and len(rule) == 2):
            raise ValueError("batch must be an object of route paths to [size, wait_ms]")
        try:
            out[path] = Batching(rule[0], rule[1])
        except ServiceDefinitionError as exc:
            raise ValueError(str(exc)) from None
    return out
