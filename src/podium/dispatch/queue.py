"""The job queue: enqueue, take under a lease, heartbeat, finish, and recover lost leases.

Every state change is one short transaction followed by a wake-up of whoever waits on it: workers
long-polling an endpoint (`ep:<id>`) and callers waiting on a job (`job:<id>`). Taking is one atomic
statement (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serialises writers), and every take counts
as an attempt, so a job that kills its worker ends FAILED instead of looping.
"""

from __future__ import annotations

from podium.dispatch.counts import QueueCounts
from podium.dispatch.maintenance import Maintenance
from podium.dispatch.submit import CallerSide
from podium.dispatch.work import WorkerSide


class JobQueue(CallerSide, WorkerSide, QueueCounts, Maintenance):
    """Job-queue semantics on top of the store (constructed as `QueueBase` says).

    One object over one shared state (QueueBase: the store, the notifier, the in-memory hand-off
    ledger), its methods grouped by who calls them, a module each: callers (`submit`), workers
    (`work`), the scalers' counts (`counts`) and the leader's upkeep (`maintenance`).
    """
