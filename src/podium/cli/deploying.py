"""Deploying and calling: `deploy`, `ls`, `call`."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, err, fail, id_column, out, print_json, setting
from podium.records import default_route, sample_arguments


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
    warm_buffer: int = typer.Option(None, help="Idle workers kept beyond the jobs running (within --max-workers)."),
    volume: list[str] = typer.Option(
        None,
        "--volume",
        help="NAME:PATH: the project's volume NAME, seen by workers at PATH (repeatable; e.g. "
        "weights:/runpod-volume for a RunPod worker file). Added to the service's own.",
    ),
    keep_scaling: bool = typer.Option(
        False,
        "--keep-scaling",
        help="Keep the running endpoint's scaling settings and resources (what `podium scale` set) "
        "instead of the service's; options given here still win.",
    ),
    canary: int = typer.Option(
        None, "--canary", help="Deploy as a canary taking this percent of calls (see `podium rollout`)."
    ),
    max_failure_rate: float = typer.Option(
        None, "--max-failure-rate", help="With --canary: abort once it fails more often (over >= 20 calls)."
    ),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Bundle PATH, upload it as an immutable version, point endpoint NAME at it (or, with
    --canary, send that share of its calls to it). Settings given here override the service's
    (a RunPod worker file gets its resources only from here). A redeploy sets the endpoint's
    scaling settings to the version's, and says which it changes."""
    from podium.bundle import describe, make_bundle
    from podium.client.deployment import refusal, upload

    overrides: dict[str, Any] = {
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
            "warm_buffer": warm_buffer,
        }.items()
        if v is not None
    }
    refused = None
    given = _volumes(volume or [])
    with connect(url, key, project) as conn:
        with err.status("bundling…"):
            bundle = make_bundle(path, entry)
            version = describe(bundle, service, overrides)
            if given:
                overrides["volumes"] = {**version["config"].get("volumes", {}), **given}
                version = describe(bundle, service, overrides)
            running = _running(conn, name or version["service"]) if keep_scaling else None
            if running is not None and any(version["config"][k] != v for k, v in running["scaling"].items()):
                version = describe(bundle, service, {**running["scaling"], **overrides})
        with err.status(f"uploading {len(bundle.data) / 1024:.1f} KiB…"):
            ep = upload(
                conn,
                bundle,
                version,
                name or version["service"],
                message,
                canary=canary,
                max_failure_rate=max_failure_rate,
            )
        changes = ep.get("scaling_changes") or {}  # a server of an older version does not say
        if changes and not as_json:
            err.print(
                "changes the running settings: "
                + ", ".join(f"{k} {setting(old)} -> {setting(new)}" for k, (old, new) in changes.items())
                + ("" if keep_scaling else " (--keep-scaling keeps them)"),
                soft_wrap=True,
            )
        if wait:
            _build(conn, ep["deployed"], timeout, quiet=as_json)
            ep = _wait_ready(conn, ep, timeout, quiet=as_json)
            refused = refusal(conn, ep)
    result = {
        "endpoint_id": ep["endpoint_id"],
        "name": ep["name"],
        "version": ep["version"],
        "state": ep["state"],
        # Why it failed to start (state ERROR), else None.
        "error": ep["error"],
        "urls": ep["urls"],
        # Running scaling settings this deploy changed: {setting: [before, after]}.
        "scaling_changes": changes,
        # With --canary: the rollout, both versions and their figures.
        "rollout": ep.get("rollout"),
    }
    if as_json:
        print_json({**result, "deploy_error": refused} if refused else result)
        if ep["state"] == "ERROR" or refused:
            raise typer.Exit(1)
        return
    if refused:  # the endpoint serves on, unchanged: say nothing else
        fail(refused)
    if canary is not None:
        out.print(
            f"endpoint {ep['name']}: version {ep['deployed']} takes {canary} % of new calls as a canary, "
            f"version {ep['version']} the rest (podium rollout {ep['name']} --promote | --abort)",
            soft_wrap=True,
        )
        return
    out.print(f"endpoint {ep['name']}  id {ep['endpoint_id']}  version {ep['version']}  state {ep['state']}")
    for r in ep["routes"]:
        mark = " (default)" if r.get("default") else ""
        kind = " streaming" if r["streaming"] else ""
        out.print(f"  POST {ep['urls']['routes'].replace('{route}', r['path'].lstrip('/'))}{kind}{mark}")
    out.print(f"  POST {ep['urls']['runsync']}")
    out.print(f"  POST {ep['urls']['run']}")
    out.print("try:")
    body = json.dumps({"input": sample_arguments(default_route(ep["routes"])) if ep["routes"] else {}})
    out.print(
        f'  curl -H "Authorization: Bearer $PODIUM_API_KEY" -d {shlex.quote(body)} {ep["urls"]["runsync"]}',
        soft_wrap=True,
    )
    if ep["state"] == "ERROR":
        fail(f"endpoint {ep['name']} failed to start:\n{ep['error']}")


def _volumes(given: list[str]) -> dict[str, str]:
    """`--volume NAME:PATH` options as the service's `volumes` setting."""
    out: dict[str, str] = {}
    for item in given:
        name, sep, where = item.partition(":")
        if not sep or not name or not where:
            fail(f"--volume takes NAME:PATH, like weights:/models (got {item!r})")
        out[name] = where
    return out


def _running(conn: Any, name: str) -> dict[str, Any] | None:
    """The endpoint `name` as it runs (None when it does not exist yet)."""
    from podium.errors import APIError

    try:
        ep: dict[str, Any] = conn.request("GET", f"/api/v1/endpoints/{name}")
    except APIError as exc:
        if exc.status_code == 404:
            return None
        raise
    return ep if ep["name"] == name else None  # a name may also be another endpoint's id


def _build(conn: Any, version_id: str, timeout: float, quiet: bool) -> None:
    """Show the installer's lines while the version's environment builds (or say that one built
    before is reused); exit 1 if it fails."""
    from podium.client.deployment import follow_build
    from podium.errors import DeploymentError

    shown = 0

    def show(line: str) -> None:
        nonlocal shown
        shown += 1
        if not quiet:
            err.print(f"  {line}", style="dim", soft_wrap=True)

    try:
        build = follow_build(conn, version_id, show, timeout)
    except DeploymentError as exc:
        fail(exc.message)
    if build["env"] is not None and not shown and not quiet:
        err.print(f"environment {build['env'][:12]} reused: its requirements were built before", soft_wrap=True)


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
    table = Table(
        "NAME",
        id_column("ID", [ep["endpoint_id"] for ep in eps]),
        id_column("VERSION", [ep["version"] for ep in eps]),
        "FROM",
        "STATE",
        "WORKERS",
        "ROUTES",
    )
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
    data: str = typer.Option(
        "{}",
        "--data",
        "-d",
        help="JSON object of keyword arguments; @FILE reads it from FILE, - from standard input.",
    ),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Call a route and print its answer (streaming routes print chunks as they arrive)."""
    body = _read_data(data)
    try:
        kwargs = json.loads(body)
    except ValueError as exc:
        fail(f"--data is not valid JSON: {exc}")
    if not isinstance(kwargs, dict):
        fail("--data must be a JSON object of keyword arguments")
    path = f"/{endpoint}/{route.lstrip('/')}"
    with connect(url, key, project) as conn:
        # The bytes as given (checked above): a large body is not encoded a second time.
        headers = {"content-type": "application/json"}
        for chunk in conn.stream("POST", path, content=body, headers=headers):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    sys.stdout.write("\n")


def _read_data(data: str) -> bytes:
    """--data itself, or the file it names after @, or standard input for `-` (a command line
    holds at most 128 KiB per argument, so large bodies come from a file or a pipe)."""
    if data == "-":
        return sys.stdin.buffer.read()
    if data.startswith("@"):
        try:
            return Path(data[1:]).read_bytes()
        except OSError as exc:
            fail(f"--data {data}: cannot read {exc.filename}: {exc.strerror}")
    return data.encode()
