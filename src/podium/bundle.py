"""Bundles: the deployable snapshot of a service's code, and loading a service back out of one.

A bundle is a zip of the directory (or the single file) with sorted names and fixed timestamps, so
the same content always gives the same bytes, the same hash and therefore the same Version.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podium import _json, runpod_source, source
from podium.envs.requirements import Requirements, read_requirement_files
from podium.errors import BundleError, PodiumError
from podium.records import ServiceConfig
from podium.sdk.discovery import find_service
from podium.sdk.service import Service, default_name
from podium.zipped import deterministic_zip

#: Entry files tried, in order, when deploying a directory.
ENTRY_CANDIDATES = ("app.py", "main.py", "handler.py", "service.py")
#: Never bundled: caches, VCS data, virtualenvs, Podium's own state.
SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".hg",
    ".svn",
    ".venv",
    "venv",
    ".podium",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "node_modules",
    ".tox",
    ".ipynb_checkpoints",
}
SKIP_SUFFIXES = (".pyc", ".pyo")
MAX_BUNDLE_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    data: bytes
    sha256: str
    entry: str
    files: list[str]
    root: Path


def bundle_files(root: Path) -> list[Path]:
    """The files a bundle of directory `root` holds, in a stable order."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                files.append(Path(dirpath) / name)
    return files


def make_bundle(path: str | Path, entry: str | None = None) -> Bundle:
    """Zip a directory (entry: app.py, main.py, ...) or a single .py file, deterministically."""
    p = Path(path)
    if not p.exists():
        raise BundleError(f"{path}: no such file or directory")
    if p.is_file():
        if p.suffix != ".py":
            raise BundleError(f"{path}: deploy a .py file or a directory holding one")
        root, files, entry = p.parent, [p], p.name
    else:
        root, files = p, bundle_files(p)
        names = {f.relative_to(root).as_posix() for f in files}
        if entry is None:
            entry = next((c for c in ENTRY_CANDIDATES if c in names), None)
            if entry is None:
                raise BundleError(
                    f"{path}: no entry file found (looked for {', '.join(ENTRY_CANDIDATES)}); name one with --entry"
                )
        elif entry not in names:
            raise BundleError(f"{path}: entry file {entry} is not in the directory")
    rel = [f.relative_to(root).as_posix() for f in files]
    data = deterministic_zip((name, f.read_bytes()) for name, f in zip(rel, files, strict=True))
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"{path}: bundle is {len(data) // 2**20} MiB, over the 100 MiB limit")
    return Bundle(data, hashlib.sha256(data).hexdigest(), entry, rel, root)


def load_service(root: Path, entry: str, service: str | None = None) -> Service:
    """Import `entry` from `root` (its directory goes first on sys.path) and find its service."""
    module_name = Path(entry).stem
    file = root / entry
    root_str = str(root.resolve())
    if root_str not in sys.path:
        sys.path.insert(0, root_str)
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:
        raise BundleError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except PodiumError:
        raise
    except Exception as exc:
        raise BundleError(f"importing {entry} failed: {type(exc).__name__}: {exc}") from exc
    return find_service(vars(module), service)


def version_id(bundle_sha256: str, meta: dict[str, Any]) -> str:
    """A version's id: derived from the bundle's hash and everything else the version records."""
    h = hashlib.sha256(bundle_sha256.encode())
    h.update(_json.dumpb({k: meta[k] for k in sorted(meta)}))
    return h.hexdigest()[:16]


def describe(
    bundle: Bundle,
    service: str | Service | None = None,
    overrides: dict[str, Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What `deploy` sends with the bundle: read on the deploying machine, never on the server.

    `service` names the service to deploy, or is the already-loaded :class:`Service` (deploying
    from Python: nothing is imported again). A RunPod worker file (it calls
    `runpod.serverless.start`) is read, not imported; so is a service that declares requirements
    (requirements.txt, pyproject.toml, or its decorator's `requirements=`/`python=`): the deploying
    machine need not have them. `overrides` replace scaling settings (deploy
    flags); `init_kwargs` are stored with the version and passed to the initializer on every worker.
    """
    try:
        reqs = read_requirement_files(bundle.root, bundle.files)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    if isinstance(service, Service):
        meta = _service_meta(bundle, service)
        reqs = _merge(reqs, service.requirements)
    else:
        text = (bundle.root / bundle.entry).read_text(encoding="utf-8", errors="replace")
        try:
            rp = runpod_source.inspect_source(text)
            declared = rp is None and source.declares_requirements(text)
        except SyntaxError as exc:
            raise BundleError(f"{bundle.entry}: syntax error at line {exc.lineno}: {exc.msg}") from None
        if rp is not None:
            meta = {
                "service": service or default_name(Path(bundle.entry).stem),
                "entry": bundle.entry,
                "routes": runpod_source.route_table(rp),
                "config": ServiceConfig().as_dict(),
                "runtime": "runpod",
            }
        elif reqs is not None or declared:
            # Its requirements may be missing here: read it, never import it.
            found = source.read_service(text, service, Path(bundle.entry).stem)
            reqs = _merge(reqs, found.requirements)
            meta = {
                "service": found.name,
                "entry": bundle.entry,
                "routes": found.routes,
                "config": found.config,
                "runtime": "podium",
            }
        else:
            meta = _service_meta(bundle, load_service(bundle.root, bundle.entry, service))
    if reqs is not None:
        meta["requirements"] = reqs.as_dict()
    if overrides:
        unknown = set(overrides) - set(meta["config"])
        if unknown:
            raise BundleError(f"unknown setting: {', '.join(sorted(unknown))}")
        merged = ServiceConfig.from_dict({**meta["config"], **overrides}).as_dict()
        meta["config"] = {**merged, "retry_on": meta["config"].get("retry_on", [])}
    if init_kwargs:
        meta["config"]["init_kwargs"] = init_kwargs
    return {"id": version_id(bundle.sha256, meta), "sha256": bundle.sha256, "size": len(bundle.data), **meta}


def _merge(files: Requirements | None, declared: Requirements | None) -> Requirements | None:
    """A directory's requirement file and the service's own list, together."""
    if files is None or declared is None:
        return files or declared
    try:
        return files.merged(declared)
    except ValueError as exc:
        raise BundleError(str(exc)) from None


def _service_meta(bundle: Bundle, svc: Service) -> dict[str, Any]:
    return {
        "service": svc.name,
        "entry": bundle.entry,
        "routes": svc.route_table(),
        "config": svc.config.as_dict(),
        "runtime": "podium",
    }


def extract(data: bytes, dest: Path) -> None:
    """Unpack a bundle, refusing names that would escape `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    base = dest.resolve()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            target = (dest / name).resolve()
            if base != target and base not in target.parents:
                raise BundleError(f"bundle entry {name!r} escapes the bundle directory")
        zf.extractall(dest)
