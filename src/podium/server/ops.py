"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from podium._version import __version__
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> JSONAnswer:
    """Liveness: no key needed."""
    return JSONAnswer({"status": "ok", "version": __version__})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics: counted events, plus queue depth and workers read at scrape time."""
    rt: Runtime = request.app.state.runtime
    m = rt.metrics
    for gauge in (m.queued, m.oldest, m.workers):
        gauge.clear()
    for ep, (n, oldest) in (await rt.queue.queued_by_endpoint()).items():
        m.queued.labels(ep).set(n)
        m.oldest.labels(ep).set(oldest)
    for w in rt.pool.workers.values():
        m.workers.labels(w.endpoint_id, w.state.value.lower()).inc()
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
