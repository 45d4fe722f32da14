"""The admin API under /api/v1, one module per resource; `ROUTERS` are mounted by the app."""

from podium.server.admin import (
    deploys,
    endpoints,
    installation,
    jobs,
    keys,
    rollouts,
    schedules,
    usage,
    versions,
    volumes,
)

#: Each resource's router (all under /api/v1).
ROUTERS = (
    deploys.router,
    endpoints.router,
    schedules.router,
    rollouts.router,
    jobs.router,
    versions.router,
    keys.router,
    installation.router,
    volumes.router,
    usage.router,
)
