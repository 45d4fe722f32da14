"""Recognising an unmodified RunPod worker file at deploy time, from its source.

A file that calls `runpod.serverless.start({...})` is deployed with runtime "runpod". Deploy reads
the file's syntax tree and never runs it: RunPod workers load their models at import time, and the
deploying machine may have neither the model nor the GPU. `podium.worker.runpod_file` runs it.
"""

from __future__ import annotations

import ast
from typing import Any

from podium.records import RouteRecord


def _is_start_call(node: ast.Call) -> bool:
    f = node.func
    if isinstance(f, ast.Attribute) and f.attr == "start":
        v = f.value
        return (isinstance(v, ast.Attribute) and v.attr == "serverless") or (
            isinstance(v, ast.Name) and v.id == "serverless"
        )
    return False


def _top_level(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level definitions by name (functions, and values assigned to one name)."""
    out: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
    return out


def yields(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether the function itself (not a function nested in it) yields: a generator handler."""
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def inspect_source(source: str) -> dict[str, Any] | None:
    """None unless the source calls `runpod.serverless.start`; else what we can tell of its
    handler without running it: name, streaming (a generator), async, and whether it reads
    RunPod's `openai_route` (as worker-vllm does: it serves OpenAI's routes)."""
    tree = ast.parse(source)
    call = next((n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_start_call(n) and n.args), None)
    if call is None:
        return None
    defs = _top_level(tree)
    config: ast.AST = call.args[0]
    if isinstance(config, ast.Name):
        config = defs.get(config.id, config)
    handler: ast.AST | None = None
    aggregate = False
    if isinstance(config, ast.Dict):
        for key, value in zip(config.keys, config.values, strict=True):
            if not isinstance(key, ast.Constant):
                continue
            if key.value == "handler" and isinstance(value, ast.Name):
                handler = defs.get(value.id)
            elif key.value == "return_aggregate_stream" and isinstance(value, ast.Constant):
                aggregate = bool(value.value)
    name = handler.name if isinstance(handler, ast.FunctionDef | ast.AsyncFunctionDef) else "handler"
    streaming = isinstance(handler, ast.FunctionDef | ast.AsyncFunctionDef) and yields(handler)
    return {
        "handler": name,
        "streaming": streaming,
        "is_async": isinstance(handler, ast.AsyncFunctionDef),
        "aggregate_stream": aggregate,
        "openai": "openai_route" in source,
    }


def route_table(info: dict[str, Any]) -> list[RouteRecord]:
    """The one route a RunPod worker has, shaped like a `handler(job)` service's."""
    route: RouteRecord = {
        "path": "/" + info["handler"],
        "method": info["handler"],
        "kind": "handler",
        "streaming": info["streaming"],
        "is_async": info["is_async"],
        "params": [],
        "var_keyword": True,
        "default": True,
    }
    if info.get("openai"):
        route["openai"] = True
    return [route]
