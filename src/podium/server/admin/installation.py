"""The installation as a whole: its replicas, which one leads, and the store they share."""

from __future__ import annotations

from fastapi import APIRouter, Request

from podium._version import __version__
from podium.server.admin.common import admin_caller
from podium.server.responses import JSONAnswer

router = APIRouter(prefix="/api/v1", tags=["admin"])


@router.get("/status")
async def installation_status(request: Request) -> JSONAnswer:
    """Which replica answered, which leads, every live replica; `podium status` without a name."""
    rt, _ = await admin_caller(request, "read")
    replicas = await rt.cluster.live(rt.clock.now())
    return JSONAnswer(
        {
            "version": __version__,
            "store": "sqlite" if rt.store.sqlite else "postgresql",
            "replica": rt.replica_id,
            "leading": rt.leadership.leading,
            "leader": next((r.id for r in replicas if r.leader), None),
            "replicas": [r.__dict__ for r in replicas],
            "backend": rt.scaler.backend_name,
            "sandbox": {"on": rt.scaler.backend.sandbox.on, "status": rt.scaler.backend.sandbox.status},
        }
    )
