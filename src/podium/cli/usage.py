"""`podium usage`: what a project used, for charging teams back."""

from __future__ import annotations

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, out, print_json

#: What a row is: an endpoint, an endpoint's version, or a day.
GROUPS = ("endpoint", "version", "day")


@app.command()
def usage(
    since: str = typer.Option("30d", help="How far back: 30d, 12h, 90m."),
    by: str = typer.Option("endpoint", help="One row per endpoint, version (of each endpoint) or day (UTC)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Jobs, execution seconds and reserved worker-seconds (CPU, GPU, memory) of a project."""
    if by not in GROUPS:
        raise typer.BadParameter("must be endpoint, version or day", param_hint="--by")
    with connect(url, key, project) as conn:
        report = conn.request("GET", "/api/v1/usage", params={"since": since, "by": by})
    if as_json:
        print_json(report["rows"])
        return
    first = {"endpoint": ["ENDPOINT"], "version": ["ENDPOINT", "VERSION"], "day": ["DAY"]}[by]
    table = Table(
        *first, "JOBS", "EXECUTION S", "CPU S", "GPU S", "MEMORY MB·S", title=f"{report['project']}, last {since}"
    )
    for r in report["rows"]:
        keys = {
            "endpoint": [r.get("endpoint")],
            "version": [r.get("endpoint"), r.get("version")],
            "day": [r.get("day")],
        }
        ws = r["worker_seconds"]
        table.add_row(
            *[str(k) for k in keys[by]],
            str(r["jobs"]),
            f"{r['execution_seconds']:.1f}",
            f"{ws['cpu']:.1f}",
            f"{ws['gpu']:.1f}",
            f"{ws['memory_mb']:.0f}",
        )
    out.print(table)
