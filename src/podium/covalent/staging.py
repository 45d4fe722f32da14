"""Uploaded assets waiting for the deploy that names them: `$PODIUM_HOME/covalent-assets/<id>`.

The client asks for N upload slots, PUTs each asset to its slot, then deploys; the deploy moves
them into the version's bundle and removes them. Slots belong to the project that asked for them.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from podium.names import ASSET_ID

MAX_SLOTS = 1000
STALE_SECONDS = 86400.0


class AssetSlots:
    def __init__(self, root: Path) -> None:
        self.root = root

    def new(self, project_id: str, n: int) -> list[str]:
        """`n` empty slots of a project (slots a deploy never used are dropped after a day)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._prune()
        ids = [secrets.token_hex(12) for _ in range(n)]
        for asset_id in ids:
            (self.root / f"{asset_id}.project").write_text(project_id)
        return ids

    def _owned(self, project_id: str, asset_id: str) -> bool:
        if not ASSET_ID.match(asset_id):
            return False
        try:
            return (self.root / f"{asset_id}.project").read_text() == project_id
        except FileNotFoundError:
            return False

    def put(self, project_id: str, asset_id: str, data: bytes) -> bool:
        """Fill a slot; False when the project has no such slot."""
        if not self._owned(project_id, asset_id):
            return False
        tmp = self.root / f"{asset_id}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.root / f"{asset_id}.data")
        return True

    def get(self, project_id: str, asset_id: str) -> bytes | None:
        """A filled slot's bytes; None when it is not the project's or was never filled."""
        if not self._owned(project_id, asset_id):
            return None
        try:
            return (self.root / f"{asset_id}.data").read_bytes()
        except FileNotFoundError:
            return None

    def _prune(self) -> None:
        stale = time.time() - STALE_SECONDS
        for path in self.root.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < stale:
                    path.unlink()

    def remove(self, asset_ids: list[str]) -> None:
        for asset_id in asset_ids:
            if ASSET_ID.match(asset_id):
                for suffix in (".data", ".project"):
                    (self.root / f"{asset_id}{suffix}").unlink(missing_ok=True)
