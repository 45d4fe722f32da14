"""Version bundles: content-addressed zip files, cached on this replica's disk.

A server of its own keeps them only on disk (under PODIUM_HOME/blobs). Replicas share no disk, so
with them the store holds every bundle too: a replica asked for one it never received reads it
from the store into its cache once.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from sqlalchemy import select

from podium.names import SHA256
from podium.store.cluster import upsert
from podium.store.engine import Store
from podium.store.tables import blobs


class Bundles:
    """Parameters:
    directory: this replica's cache.
    store: the shared store, or None on a server of its own.
    """

    def __init__(self, directory: Path, store: Store | None) -> None:
        self.directory = directory
        self.store = store

    def _path(self, sha256: str) -> Path:
        return self.directory / f"{SHA256.check(sha256)}.zip"

    async def put(self, sha256: str, data: bytes) -> None:
        """Keep a bundle whose hash was checked by the caller (idempotent)."""
        path = self._path(sha256)
        if not path.exists():
            await asyncio.to_thread(_write, path, data)
        if self.store is not None:
            async with self.store.tx() as conn:
                row = {"sha256": sha256, "data": data, "created_at": time.time()}
                await conn.execute(upsert(self.store, blobs, [row]))

    async def local(self, sha256: str) -> Path | None:
        """The bundle's file on this replica (fetched from the store when only it has it), or None."""
        path = self._path(sha256)
        if path.exists():
            return path
        if self.store is None:
            return None
        async with self.store.read() as conn:
            data = await conn.scalar(select(blobs.c.data).where(blobs.c.sha256 == sha256))
        if data is None:
            return None
        await asyncio.to_thread(_write, path, bytes(data))
        return path


def _write(path: Path, data: bytes) -> None:
    """Write whole or not at all (a reader never sees half a bundle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.{id(data)}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
