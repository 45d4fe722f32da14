"""Moving files in and out of a volume: `put` streams a file or a directory, resuming each file
past a dropped connection from the offset the server holds; `get` streams one back.

A file goes up with its SHA-256 (`X-Content-SHA256`), which the server checks once the file is
whole; a resumed PUT says where it starts with `Content-Range`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import quote

import httpx

from podium.client.http import Connection, raise_for
from podium.errors import APIError

#: Bytes per chunk sent or written.
CHUNK = 1 << 20
#: Times one file's upload resumes after a dropped connection before giving up.
RESUMES = 5

#: Told each file's volume path and size as it is done.
Done = Callable[[str, int], None]


def files_url(volume: str, path: str) -> str:
    return f"/api/v1/volumes/{quote(volume)}/files/{quote(path.lstrip('/'), safe='/')}"


def put(conn: Connection, volume: str, local: Path, path: str | None = None, *, done: Done | None = None) -> int:
    """Upload `local` into `volume`: a file lands at `path` (default: its own name at the
    root), a directory's files under `path` (default: the directory's own name). Returns how
    many files went up."""
    if local.is_dir():
        base = PurePosixPath(path.strip("/") if path else local.name)
        count = 0
        for top, dirs, names in os.walk(local):
            dirs.sort()
            for name in sorted(names):
                file = Path(top) / name
                target = str(base / file.relative_to(local).as_posix())
                put_file(conn, volume, file, target)
                count += 1
                if done is not None:
                    done(target, file.stat().st_size)
        return count
    if not local.is_file():
        raise FileNotFoundError(f"{local}: no such file or directory")
    name = path.strip("/") if path else local.name
    put_file(conn, volume, local, name)
    if done is not None:
        done(name, local.stat().st_size)
    return 1


def put_file(conn: Connection, volume: str, local: Path, path: str) -> dict[str, Any]:
    """One file, streamed; after a dropped connection it asks the server how much arrived and
    sends the rest (up to RESUMES times)."""
    size = local.stat().st_size
    digest = sha256_of(local)
    url = files_url(volume, path)
    offset = 0
    for attempt in range(RESUMES + 1):
        headers = {"X-Content-SHA256": digest}
        if size:
            headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
        try:
            with local.open("rb") as f:
                f.seek(offset)
                r = conn.http.put(url, content=_chunks(f), headers=headers)
            raise_for(r)
            answer: dict[str, Any] = r.json()
            return answer
        except (httpx.TransportError, APIError) as exc:
            if isinstance(exc, APIError) and exc.error != "offset_mismatch" or attempt == RESUMES:
                raise
            time.sleep(min(0.2 * 2**attempt, 5.0))
            offset = conn.request("GET", f"/api/v1/volumes/{quote(volume)}/uploads/{quote(path, safe='/')}")["offset"]
    raise AssertionError("unreachable")


def _chunks(f: IO[bytes]) -> Iterator[bytes]:
    while block := f.read(CHUNK):
        yield block


def sha256_of(local: Path) -> str:
    h = hashlib.sha256()
    with local.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def get(conn: Connection, volume: str, path: str, local: Path) -> Path:
    """Download a file of the volume to `local` (into it, under the file's name, when `local` is
    a directory); written to a temporary name first, so a failed download leaves nothing."""
    if local.is_dir():
        local = local / PurePosixPath(path).name
    tmp = local.with_name(f".{local.name}.part")
    try:
        with tmp.open("wb") as f, conn.http.stream("GET", files_url(volume, path)) as r:
            if r.status_code >= 400:
                r.read()
                raise_for(r)
            if r.headers.get("content-type", "").startswith("application/json"):
                raise IsADirectoryError(f"{path} is a directory of volume {volume} (see `podium volumes ls`)")
            for block in r.iter_bytes(CHUNK):
                f.write(block)
        tmp.replace(local)
    finally:
        tmp.unlink(missing_ok=True)
    return local
