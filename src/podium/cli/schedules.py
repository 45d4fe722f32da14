"""Schedules: `schedules add|ls|pause|resume|rm`, a schedule addressed as `NAME ROUTE`."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, fail, out, print_json
from podium.client import schedules as api
from podium.timetable import InvalidSchedule

schedules_app = typer.Typer(
    help="Schedules: routes that run by themselves (cron or a period), addressed as NAME ROUTE.",
    no_args_is_help=True,
)
app.add_typer(schedules_app, name="schedules")

ROUTE = typer.Argument(..., help="The route, like /refresh (/ is the endpoint's default route).")


@schedules_app.command("add")
def schedules_add(
    name: str,
    route: str = ROUTE,
    cron: str = typer.Option(None, "--cron", help='A cron expression, like "*/15 * * * *".'),
    tz: str = typer.Option("UTC", "--tz", help="The time zone the cron expression is read in, like Europe/Rome."),
    every: str = typer.Option(None, "--every", help="A period instead of --cron, like 30s, 5m or 2h."),
    input_json: str = typer.Option(None, "--input", help="The job input, as JSON (default: the route's defaults)."),
    overlap: bool = typer.Option(False, "--overlap", help="Fire even while the previous fire's job still runs."),
    webhook: str = typer.Option(None, "--webhook", help="Where each fire's job posts its final status (signed)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Run ROUTE of endpoint NAME by itself: on --cron EXPR [--tz TZ], or --every 30s."""
    if (cron is None) == (every is None):
        fail("give either --cron EXPR or --every PERIOD")
    try:
        payload = None if input_json is None else json.loads(input_json)
        period = None if every is None else api.seconds(every)
    except json.JSONDecodeError as exc:
        fail(f"--input is not JSON: {exc}")
    except InvalidSchedule as exc:
        fail(str(exc))
    with connect(url, key, project) as conn:
        added = api.add_schedule(
            conn, name, route, cron=cron, every=period, timezone=tz, input=payload, overlap=overlap, webhook=webhook
        )
    if as_json:
        print_json(added)
        return
    out.print(f"{added['endpoint']} {added['route']} runs {_when(added)}; next at {added['next_fire_at']}")


@schedules_app.command("ls")
def schedules_ls(
    name: str = typer.Argument(None, help="An endpoint (default: every endpoint of the project)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Schedules: when each fires next and last fired, its last job and how that job stands."""
    with connect(url, key, project) as conn:
        found = api.list_schedules(conn, name)
    if as_json:
        print_json(found)
        return
    table = Table("ENDPOINT", "ROUTE", "WHEN", "STATE", "NEXT FIRE", "LAST FIRE", "LAST JOB", "SKIPPED")
    for s in found:
        job = s["last_job"]
        table.add_row(
            s["endpoint"],
            s["route"],
            _when(s) + (" (code)" if s["source"] == "code" else ""),
            "paused" if s["paused"] else "active",
            s["next_fire_at"],
            s["last_fire_at"] or "-",
            f"{job['id']} {job['status'] or 'gone'}" if job else "-",
            str(s["skipped"]),
        )
    out.print(table)


@schedules_app.command("pause")
def schedules_pause(name: str, route: str = ROUTE, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Stop firing until resumed."""
    with connect(url, key, project) as conn:
        api.change_schedule(conn, name, route, "pause")
    out.print(f"paused {name} {route}")


@schedules_app.command("resume")
def schedules_resume(name: str, route: str = ROUTE, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Fire again, from the next tick after now (ticks missed while paused are not caught up)."""
    with connect(url, key, project) as conn:
        s = api.change_schedule(conn, name, route, "resume")
    out.print(f"resumed {name} {route}; next at {s['next_fire_at']}")


@schedules_app.command("rm")
def schedules_rm(name: str, route: str = ROUTE, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Remove a schedule added here (one declared in code goes when the code no longer declares it)."""
    with connect(url, key, project) as conn:
        api.remove_schedule(conn, name, route)
    out.print(f"removed the schedule of {name} {route}")


def _when(s: dict[str, Any]) -> str:
    if "cron" in s:
        return f"at {s['cron']} ({s['timezone']})"
    return f"every {s['every']:g}s"
