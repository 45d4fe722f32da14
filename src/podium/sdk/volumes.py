"""`podium.volume(name)`: where a worker finds one of its service's volumes."""

from __future__ import annotations

import os
from pathlib import Path

from podium.errors import ServiceDefinitionError
from podium.names import volume_env


def volume(name: str) -> Path:
    """The directory of the volume `name` as this worker sees it (the path the service asked for
    in a sandbox, the host's directory without one). Only inside a worker whose service names it
    (`@podium.service(volumes={name: path})`); elsewhere a clear error."""
    where = os.environ.get(volume_env(name))
    if not where:
        raise ServiceDefinitionError(
            f"no volume {name!r} here: name it in the service (volumes={{{name!r}: '/path'}}); "
            "volumes are given to workers only"
        )
    return Path(where)
