"""Jobs: `jobs show`, `jobs ls` (the dead-letter view with --status FAILED), `jobs retry`,
`jobs redeliver`."""

from __future__ import annotations

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, connect, err, id_column, jobs_app, out, print_json, when
from podium.errors import PodiumError


@jobs_app.command("show")
def show(
    job_id: str = typer.Argument(..., help="Job id, or a unique prefix of it."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Show a job: status, timings, output or error."""
    with connect(url, key, project) as conn:
        job = conn.request("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    out.print(
        f"job {job['id']}  {job['status']}  route {job['route']}  attempt {job['attempt']}/"
        f"{job['max_attempts']}  delay {job['delay_ms']} ms  execution {job['execution_ms']} ms",
        soft_wrap=True,
    )
    if job.get("waiting"):
        wait = job["waiting"]
        out.print(f"waiting: {wait['reason']} since {when(wait['since'])}: {wait['detail']}", style="yellow")
    if job["status"] == "COMPLETED":
        out.print_json(data=job["output"])
    elif job["error"]:
        out.print(job["error"], style="red")
        if job["error_info"] and job["error_info"].get("traceback"):
            out.print(job["error_info"]["traceback"])
    for hook in job.get("webhooks", []):
        out.print(f"webhook {hook['url']}  {hook['state']}  tries {hook['tries']}")
        for a in hook["attempts"]:
            result = a.get("status_code") or a.get("error")
            out.print(f"  attempt at {when(a.get('at'))}: {result} ({a.get('ms', 0)} ms)")


@jobs_app.command("redeliver")
def redeliver(
    job_id: str = typer.Argument(..., help="Job id, or a unique prefix of it."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Send an ended job's final status to its webhook again (signed; one more attempt)."""
    with connect(url, key, project) as conn:
        hook = conn.request("POST", f"/api/v1/jobs/{job_id}/redeliver")
    if as_json:
        print_json(hook)
        return
    last = hook["attempts"][-1] if hook["attempts"] else {}
    result = last.get("status_code") or last.get("error") or "not sent yet"
    out.print(f"webhook {hook['url']}  {hook['state']}  tries {hook['tries']}  last attempt: {result}")
    if hook["state"] == "failed":
        raise typer.Exit(1)


@jobs_app.command("ls")
def ls(
    status: str = typer.Option(None, help="IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT."),
    endpoint: str = typer.Option(None, help="Only this endpoint's jobs."),
    limit: int = typer.Option(100, help="At most this many, newest first."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """List jobs, newest first (`--status FAILED`: what needs a look, or a retry)."""
    params = {k: v for k, v in {"status": status, "endpoint": endpoint, "limit": limit}.items() if v is not None}
    with connect(url, key, project) as conn:
        jobs = conn.request("GET", "/api/v1/jobs", params=params)["jobs"]
    if as_json:
        print_json(jobs)
        return
    table = Table(id_column("JOB", [j["id"] for j in jobs]), "ENDPOINT", "STATUS", "ATTEMPT", "CREATED", "ERROR")
    for j in jobs:
        table.add_row(
            j["id"],
            j["endpoint"] or j["endpoint_id"],  # a removed endpoint's name is gone
            j["status"],
            f"{j['attempt']}/{j['max_attempts']}",
            when(j["created_at"]),
            (j["error"] or "").splitlines()[0][:80] if j["error"] else "",
        )
    out.print(table)


@jobs_app.command("retry")
def retry(
    job_ids: list[str] = typer.Argument(..., help="Job ids, or unique prefixes of them."),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Queue FAILED or TIMED_OUT jobs again, under the same ids."""
    failures = 0
    with connect(url, key, project) as conn:
        for job_id in job_ids:
            try:
                res = conn.request("POST", f"/api/v1/jobs/{job_id}/retry")
                out.print(f"{res['id']} IN_QUEUE")
            except PodiumError as exc:
                failures += 1
                err.print(f"{job_id}: {exc}", style="red")
    if failures:
        raise typer.Exit(1)
