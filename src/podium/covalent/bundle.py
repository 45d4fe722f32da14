"""A Covalent deployment's bundle: its pickled assets and a manifest, as one deterministic zip.

The manifest (`covalent.json`) names the initializer, its arguments and each endpoint's function
by file; the worker (`podium.worker.covalent_service`) loads them. The bundle is stored like any
other version's, under its SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from podium import _json
from podium.covalent.assets import AssetHeader, read_header
from podium.covalent.models import AssetRef, FunctionService
from podium.zipped import deterministic_zip

MANIFEST = "covalent.json"


@dataclass(frozen=True)
class CovalentBundle:
    data: bytes
    sha256: str
    #: The interpreter the pickles need (every asset must agree).
    header: AssetHeader


class MissingAsset(ValueError):
    """An asset the deploy names was not uploaded."""


def build(spec: FunctionService, fetch: Callable[[str], bytes | None]) -> CovalentBundle:
    """Zip the deploy's pickled assets with a manifest; ValueError says what does not fit."""
    files: dict[str, bytes] = {}
    headers: set[AssetHeader] = set()

    def add(ref: AssetRef) -> str:
        if ref.type != "Asset":
            raise ValueError(f"asset {ref.id} must be a pickled Asset, not {ref.type}")
        data = fetch(ref.id)
        if data is None:
            raise MissingAsset(f"asset {ref.id} was not uploaded (PUT it to its upload URL first)")
        headers.add(read_header(data))
        name = f"assets/{len(files)}.bin"
        files[name] = data
        return name

    manifest = {
        "init_fn": add(spec.init_fn),
        "init_fn_args": add(spec.init_fn_args),
        "init_fn_kwargs": add(spec.init_fn_kwargs),
        "endpoints": [
            {"route": ep.route, "method": ep.method, "streaming": ep.streaming, "fn": add(ep.endpoint_fn)}
            for ep in spec.endpoints
        ],
    }
    if len(headers) != 1:
        found = ", ".join(sorted(f"Python {h.py_version} / cloudpickle {h.cloudpickle_version}" for h in headers))
        raise ValueError(f"the assets were pickled by different interpreters ({found})")
    files[MANIFEST] = _json.dumpb(manifest)
    data = deterministic_zip((name, files[name]) for name in sorted(files))
    return CovalentBundle(data, hashlib.sha256(data).hexdigest(), headers.pop())
