"""How many workers an endpoint should have: the scaler policies, as plain functions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

#: queue-delay's default target: seconds the oldest job may wait before another worker starts.
DEFAULT_DELAY = 4.0


@dataclass(frozen=True)
class Load:
    """What an endpoint is facing right now."""

    queued: int  #: waiting jobs that may start a worker (low-priority ones may not)
    oldest_wait: float  #: seconds the oldest of them has waited (0 when none)
    running: int  #: jobs its current workers hold
    workers: int  #: its current workers (not counting draining ones)
    busy: int  #: of which holding at least one job


def desired(settings: Any, load: Load, *, creating: bool) -> int:
    """Workers wanted, between min_workers and max_workers (at least one while CREATING: it
    proves the version loads).

    request-count: ceil((waiting + running) / target), target defaulting to `concurrency`.
    queue-delay: keep the busy workers; while jobs wait, keep every worker and add one when the
    oldest has waited longer than `target` seconds (one at once, at least one when there is none).
    Either way `warm_buffer` more are kept: idle workers a burst finds ready, beyond the demand.
    """
    if settings["scaler"] == "queue-delay":
        target = settings["target"] or DEFAULT_DELAY
        need = load.busy
        if load.queued:
            need = max(need, load.workers, 1)
            if load.oldest_wait > target and load.workers > 0:
                need = load.workers + 1
    else:
        target = settings["target"] or settings["concurrency"]
        need = math.ceil((load.queued + load.running) / max(target, 1e-9))
    need += int(settings.get("warm_buffer") or 0)
    need = max(int(settings["min_workers"]), min(int(settings["max_workers"]), need))
    return max(need, 1) if creating else need
