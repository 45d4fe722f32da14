"""What one worker asks of the machine or cluster it runs on."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import RowMapping


@dataclass(frozen=True)
class Resources:
    """Per worker: CPUs (may be fractional), whole GPUs, and memory in MB (0: no reservation)."""

    cpus: float = 1.0
    gpus: int = 0
    memory_mb: int = 0

    @classmethod
    def of(cls, endpoint: RowMapping) -> Resources:
        """An endpoint row's resources."""
        return cls(cpus=float(endpoint["cpus"]), gpus=int(endpoint["gpus"]), memory_mb=int(endpoint["memory_mb"]))
