"""Services and routes: `@podium.service`, `@svc.endpoint(path)` and `@podium.handler`.

A Service is an optional initializer plus routes. The initializer runs once per worker; the dict it
returns supplies default keyword arguments to every route (a caller's argument of the same name wins).
A RunPod-style ``handler(job)`` is a service with one route that receives the whole job.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from podium.core.records import Param, RouteRecord
from podium.envs.requirements import Requirements
from podium.errors import ServiceDefinitionError

F = TypeVar("F", bound=Callable[..., Any])

#: Route paths: one or more segments of letters, digits, `_`, `-` and `.`.
ROUTE_PATH = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")
#: Service names follow the endpoint name rule so a service name can be used as one.
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: The attribute `@podium.handler` leaves on the function it marks.
HANDLER_ATTR = "__podium_service__"

_MISSING = object()


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
    `max_worker_memory_mb` (recycle a worker after its current job; 0: never).
    Resources, per worker: `cpus` (may be fractional), `gpus` (whole devices; on the local
    backend each worker gets its own through CUDA_VISIBLE_DEVICES), `memory_mb` (0: no
    reservation). The local backend hands out GPUs; a Ray cluster reserves all three.
    Jobs: `execution_timeout` (seconds), `retries` (route errors retried, with exponential backoff
    and jitter) limited to `retry_on` exception types when given, `startup_timeout` (seconds a
    worker may take to load before the version is declared broken).
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
        self._check_resources()

    def _check_resources(self) -> None:
        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

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
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceConfig:
        """Settings as recorded (retry_on names are not classes again: they only document)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"retry_on"}
        return cls(**{k: v for k, v in data.items() if k in known})


#: Upper bounds, so a typo cannot start thousands of processes or threads on one machine.
MAX_WORKERS = 256
MAX_CONCURRENCY = 1024

#: The scaler policies an endpoint may use.
SCALERS = ("request-count", "queue-delay")


def method_name(path: str) -> str:
    """The client method for a route: `/custom-endpoint` -> `custom_endpoint`."""
    return path.strip("/").replace("-", "_").replace("/", "_").replace(".", "_")


@dataclass(frozen=True)
class Route:
    """One callable of a service, addressed by path."""

    path: str
    func: Callable[..., Any]
    streaming: bool
    #: route: keyword arguments; handler: the whole job; http: an HTTP request for an app.
    kind: Literal["route", "handler", "http"] = "route"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func) or inspect.isasyncgenfunction(self.func)

    @property
    def method_name(self) -> str:
        return method_name(self.path)

    @property
    def accepts_any_keyword(self) -> bool:
        return any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(self.func).parameters.values()
        )

    def accepts(self, name: str) -> bool:
        params = inspect.signature(self.func).parameters
        param = params.get(name)
        if param is not None:
            return param.kind in (
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                inspect.Parameter.KEYWORD_ONLY,
            )
        return self.accepts_any_keyword

    @functools.cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        hints = _hints(self.func)
        names = inspect.signature(self.func).parameters
        return {n: TypeAdapter(t) for n, t in hints.items() if n in names and t is not Any}

    def coerce(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Arguments as the annotations say (a dict becomes the model a parameter is typed with).

        Raises ValueError naming the argument that does not fit.
        """
        out = dict(kwargs)
        for name, adapter in self._adapters.items():
            if name in out:
                try:
                    out[name] = adapter.validate_python(out[name])
                except ValidationError as exc:
                    problems = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors()
                    )
                    raise ValueError(f"argument {name!r} does not fit its annotation: {problems}") from None
        return out

    def describe(self) -> RouteRecord:
        """The route's entry in a version's route table (JSON-safe)."""
        hints = _hints(self.func)
        params = []
        for p in inspect.signature(self.func).parameters.values():
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            entry: Param = {"name": p.name, "required": p.default is inspect.Parameter.empty}
            if p.default is not inspect.Parameter.empty:
                entry["default"] = json_safe(p.default)
            if p.name in hints:
                entry["schema"] = json_schema(hints[p.name])
            params.append(entry)
        out: RouteRecord = {
            "path": self.path,
            "method": self.method_name,
            "kind": self.kind,
            "streaming": self.streaming,
            "is_async": self.is_async,
            "params": params,
            "var_keyword": self.accepts_any_keyword,
        }
        if "return" in hints and not self.streaming:
            out["returns"] = json_schema(hints["return"])
        return out


REF_TEMPLATE = "#/components/schemas/{model}"


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # an annotation that cannot be resolved documents nothing, and breaks nothing
        return {}


def json_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of a type annotation (pydantic's reading of it); {} when it has none.

    Models it refers to are under `$defs`, referenced as OpenAPI components.
    """
    try:
        return TypeAdapter(annotation).json_schema(ref_template=REF_TEMPLATE)
    except Exception:
        return {}


def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: json_safe(v) for k, v in value.items()}
    return repr(value)


def _is_generator(func: Callable[..., Any]) -> bool:
    return inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)


class Service:
    """An initializer plus routes; what `podium deploy` turns into a Version.

    Parameters:
        initializer: called once per worker; returns a dict of default route arguments, or None.
        name: the default endpoint name (defaults to the initializer's name, `_` -> `-`).
        config: scaling settings the endpoint starts with.
        requirements: the packages (and Python version) its workers' environment installs.
    """

    def __init__(
        self,
        initializer: Callable[..., Any] | None,
        *,
        name: str,
        config: ServiceConfig | None = None,
        requirements: Requirements | None = None,
    ) -> None:
        if not SERVICE_NAME.match(name):
            raise ServiceDefinitionError(
                f"service name {name!r} must match [a-z0-9][a-z0-9-]{{0,62}} "
                "(lowercase letters, digits and '-', at most 63 characters)"
            )
        if initializer is not None and inspect.iscoroutinefunction(initializer):
            raise ServiceDefinitionError("the initializer must be a plain function, not async")
        self.initializer = initializer
        self.name = name
        self.config = config or ServiceConfig()
        self.requirements = requirements
        self.routes: dict[str, Route] = {}
        self._default: str | None = None

    def __repr__(self) -> str:
        return f"<Service {self.name} routes={list(self.routes)}>"

    def endpoint(
        self, path: str, *, streaming: bool | None = None, default: bool = False
    ) -> Callable[[F], F]:
        """Register a route at `path`; a generator function is a streaming route."""
        if not ROUTE_PATH.match(path):
            raise ServiceDefinitionError(
                f"route path {path!r} must start with '/' and use letters, digits, '_', '-', '.'"
            )

        def register(func: F) -> F:
            is_gen = _is_generator(func)
            if streaming is True and not is_gen:
                raise ServiceDefinitionError(
                    f"route {path} is declared streaming but {func.__name__} is not a generator"
                )
            if streaming is False and is_gen:
                raise ServiceDefinitionError(
                    f"route {path} is a generator; declare it streaming=True or return a value"
                )
            self._add(Route(path=path, func=func, streaming=is_gen), default=default)
            return func

        return register

    def _add(self, route: Route, *, default: bool) -> None:
        if route.path in self.routes:
            raise ServiceDefinitionError(f"route {route.path} is declared twice in {self.name}")
        if default and self._default is not None:
            raise ServiceDefinitionError(
                f"routes {self._default} and {route.path} are both marked default=True"
            )
        if route.method_name in {r.method_name for r in self.routes.values()}:
            raise ServiceDefinitionError(f"route {route.path} clashes with another route's name")
        self.routes[route.path] = route
        if default:
            self._default = route.path

    @property
    def default_route(self) -> Route:
        """The route `/run` and `/runsync` reach: the one marked default, else the first."""
        if not self.routes:
            raise ServiceDefinitionError(f"service {self.name} declares no routes")
        return self.routes[self._default or next(iter(self.routes))]

    def route_table(self) -> list[RouteRecord]:
        """JSON description of the routes, in declaration order, default marked."""
        default = self.default_route.path
        table = []
        for r in self.routes.values():
            record = r.describe()
            record["default"] = r.path == default
            table.append(record)
        return table

    def initialize(self, **init_kwargs: Any) -> dict[str, Any]:
        """Run the initializer and check it returned a dict (or nothing)."""
        if self.initializer is None:
            return {}
        result = self.initializer(**init_kwargs)
        if result is None:
            return {}
        if not isinstance(result, dict):
            raise ServiceDefinitionError(
                f"initializer {self.initializer.__name__} must return a dict of route defaults "
                f"or None, not {type(result).__name__}"
            )
        return result


def default_name(text: str) -> str:
    """A valid endpoint name made from a function or file name."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63]
    return name or "service"


def service(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    **settings: Any,
) -> Any:
    """Declare a service around an initializer: ``@podium.service(name="hello", max_workers=4)``.

    Bare ``@podium.service`` works too. `settings` are :class:`ServiceConfig` fields, plus
    `requirements=["pkg==1.2", ...]` and `python="3.11"` for the workers' own environment. Returns
    the :class:`Service`; add routes with ``@svc.endpoint("/path")``.
    """
    reqs = _requirements(settings)
    config = _config(settings)

    def build(init: Callable[..., Any]) -> Service:
        return Service(init, name=name or default_name(init.__name__), config=config, requirements=reqs)

    return build(func) if func is not None else build


def _requirements(settings: dict[str, Any]) -> Requirements | None:
    """Take `requirements` and `python` out of a decorator's settings."""
    packages = settings.pop("requirements", None)
    python = settings.pop("python", None)
    if packages is None and python is None:
        return None
    if isinstance(packages, str) or not all(isinstance(p, str) for p in packages or ()):
        raise ServiceDefinitionError('requirements must be a list of strings, like ["numpy==2.1"]')
    try:
        return Requirements(tuple(packages or ()), python)
    except ValueError as exc:
        raise ServiceDefinitionError(str(exc)) from None


def _config(settings: dict[str, Any]) -> ServiceConfig:
    try:
        return ServiceConfig(**settings)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(ServiceConfig))
        unknown = ", ".join(sorted(set(settings) - {f.name for f in dataclasses.fields(ServiceConfig)}))
        raise ServiceDefinitionError(f"unknown setting {unknown} (settings: {known})") from None


def handler(
    func: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    **settings: Any,
) -> Any:
    """Mark a RunPod-style ``handler(job)``; the function stays callable as it was.

    `settings` are :class:`ServiceConfig` fields, plus `requirements` and `python` (see
    :func:`service`).
    """
    reqs = _requirements(settings)
    config = _config(settings)

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        svc = handler_service(fn, name=name, config=config)
        svc.requirements = reqs
        setattr(fn, HANDLER_ATTR, svc)
        return fn

    return mark(func) if func is not None else mark


def handler_service(
    fn: Callable[..., Any], *, name: str | None = None, config: ServiceConfig | None = None
) -> Service:
    """Wrap a one-argument ``handler(job)`` as a service with one route."""
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if len(params) != 1:
        raise ServiceDefinitionError(
            f"handler {fn.__name__} must take exactly one argument (the job dict)"
        )
    svc = Service(None, name=name or default_name(fn.__name__), config=config)
    path = handler_path(fn.__name__)
    svc._add(Route(path=path, func=fn, streaming=_is_generator(fn), kind="handler"), default=True)
    return svc


def handler_path(function_name: str) -> str:
    """The one route of a `handler(job)` service is named after the function."""
    return "/" + re.sub(r"[^A-Za-z0-9_.\-]", "-", function_name)


def _marked(value: Any) -> Any:
    """The service a `@podium.handler` mark holds; None for anything else, even an object that
    raises on attribute access (Flask's `request` proxy outside a request does)."""
    try:
        return getattr(value, HANDLER_ATTR, None)
    except Exception:
        return None


def find_service(namespace: dict[str, Any], name: str | None = None) -> Service:
    """Find the one service a module defines (or the one called `name`).

    Looks for :class:`Service` objects, then functions marked `@podium.handler`, then a plain
    top-level function called `handler` (RunPod's convention).
    """
    found: dict[str, Service] = {}
    for value in list(namespace.values()):
        svc = value if isinstance(value, Service) else _marked(value)
        if isinstance(svc, Service):
            found.setdefault(svc.name, svc)
    if not found and callable(namespace.get("handler")):
        svc = handler_service(namespace["handler"])
        found[svc.name] = svc
    if not found:
        from podium.sdk.httpapp import find_app, http_service

        app = find_app(namespace)
        if app is not None:
            svc = http_service(app[1], app[0], default_name(str(namespace.get("__name__", "app"))))
            found[svc.name] = svc
    return pick_service(
        found, name,
        "no service found: decorate an initializer with @podium.service, "
        "a handler with @podium.handler, define a top-level `handler(job)`, "
        "or expose an ASGI/WSGI app as `app`",
    )


Found = TypeVar("Found")


def pick_service(found: dict[str, Found], name: str | None, none_found: str) -> Found:
    """The service called `name`, or the only one; a clear error for none, several, or a name
    that is not there (`none_found` says how to declare one)."""
    if name is not None:
        if name not in found:
            known = ", ".join(sorted(found)) or "none"
            raise ServiceDefinitionError(f"no service named {name!r} here (found: {known})")
        return found[name]
    if not found:
        raise ServiceDefinitionError(none_found)
    if len(found) > 1:
        raise ServiceDefinitionError(
            f"several services found ({', '.join(sorted(found))}); choose one with --service"
        )
    return next(iter(found.values()))
