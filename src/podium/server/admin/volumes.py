"""Volumes and their files: `/api/v1/volumes`, `/api/v1/volumes/{name}/files/{path}`.

A deploy key makes, fills and removes them; a read key lists and downloads. `PUT` takes a file's
raw bytes (a `Content-Range` resumes an upload from the offset `GET .../uploads/{path}` reports;
`X-Content-SHA256` is checked once the file is whole); `GET` streams a file, or lists a directory.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from podium.core.volumes import CHUNK, VolumeDir, Volumes, parse_size
from podium.server.admin.common import admin_caller
from podium.server.admin.models import VolumeIn, parse
from podium.server.body import read_object
from podium.server.errors import HTTPError
from podium.server.responses import JSONAnswer
from podium.server.runtime import Runtime

router = APIRouter(prefix="/api/v1", tags=["admin"])

#: `Content-Range: bytes START-END/TOTAL` (END inclusive), as a resumed PUT sends it.
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
#: The whole file's SHA-256 (hex), checked once every byte of it is in.
CHECKSUM = "x-content-sha256"


def volumes(rt: Runtime) -> Volumes:
    return Volumes(rt.catalog, rt.settings.volumes)


async def _view(vol: VolumeDir) -> dict[str, Any]:
    return {**vol.volume.as_dict(), "used": await anyio.to_thread.run_sync(vol.usage)}


@router.post("/volumes")
async def create_volume(request: Request) -> JSONAnswer:
    rt, principal = await admin_caller(request, "deploy")
    body = parse(VolumeIn, await read_object(request, 64 * 1024), "volume")
    max_size = body.max_size
    if isinstance(max_size, str):
        try:
            max_size = parse_size(max_size)
        except ValueError as exc:
            raise HTTPError(400, "invalid_size", str(exc)) from None
    volume = await volumes(rt).create(principal.project_id, body.name, max_size)
    return JSONAnswer({**volume.as_dict(), "used": 0}, status_code=201)


@router.get("/volumes")
async def list_volumes(request: Request) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read")
    vols = volumes(rt)
    found = [await vols.get(principal.project_id, v.name) for v in await vols.of_project(principal.project_id)]
    return JSONAnswer({"volumes": [await _view(v) for v in found]})


@router.get("/volumes/{name}")
async def get_volume(request: Request, name: str) -> JSONAnswer:
    rt, principal = await admin_caller(request, "read")
    return JSONAnswer(await _view(await volumes(rt).get(principal.project_id, name)))


@router.delete("/volumes/{name}")
async def remove_volume(request: Request, name: str) -> JSONAnswer:
    """Delete the volume and every file in it (refused while an endpoint's version names it)."""
    rt, principal = await admin_caller(request, "deploy")
    await volumes(rt).remove(principal.project_id, name)
    return JSONAnswer({"name": name, "removed": True})


@router.get("/volumes/{name}/uploads/{path:path}")
async def upload_offset(request: Request, name: str, path: str) -> JSONAnswer:
    """How many bytes of an interrupted upload the server holds: the next PUT starts there."""
    rt, principal = await admin_caller(request, "deploy")
    vol = await volumes(rt).get(principal.project_id, name)
    return JSONAnswer({"path": path, "offset": vol.offset(path)})


@router.put("/volumes/{name}/files/{path:path}")
async def put_file(request: Request, name: str, path: str) -> Response:
    """The file's bytes (all of them, or from `Content-Range`'s start): 201 once the file is in
    place, 202 with the offset reached when the range ends before the file does."""
    rt, principal = await admin_caller(request, "deploy")
    vol = await volumes(rt).get(principal.project_id, name)
    start, total = 0, None
    if "content-range" in request.headers:
        m = CONTENT_RANGE.fullmatch(request.headers["content-range"].strip())
        first, last, size = (int(g) for g in m.groups()) if m else (1, 0, 0)
        if not first <= last + 1 <= size:
            raise HTTPError(400, "invalid_range", "Content-Range must be `bytes START-END/TOTAL` (END inclusive)")
        start, total = first, size
    elif request.headers.get("content-length", "").isdigit():
        total = int(request.headers["content-length"])
    try:
        done = await vol.put(path, request.stream(), start=start, total=total, sha256=request.headers.get(CHECKSUM))
    except ClientDisconnect:  # what arrived is staged; nobody is left to answer
        return Response(status_code=499)
    return JSONAnswer(done.as_dict(), status_code=201 if done.complete else 202)


@router.get("/volumes/{name}/files")
@router.get("/volumes/{name}/files/{path:path}")
async def get_file(request: Request, name: str, path: str = "") -> Response:
    """A file's bytes, streamed; a directory's entries as JSON."""
    rt, principal = await admin_caller(request, "read")
    vol = await volumes(rt).get(principal.project_id, name)
    fd, st = await anyio.to_thread.run_sync(vol.open, path)
    if stat.S_ISDIR(st.st_mode):
        try:
            entries = await anyio.to_thread.run_sync(vol.listing, fd)
        finally:
            os.close(fd)
        return JSONAnswer({"volume": name, "path": path.strip("/"), "entries": [e.as_dict() for e in entries]})
    return StreamingResponse(
        _read(fd),
        media_type="application/octet-stream",
        headers={"Content-Length": str(st.st_size)},
    )


async def _read(fd: int) -> AsyncIterator[bytes]:
    try:
        while block := await anyio.to_thread.run_sync(os.read, fd, CHUNK):
            yield block
    finally:
        os.close(fd)


@router.delete("/volumes/{name}/files/{path:path}")
async def remove_file(request: Request, name: str, path: str) -> JSONAnswer:
    """Delete a file, or a directory with all it holds."""
    rt, principal = await admin_caller(request, "deploy")
    vol = await volumes(rt).get(principal.project_id, name)
    await anyio.to_thread.run_sync(vol.remove, path)
    return JSONAnswer({"volume": name, "path": path, "removed": True})
