"""What one worker asks of the machine or cluster it runs on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resources:
    """Per worker: CPUs (may be fractional), whole GPUs, and memory in MB (0: no reservation)."""

    cpus: float = 1.0
    gpus: int = 0
    memory_mb: int = 0

    @classmethod
    def of(cls, settings: Mapping[Any, Any]) -> Resources:
        """The resources of an endpoint row, or of a version's config (the same keys)."""
        return cls(cpus=float(settings["cpus"]), gpus=int(settings["gpus"]), memory_mb=int(settings["memory_mb"]))
