"""Ids and names that file paths are built from: every path builder refuses a value without its
kind's shape, naming it (issue 22, finding 8), and takes every value Podium itself makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from podium import logs
from podium.bundle import version_id
from podium.envs.builder import EnvStore
from podium.envs.requirements import Requirements
from podium.names import ENDPOINT_NAME, VERSION_ID, WORKER_ID, InvalidName
from podium.store.blobs import Bundles
from podium.store.projects import new_id

ESCAPES = ["../x", "/etc/passwd", "a/../../b", "..", ".", "", "a\x00b", "x" * 300]


@pytest.mark.parametrize("bad", ESCAPES)
def test_log_folders_are_endpoint_ids(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidName, match="invalid endpoint id") as caught:
        logs.endpoint_dir(tmp_path, bad)
    assert repr(bad if len(bad) <= 80 else bad[:80] + "…") in caught.value.detail


@pytest.mark.parametrize("bad", ESCAPES)
def test_environments_and_their_logs_are_environment_hashes(tmp_path: Path, bad: str) -> None:
    store = EnvStore(tmp_path)
    for build_path in (store.path, store.log_path, lambda key: store.attempt(key, "0" * 16)):
        with pytest.raises(InvalidName, match="invalid environment hash"):
            build_path(bad)


@pytest.mark.parametrize("bad", ESCAPES)
async def test_bundles_are_sha256s(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidName, match="invalid sha256"):
        await Bundles(tmp_path, None).local(bad)


def test_what_podium_makes_has_its_shape(tmp_path: Path) -> None:
    eid = new_id()
    assert logs.endpoint_dir(tmp_path, eid) == tmp_path / eid
    assert EnvStore(tmp_path).log_path(Requirements(("numpy",)).env_hash()).parent == tmp_path
    assert VERSION_ID.match(version_id("0" * 64, {"service": "s"}))
    assert WORKER_ID.match("w-0123456789ab") and WORKER_ID.match("h-my-host-0123abcd")
    assert ENDPOINT_NAME.match("dh-pathfn-runabc12") and not ENDPOINT_NAME.match("dh-pathfn-/../../.")


def test_environment_paths_are_hashes_only(tmp_path):
    store = EnvStore(tmp_path)
    for forged in ("../../secret", "/etc/passwd", "a" * 23, "A" * 24):
        with pytest.raises(InvalidName):
            store.log_path(forged)
        with pytest.raises(InvalidName):
            store.path(forged)
    assert store.log_path("0" * 24) == tmp_path / f"{'0' * 24}.log"
