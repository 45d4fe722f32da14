"""Versions, history, rollback, stop/start/restart and removal, against a real server and workers."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import httpx
import pytest

from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

APP = """
import os, time
from pathlib import Path
import podium

VERSION = "{version}"

@podium.service(name="versioned", max_workers=1, idle_timeout=30)
def init():
    return {{}}

@init.endpoint("/which")
def which(marker=None):
    if marker:
        Path(marker + ".started").write_text(VERSION)
        deadline = time.monotonic() + 30
        while not Path(marker + ".release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    return {{"version": VERSION, "pid": os.getpid()}}
"""


def write_app(root: Path, version: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(APP.format(version=version))
    (root / "data.txt").write_text(f"data of {version}\n")
    return root


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("versions-home")) as s:
        yield s


def deploy(srv: PodiumServer, root: Path, name: str, message: str) -> dict:
    return json.loads(srv.cli("deploy", str(root), "--name", name, "-m", message, "--json").stdout)


def which(srv: PodiumServer, name: str, **kw) -> dict:
    r = srv.http.post(f"/{name}/which", json=kw)
    assert r.status_code == 200, r.text
    return r.json()


def test_redeploy_keeps_calls_and_rollback_goes_back(srv, tmp_path):
    root = tmp_path / "app"
    v1 = deploy(srv, write_app(root, "one"), "versioned", "first")["version"]
    assert which(srv, "versioned")["version"] == "one"

    marker = str(tmp_path / "held")
    held: dict = {}
    t = threading.Thread(target=lambda: held.update(which(srv, "versioned", marker=marker)))
    t.start()
    wait_until(lambda: Path(marker + ".started").exists(), what="job on v1 started")
    v2 = deploy(srv, write_app(root, "two"), "versioned", "second")["version"]
    assert v2 != v1
    Path(marker + ".release").touch()
    t.join(30)
    assert held["version"] == "one", "a job taken by a v1 worker finishes on v1"
    wait_until(lambda: which(srv, "versioned")["version"] == "two", what="new jobs on v2")

    hist = json.loads(srv.cli("history", "versioned", "--json").stdout)["history"]
    assert [(h["version"], h["message"]) for h in hist] == [(v2, "second"), (v1, "first")]
    assert hist[0]["current"] and hist[0]["key_id"]

    shown = json.loads(srv.cli("rollback", "versioned", "--json").stdout)
    assert shown["version"] == v1
    wait_until(lambda: which(srv, "versioned")["version"] == "one", what="rolled back to v1")
    hist = json.loads(srv.cli("history", "versioned", "--json").stdout)["history"]
    assert hist[0]["version"] == v1 and hist[0]["message"] == f"rollback to {v1}"

    srv.cli("rollback", "versioned", v2)
    wait_until(lambda: which(srv, "versioned")["version"] == "two", what="rolled forward to v2")

    versions = json.loads(srv.cli("versions", "ls", "versioned", "--json").stdout)["versions"]
    assert [v["id"] for v in versions] == [v2, v1] and versions[0]["current"]
    detail = json.loads(srv.cli("versions", "show", v1, "--json").stdout)
    assert detail["message"] == "first" and {f["name"] for f in detail["files"]} == {"app.py", "data.txt"}
    assert [r["path"] for r in detail["routes"]] == ["/which"]
    assert "data.txt" in srv.cli("versions", "show", v1).stdout


def test_endpoint_names_follow_one_rule(srv, tmp_path):
    res = srv.cli("deploy", str(write_app(tmp_path / "bad", "x")), "--name", "Bad_Name", check=False)
    assert res.returncode != 0 and "[a-z0-9][a-z0-9-]{0,62}" in res.stderr


def test_stop_start_restart_and_status(srv, tmp_path):
    deploy(srv, write_app(tmp_path / "ops", "ops"), "ops", "ops")
    first = which(srv, "ops")["pid"]
    status = json.loads(srv.cli("status", "ops", "--json").stdout)
    assert status["state"] == "ACTIVE" and status["workers_by_state"]["idle"] == 1
    record = status["service"]
    assert record["name"] == "ops" and "://" not in record["url"] and record["url"].endswith(status["endpoint_id"])
    assert record["ports"][0]["port"] == srv.port

    srv.cli("restart", "ops")
    wait_until(lambda: which(srv, "ops")["pid"] != first, what="a new worker after restart")

    stopped = json.loads(srv.cli("stop", "ops", "--json").stdout)
    assert stopped["state"] == "INACTIVE"
    r = srv.http.post("/ops/which", json={})
    assert r.status_code == 503 and "podium start ops" in r.json()["detail"]
    wait_until(
        lambda: json.loads(srv.cli("status", "ops", "--json").stdout)["workers"] == [],
        what="workers of a stopped endpoint stop",
    )

    srv.cli("start", "ops")
    wait_until(lambda: json.loads(srv.cli("status", "ops", "--json").stdout)["state"] == "ACTIVE", what="ACTIVE")
    assert which(srv, "ops")["version"] == "ops"


def test_remove_drains_and_frees_the_name(srv, tmp_path):
    root = write_app(tmp_path / "gone", "gone")
    deploy(srv, root, "gone", "to be removed")
    marker = str(tmp_path / "busy")
    run = srv.http.post("/v2/gone/run", json={"input": {"marker": marker}}).json()["id"]
    wait_until(lambda: Path(marker + ".started").exists(), what="running job")
    queued = srv.http.post("/v2/gone/run", json={"input": {}}).json()["id"]
    res = json.loads(srv.cli("endpoints", "rm", "gone", "--json").stdout)
    assert res["removed"] and res["cancelled_jobs"] == 1
    assert srv.job(queued)["status"] == "CANCELLED", "its job records stay readable"
    Path(marker + ".release").touch()
    assert srv.http.get("/v2/gone/health").status_code == 404
    assert httpx.post(f"{srv.url}/gone/which", headers={"x-api-key": srv.key}, json={}).status_code == 404
    again = deploy(srv, root, "gone", "the name is free again")
    assert again["state"] == "ACTIVE" and again["endpoint_id"] != res["endpoint_id"]
    assert srv.job(run)["id"] == run
    assert os.path.isdir(srv.home)
