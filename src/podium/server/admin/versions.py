"""Versions: their record, build log and bundle (readable by the project's keys and its workers)."""

from __future__ import annotations

import zipfile
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from podium.server.admin.common import read_from, version_by_ref
from podium.server.auth import caller, runtime
from podium.server.errors import not_found
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime
from podium.store.records import Endpoint, Version

router = APIRouter(prefix="/api/v1", tags=["admin"])


async def _version_for(request: Request, version_id: str) -> tuple[Runtime, Version]:
    """Versions are readable by users of the project; a key bound to one endpoint (its workers'
    tokens, a Covalent inference key) reads the version that endpoint runs only, the one a
    deploy of it waits for (whose first worker proves it starts), or its canary's. A unique
    prefix of an id stands for it."""
    rt = runtime(request)
    principal = await caller(request, None, scoped=True)
    version = await version_by_ref(rt, principal.project_id, version_id)
    if principal.endpoint_id is not None:
        ep = await rt.catalog.get_endpoint(principal.project_id, principal.endpoint_id)
        if not _runs(ep, version.id):  # a deploy through another replica may be newer than the cache
            ep = await rt.catalog.get_endpoint(principal.project_id, principal.endpoint_id, fresh=True)
        if not _runs(ep, version.id):
            raise not_found("version", version_id)
    return rt, version


def _runs(ep: Endpoint | None, version_id: str) -> bool:
    """Whether the endpoint runs the version (as its own or as a canary's), or a deploy of it
    waits for that version."""
    if ep is None:
        return False
    return version_id in (ep.version_id, ep.pending and ep.pending.version_id, ep.rollout and ep.rollout.version_id)


@router.get("/versions/{version_id}")
async def get_version(request: Request, version_id: str) -> JSONAnswer:
    """A version: what it records, and the files of its bundle."""
    rt, version = await _version_for(request, version_id)
    v = version.as_dict()
    path = await rt.bundles.local(version.sha256)
    if path is not None:
        with zipfile.ZipFile(path) as zf:
            v["files"] = [{"name": i.filename, "size": i.file_size} for i in zf.infolist()]
    return JSONAnswer(v)


@router.get("/versions/{version_id}/build")
async def version_build(request: Request, version_id: str, offset: int | None = None) -> JSONAnswer:
    """A version's environment build: its state, the installer's error, and the lines of the
    latest build this version started, from byte `offset` of the log on (default: where that
    build began); `offset` in the answer is where the next read starts, to follow a build. A
    version whose environment another version built (in this project or another: environments
    are shared by content) shows no lines."""
    rt, version = await _version_for(request, version_id)
    key = version.env_hash
    out: dict[str, Any] = {
        "version": version.id,
        "env": key,
        "state": version.build_state,
        "error": version.build_error,
        "lines": [],
        "offset": 0,
    }
    if key is not None:
        store = rt.scaler.builds.store
        attempt = store.attempt(key, version.id)
        if attempt is not None:
            begin, end = attempt
            out["lines"], out["offset"] = read_from(store.log_path(key), max(begin, offset or 0), end)
    return JSONAnswer(out)


@router.get("/versions/{version_id}/bundle", response_model=None)
async def get_bundle(request: Request, version_id: str) -> FileResponse:
    rt, version = await _version_for(request, version_id)
    path = await rt.bundles.local(version.sha256)
    if path is None:
        raise not_found("bundle of version", version_id)
    return FileResponse(path, media_type="application/zip")
