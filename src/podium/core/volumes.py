"""Volumes: a project's directories its workers share (weights, caches), and their files.

A volume's files are in `<root>/<project id>/<name>/`; its record (name, size limit) is in the
catalog. A service names the volumes it uses and where its workers see them; only volumes of the
endpoint's own project can be named.

Every path a caller gives is relative to the volume's root: `..`, empty segments and absolute
paths are refused outright. What a link could do is checked on what was opened, not on the
name: reads open the file, then ask the kernel where it is (/proc/self/fd) and refuse it outside
the volume; writes and deletes walk the directories one by one without following links. A link a
worker swaps in between a check and a use therefore leads nowhere.

Uploads are staged in `<root>/<project id>/.uploads/<name>/` (outside every volume, on the same
file system) and renamed into place once whole and checksummed. A dropped upload keeps what
arrived; the next PUT says where it starts (`Content-Range`) and carries on from the offset the
server reports.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import anyio.to_thread

from podium.core.errors import Clash, InvalidRequest, NotFound, VolumeFull
from podium.names import VOLUME_NAME
from podium.store.catalog import Catalog
from podium.store.records import Endpoint
from podium.store.volumes import Volume

#: Bytes written to the staged file at once (and read from a file per chunk of a download).
CHUNK = 1 << 20
#: What `--max-size` takes: a number of bytes, or one with a unit (K, M, G, T; powers of 1024).
SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """`50G` -> bytes; ValueError saying what a size looks like."""
    m = SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"a size is a number of bytes or one with a unit, like 500M or 50G (got {text!r})")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


class Mounted(NamedTuple):
    """A volume a worker is given: its directory on the host, and where the service asks for it."""

    name: str
    path: Path
    at: str


@dataclass(frozen=True)
class Upload:
    """Where an upload stands: `complete` once the whole file is in place."""

    path: str
    offset: int
    complete: bool
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "offset": self.offset, "complete": self.complete, "sha256": self.sha256}


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  #: file, dir or link
    size: int | None
    modified: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.kind, "size": self.size, "modified": self.modified}


def relative(path: str, *, root_ok: bool = False) -> PurePosixPath:
    """A caller's path inside a volume; InvalidRequest for one that could lead out."""
    clean = path.rstrip("/")
    if not clean:
        if root_ok:
            return PurePosixPath()
        raise InvalidRequest("give a path inside the volume", code="invalid_path")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise InvalidRequest(f"{path!r}: paths are relative to the volume's root", code="invalid_path")
    parts = clean.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidRequest(f"{path!r}: '..', '.' and empty segments are not allowed", code="invalid_path")
    return PurePosixPath(*parts)


class VolumeDir:
    """One volume's files.

    Parameters:
        volume: its record (name, size limit).
        root: its directory (made when the volume is).
        staging: where its uploads are staged (same file system, outside the volume).
    """

    def __init__(self, volume: Volume, root: Path, staging: Path) -> None:
        self.volume = volume
        self.root = root.resolve()
        self.staging = staging

    # -- reading --------------------------------------------------------------------------------

    def open(self, path: str) -> tuple[int, os.stat_result]:
        """A file or directory of the volume, opened (links followed, then checked to lead
        nowhere outside it): its descriptor, which the caller closes, and its status."""
        rel = relative(path, root_ok=True)
        try:
            fd = os.open(self.root / rel, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("file", path, detail=f"no file {path!r} in volume {self.volume.name}") from None
        try:
            self._inside(fd, path)
            st = os.fstat(fd)
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                raise InvalidRequest(f"{path!r} is neither a file nor a directory", code="invalid_path")
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def listing(self, fd: int) -> list[Entry]:
        """The entries of an opened directory, by name."""
        out = []
        with os.scandir(fd) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                kind = "link" if e.is_symlink() else "dir" if e.is_dir(follow_symlinks=False) else "file"
                out.append(Entry(e.name, kind, st.st_size if kind == "file" else None, st.st_mtime))
        return sorted(out, key=lambda e: e.name)

    def _inside(self, fd: int, path: str) -> None:
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real != str(self.root) and not real.startswith(f"{self.root}/"):
            raise InvalidRequest(f"{path!r} leads out of the volume (through a link)", code="invalid_path")

    def usage(self) -> int:
        """Bytes its files take (links are not followed)."""
        total = 0
        for top, _dirs, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(top, name)).st_size
                except OSError:
                    continue
        return total

    # -- writing --------------------------------------------------------------------------------

    def _parent(self, rel: PurePosixPath, *, create: bool) -> int:
        """The directory `rel` is in, opened step by step without following a link (made as it
        goes with `create`); its descriptor, which the caller closes."""
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in rel.parts[:-1]:
                if create:
                    try:
                        os.mkdir(part, dir_fd=fd)
                    except FileExistsError:
                        pass
                try:
                    nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except FileNotFoundError:
                    raise NotFound("file", str(rel), detail=f"no file {str(rel)!r} in this volume") from None
                except OSError:  # ELOOP: a link; ENOTDIR: a file
                    raise InvalidRequest(
                        f"{str(rel)!r}: {part!r} is a link or a file (links are not followed when writing)",
                        code="invalid_path",
                    ) from None
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _part(self, rel: PurePosixPath) -> Path:
        return self.staging / hashlib.sha256(str(rel).encode()).hexdigest()[:40]

    def offset(self, path: str) -> int:
        """Bytes of an interrupted upload to `path` the server holds (0: none)."""
        try:
            return self._part(relative(path)).stat().st_size
        except FileNotFoundError:
            return 0

    async def put(
        self,
        path: str,
        chunks: AsyncIterator[bytes],
        *,
        start: int = 0,
        total: int | None = None,
        sha256: str | None = None,
    ) -> Upload:
        """Write the bytes of `path` from `start` on (0: a new upload); once `total` bytes are
        in (a body without a range is the whole file), check them against `sha256` and put the
        file in place. A connection dropped midway keeps what arrived (the exception goes on)."""
        rel = relative(path)
        part = self._part(rel)
        held = part.stat().st_size if part.exists() else 0
        if start != 0 and start != held:
            raise Clash(
                f"the upload of {path!r} goes on from byte {held}, not {start}",
                code="offset_mismatch",
                extra={"offset": held},
            )
        room = await anyio.to_thread.run_sync(self._room, rel)
        if total is not None and room is not None and total > room:
            raise self._full(total, room)
        self.staging.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with open(part, "ab" if start else "wb") as f:
                buf = bytearray()
                try:
                    async for chunk in chunks:
                        buf += chunk
                        if room is not None and start + written + len(buf) > room:
                            raise self._full(start + written + len(buf), room)
                        if len(buf) >= CHUNK:
                            await anyio.to_thread.run_sync(f.write, bytes(buf))
                            written += len(buf)
                            buf.clear()
                finally:  # what arrived is kept, even when the connection dropped
                    if buf:
                        await anyio.to_thread.run_sync(f.write, bytes(buf))
                        written += len(buf)
        except VolumeFull:
            part.unlink(missing_ok=True)
            raise
        offset = start + written
        total = offset if total is None else total
        if offset > total:
            part.unlink(missing_ok=True)
            raise InvalidRequest(f"the body goes past the {total} bytes its range names", code="invalid_range")
        if offset < total:
            return Upload(path, offset, complete=False)
        digest = await anyio.to_thread.run_sync(_sha256, part)
        if sha256 is not None and digest != sha256.lower():
            part.unlink(missing_ok=True)
            raise InvalidRequest(
                f"{path!r} arrived with SHA-256 {digest}, not {sha256}; the upload is discarded: send it again",
                code="hash_mismatch",
            )
        await anyio.to_thread.run_sync(self._place, part, rel)
        return Upload(path, offset, complete=True, sha256=digest)

    def _room(self, rel: PurePosixPath) -> int | None:
        """Bytes `rel` may take: the limit less what the other files take (None: no limit)."""
        if self.volume.max_size is None:
            return None
        replaced = 0
        try:
            st = os.lstat(self.root / rel)
            replaced = st.st_size if stat.S_ISREG(st.st_mode) else 0
        except OSError:
            pass
        return self.volume.max_size - self.usage() + replaced

    def _full(self, size: int, room: int) -> VolumeFull:
        return VolumeFull(
            f"volume {self.volume.name} is limited to {self.volume.max_size} bytes: this file "
            f"({size} bytes or more) does not fit in the {max(room, 0)} bytes its other files leave"
        )

    def _place(self, part: Path, rel: PurePosixPath) -> None:
        parent = self._parent(rel, create=True)
        try:
            os.rename(part, rel.name, dst_dir_fd=parent)
        except IsADirectoryError:
            part.unlink(missing_ok=True)
            raise Clash(f"{str(rel)!r} is a directory in the volume", code="is_a_directory") from None
        finally:
            os.close(parent)

    def remove(self, path: str) -> None:
        """Delete a file, link or directory (with all it holds)."""
        rel = relative(path)
        parent = self._parent(rel, create=False)
        try:
            try:
                st = os.stat(rel.name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound("file", path, detail=f"no file {path!r} in volume {self.volume.name}") from None
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(rel.name, dir_fd=parent)
            else:
                os.unlink(rel.name, dir_fd=parent)
        finally:
            os.close(parent)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Volumes:
    """A project's volumes: made, found, removed, and given to its workers.

    Parameters:
        catalog: where volumes' records are (and which endpoints name them).
        root: where their files are (`Settings.volumes`).
    """

    def __init__(self, catalog: Catalog, root: Path) -> None:
        self.catalog = catalog
        self.root = root

    def _dir(self, volume: Volume) -> VolumeDir:
        project = self.root / volume.project_id
        return VolumeDir(volume, project / volume.name, project / ".uploads" / volume.name)

    async def create(self, project_id: str, name: str, max_size: int | None) -> Volume:
        VOLUME_NAME.check(name)
        if max_size is not None and max_size < 1:
            raise InvalidRequest("max_size must be at least 1 byte", code="invalid_size")
        volume = await self.catalog.create_volume(project_id, name, max_size)
        if volume is None:
            raise Clash(f"this project has a volume called {name} already", code="volume_exists")
        (self.root / project_id / name).mkdir(parents=True, exist_ok=True)
        return volume

    async def get(self, project_id: str, name: str) -> VolumeDir:
        volume = await self.catalog.get_volume(project_id, name)
        if volume is None:
            raise NotFound(
                "volume",
                name,
                detail=f"no volume {name!r} in this project (create it with `podium volumes create {name}`)",
            )
        vol = self._dir(volume)
        vol.root.mkdir(parents=True, exist_ok=True)  # a new volumes root (PODIUM_VOLUMES_ROOT)
        return vol

    async def of_project(self, project_id: str) -> list[Volume]:
        return await self.catalog.list_volumes(project_id)

    async def remove(self, project_id: str, name: str) -> None:
        """Delete a volume and its files; refused while an endpoint's version names it."""
        vol = await self.get(project_id, name)
        users = [ep.name for ep in await self.catalog.list_endpoints(project_id) if name in await self._named(ep)]
        if users:
            raise Clash(
                f"volume {name} is in use by endpoint {', '.join(users)}: deploy without it or remove them first",
                code="volume_in_use",
            )
        await self.catalog.delete_volume(vol.volume.id)
        await anyio.to_thread.run_sync(shutil.rmtree, vol.root, True)
        await anyio.to_thread.run_sync(shutil.rmtree, vol.staging, True)

    async def _named(self, ep: Endpoint) -> dict[str, str]:
        version = await self.catalog.cached_version(ep.project_id, ep.version_id)
        named: dict[str, str] = version.config.get("volumes") or {}
        return named

    async def mounts(self, project_id: str, named: dict[str, str]) -> list[Mounted]:
        """The volumes a version names, as its workers are given them; NotFound for one the
        project does not have (never another project's)."""
        out = []
        for name, at in sorted(named.items()):
            vol = await self.get(project_id, name)
            out.append(Mounted(name, vol.root, at))
        return out

    async def check_deploy(self, project_id: str, named: dict[str, str], *, shared_root: bool) -> None:
        """Before a version naming volumes is stored: each must be the project's, and workers
        placed on other machines (`shared_root` False) would each see a copy of their own."""
        if named and not shared_root:
            raise InvalidRequest(
                "this server places workers on a Ray cluster: volumes need PODIUM_VOLUMES_ROOT, a "
                "directory every node mounts at the same path (NFS, CephFS); see docs/cluster.md",
                code="volumes_need_shared_root",
            )
        await self.mounts(project_id, named)
