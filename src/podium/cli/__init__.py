"""The `podium` command. Every command that prints data takes --json; errors are one line on
stderr and a non-zero exit."""

from podium.cli import deploying, endpoints, envs, jobs, keys, schedules, server, usage, volumes
from podium.cli.common import app, main

#: Importing these modules registers their commands on `app`.
COMMAND_MODULES = (deploying, endpoints, envs, jobs, keys, schedules, server, usage, volumes)

__all__ = ["app", "main"]
