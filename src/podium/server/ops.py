"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from podium._version import __version__
from podium.core.access import METRICS
from podium.server.auth import caller
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz() -> JSONAnswer:
    """Liveness: no key needed."""
    return JSONAnswer({"status": "ok", "version": __version__})


@router.get("/readyz")
async def readyz(request: Request) -> JSONAnswer:
    """Readiness: 503 while this replica cannot reach its store (a load balancer sends it nothing
    then). No key needed."""
    rt: Runtime = request.app.state.runtime
    if not await rt.store_reachable():
        return JSONAnswer({"status": "unavailable", "reason": "the store is unreachable"}, status_code=503)
    return JSONAnswer({"status": "ready", "replica": rt.replica_id, "leader": rt.leadership.leading})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus metrics: counted events, plus queue depth and workers read at scrape time. They
    name every project's endpoints: the operator key or a metrics key (`podium keys create --role
    metrics`, sent as a bearer token), unless PODIUM_METRICS_PUBLIC=1."""
    rt: Runtime = request.app.state.runtime
    if not rt.settings.metrics_public:
        await caller(request, METRICS)
    m = rt.metrics
    for gauge in (m.queued, m.oldest, m.workers):
        gauge.clear()
    for ep, (n, oldest) in (await rt.queue.queued_by_endpoint()).items():
        m.queued.labels(ep).set(n)
        m.oldest.labels(ep).set(oldest)
    for w in await rt.pool.view():
        m.workers.labels(w["endpoint_id"], w["state"].lower()).inc()
    m.leader.set(1 if rt.leadership.leading else 0)
    return Response(m.render(), media_type=CONTENT_TYPE_LATEST)
