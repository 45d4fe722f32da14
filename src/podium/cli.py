"""The `podium` command: up, deploy, ls, call, status, logs, keys, worker.

Every command that prints data takes --json. Errors are one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from podium.errors import PodiumError

app = typer.Typer(help="Podium: deploy a Python service, get an HTTP endpoint.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="Jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
out = Console()
err = Console(stderr=True)

URL = typer.Option(None, "--url", help="Server URL (else PODIUM_URL, else the credentials file).")
KEY = typer.Option(None, "--key", help="API key (else PODIUM_API_KEY, else the credentials file).")
JSON = typer.Option(False, "--json", help="Print JSON.")


def fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(1)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def connect(url: str | None, key: str | None) -> Any:
    from podium.client import Connection

    return Connection(url, key)


@app.command()
def up(
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
) -> None:
    """Start the server and its local workers (state under $PODIUM_HOME, default ./.podium)."""
    from podium import logs
    from podium.config import Settings
    from podium.server.serve import run

    logs.setup()
    settings = Settings.from_env(host=host, port=port)

    def announce(runtime: Any) -> None:
        out.print(f"Podium {settings.url}  (home {settings.home.resolve()}, store {_store_name(settings)})")
        if runtime.new_admin_key:
            out.print("[bold]Admin API key (shown once; saved for the CLI in "
                      f"{settings.credentials}):[/bold]")
            out.print(runtime.new_admin_key, highlight=False)

    run(settings, announce)


@app.command()
def dev(
    path: Path = typer.Argument(..., help="The service: a .py file or a directory."),
    port: int = typer.Option(8000, help="Port to listen on."),
    name: str = typer.Option(None, "--name", "-n", help="Endpoint name (default: the service's)."),
) -> None:
    """Serve PATH on a private local Podium and redeploy it whenever a file changes."""
    from podium.dev import serve

    serve(path, port, name)


def _store_name(settings: Any) -> str:
    return "SQLite" if settings.db_url.startswith("sqlite") else "PostgreSQL"


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
    as_json: bool = JSON, url: str = URL, key: str = KEY,
) -> None:
    """Bundle PATH, upload it as an immutable version, point endpoint NAME at it."""
    from podium.bundle import describe, make_bundle
    from podium.client.deployment import upload

    overrides = {k: v for k, v in {
        "min_workers": min_workers, "max_workers": max_workers, "idle_timeout": idle_timeout,
        "concurrency": concurrency, "execution_timeout": execution_timeout,
    }.items() if v is not None}
    with connect(url, key) as conn:
        with err.status("bundling…"):
            bundle = make_bundle(path, entry)
            version = describe(bundle, service, overrides)
        with err.status(f"uploading {len(bundle.data) / 1024:.1f} KiB…"):
            ep = upload(conn, bundle, version, name or version["service"], message)
        if wait:
            ep = _wait_ready(conn, ep, timeout, quiet=as_json)
    result = {"endpoint_id": ep["endpoint_id"], "name": ep["name"], "version": ep["version"],
              "state": ep["state"], "urls": ep["urls"]}
    if as_json:
        print_json(result)
        if ep["state"] == "ERROR":
            raise typer.Exit(1)
        return
    out.print(f"endpoint [bold]{ep['name']}[/bold]  id {ep['endpoint_id']}  version {ep['version']}  "
              f"state {ep['state']}", highlight=False)
    for r in ep["routes"]:
        mark = " (default)" if r.get("default") else ""
        kind = " streaming" if r["streaming"] else ""
        out.print(f"  POST {ep['urls']['routes'].replace('{route}', r['path'].lstrip('/'))}{kind}{mark}",
                  highlight=False)
    out.print(f"  POST {ep['urls']['runsync']}", highlight=False)
    out.print(f"  POST {ep['urls']['run']}", highlight=False)
    out.print("try:", highlight=False)
    out.print(f"  curl -H \"Authorization: Bearer $PODIUM_API_KEY\" -d '{{\"input\": {{}}}}' "
              f"{ep['urls']['runsync']}", highlight=False, soft_wrap=True)
    if ep["state"] == "ERROR":
        fail(f"endpoint {ep['name']} failed to start:\n{ep['error']}")


def _wait_ready(conn: Any, ep: dict[str, Any], timeout: float, quiet: bool) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with err.status(f"starting a worker for {ep['name']}…") if not quiet else _nothing():
        while ep["state"] == "CREATING":
            if time.monotonic() > deadline:
                fail(f"endpoint {ep['name']} is not ready after {timeout:.0f}s; see `podium logs {ep['name']}`")
            time.sleep(0.2)
            ep = conn.request("GET", f"/api/v1/endpoints/{ep['endpoint_id']}")
    return ep


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


@app.command("ls")
def list_endpoints(as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """List endpoints."""
    with connect(url, key) as conn:
        eps = conn.request("GET", "/api/v1/endpoints")["endpoints"]
    if as_json:
        print_json(eps)
        return
    table = Table("NAME", "ID", "VERSION", "STATE", "WORKERS", "ROUTES")
    for ep in eps:
        table.add_row(ep["name"], ep["endpoint_id"], ep["version"], ep["state"], str(len(ep["workers"])),
                      " ".join(r["path"] for r in ep["routes"]))
    out.print(table)


@app.command()
def call(
    endpoint: str = typer.Argument(..., help="Endpoint name or id."),
    route: str = typer.Argument(..., help="Route path, e.g. /hello."),
    data: str = typer.Option("{}", "--data", "-d", help="JSON object of keyword arguments."),
    url: str = URL, key: str = KEY,
) -> None:
    """Call a route and print its answer (streaming routes print chunks as they arrive)."""
    try:
        kwargs = json.loads(data)
    except ValueError as exc:
        fail(f"--data is not valid JSON: {exc}")
    if not isinstance(kwargs, dict):
        fail("--data must be a JSON object of keyword arguments")
    path = f"/{endpoint}/{route.lstrip('/')}"
    with connect(url, key) as conn:
        for chunk in conn.stream("POST", path, json=kwargs):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
    sys.stdout.write("\n")


@app.command()
def status(job_id: str, as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Show a job: status, timings, output or error."""
    with connect(url, key) as conn:
        job = conn.request("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    out.print(f"job {job['id']}  {job['status']}  route {job['route']}  attempt {job['attempt']}/"
              f"{job['max_attempts']}  delay {job['delay_ms']} ms  execution {job['execution_ms']} ms",
              highlight=False, soft_wrap=True)
    if job["status"] == "COMPLETED":
        out.print_json(data=job["output"])
    elif job["error"]:
        out.print(f"[red]{job['error']}[/red]", highlight=False)
        if job["error_info"] and job["error_info"].get("traceback"):
            out.print(job["error_info"]["traceback"], highlight=False, markup=False)
    for hook in job.get("webhooks", []):
        out.print(f"webhook {hook['url']}  {hook['state']}  tries {hook['tries']}", highlight=False)
        for a in hook["attempts"]:
            result = a.get("status_code") or a.get("error")
            out.print(f"  attempt at {_when(a.get('at'))}: {result} ({a.get('ms', 0)} ms)", highlight=False)


jobs_app.command("show")(status)


def _when(at: float | None) -> str:
    import datetime

    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("webhook-secret")
def webhook_secret(url: str = URL, key: str = KEY) -> None:
    """Print the key webhook requests are signed with (verify with podium.signing.verify)."""
    with connect(url, key) as conn:
        out.print(conn.request("GET", "/api/v1/webhook-secret")["secret"], highlight=False)


@app.command()
def logs(endpoint: str, tail: int = typer.Option(200, help="Lines per worker."),
         as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Show an endpoint's worker logs."""
    with connect(url, key) as conn:
        res = conn.request("GET", f"/api/v1/endpoints/{endpoint}/logs", params={"tail_lines": tail})
    if as_json:
        print_json(res)
        return
    from podium.logs import render

    for w in res["workers"]:
        out.print(f"[bold]== {w['worker']} ==[/bold]")
        for line in w["lines"]:
            sys.stdout.write(render(line) + "\n")


@keys_app.command("create")
def keys_create(
    role: str = typer.Option("invoke", help="admin, deploy, invoke or read."),
    name: str = typer.Option(None, help="A label for the key."),
    as_json: bool = JSON, url: str = URL, key: str = KEY,
) -> None:
    """Create an API key (printed once, never again)."""
    with connect(url, key) as conn:
        res = conn.request("POST", "/api/v1/keys", json={"role": role, "name": name})
    if as_json:
        print_json(res)
        return
    out.print(f"key {res['id']} ({res['role']}), shown once:")
    out.print(res["key"], highlight=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def worker(ctx: typer.Context) -> None:
    """Run a worker by hand against a server (see `podium worker --help`)."""
    from podium.worker.__main__ import main as worker_main

    raise typer.Exit(worker_main(list(ctx.args)))


def main() -> None:
    try:
        app()
    except PodiumError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
