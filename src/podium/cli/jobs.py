"""Jobs: `jobs show`."""

from __future__ import annotations

from podium.cli.common import JSON, KEY, URL, connect, jobs_app, out, print_json, when


@jobs_app.command("show")
def show(job_id: str, as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Show a job: status, timings, output or error."""
    with connect(url, key) as conn:
        job = conn.request("GET", f"/api/v1/jobs/{job_id}")
    if as_json:
        print_json(job)
        return
    out.print(f"job {job['id']}  {job['status']}  route {job['route']}  attempt {job['attempt']}/"
              f"{job['max_attempts']}  delay {job['delay_ms']} ms  execution {job['execution_ms']} ms", soft_wrap=True)
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
