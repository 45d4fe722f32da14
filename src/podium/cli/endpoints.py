"""Endpoints: status, logs, stop/start/restart, history, rollback, versions, removal."""

from __future__ import annotations

import sys
import time
from typing import Any

import typer
from rich.table import Table

from podium.cli.common import (
    JSON,
    KEY,
    PROJECT,
    URL,
    app,
    connect,
    endpoints_app,
    err,
    fail,
    id_column,
    out,
    print_json,
    setting,
    versions_app,
    when,
)


@app.command()
def logs(
    endpoint: str,
    tail: int = typer.Option(200, help="Lines per worker."),
    job: str = typer.Option(None, "--job", help="Only this job's lines."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C stops)."),
    build: bool = typer.Option(False, "--build", help="The build log of its version's environment instead."),
    version: str = typer.Option(
        None, "--version", help="With --build: this version's (an id or a unique prefix; default: the current one)."
    ),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Show an endpoint's worker logs (or one job's lines, or its environment's build log),
    optionally following them."""
    from podium.logs import render

    if version and not build:
        fail("--version goes with --build (worker logs are the endpoint's)")
    if build:
        _build_log(endpoint, version, follow, as_json, url, key, project)
        return
    params: dict[str, Any] = {"tail_lines": tail}
    if job:
        params["job"] = job
    with connect(url, key, project) as conn:
        res = conn.request("GET", f"/api/v1/endpoints/{endpoint}/logs", params=params)
        if as_json and not follow:
            print_json(res)
            return
        for w in res["workers"]:
            if w["lines"] and not job:
                out.print(f"== {w['worker']} ==", style="bold")
            for line in w["lines"]:
                sys.stdout.write((line if as_json else render(line)) + "\n")
        sys.stdout.flush()
        offsets = {w["worker"]: w["offset"] for w in res["workers"]}
        while follow:
            time.sleep(1.0)
            params["offsets"] = ",".join(f"{k}:{v}" for k, v in offsets.items())
            res = conn.request("GET", f"/api/v1/endpoints/{endpoint}/logs", params=params)
            for w in res["workers"]:
                for line in w["lines"]:
                    prefix = "" if job or len(res["workers"]) == 1 else f"[{w['worker']}] "
                    sys.stdout.write(prefix + (line if as_json else render(line)) + "\n")
                offsets[w["worker"]] = w["offset"]
            sys.stdout.flush()


def _build_log(
    endpoint: str, version: str | None, follow: bool, as_json: bool, url: str, key: str, project: str
) -> None:
    """The build log of `version`, else the endpoint's pending version (a redeploy building),
    else its current one."""
    with connect(url, key, project) as conn:
        ep = conn.request("GET", f"/api/v1/endpoints/{endpoint}")
        res = conn.request(
            "GET", f"/api/v1/versions/{version or ep['pending_version'] or ep['version']}/build", params={"offset": 0}
        )
        version = res["version"]
        if as_json and not follow:
            print_json(res)
            return
        if res["env"] is None:
            fail(f"version {version} of {ep['name']} has no environment of its own (it declares no requirements)")
        while True:
            for line in res["lines"]:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
            if not follow or res["state"] != "building":
                break
            time.sleep(0.5)
            res = conn.request("GET", f"/api/v1/versions/{version}/build", params={"offset": res["offset"]})
        if res["state"] == "failed" and not as_json:
            err.print(f"the environment of version {version} failed to build", style="red")


def _show_endpoint(ep: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(ep)
        return
    counts = ", ".join(f"{n} {s}" for s, n in ep["workers_by_state"].items() if n and s != "ready") or "none"
    out.print(f"endpoint {ep['name']}  id {ep['endpoint_id']}  state {ep['state']}  version {ep['version']}")
    if ep.get("pending_version"):  # a redeploy builds or starts its first worker; this one serves
        out.print(f"  deploying: version {ep['pending_version']}", style="yellow")
    out.print(f"  workers: {counts}")
    for w in ep["workers"]:
        line = f"    {w['id']}  {w['state']}  {_placement(w)}"
        if not w["local"] or w["version_id"] != ep["version"]:  # started elsewhere, or a redeploy's
            line += f"  version {w['version_id'] or 'any'}"
        out.print(line)
    sc = ep["scaling"]
    memory = f"{sc['memory_mb']} MB memory" if sc["memory_mb"] else "no memory reservation"
    out.print(f"  per worker: {sc['cpus']:g} CPU, {sc['gpus']} GPU, {memory}")
    if ep.get("waiting_for"):
        out.print(f"  waiting: {ep['waiting_for']}", style="yellow")
    if ep.get("autoscaler"):
        a = ep["autoscaler"]
        out.print(
            f"  autoscaler: wants {a['wanted_workers']} workers for {a['running_jobs']} running and "
            f"{a['queued_jobs']} waiting jobs, warm buffer {a['warm_buffer']} ({a['idle_workers']} idle now)"
        )
    if ep.get("rollout"):
        _show_rollout(ep["rollout"])
    out.print(f"  service: {ep['service']['url']}")
    for name, link in ep["urls"].items():
        out.print(f"  {name}: {link}")
    if ep.get("error"):
        out.print(f"  last error: {ep['error']}", style="red")


def _placement(worker: dict[str, Any]) -> str:
    """Where a worker runs: its Ray node and actor, its local process, or started elsewhere."""
    if worker.get("actor_id"):
        return f"node {worker['node'] or '(not placed yet)'}  actor {worker['actor_id']}"
    if worker.get("pid"):
        return f"pid {worker['pid']}"
    return "started elsewhere" if not worker["local"] else ""


@app.command()
def status(
    name: str = typer.Argument(None, help="An endpoint (default: the installation: its replicas and leader)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Show an endpoint: state (with the reason of an ERROR), version, workers by state, URLs;
    without NAME, the installation: store, backend, replicas and which one leads."""
    with connect(url, key, project) as conn:
        if name:
            _show_endpoint(conn.request("GET", f"/api/v1/endpoints/{name}"), as_json)
        else:
            _show_installation(conn.request("GET", "/api/v1/status"), as_json)


def _show_installation(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(st)
        return
    out.print(
        f"Podium {st['version']}  store {st['store']}  backend {st['backend']}  answered by replica {st['replica']}"
    )
    if "sandbox" in st:  # a replica of an older version does not say
        out.print(st["sandbox"]["status"], style=None if st["sandbox"]["on"] else "bold red", soft_wrap=True)
    table = Table("replica", "url", "role", "workers", box=None)
    for r in st["replicas"]:
        table.add_row(
            r["id"],
            r["url"],
            "leader" if r["leader"] else "follower",
            "yes" if r["runs_workers"] else "no (--no-workers)",
        )
    out.print(table)


def _action(action: str, help_text: str) -> None:
    def command(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
        with connect(url, key, project) as conn:
            _show_endpoint(conn.request("POST", f"/api/v1/endpoints/{name}/{action}"), as_json)

    command.__doc__ = help_text
    app.command(action)(command)


_action("stop", "Stop an endpoint: INACTIVE, workers drain and stop, calls answer 503.")
_action("start", "Start a stopped (or failed) endpoint again.")
_action("restart", "Replace every worker of an endpoint (each finishes its job in hand first).")


@app.command()
def rollback(
    name: str,
    version: str = typer.Argument(
        None, help="Version id, or a unique prefix of it (default: the one before the current one)."
    ),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Point an endpoint back at an earlier version, without dropping calls."""
    body = {"version": version} if version else {}
    with connect(url, key, project) as conn:
        _show_endpoint(conn.request("POST", f"/api/v1/endpoints/{name}/rollback", json=body), as_json)


@app.command()
def history(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Every version an endpoint has pointed at, and every step of its canary rollouts (STEP):
    when, by which key (podium: the rollout's guard), with which message."""
    with connect(url, key, project) as conn:
        res = conn.request("GET", f"/api/v1/endpoints/{name}/history")
    if as_json:
        print_json(res)
        return
    table = Table(
        "WHEN", id_column("VERSION", [h["version"] + " (current)" for h in res["history"]]), "STEP", "KEY", "MESSAGE"
    )
    for h in res["history"]:
        mark = " (current)" if h["current"] else " (failed to start)" if h.get("error") else ""
        # A rollout's step; a deploy or rollback otherwise. A step taken by no key: Podium's own.
        step = h.get("action") or "deploy"
        who = h["key_id"] or ("podium" if h.get("action") else "-")
        table.add_row(when(h["at"]), h["version"] + mark, step, who, h["message"] or h.get("error") or "")
    out.print(table)


def _show_rollout(rollout: dict[str, Any]) -> None:
    """Both versions of a canary rollout: share, and calls, failures and p50 lately."""
    guard = rollout.get("max_failure_rate")
    minutes = rollout["window_seconds"] / 60
    out.print(
        f"  rollout: canary at {rollout['percent']} %"
        + (f", aborts past a failure rate of {guard:g}" if guard else ""),
        style="yellow",
    )
    for v in rollout["versions"]:
        p50 = f"{v['p50_ms']} ms" if v["p50_ms"] is not None else "-"
        out.print(
            f"    {v['role']:<8} {v['version']}  {v['percent']:>2} %  last {minutes:g} min: "
            f"{v['calls']} calls, {v['failures']} failed, p50 {p50}"
        )


@app.command()
def rollout(
    name: str = typer.Argument(..., help="Endpoint name or id."),
    version: str = typer.Argument(None, help="A version already deployed (id or prefix): start a rollout of it."),
    percent: int = typer.Option(None, "--percent", help="The canary's share of new calls, 1 to 99."),
    promote: bool = typer.Option(False, "--promote", help="Send every call to the canary; the old version drains."),
    abort: bool = typer.Option(False, "--abort", help="Send every call back to the current version."),
    max_failure_rate: float = typer.Option(
        None, "--max-failure-rate", help="Abort by itself once the canary fails more often (over >= 20 calls)."
    ),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Canary rollouts: NAME VERSION --percent P starts one, NAME --percent P changes its share,
    --promote moves the endpoint to the canary, --abort back to the current version. Without
    options: show the rollout under way."""
    if promote + abort + (percent is not None) > 1:
        fail("give one of --percent, --promote, --abort")
    if version is not None and percent is None:
        fail(f"give the share of calls for version {version}: --percent 10")
    with connect(url, key, project) as conn:
        path = f"/api/v1/endpoints/{name}/rollout"
        if promote or abort:
            ep = conn.request("POST", f"{path}/{'promote' if promote else 'abort'}")
        elif percent is not None:
            body: dict[str, Any] = {"percent": percent}
            if version is not None:
                body["version"] = version
            if max_failure_rate is not None:
                body["max_failure_rate"] = max_failure_rate
            ep = conn.request("PUT", path, json=body)
        else:
            ep = conn.request("GET", f"/api/v1/endpoints/{name}")
    if not as_json and not ep.get("rollout"):
        done = "canary promoted" if promote else "rollout aborted" if abort else "no rollout under way"
        out.print(f"endpoint {ep['name']}: {done}; version {ep['version']} takes every call")
        return
    _show_endpoint(ep, as_json)


@versions_app.command("ls")
def versions_ls(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """The versions an endpoint has run, newest first."""
    with connect(url, key, project) as conn:
        res = conn.request("GET", f"/api/v1/endpoints/{name}/versions")
    if as_json:
        print_json(res)
        return
    table = Table(
        id_column("VERSION", [v["id"] + " (current)" for v in res["versions"]]), "CREATED", "RUNTIME", "SIZE", "MESSAGE"
    )
    for v in res["versions"]:
        mark = " (current)" if v["current"] else " (failed to start)" if v.get("start_error") else ""
        table.add_row(
            v["id"] + mark,
            when(v["created_at"]),
            v["runtime"],
            f"{v['size'] / 1024:.1f} KiB",
            v["message"] or "",
        )
    out.print(table)


@versions_app.command("show")
def versions_show(version: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """A version (an id, or a unique prefix of it): service, routes, who deployed it, the build
    of its environment (state and error), and its files."""
    with connect(url, key, project) as conn:
        v = conn.request("GET", f"/api/v1/versions/{version}")
    if as_json:
        print_json(v)
        return
    out.print(
        f"version {v['id']}  service {v['service']}  runtime {v['runtime']}  "
        f"created {when(v['created_at'])} by {v['created_by'] or '-'}"
    )
    if v.get("message"):
        out.print(f"  {v['message']}")
    if v.get("start_error"):
        out.print(f"  failed to start: {v['start_error']}", soft_wrap=True)
    for r in v["routes"]:
        args = ", ".join(p["name"] for p in r["params"])
        out.print(f"  route {r['path']}({args}){' streaming' if r['streaming'] else ''}")
    if v["build_state"] is not None:  # it has an environment of its own (it declares requirements)
        out.print(f"  environment {v['env_hash'][:12]}: {v['build_state']}")
        if v["build_error"]:
            out.print(_indent(v["build_error"]), style="red")
    for f in v.get("files", []):
        out.print(f"  file {f['name']}  {f['size']} B")


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())


@endpoints_app.command("rm")
def endpoints_rm(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Drain and remove an endpoint; its jobs stay readable until their retention ends."""
    with connect(url, key, project) as conn:
        res = conn.request("DELETE", f"/api/v1/endpoints/{name}")
    if as_json:
        print_json(res)
        return
    out.print(f"removed {res['name']} ({res['endpoint_id']}); {res['cancelled_jobs']} queued jobs cancelled")


@app.command()
def scale(
    name: str,
    min_workers: int = typer.Option(None, "--min", help="Workers kept warm."),
    max_workers: int = typer.Option(None, "--max", help="Most workers at once."),
    idle_timeout: float = typer.Option(None, help="Seconds an idle worker lives."),
    concurrency: int = typer.Option(None, help="Jobs at once per worker."),
    scaler: str = typer.Option(None, help="request-count or queue-delay."),
    target: float = typer.Option(None, help="Jobs per worker (request-count) or seconds (queue-delay)."),
    queue_cap: int = typer.Option(None, help="Waiting jobs past which /run answers 429."),
    max_jobs: int = typer.Option(None, help="Recycle a worker after this many jobs (0: never)."),
    max_memory: int = typer.Option(None, help="Recycle a worker past this many MB (0: never)."),
    warm_buffer: int = typer.Option(None, help="Idle workers kept beyond the jobs running (within --max)."),
    cpus: float = typer.Option(None, help="CPUs per worker (may be fractional)."),
    gpus: int = typer.Option(None, help="GPUs per worker (whole devices, each worker its own)."),
    memory_mb: int = typer.Option(None, "--memory-mb", help="Memory per worker in MB (0: no reservation)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Change an endpoint's scaling settings and resources, without a redeploy (new resources
    replace its workers, each after its job in hand)."""
    changes = {
        k: v
        for k, v in {
            "min_workers": min_workers,
            "max_workers": max_workers,
            "idle_timeout": idle_timeout,
            "concurrency": concurrency,
            "scaler": scaler,
            "target": target,
            "queue_cap": queue_cap,
            "max_jobs_per_worker": max_jobs,
            "max_worker_memory_mb": max_memory,
            "warm_buffer": warm_buffer,
            "cpus": cpus,
            "gpus": gpus,
            "memory_mb": memory_mb,
        }.items()
        if v is not None
    }
    with connect(url, key, project) as conn:
        ep = conn.request("PATCH", f"/api/v1/endpoints/{name}/scaling", json=changes)
    if as_json:
        print_json(ep)
        return
    out.print("  ".join(f"{k} {_setting(k, v, ep['scaling'])}" for k, v in ep["scaling"].items()), soft_wrap=True)


def _setting(name: str, value: Any, scaling: dict[str, Any]) -> str:
    """A setting as `podium scale` prints it: an unset target says what stands in for it."""
    if name == "target" and value is None:
        from podium.scaling.policy import DEFAULT_DELAY

        if scaling["scaler"] == "queue-delay":
            return f"{DEFAULT_DELAY:g} s (default)"
        return f"{scaling['concurrency']} (default: the concurrency)"
    return setting(value)


secrets_app = typer.Typer(help="Endpoint secrets (encrypted at rest, given to workers as env).", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


@secrets_app.command("set")
def secrets_set(
    name: str,
    pairs: list[str] = typer.Argument(..., help="KEY=VALUE ..."),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Set secrets of endpoint NAME (its workers are replaced to see them)."""
    values = {}
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if not sep or not k:
            raise typer.BadParameter(f"expected KEY=VALUE, got {k!r}=...")
        values[k] = v
    with connect(url, key, project) as conn:
        res = conn.request("PUT", f"/api/v1/endpoints/{name}/secrets", json=values)
    out.print(f"{res['name']}: " + ", ".join(s["name"] for s in res["secrets"]))


@secrets_app.command("ls")
def secrets_ls(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Names of endpoint NAME's secrets (values are never shown)."""
    with connect(url, key, project) as conn:
        res = conn.request("GET", f"/api/v1/endpoints/{name}/secrets")
    if as_json:
        print_json(res)
        return
    for s in res["secrets"]:
        out.print(f"{s['name']}  (set {when(s['updated_at'])})")


@secrets_app.command("rm")
def secrets_rm(name: str, secret: str, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Remove one secret of endpoint NAME."""
    with connect(url, key, project) as conn:
        conn.request("DELETE", f"/api/v1/endpoints/{name}/secrets/{secret}")
    out.print(f"removed {secret}")
