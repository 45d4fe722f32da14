"""Services and routes: `@podium.service`, `@svc.endpoint(path)` and `@podium.handler`.

A Service is an optional initializer plus routes. The initializer runs once per worker; the dict it
returns supplies default keyword arguments to every route (a caller's argument of the same name wins).
A RunPod-style ``handler(job)`` is a service with one route that receives the whole job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from podium.envs.requirements import Requirements
from podium.errors import ServiceDefinitionError
from podium.records import Batching, Param, RouteRecord, ScheduleRecord, ServiceConfig
from podium.sdk.provides import initializer_keys
from podium.timetable import Every, InvalidSchedule, check_cron, zone

F = TypeVar("F", bound=Callable[..., Any])

#: Route paths: one or more segments of letters, digits, `_`, `-` and `.`.
ROUTE_PATH = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")
#: Service names follow the endpoint name rule so a service name can be used as one.
SERVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
#: The OpenAI routes a service may declare with `openai=True`.
OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
#: The attribute `@podium.handler` leaves on the function it marks.
HANDLER_ATTR = "__podium_service__"

_MISSING = object()


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
    #: An OpenAI-compatible route (`podium.worker.openai_route`), and the model name it answers to.
    openai: bool = False
    model: str | None = None
    #: When the route runs by itself (`schedule=`), as its route table records it.
    schedule: ScheduleRecord | None = None
    #: Set for a batched route: called with a list per parameter (a handler: a list of jobs),
    #: one element per call, and returns a list of as many results.
    batching: Batching | None = None

    def __post_init__(self) -> None:
        if self.batching is None:
            return
        if self.streaming:
            raise ServiceDefinitionError(
                f"route {self.path} streams (it is a generator): a streaming route cannot be batched; "
                "drop batch_size or return a value"
            )
        if any(
            p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
            for p in inspect.signature(self.func).parameters.values()
        ):
            raise ServiceDefinitionError(
                f"route {self.path} is batched: name its parameters (each receives a list), no *args or **kwargs"
            )

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.func) or inspect.isasyncgenfunction(self.func)

    @property
    def method_name(self) -> str:
        return method_name(self.path)

    @property
    def accepts_any_keyword(self) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(self.func).parameters.values())

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
                    problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or name}: {e['msg']}" for e in exc.errors())
                    raise ValueError(f"argument {name!r} does not fit its annotation: {problems}") from None
        return out

    def describe(self, provided: frozenset[str] = frozenset()) -> RouteRecord:
        """The route's entry in a version's route table (JSON-safe); `provided`: the arguments
        its service's initializer provides (`podium.sdk.provides`)."""
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
            if p.name in provided:
                entry["source"] = "initializer"
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
        if self.openai:
            out["openai"] = True
        if self.schedule is not None:
            out["schedule"] = self.schedule
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
        #: Runs once when a worker stops (not when it crashes): see `on_exit`.
        self.exit_hook: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"<Service {self.name} routes={list(self.routes)}>"

    def endpoint(
        self,
        path: str,
        *,
        streaming: bool | None = None,
        default: bool = False,
        openai: bool = False,
        model: str | None = None,
        batch_size: int | None = None,
        batch_wait_ms: float | None = None,
        schedule: str | Every | None = None,
        timezone: str = "UTC",
        schedule_input: dict[str, Any] | None = None,
        overlap: bool = False,
    ) -> Callable[[F], F]:
        """Register a route at `path`; a generator function is a streaming route.

        `schedule` runs the route by itself, as a job the server starts: a cron expression
        ("*/15 * * * *", read in `timezone`) or `podium.every(seconds=30)`; with the route's
        defaults, or `schedule_input` as its arguments. A fire while the previous one's job still
        runs is skipped, unless `overlap=True`.

        `openai=True` makes it an OpenAI-compatible route at OpenAI's path (`/v1/chat/completions`,
        `/v1/completions`, `/v1/embeddings`), served at `/v2/{endpoint}/openai/v1/...`: it takes
        the fields of OpenAI's request body it names, yields (or returns) text for completions
        and a list of vectors for embeddings, and Podium answers OpenAI's objects. `model` is the
        name `/models` lists for it (default: the service's name).

        With `batch_size`, calls are batched: each parameter receives a list with one element
        per call (an annotation types the element), and the route returns a list of as many
        results, each caller receiving its own. A batch holds the calls queued when a worker
        takes the first, up to `batch_size`; while others are about, it waits up to
        `batch_wait_ms` (default 0) for more. A lone call never waits.
        """
        batching = batching_of(path, batch_size, batch_wait_ms)
        if not ROUTE_PATH.match(path):
            raise ServiceDefinitionError(
                f"route path {path!r} must start with '/' and use letters, digits, '_', '-', '.'"
            )
        if openai and path not in OPENAI_ROUTES:
            raise ServiceDefinitionError(f"an OpenAI route's path is one of {', '.join(OPENAI_ROUTES)}, not {path}")
        if model is not None and not openai:
            raise ServiceDefinitionError(f"route {path} names a model but is not an OpenAI route (openai=True)")
        when = _schedule(path, schedule, timezone, schedule_input, overlap)

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
            if openai and is_gen and path == "/v1/embeddings":
                raise ServiceDefinitionError(f"route {path} returns its vectors; it cannot be a generator")
            named = (model or self.name) if openai else None
            route = Route(
                path=path, func=func, streaming=is_gen, openai=openai, model=named, batching=batching, schedule=when
            )
            self._add(route, default=default)
            return func

        return register

    def on_exit(self, func: F) -> F:
        """Run `func` once when a worker stops for any reason but a crash (idle timeout, scale
        down, a redeploy's drain, the server stopping), after its last job, with the initializer's
        values it names as parameters; for at most `exit_timeout` seconds. A failure is logged,
        never retried. It may be async."""
        if self.exit_hook is not None:
            raise ServiceDefinitionError(f"{self.name} declares on_exit twice")
        self.exit_hook = func
        return func

    def exit_arguments(self, values: dict[str, Any]) -> dict[str, Any]:
        """The initializer's values the exit hook takes (all of them with `**kwargs`)."""
        assert self.exit_hook is not None
        hook = Route(path="/on-exit", func=self.exit_hook, streaming=False)
        return {k: v for k, v in values.items() if hook.accepts(k)}

    def _add(self, route: Route, *, default: bool) -> None:
        if route.path in self.routes:
            raise ServiceDefinitionError(f"route {route.path} is declared twice in {self.name}")
        if default and self._default is not None:
            raise ServiceDefinitionError(f"routes {self._default} and {route.path} are both marked default=True")
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
        provided = initializer_keys(self.initializer)
        table = []
        for r in self.routes.values():
            record = r.describe(provided if r.kind == "route" else frozenset())
            record["default"] = r.path == default
            if r.model is not None:
                record["model"] = r.model
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


def _schedule(
    path: str, schedule: str | Every | None, timezone: str, given: dict[str, Any] | None, overlap: bool
) -> ScheduleRecord | None:
    """A route's schedule as its route table records it, checked where it is declared."""
    if schedule is None:
        if given is not None or overlap or timezone != "UTC":
            raise ServiceDefinitionError(f"route {path}: schedule_input, overlap and timezone need a schedule=")
        return None
    if given is not None and not isinstance(given, dict):
        raise ServiceDefinitionError(f"route {path}: schedule_input must be a dict of the route's arguments")
    try:
        if isinstance(schedule, Every):
            zone(timezone)
            record: ScheduleRecord = {"every": schedule.seconds, "timezone": timezone, "overlap": overlap}
        elif isinstance(schedule, str):
            zone(timezone)
            # A worker's environment has Podium's runtime packages only, not cronsim: there the
            # expression is not read again (the deploy checked it, and the server fires it).
            with contextlib.suppress(ModuleNotFoundError):
                check_cron(schedule, timezone)
            record = {"cron": schedule, "timezone": timezone, "overlap": overlap}
        else:
            raise ServiceDefinitionError(
                f"route {path}: schedule must be a cron expression or podium.every(...), not {type(schedule).__name__}"
            )
    except InvalidSchedule as exc:
        raise ServiceDefinitionError(f"route {path}: {exc}") from None
    if given is not None:
        record["input"] = json_safe(given)
    return record


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


def batching_of(where: str, batch_size: int | None, batch_wait_ms: float | None) -> Batching | None:
    """A route's batching from its decorator's `batch_size` and `batch_wait_ms` (None: unbatched)."""
    if batch_size is None:
        if batch_wait_ms is not None:
            raise ServiceDefinitionError(f"{where}: batch_wait_ms needs batch_size")
        return None
    try:
        return Batching(batch_size, 0.0 if batch_wait_ms is None else batch_wait_ms)
    except ServiceDefinitionError as exc:
        raise ServiceDefinitionError(f"{where}: {exc}") from None


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
    batch_size: int | None = None,
    batch_wait_ms: float | None = None,
    **settings: Any,
) -> Any:
    """Mark a RunPod-style ``handler(job)``; the function stays callable as it was.

    `settings` are :class:`ServiceConfig` fields, plus `requirements` and `python` (see
    :func:`service`). With `batch_size` (and `batch_wait_ms`, as for a route) the handler
    receives a list of jobs and returns a list of as many outputs.
    """
    reqs = _requirements(settings)
    config = _config(settings)

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        batching = batching_of(f"handler {fn.__name__}", batch_size, batch_wait_ms)
        svc = handler_service(fn, name=name, config=config, batching=batching)
        svc.requirements = reqs
        setattr(fn, HANDLER_ATTR, svc)
        return fn

    return mark(func) if func is not None else mark


def handler_service(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    config: ServiceConfig | None = None,
    batching: Batching | None = None,
) -> Service:
    """Wrap a one-argument ``handler(job)`` as a service with one route (batched: ``handler(jobs)``)."""
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if len(params) != 1:
        raise ServiceDefinitionError(f"handler {fn.__name__} must take exactly one argument (the job dict)")
    svc = Service(None, name=name or default_name(fn.__name__), config=config)
    path = handler_path(fn.__name__)
    svc._add(Route(path=path, func=fn, streaming=_is_generator(fn), kind="handler", batching=batching), default=True)
    return svc


def handler_path(function_name: str) -> str:
    """The one route of a `handler(job)` service is named after the function."""
    return "/" + re.sub(r"[^A-Za-z0-9_.\-]", "-", function_name)


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
        raise ServiceDefinitionError(f"several services found ({', '.join(sorted(found))}); choose one with --service")
    return next(iter(found.values()))
