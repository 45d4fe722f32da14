"""Unmodified RunPod workers: recognise one at deploy time, and run it as it is.

A file that calls `runpod.serverless.start({...})` is deployed with runtime "runpod". Deploy reads
the file's syntax tree and never runs it: RunPod workers load their models at import time, and the
deploying machine may have neither the model nor the GPU. A worker process runs the file itself,
with the `RUNPOD_*` environment the runpod package reads at import (RUNPOD.md 3.1) pointed at this
server, under a small supervisor that stops the whole process group when the server goes away.
"""

from __future__ import annotations

import ast
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from podium.core.records import RouteRecord

#: RunPod's fitness checks want 4 GB free memory, a GPU and a route to 8.8.8.8: not ours to impose.
SKIP_CHECKS = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}


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
    handler without running it: name, streaming (a generator), async."""
    tree = ast.parse(source)
    call = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.Call) and _is_start_call(n) and n.args), None
    )
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
    }


def route_table(info: dict[str, Any]) -> list[RouteRecord]:
    """The one route a RunPod worker has, shaped like a `handler(job)` service's."""
    return [
        {
            "path": "/" + info["handler"],
            "method": info["handler"],
            "kind": "handler",
            "streaming": info["streaming"],
            "is_async": info["is_async"],
            "params": [],
            "var_keyword": True,
            "default": True,
        }
    ]


def environment(
    *, url: str, endpoint_id: str, worker_id: str, token: str, ping_interval: float
) -> dict[str, str]:
    """The `RUNPOD_*` variables that make the runpod package talk to this server as this worker.

    Templates carry `?gpu=cpu` because the SDK appends `&name=value` to them.
    """
    base = f"{url}/v2/{endpoint_id}"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID",
        # In ms, and read as whole seconds: under 1000 it would ping in a busy loop.
        "RUNPOD_PING_INTERVAL": str(max(1000, int(ping_interval * 1000))),
        "RUNPOD_AI_API_KEY": token,
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_ENDPOINT_ID": endpoint_id,
        "RUNPOD_POD_HOSTNAME": f"{worker_id}-podium",
        **SKIP_CHECKS,
    }


def supervise(root: Path, entry: str, env: dict[str, str], parent_pid: int | None) -> int:
    """Run `python <entry>` in `root` and wait for it.

    SIGTERM is passed on (the runpod worker finishes the job it holds, then exits). When the server
    that spawned us is gone, or when we leave, the whole process group is killed: the runpod
    package pings from a child process that would otherwise outlive its worker.
    """
    child = subprocess.Popen(
        [sys.executable, entry], cwd=root, env={**os.environ, **env}, stdin=subprocess.DEVNULL
    )

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while True:
            try:
                return child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if parent_pid is not None and not _alive(parent_pid):
                    return 1
    finally:
        _kill_group()


def _alive(parent_pid: int) -> bool:
    """An orphan is adopted by another process, so our parent's pid changes when it dies."""
    return os.getppid() == parent_pid


def _kill_group() -> None:
    """Stop every other process of our group (the worker's ping process, stray children)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(0), signal.SIGTERM)
