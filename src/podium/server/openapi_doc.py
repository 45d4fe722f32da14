"""An endpoint's own OpenAPI description: one POST operation per route, its keyword arguments as
the request body (JSON types from the route's annotations, defaults as recorded at deploy)."""

from __future__ import annotations

import copy
from typing import Any

from podium.records import RouteRecord
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
        props[p["name"]] = prop
        if p.get("required"):
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
            "400": {"description": "arguments the route cannot take", **error},
            "404": {"description": "no such endpoint or route", **error},
            "500": {"description": "the route raised (type, message, traceback)", **error},
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
