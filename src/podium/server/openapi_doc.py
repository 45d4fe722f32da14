"""An endpoint's own OpenAPI description: one POST operation per route, its keyword arguments as
the request body (JSON types from the route's annotations, defaults as recorded at deploy). An
argument the service's initializer provides is optional, and says so (`x-podium-source`); the
operation's example is a body that passes (`sample_arguments`)."""

from __future__ import annotations

import copy
from typing import Any

from podium.records import RouteRecord, required_argument, sample_arguments
from podium.store.records import Endpoint

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {}},
    "required": ["error"],
}


def _hoist(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """Move a schema's `$defs` (the models it uses) into the document's components."""
    schema = copy.deepcopy(schema)
    components.update(schema.pop("$defs", {}))
    return schema


def _operation(route: RouteRecord, components: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    required = []
    for p in route.get("params", []):
        prop = _hoist(p.get("schema", {}), components)
        if "default" in p:
            prop["default"] = p["default"]
        if p.get("source") == "initializer":
            prop["description"] = "provided by the service's initializer; a value sent here replaces it"
            prop["x-podium-source"] = "initializer"
        props[p["name"]] = prop
        if required_argument(p):
            required.append(p["name"])
    body: dict[str, Any] = {
        "type": "object",
        "properties": props,
        "additionalProperties": bool(route.get("var_keyword")),
    }
    if required:
        body["required"] = required
    if route.get("kind") == "handler":
        body = {"type": "object", "description": "the handler's job input"}
    else:
        body["examples"] = [sample_arguments(route)]
    if route.get("streaming"):
        ok = {
            "description": "chunks as the route yields them",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        }
    else:
        ok = {
            "description": "the route's return value",
            "content": {"application/json": {"schema": _hoist(route.get("returns", {}), components)}},
        }
    error = {"content": {"application/json": {"schema": ERROR}}}
    return {
        "operationId": route["method"] or "root",
        "summary": f"call {route['path']}" + (" (default route)" if route.get("default") else ""),
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": ok,
            "400": {"description": "arguments the route cannot take (or a podium.BadRequest it raised)", **error},
            "404": {"description": "no such endpoint or route (or a podium.NotFound it raised)", **error},
            "500": {"description": "the route raised (type, message; the traceback for deploy keys)", **error},
        },
    }


def endpoint_openapi(ep: Endpoint, routes: list[RouteRecord], base_url: str) -> dict[str, Any]:
    components: dict[str, Any] = {}
    paths = {r["path"]: {"post": _operation(r, components)} for r in routes}
    return {
        "openapi": "3.1.0",
        "info": {"title": f"{ep.name} (Podium endpoint)", "version": ep.version_id},
        "servers": [{"url": f"{base_url}/{ep.id}"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    }
