"""Reading a service from its source without running it.

A service that brings its own requirements is deployed from machines that may lack them (a
laptop without `torch`), so deploy reads its name, settings, requirements and route table from the
syntax tree instead of importing it. The worker, which imports it inside the version's
environment, checks that the routes it finds have the shape recorded here (paths, kinds,
streaming, parameter names). Annotations made of builtins and `typing` names (`list[float]`,
`str | None`, `Literal["a", "b"]`) are evaluated from the tree, so their schemas are recorded as an
import would; others (a model class of the module) are left without one.

Understood: ``@podium.service(...)`` initializers with ``@init.endpoint("/path")`` routes,
``@podium.handler(...)`` functions, a plain top-level ``def handler(job)``, and an HTTP app bound
at the top of the module to `app`, `application` or `api` (WSGI when made by `Flask(...)` or
`get_wsgi_application()`, else ASGI). Settings must be literal values (or names bound to one at
the top of the module).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

from podium.envs.requirements import Requirements
from podium.errors import ServiceDefinitionError
from podium.records import Param, RouteKind, RouteRecord, ServiceConfig
from podium.runpod_source import yields
from podium.sdk.httpapp import APP_NAMES, HTTP_ROUTE
from podium.sdk.provides import returned_keys
from podium.sdk.service import (
    batching_of,
    default_name,
    handler_path,
    json_safe,
    json_schema,
    method_name,
    pick_service,
)

Function = ast.FunctionDef | ast.AsyncFunctionDef
_MISSING = object()
#: A route's or handler's batching keywords (not service settings).
BATCH_KEYWORDS = ("batch_size", "batch_wait_ms")
#: Callables that make WSGI apps; any other app is taken for an ASGI one.
WSGI_FACTORIES = ("Flask", "get_wsgi_application")


@dataclass
class SourceService:
    """What deploy records of a service it did not import."""

    name: str
    config: dict[str, Any]
    requirements: Requirements | None
    routes: list[RouteRecord] = field(default_factory=list)
    #: The route arguments its initializer provides (`podium.sdk.provides`).
    provides: frozenset[str] = frozenset()


def _decorator(node: ast.expr, names: tuple[str, ...]) -> tuple[str, ast.Call | None] | None:
    """("service"|"handler", the call or None) for `@podium.service`, `@service(...)`, ..."""
    call = node if isinstance(node, ast.Call) else None
    target = call.func if call is not None else node
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "podium":
        found = target.attr
    elif isinstance(target, ast.Name):
        found = target.id
    else:
        return None
    return (found, call) if found in names else None


class _Reader:
    def __init__(self, tree: ast.Module, module: str) -> None:
        self.tree = tree
        self.module = module
        self.constants: dict[str, Any] = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = _literal(node.value)
                if value is not _MISSING:
                    self.constants[node.targets[0].id] = value

    def value(self, node: ast.expr, what: str) -> Any:
        value = _literal(node)
        if value is _MISSING and isinstance(node, ast.Name):
            value = self.constants.get(node.id, _MISSING)
        if value is _MISSING:
            raise ServiceDefinitionError(
                f"line {node.lineno}: {what} = {ast.unparse(node)} must be a literal value (a service with "
                "requirements is read from its source at deploy time, not imported)"
            )
        return value

    def settings(self, call: ast.Call | None) -> tuple[str | None, dict[str, Any], Requirements | None]:
        """(name, config, requirements) from a decorator's keyword arguments."""
        name, settings, retry_on = None, {}, []
        for kw in call.keywords if call is not None else []:
            if kw.arg is None:
                raise ServiceDefinitionError(f"line {kw.value.lineno}: **settings cannot be read from source")
            if kw.arg == "retry_on":  # exception classes: recorded by name, as the import would
                items = kw.value.elts if isinstance(kw.value, ast.Tuple | ast.List) else [kw.value]
                retry_on = [
                    f"builtins.{e.id}" if isinstance(e, ast.Name) and hasattr(builtins, e.id) else ast.unparse(e)
                    for e in items
                ]
            elif kw.arg == "name":
                name = self.value(kw.value, "name")
            elif kw.arg in BATCH_KEYWORDS:  # a handler's, read by `batched`
                continue
            else:
                settings[kw.arg] = self.value(kw.value, kw.arg)
        packages, python = settings.pop("requirements", None), settings.pop("python", None)
        reqs = None
        if packages is not None or python is not None:
            try:
                reqs = Requirements(tuple(packages or ()), python)
            except (TypeError, ValueError) as exc:
                raise ServiceDefinitionError(str(exc)) from None
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(ServiceConfig)})
        if unknown:
            raise ServiceDefinitionError(f"unknown setting {', '.join(unknown)}")
        config = ServiceConfig(**settings).as_dict()
        config["retry_on"] = retry_on
        return name, config, reqs

    def batched(self, call: ast.Call | None, fn: Function, path: str) -> None:
        """Refuse what the import would (`Route`): a streaming route with a batch_size."""
        given = {
            kw.arg: self.value(kw.value, kw.arg) for kw in (call.keywords if call else []) if kw.arg in BATCH_KEYWORDS
        }
        batching = batching_of(f"route {path}", given.get("batch_size"), given.get("batch_wait_ms"))
        if batching is not None and yields(fn):
            raise ServiceDefinitionError(
                f"route {path} streams (it is a generator): a streaming route cannot be batched; "
                "drop batch_size or return a value"
            )

    def services(self) -> dict[str, SourceService]:
        """The services the module declares, by name."""
        by_var: dict[str, SourceService] = {}
        defaults: dict[str, str] = {}
        for node in self.tree.body:
            if not isinstance(node, Function):
                continue
            for dec in node.decorator_list:
                found = _decorator(dec, ("service", "handler"))
                if found is not None:
                    name, config, reqs = self.settings(found[1])
                    if found[0] == "service":
                        by_var[node.name] = SourceService(
                            name or default_name(node.name), config, reqs, provides=returned_keys(node)
                        )
                    else:
                        svc = SourceService(name or default_name(node.name), config, reqs)
                        self.batched(found[1], node, handler_path(node.name))
                        svc.routes.append(_route(node, handler_path(node.name), "handler"))
                        by_var[node.name] = svc
                        defaults[node.name] = svc.routes[0]["path"]
                elif (
                    isinstance(dec, ast.Call)
                    and isinstance(dec.func, ast.Attribute)
                    and dec.func.attr == "endpoint"
                    and isinstance(dec.func.value, ast.Name)
                    and dec.func.value.id in by_var
                    and dec.args
                ):
                    path = self.value(dec.args[0], "path")
                    self.batched(dec, node, path)
                    svc = by_var[dec.func.value.id]
                    svc.routes.append(_route(node, path, "route", svc.provides))
                    if any(kw.arg == "default" and self.value(kw.value, "default") for kw in dec.keywords):
                        defaults[dec.func.value.id] = path
        if not by_var:
            plain = next((n for n in self.tree.body if isinstance(n, Function) and n.name == "handler"), None)
            if plain is not None:
                svc = SourceService(default_name("handler"), ServiceConfig().as_dict(), None)
                svc.routes.append(_route(plain, handler_path("handler"), "handler"))
                by_var["handler"] = svc
        out: dict[str, SourceService] = {}
        if not by_var:
            app = self.http_app()
            if app is not None:
                return {app.name: app}
        for var, svc in by_var.items():
            if not svc.routes:
                raise ServiceDefinitionError(f"service {svc.name} declares no routes")
            default = defaults.get(var, svc.routes[0]["path"])
            for r in svc.routes:
                r["default"] = r["path"] == default
            out.setdefault(svc.name, svc)
        return out

    def http_app(self) -> SourceService | None:
        """An HTTP app bound at the top of the module, as `http_service` would wrap it."""
        for wanted in APP_NAMES:
            for node in self.tree.body:
                if isinstance(node, Function) and node.name == wanted:
                    is_async = isinstance(node, ast.AsyncFunctionDef)
                elif (
                    isinstance(node, ast.Assign)
                    and isinstance(node.value, ast.Call)
                    and any(isinstance(t, ast.Name) and t.id == wanted for t in node.targets)
                ):
                    maker = node.value.func
                    name = maker.attr if isinstance(maker, ast.Attribute) else getattr(maker, "id", "")
                    is_async = name not in WSGI_FACTORIES
                else:
                    continue
                route: RouteRecord = {
                    "path": HTTP_ROUTE,
                    "method": method_name(HTTP_ROUTE),
                    "kind": "http",
                    "streaming": True,
                    "is_async": is_async,
                    "params": [{"name": "request", "required": True}],
                    "var_keyword": False,
                    "default": True,
                }
                return SourceService(default_name(self.module), ServiceConfig().as_dict(), None, [route])
        return None


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _MISSING


def _route(fn: Function, path: str, kind: RouteKind, provided: frozenset[str] = frozenset()) -> RouteRecord:
    """A route's entry as `Route.describe` makes it, less the schemas that need the import."""
    a = fn.args
    positional = a.posonlyargs + a.args
    pos_defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = []
    for arg, default in [*zip(positional, pos_defaults, strict=True), *zip(a.kwonlyargs, a.kw_defaults, strict=True)]:
        entry: Param = {"name": arg.arg, "required": default is None}
        value = _literal(default) if default is not None else _MISSING
        if value is not _MISSING:
            entry["default"] = json_safe(value)
        schema = _schema(arg.annotation)
        if schema is not None:
            entry["schema"] = schema
        if arg.arg in provided:
            entry["source"] = "initializer"
        params.append(entry)
    route: RouteRecord = {
        "path": path,
        "method": method_name(path),
        "kind": kind,
        "streaming": yields(fn),
        "is_async": isinstance(fn, ast.AsyncFunctionDef),
        "params": params,
        "var_keyword": a.kwarg is not None,
    }
    returns = None if route["streaming"] else _schema(fn.returns)
    if returns is not None:
        route["returns"] = returns
    return route


#: What an annotation read from source may name: builtins and `typing`'s generic names.
_TYPE_NAMES: dict[str, Any] = {
    **{t.__name__: t for t in (int, float, str, bool, bytes, list, dict, tuple, set, frozenset)},
    **{n: getattr(typing, n) for n in ("Any", "Optional", "Union", "Literal", "List", "Dict", "Tuple", "Set")},
}


def _schema(node: ast.expr | None) -> dict[str, Any] | None:
    """The JSON Schema of an annotation read from source, as the import would give it; None when
    there is none or it names more than builtins and `typing` (then only the import knows it)."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
    for part in ast.walk(node):
        if isinstance(part, ast.Attribute):
            if not (isinstance(part.value, ast.Name) and part.value.id == "typing" and part.attr in _TYPE_NAMES):
                return None
        elif isinstance(part, ast.Name):
            if part.id not in _TYPE_NAMES and part.id != "typing":
                return None
        elif not isinstance(part, (ast.Subscript, ast.Tuple, ast.Constant, ast.BinOp, ast.BitOr, ast.Load)):
            return None
    try:
        value = eval(
            compile(ast.Expression(node), "<annotation>", "eval"), {"__builtins__": {}, "typing": typing}, _TYPE_NAMES
        )
    except Exception:
        return None
    return json_schema(value)


def declares_requirements(source: str) -> bool:
    """Whether a service decorator in the source names `requirements` or `python`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, Function):
            for dec in node.decorator_list:
                found = _decorator(dec, ("service", "handler"))
                if (
                    found is not None
                    and found[1] is not None
                    and any(kw.arg in ("requirements", "python") for kw in found[1].keywords)
                ):
                    return True
    return False


def read_service(source: str, name: str | None = None, module: str = "app") -> SourceService:
    """The one service the source declares (or the one called `name`), read without running it;
    `module` is the entry file's name without `.py` (an HTTP app's service is named after it)."""
    found = _Reader(ast.parse(source), module).services()
    return pick_service(
        found,
        name,
        "no service found in the source: a service with requirements is read without importing "
        "it, so declare it with @podium.service and @<init>.endpoint, @podium.handler, a "
        "top-level `def handler(job)`, or bind an HTTP app to `app` at the top of the module",
    )


def route_shape(routes: list[RouteRecord]) -> list[tuple[Any, ...]]:
    """What a route table read from source promises: paths, kinds, streaming, parameter names."""
    return [
        # An HTTP app's one route is the same whatever the app is (sync WSGI or async ASGI).
        (
            r["path"],
            r["method"],
            r["kind"],
            r["streaming"],
            r.get("is_async") if r["kind"] != "http" else None,
            bool(r.get("default")),
            bool(r.get("var_keyword")),
            [(p["name"], p["required"]) for p in r["params"]],
        )
        for r in routes
    ]
