"""Covalent's serialized assets, read without unpickling.

An `Asset` is covalent's TransportableObject archive: an 8-byte big-endian offset to its string
part, an 8-byte offset to its data part, a JSON header (`py_version`, `cloudpickle_version`,
`attrs`), the object's repr, then base64 cloudpickle. A `JSON` asset is base64 JSON text. The
server reads the header (which Python and cloudpickle the worker needs) and never the data part.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from podium.envs.requirements import PYTHON

OFFSET_BYTES = 8
HEADER_START = 2 * OFFSET_BYTES


@dataclass(frozen=True)
class AssetHeader:
    """What a pickled asset says about the interpreter that made it."""

    py_version: str
    cloudpickle_version: str

    @property
    def python(self) -> str:
        """`3.11.7` -> `3.11`: the minor version decides whether a pickle loads."""
        return ".".join(self.py_version.split(".")[:2])


def offsets(data: bytes) -> tuple[int, int]:
    """(string offset, data offset) of an archive; ValueError when they do not fit it."""
    if len(data) < HEADER_START:
        raise ValueError("a pickled asset is shorter than its 16-byte offsets")
    string_at = int.from_bytes(data[:OFFSET_BYTES], "big")
    data_at = int.from_bytes(data[OFFSET_BYTES:HEADER_START], "big")
    if not HEADER_START <= string_at <= data_at <= len(data):
        raise ValueError("a pickled asset's offsets point outside it")
    return string_at, data_at


def read_header(data: bytes) -> AssetHeader:
    """The JSON header of a pickled asset; ValueError when it is not covalent's archive."""
    string_at, _ = offsets(data)
    try:
        header = json.loads(data[HEADER_START:string_at])
    except ValueError:
        raise ValueError("a pickled asset's header is not JSON") from None
    py, cp = (header.get("py_version"), header.get("cloudpickle_version")) if isinstance(header, dict) else (None, None)
    if not isinstance(py, str) or not isinstance(cp, str):
        raise ValueError("a pickled asset's header lacks py_version or cloudpickle_version")
    found = AssetHeader(py, cp)
    if not PYTHON.match(found.python) or not all(p.isdigit() for p in cp.split(".")):
        raise ValueError(f"a pickled asset names an unusable Python {py!r} or cloudpickle {cp!r}")
    return found


def pickled_part(data: bytes) -> bytes:
    """The cloudpickle bytes of an archive (only a worker loads them)."""
    _, data_at = offsets(data)
    return base64.b64decode(data[data_at:])


def read_json(data: bytes) -> Any:
    """A `JSON` asset's value; ValueError when it is not base64 JSON."""
    try:
        return json.loads(base64.b64decode(data, validate=True))
    except ValueError:
        raise ValueError("a JSON asset is not base64-encoded JSON") from None
