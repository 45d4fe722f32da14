"""The CLI's papercuts from a first hour with it (issue 24): large `call` bodies, id prefixes,
`jobs ls` that names endpoints and keeps ids whole, `scale` output, and a redeploy that says
which running settings it changes (or keeps them with --keep-scaling); and two small API ones: the
body limit as a setting, and a RunPod path without its job id. One real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import SERVICES
from server import PodiumServer

pytestmark = pytest.mark.slow

BASIC = SERVICES / "basic"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("cli-home"), env={"PODIUM_MAX_BODY_MB": "1"}) as s:
        s.deploy(BASIC, "hello")
        yield s


def cli_input(srv: PodiumServer, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`podium ARGS` with `data` on its standard input."""
    return subprocess.run(
        [sys.executable, "-m", "podium", *args], env=srv.env, input=data, capture_output=True, timeout=120
    )


def test_call_sends_a_body_from_a_file_or_standard_input(srv: PodiumServer, tmp_path: Path) -> None:
    """Past the 128 KiB a command-line argument may hold: `-d @FILE` and `-d -`."""
    big = "x" * 300_000
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"value": big}))
    out = srv.cli("call", "hello", "/work", "-d", f"@{body}").stdout
    assert json.loads(out)["value"] == big
    res = cli_input(srv, json.dumps({"value": "piped"}).encode(), "call", "hello", "/work", "-d", "-")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["value"] == "piped"
    missing = srv.cli("call", "hello", "/work", "-d", f"@{tmp_path / 'nope.json'}", check=False)
    assert missing.returncode == 1 and "cannot read" in missing.stderr and "nope.json" in missing.stderr


def test_versions_are_taken_by_a_unique_prefix(srv: PodiumServer) -> None:
    first = srv.http.get("/api/v1/endpoints/hello").json()["version"]
    second = json.loads(srv.cli("deploy", str(BASIC), "--name", "hello", "--concurrency", "2", "--json").stdout)
    assert second["version"] != first
    back = json.loads(srv.cli("rollback", "hello", first[:8], "--json").stdout)
    assert back["version"] == first
    shown = srv.cli("versions", "show", second["version"][:6]).stdout
    assert f"version {second['version']}" in shown
    short = srv.cli("rollback", "hello", first[:3], check=False)
    assert short.returncode == 1 and "at least 4 characters" in short.stderr
    assert srv.http.get(f"/api/v1/versions/{first[:3]}").status_code == 404


def test_jobs_are_taken_by_a_unique_prefix_and_an_ambiguous_one_is_refused(srv: PodiumServer) -> None:
    ids = [srv.http.post("/v2/hello/run", json={"input": {"value": i}}).json()["id"] for i in range(2)]
    for job_id in ids:
        srv.wait_job(job_id)
    shown = json.loads(srv.cli("jobs", "show", ids[0][:-1], "--json").stdout)
    assert shown["id"] == ids[0] and shown["output"]["value"] == 0
    common = os.path.commonprefix(ids)
    assert len(common) >= 4  # time-ordered ids: the same first characters within seconds
    r = srv.http.get(f"/api/v1/jobs/{common}")
    assert r.status_code == 409 and r.json()["error"] == "ambiguous_id" and r.json()["candidates"] >= 2
    res = srv.cli("jobs", "show", common, check=False)
    assert res.returncode == 1 and "give more characters" in res.stderr


def test_jobs_ls_names_the_endpoint_and_keeps_ids_whole_when_piped(srv: PodiumServer) -> None:
    job_id = srv.http.post("/v2/hello/run", json={"input": {}}).json()["id"]
    srv.wait_job(job_id)
    endpoint_id = srv.http.get("/api/v1/endpoints/hello").json()["endpoint_id"]
    table = srv.cli("jobs", "ls").stdout  # not a terminal: as wide as the ids need
    row = next(line for line in table.splitlines() if job_id in line)
    assert "hello" in row and endpoint_id not in row


def test_scale_prints_what_an_unset_target_means(srv: PodiumServer) -> None:
    out = srv.cli("scale", "hello", "--max", "3").stdout
    assert "None" not in out and "target 1 (default: the concurrency)" in out
    out = srv.cli("scale", "hello", "--scaler", "queue-delay").stdout
    assert "target 4 s (default)" in out
    srv.cli("scale", "hello", "--scaler", "request-count", "--max", "2")


def test_a_redeploy_says_which_running_settings_it_changes_or_keeps_them(srv: PodiumServer, tmp_path: Path) -> None:
    """1. deploy 2. `podium scale` changes settings 3. a redeploy of changed code says what it
    resets (the same code again resets nothing and says nothing) 4. after scaling again,
    `deploy --keep-scaling` keeps them; options given with it still win."""
    app = tmp_path / "scaled"
    app.mkdir()
    source = (BASIC / "app.py").read_text()

    def edit(n: int) -> Path:
        (app / "app.py").write_text(f"{source}\n# edit {n}\n")
        return app

    srv.deploy(edit(1), "scaled")
    srv.cli("scale", "scaled", "--max", "3", "--concurrency", "4", "--idle-timeout", "5")
    same = srv.cli("deploy", str(app), "--name", "scaled")
    assert "changes the running settings" not in same.stderr
    res = srv.cli("deploy", str(edit(2)), "--name", "scaled")
    assert "changes the running settings: max_workers 3 -> 2, idle_timeout 5 -> 60, concurrency 4 -> 1" in res.stderr
    assert "(--keep-scaling keeps them)" in res.stderr
    scaling = srv.http.get("/api/v1/endpoints/scaled").json()["scaling"]
    assert (scaling["max_workers"], scaling["concurrency"], scaling["idle_timeout"]) == (2, 1, 60)
    srv.cli("scale", "scaled", "--max", "3", "--concurrency", "4", "--idle-timeout", "5")
    kept = json.loads(srv.cli("deploy", str(edit(3)), "--name", "scaled", "--keep-scaling", "--json").stdout)
    assert kept["scaling_changes"] == {}
    scaling = srv.http.get("/api/v1/endpoints/scaled").json()["scaling"]
    assert (scaling["max_workers"], scaling["concurrency"], scaling["idle_timeout"]) == (3, 4, 5)
    res = srv.cli("deploy", str(edit(4)), "--name", "scaled", "--keep-scaling", "--concurrency", "2")
    assert "changes the running settings: concurrency 4 -> 2" in res.stderr


def test_the_call_body_limit_is_a_setting(srv: PodiumServer) -> None:
    """PODIUM_MAX_BODY_MB=1 (this server's): route calls and /runsync take 1 MB, /run half."""
    r = srv.http.post("/hello/work", json={"value": "x" * 1_100_000})
    assert r.status_code == 413 and "over the 1 MB limit" in r.json()["detail"], r.text
    assert srv.http.post("/hello/work", json={"value": "x" * 900_000}).status_code == 200
    r = srv.http.post("/v2/hello/run", json={"input": {"value": "x" * 600_000}})
    assert r.status_code == 413 and "over the 0.5 MB limit" in r.json()["detail"], r.text
    assert srv.http.post("/v2/hello/runsync", json={"input": {"value": "x" * 600_000}}).status_code == 200


@pytest.mark.parametrize(("method", "action"), [("GET", "status"), ("GET", "stream"), ("POST", "cancel")])
def test_a_runpod_path_without_its_job_id_says_so(srv: PodiumServer, method: str, action: str) -> None:
    r = srv.http.request(method, f"/v2/hello/{action}/")
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "missing_job_id" and f"/v2/{{endpoint}}/{action}/{{job_id}}" in r.json()["detail"]
    r = srv.http.get("/v2/hello/nosuch")
    assert r.status_code == 404 and "no endpoint" not in r.json()["detail"]
