"""A worker's CPUs: thread pools sized to its reservation, and on the local backend its own cores.

numpy, scikit-learn and torch size their thread pools to the machine's cores: two workers of
`cpus=1` on an 8-core machine would each start eight threads and fight over the cores. A worker
reserving N CPUs gets `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS` and `MKL_NUM_THREADS` = N (a
fractional reservation rounds up; a variable the endpoint's secrets set wins). On the local
backend it is also pinned to N cores when the machine has that many (`CpuPool`), workers spread
over the least-used cores; the worker pins itself at start (`podium.worker.runtime.pin_cores`),
so spawned, forked and boxed workers are pinned alike.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence

#: The thread-pool sizes BLAS and OpenMP libraries read at import.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def whole(cpus: float) -> int:
    """The threads (and cores) a reservation of `cpus` stands for: at least one."""
    return max(1, math.ceil(cpus))


def thread_env(cpus: float, secrets: Mapping[str, str]) -> dict[str, str]:
    """The thread-pool variables for a worker reserving `cpus`, but for those `secrets` set."""
    return {name: str(whole(cpus)) for name in THREAD_VARS if name not in secrets}


class CpuPool:
    """The machine's cores, lent to local workers; each worker takes the least-used ones.

    Parameters:
        cores: the cores workers may be pinned to (the server's own affinity).
    """

    def __init__(self, cores: Sequence[int]) -> None:
        self.cores = tuple(sorted(cores))
        self._held: dict[str, tuple[int, ...]] = {}
        self._load: Counter[int] = Counter()

    def take(self, worker_id: str, cpus: float) -> tuple[int, ...]:
        """The cores for a worker reserving `cpus`; () when the machine has fewer (not pinned)."""
        n = whole(cpus)
        if n > len(self.cores):
            return ()
        chosen = tuple(sorted(sorted(self.cores, key=lambda c: self._load[c])[:n]))
        self._load.update(chosen)
        self._held[worker_id] = chosen
        return chosen

    def release(self, worker_id: str) -> None:
        self._load.subtract(self._held.pop(worker_id, ()))


def machine_cores() -> tuple[int, ...]:
    """The cores this process may run on."""
    return tuple(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else ()
