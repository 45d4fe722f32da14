"""Schedules through the admin API, for the CLI and `Deployment`: the request bodies and paths.

A schedule is addressed by its endpoint and route; the route `/` (the endpoint's default route,
a RunPod worker file's handler) is written `-` in the API's paths.
"""

from __future__ import annotations

from typing import Any

from podium.client.http import Connection
from podium.timetable import parse_duration


def schedule_path(endpoint: str, route: str | None = None) -> str:
    base = f"/api/v1/endpoints/{endpoint}/schedules"
    if route is None:
        return base
    return f"{base}/{route.strip('/') or '-'}"


def seconds(every: float | str) -> float:
    """A period given as seconds or as a duration like `30s`, `5m`, `2h`."""
    return parse_duration(every) if isinstance(every, str) else float(every)


def list_schedules(conn: Connection, endpoint: str | None = None) -> list[dict[str, Any]]:
    path = "/api/v1/schedules" if endpoint is None else schedule_path(endpoint)
    found: list[dict[str, Any]] = conn.request("GET", path)["schedules"]
    return found


def add_schedule(
    conn: Connection,
    endpoint: str,
    route: str,
    *,
    cron: str | None = None,
    every: float | str | None = None,
    timezone: str = "UTC",
    input: Any = None,
    overlap: bool = False,
    webhook: str | None = None,
) -> dict[str, Any]:
    """Run `route` of `endpoint` by itself: on a cron expression (read in `timezone`) or every
    `every` seconds (or a duration like `30s`); `input` as its job input (default: the route's
    defaults); each fire's job posts its final status to `webhook`, if given."""
    body = {
        "route": route,
        "cron": cron,
        "every": None if every is None else seconds(every),
        "timezone": timezone,
        "input": input,
        "overlap": overlap,
        "webhook": webhook,
    }
    added: dict[str, Any] = conn.request("POST", schedule_path(endpoint), json=body)
    return added


def change_schedule(conn: Connection, endpoint: str, route: str, action: str) -> dict[str, Any]:
    """`pause` or `resume` a schedule; its view comes back."""
    changed: dict[str, Any] = conn.request("POST", f"{schedule_path(endpoint, route)}/{action}")
    return changed


def remove_schedule(conn: Connection, endpoint: str, route: str) -> None:
    conn.request("DELETE", schedule_path(endpoint, route))
