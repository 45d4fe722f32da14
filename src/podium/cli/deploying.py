"""Deploying and calling: `deploy`, `ls`, `call`."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, err, fail, out, print_json


@app.command()
def deploy(
    path: Path = typer.Argument(..., help="A directory (entry app.py/main.py/handler.py) or one .py file."),
    name: str = typer.Option(None, "--name", "-n", help="Endpoint name (default: the service's name)."),
    entry: str = typer.Option(None, help="Entry file inside the directory."),
    service: str = typer.Option(None, help="Which service, when the entry defines several."),
    message: str = typer.Option(None, "--message", "-m", help="What changed (kept in the history)."),
    wait: bool = typer.Option(True, help="Wait until the endpoint is ready."),
    timeout: float = typer.Option(300, help="Seconds to wait for readiness."),
    min_workers: int = typer.Option(None, help="Workers kept warm (overrides the service's setting)."),
    max_workers: int = typer.Option(None, help="Most workers at once."),
    idle_timeout: float = typer.Option(None, help="Seconds an idle worker lives."),
    concurrency: int = typer.Option(None, help="Jobs at once per worker."),
    execution_timeout: float = typer.Option(None, help="Seconds a job may run (default 24 h)."),
    cpus: float = typer.Option(None, help="CPUs per worker (may be fractional)."),
    gpus: int = typer.Option(None, help="GPUs per worker (whole devices, each worker its own)."),
    memory_mb: int = typer.Option(None, "--memory-mb", help="Memory per worker in MB (0: no reservation)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Bundle PATH, upload it as an immutable version, point endpoint NAME at it. Settings given
    here override the service's (a RunPod worker file gets its resources only from here)."""
    from podium.bundle import describe, make_bundle
    from podium.client.deployment import refusal, upload

    overrides = {
        k: v
        for k, v in {
            "min_workers": min_workers,
            "max_workers": max_workers,
            "idle_timeout": idle_timeout,
            "concurrency": concurrency,
            "execution_timeout": execution_timeout,
            "cpus": cpus,
            "gpus": gpus,
            "memory_mb": memory_mb,
        }.items()
        if v is not None
    }
    refused = None
    with connect(url, key, project) as conn:
        with err.status("bundling…"):
            bundle = make_bundle(path, entry)
            version = describe(bundle, service, overrides)
        with err.status(f"uploading {len(bundle.data) / 1024:.1f} KiB…"):
            ep = upload(conn, bundle, version, name or version["service"], message)
        if wait:
            _build(conn, ep["deployed"], timeout, quiet=as_json)
            ep = _wait_ready(conn, ep, timeout, quiet=as_json)
            refused = refusal(conn, ep)
    result = {
        "endpoint_id": ep["endpoint_id"],
        "name": ep["name"],
        "version": ep["version"],
        "state": ep["state"],
        "urls": ep["urls"],
    }
    if as_json:
        print_json({**result, "deploy_error": refused} if refused else result)
        if ep["state"] == "ERROR" or refused:
            raise typer.Exit(1)
        return
    if refused:  # the endpoint serves on, unchanged: say nothing else
        fail(refused)
    out.print(f"endpoint {ep['name']}  id {ep['endpoint_id']}  version {ep['version']}  state {ep['state']}")
    for r in ep["routes"]:
        mark = " (default)" if r.get("default") else ""
        kind = " streaming" if r["streaming"] else ""
        out.print(f"  POST {ep['urls']['routes'].replace('{route}', r['path'].lstrip('/'))}{kind}{mark}")
    out.print(f"  POST {ep['urls']['runsync']}")
    out.print(f"  POST {ep['urls']['run']}")
    out.print("try:")
    out.print(
        f'  curl -H "Authorization: Bearer $PODIUM_API_KEY" -d \'{{"input": {{}}}}\' {ep["urls"]["runsync"]}',
        soft_wrap=True,
    )
    if ep["state"] == "ERROR":
        fail(f"endpoint {ep['name']} failed to start:\n{ep['error']}")


def _build(conn: Any, version_id: str, timeout: float, quiet: bool) -> None:
    """Show the installer's lines while the version's environment builds; exit 1 if it fails."""
    from podium.client.deployment import follow_build
    from podium.errors import DeploymentError

    def show(line: str) -> None:
        err.print(f"  {line}", style="dim", soft_wrap=True)

    try:
        follow_build(conn, version_id, None if quiet else show, timeout)
    except DeploymentError as exc:
        fail(exc.message)


def _wait_ready(conn: Any, ep: dict[str, Any], timeout: float, quiet: bool) -> dict[str, Any]:
    """Until the endpoint runs the deployed version (a redeploy waits for its environment and
    first worker; the server switches to it) or refused it, and is no longer CREATING."""
    deadline = time.monotonic() + timeout
    starting = f"starting a worker for {ep['name']}"
    with err.status(f"{starting}…") if not quiet else contextlib.nullcontext() as shown:
        while ep["state"] == "CREATING" or ep.get("pending_version") == ep["deployed"]:
            if time.monotonic() > deadline:
                fail(f"endpoint {ep['name']} is not ready after {timeout:.0f}s; see `podium logs {ep['name']}`")
            time.sleep(0.2)
            ep = {**conn.request("GET", f"/api/v1/endpoints/{ep['endpoint_id']}"), "deployed": ep["deployed"]}
            if shown is not None:  # e.g. "waiting for 1 GPU (2 of 2 in use)"
                shown.update(f"{starting}: {ep['waiting_for']}…" if ep.get("waiting_for") else f"{starting}…")
    return ep


@app.command("ls")
def list_endpoints(as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """List endpoints."""
    with connect(url, key, project) as conn:
        eps = conn.request("GET", "/api/v1/endpoints")["endpoints"]
    if as_json:
        print_json(eps)
        return
    table = Table("NAME", "ID", "VERSION", "FROM", "STATE", "WORKERS", "ROUTES")
    for ep in eps:
        table.add_row(
            ep["name"],
            ep["endpoint_id"],
            ep["version"],
            ep["origin"],
            ep["state"],
            str(len(ep["workers"])),
            " ".join(r["path"] for r in ep["routes"]),
        )
    out.print(table)


@app.command()
def call(
    endpoint: str = typer.Argument(..., help="Endpoint name or id."),
    route: str = typer.Argument(..., help="Route path, e.g. /hello."),
    data: str = typer.Option("{}", "--data", "-d", help="JSON object of keyword arguments."),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Call a route and print its answer (streaming routes print chunks as they arrive)."""
    try:
        kwargs = json.loads(data)
    except ValueError as exc:
        fail(f"--data is not valid JSON: {exc}")
    if not isinstance(kwargs, dict):
        fail("--data must be a JSON object of keyword arguments")
    path = f"/{endpoint}/{route.lstrip('/')}"
    with connect(url, key, project) as conn:
        for chunk in conn.stream("POST", path, json=kwargs):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    sys.stdout.write("\n")
