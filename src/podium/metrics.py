"""What an operator watches Podium by, in Prometheus form (GET /metrics).

Events are counted where they happen (jobs ending, cold starts, webhook attempts, HTTP requests);
levels (queue depth, workers by state) are read from the live state at scrape time. One registry
per server, so servers in one process (tests) do not mix their numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

#: Seconds; wide enough for a cached handler (ms) and a model load (minutes).
TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

#: Calls per batch: powers of two up to the largest batch_size.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def surface(path: str) -> str:
    """Which wire surface a request path belongs to (a label with few values)."""
    parts = path.strip("/").split("/")
    head = parts[0] if parts else ""
    if head in ("healthz", "metrics", "docs", "openapi.json"):
        return "ops"
    if head == "fn" or path.startswith("/api/v2/"):
        return "covalent"
    if head == "api":
        return "admin"
    if path.startswith(("/v1/pipeline/", "/v2/endpoint/run")):
        return "laminar"
    if head == "v2" and len(parts) >= 3 and parts[2] == "openai":
        return "openai"
    if head == "v2" and len(parts) >= 3:
        return (
            "worker"
            if parts[2]
            in ("job-take", "job-take-batch", "job-stop", "job-done", "job-done-batch", "job-stream", "ping")
            else "runpod"
        )
    return "routes"


class Counted(Protocol):
    """What the store counts of its own work (podium.store.engine.Store)."""

    flushes: int
    round_trips: int


class _StoreCounters(Collector):
    """The store's counters, read at scrape time."""

    def __init__(self, store: Counted) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "podium_store_flushes",
            "Durable commits: each returned once on disk (SQLite: WAL fsyncs, one covering the commits "
            "before it; PostgreSQL: commits that waited for their WAL flush)",
            value=self.store.flushes,
        )
        yield CounterMetricFamily(
            "podium_store_round_trips", "Exchanges with the database server (PostgreSQL)", value=self.store.round_trips
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.submitted = Counter("podium_jobs_submitted", "Jobs accepted", ["endpoint", "kind"], registry=r)
        self.ended = Counter(
            "podium_jobs_ended", "Jobs that reached a final status", ["endpoint", "status"], registry=r
        )
        self.delay = Histogram(
            "podium_job_delay_seconds",
            "Time from submission to a worker taking it",
            ["endpoint"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.execution = Histogram(
            "podium_job_execution_seconds",
            "Time a job ran on its worker",
            ["endpoint"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.cold_starts = Counter(
            "podium_cold_starts", "Workers that started and became ready", ["endpoint"], registry=r
        )
        self.start_to_ready = Histogram(
            "podium_worker_start_seconds",
            "Worker start to ready (cold start)",
            ["endpoint"],
            buckets=TIME_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "podium_webhook_attempts", "Webhook delivery attempts by result", ["result"], registry=r
        )
        self.http = Counter(
            "podium_http_requests", "HTTP requests by surface and status", ["surface", "method", "status"], registry=r
        )
        self.queued = Gauge("podium_jobs_queued", "Jobs waiting for a worker", ["endpoint"], registry=r)
        self.oldest = Gauge(
            "podium_queue_oldest_wait_seconds", "How long the oldest waiting job has waited", ["endpoint"], registry=r
        )
        self.workers = Gauge(
            "podium_workers",
            "Workers of the installation by state (every replica reports all)",
            ["endpoint", "state"],
            registry=r,
        )
        self.batch_size = Histogram(
            "podium_batch_size",
            "Calls per batch a batched route ran",
            ["endpoint"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.worker_seconds = Counter(
            "podium_worker_seconds",
            "Reserved worker-seconds by resource (cpu: cores x s, gpu: GPUs x s, memory_mb: MB x s), "
            "counted by the leading replica at each usage roll-up",
            ["project", "endpoint", "resource"],
            registry=r,
        )
        self.leader = Gauge(
            "podium_replica_leader", "1 on the replica that leads the installation, 0 on others", registry=r
        )

        # The call path's series, looked up once per label set: `labels()` takes a lock and
        # checks its arguments every time, six times per job.
        self.request = lru_cache(maxsize=4096)(self.http.labels)
        self._submitted = lru_cache(maxsize=4096)(self.submitted.labels)
        self._ended = lru_cache(maxsize=4096)(self.ended.labels)
        self._delay = lru_cache(maxsize=4096)(self.delay.labels)
        self._execution = lru_cache(maxsize=4096)(self.execution.labels)
        self._batch_size = lru_cache(maxsize=4096)(self.batch_size.labels)

    def count_store(self, store: Counted) -> None:
        """Show the store's flushes and round trips."""
        self.registry.register(_StoreCounters(store))

    def job_submitted(self, endpoint: str, kind: str) -> None:
        self._submitted(endpoint, kind).inc()

    def job_ended(self, endpoint: str, status: str, delay_ms: int | None, execution_ms: int | None) -> None:
        self._ended(endpoint, status).inc()
        if delay_ms is not None:
            self._delay(endpoint).observe(delay_ms / 1000)
        if execution_ms is not None:
            self._execution(endpoint).observe(execution_ms / 1000)

    def batch_formed(self, endpoint: str, size: int) -> None:
        self._batch_size(endpoint).observe(size)

    def render(self) -> bytes:
        return generate_latest(self.registry)
