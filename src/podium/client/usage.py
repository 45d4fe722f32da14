"""A project's usage, for charging teams back (`podium.usage()`, like `podium usage`)."""

from __future__ import annotations

from typing import Any, Literal

from podium.client.http import Connection


def usage(
    since: str = "30d",
    by: Literal["endpoint", "version", "day"] = "endpoint",
    *,
    url: str | None = None,
    api_key: str | None = None,
    project: str | None = None,
) -> list[dict[str, Any]]:
    """The project's usage over the last `since` (30d, 12h, ...): one row per endpoint, per
    endpoint and version, or per day, each with `jobs`, `execution_seconds` and
    `worker_seconds` (`cpu`, `gpu`, `memory_mb`). URL and key as for the CLI."""
    with Connection(url, api_key, project=project) as conn:
        report = conn.request("GET", "/api/v1/usage", params={"since": since, "by": by})
    return list(report["rows"])
