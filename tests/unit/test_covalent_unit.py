"""The Covalent pieces that need no server: reading asset headers without unpickling, the route
table from endpoint records, the deploy bundle, upload slots, and the stderr of a failed start."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest

from podium.core.errors import InvalidRequest
from podium.covalent.assets import pickled_part, read_header, read_json
from podium.covalent.bundle import MANIFEST, MissingAsset, build
from podium.covalent.functions import route_table, stderr_text
from podium.covalent.models import FunctionService
from podium.covalent.staging import AssetSlots


def archive(obj: object, py: str = "3.11.7", cp: str = "2.2.1") -> bytes:
    """Covalent's TransportableObject layout: offsets, JSON header, repr, base64 pickle."""
    header = json.dumps({"py_version": py, "cloudpickle_version": cp, "attrs": {"doc": None, "name": "f"}}).encode()
    text = repr(obj).encode()
    data = base64.b64encode(pickle.dumps(obj))
    string_at = 16 + len(header)
    data_at = string_at + len(text)
    return string_at.to_bytes(8, "big") + data_at.to_bytes(8, "big") + header + text + data


def spec(*routes: str, asset: str = "a") -> FunctionService:
    ref = {"type": "Asset", "id": asset}
    return FunctionService.model_validate(
        {
            "title": "T",
            "init_fn": ref,
            "init_fn_args": ref,
            "init_fn_kwargs": ref,
            "endpoints": [
                {"route": r, "endpoint_fn": ref, "method": "GET" if i else "POST"} for i, r in enumerate(routes)
            ],
        }
    )


def test_header_read_without_unpickling() -> None:
    data = archive({"x": 1})
    h = read_header(data)
    assert (h.py_version, h.cloudpickle_version, h.python) == ("3.11.7", "2.2.1", "3.11")
    assert pickle.loads(pickled_part(data)) == {"x": 1}  # what only a worker does


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"short", "shorter"),
        ((99).to_bytes(8, "big") + (5).to_bytes(8, "big") + b"{}", "outside"),
        ((18).to_bytes(8, "big") + (18).to_bytes(8, "big") + b"{{", "not JSON"),
        ((18).to_bytes(8, "big") + (18).to_bytes(8, "big") + b"{}", "lacks"),
        (archive(1, py="three"), "unusable"),
    ],
)
def test_bad_headers_are_refused(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        read_header(data)


def test_json_assets() -> None:
    assert read_json(base64.b64encode(b'{"a": [1]}')) == {"a": [1]}
    with pytest.raises(ValueError, match="base64"):
        read_json(b"{not base64")


def test_route_table_from_endpoint_records() -> None:
    table = route_table(spec("/hello", "/custom-endpoint"))
    assert [(r["path"], r["method"], r["default"], r["var_keyword"]) for r in table] == [
        ("/hello", "hello", True, True),
        ("/custom-endpoint", "custom_endpoint", False, True),
    ]
    for routes, says in [
        ((), "no endpoints"),
        (("/a", "/a"), "declared twice"),
        (("a b",), "must start"),
        (("/a-b", "/a_b"), "clashes"),
    ]:
        with pytest.raises(InvalidRequest, match=says):
            route_table(spec(*routes))


def test_bundle_is_deterministic_and_checked() -> None:
    blobs = {"a": archive(len), "b": archive(len, py="3.12.1")}
    one = build(spec("/x"), blobs.get)
    assert one.sha256 == build(spec("/x"), blobs.get).sha256
    with zipfile.ZipFile(io.BytesIO(one.data)) as zf:
        manifest = json.loads(zf.read(MANIFEST))
        assert manifest["endpoints"] == [{"route": "/x", "method": "POST", "streaming": False, "fn": "assets/3.bin"}]
        assert zf.read(manifest["init_fn"]) == blobs["a"]
    with pytest.raises(MissingAsset, match="was not uploaded"):
        build(spec("/x", asset="nope"), blobs.get)
    mixed = spec("/x")
    mixed.endpoints[0].endpoint_fn.id = "b"
    with pytest.raises(ValueError, match="different interpreters"):
        build(mixed, blobs.get)
    as_json = spec("/x")
    as_json.init_fn.type = "JSON"
    with pytest.raises(ValueError, match="must be a pickled Asset"):
        build(as_json, blobs.get)


def test_upload_slots_belong_to_their_project(tmp_path: Path) -> None:
    slots = AssetSlots(tmp_path)
    a, b = slots.new("p1", 2)
    assert slots.put("p1", a, b"data") and slots.get("p1", a) == b"data"
    assert not slots.put("p2", b, b"x") and slots.get("p2", a) is None
    assert slots.get("p1", b) is None  # never filled
    assert not slots.put("p1", "../../etc", b"x")
    slots.remove([a, b])
    assert slots.get("p1", a) is None and list(tmp_path.iterdir()) == []


def test_stderr_is_the_workers_plain_lines() -> None:
    log = json.dumps({"level": "warning", "msg": "Traceback (most recent call last):"})
    assert stderr_text(f"ValueError: x\n--- worker log ---\n{log}") == (
        "ValueError: x\n--- worker log ---\nTraceback (most recent call last):"
    )
