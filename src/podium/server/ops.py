"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from podium.server.responses import JSONAnswer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

from podium._version import __version__
from podium.server.runtime import Runtime

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> JSONAnswer:
    """Liveness: no key needed."""
    return JSONAnswer({"status": "ok", "version": __version__})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Queue depth and workers per endpoint and state, read from the live state at scrape time."""
    rt: Runtime = request.app.state.runtime
    reg = CollectorRegistry()
    queued = Gauge("podium_jobs_queued", "Jobs waiting for a worker", ["endpoint"], registry=reg)
    workers = Gauge("podium_workers", "Workers by state", ["endpoint", "state"], registry=reg)
    for ep, (n, _) in (await rt.queue.queued_by_endpoint()).items():
        queued.labels(ep).set(n)
    for w in rt.registry.workers.values():
        workers.labels(w.endpoint_id, w.state.value).inc()
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
