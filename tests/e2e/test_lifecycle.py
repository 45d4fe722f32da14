"""Deploy, readiness, errors, scale from zero and the CLI, through real processes."""

from __future__ import annotations

import json
import os
import stat

import httpx
import pytest

from conftest import SERVICES
from server import wait_until, worker_pids

pytestmark = [pytest.mark.slow, pytest.mark.boxed]


def test_runpod_handler_service(server_factory):
    srv = server_factory()
    ep = srv.deploy(SERVICES / "handler.py", "echo")
    assert ep["state"] == "ACTIVE"
    ok = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {"prompt": "hi"}}).json()
    assert ok["status"] == "COMPLETED" and ok["output"] == {"echo": {"prompt": "hi"}, "id": ok["id"]}
    bad = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {"fail": "on purpose"}}).json()
    assert bad["status"] == "FAILED" and "asked to fail: on purpose" in bad["error"]
    assert "output" not in bad


def test_initializer_error_puts_the_endpoint_in_error_with_the_log(server_factory):
    srv = server_factory()
    res = srv.cli("deploy", str(SERVICES / "broken"), "--name", "broken", check=False)
    assert res.returncode == 1
    assert (
        "model weights not found" in res.stderr
        and "Traceback (most recent call last)" not in res.stderr.splitlines()[0]
    )
    ep = srv.http.get("/api/v1/endpoints/broken").json()
    assert ep["state"] == "ERROR" and "model weights not found" in ep["error"]
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {}})
    assert r.status_code == 503 and "model weights not found" in r.json()["detail"]


def test_scale_to_zero_when_idle_then_cold_start_on_the_next_job(server_factory, tmp_path):
    """1. Deploy with idle_timeout 1 s: the first worker proves the version loads, then stops.
    2. A job arrives with no worker: one starts and runs it."""
    src = tmp_path / "idle.py"
    src.write_text(
        "import podium\n\n"
        "@podium.handler(name='idle', min_workers=0, max_workers=1, idle_timeout=1)\n"
        "def handler(job):\n    return job['input']['n'] * 2\n"
    )
    srv = server_factory()
    ep = srv.deploy(src, "idle")
    eid = ep["endpoint_id"]
    wait_until(lambda: not srv.http.get(f"/api/v1/endpoints/{eid}").json()["workers"], timeout=30, what="scale to zero")
    r = srv.http.post(f"/v2/{eid}/runsync", json={"input": {"n": 21}})
    assert r.json()["status"] == "COMPLETED" and r.json()["output"] == 42
    assert srv.http.get(f"/v2/{eid}/health").json()["workers"]["idle"] == 1


def test_min_workers_are_kept_warm_and_replaced_when_they_crash(server_factory, tmp_path):
    """The promise (docs/index.md): idle workers stop after `idle_timeout`, but `min_workers`
    stay warm and crashed ones are replaced. 1. With min_workers=2 and idle_timeout=0, two
    workers come up before any job, and a call runs on one of them (no cold start). 2. One is
    killed. 3. Result: the other is kept as it was (neither stopped for being idle nor restarted),
    exactly one new worker takes the dead one's place, and a call runs on one of the two."""
    src = tmp_path / "warm.py"
    src.write_text(
        "import os\nimport podium\n\n"
        "@podium.handler(name='warm', min_workers=2, max_workers=2, idle_timeout=0)\n"
        "def handler(job):\n    return os.getpid()\n"
    )
    srv = server_factory()
    eid = srv.deploy(src, "warm")["endpoint_id"]

    def ready() -> list[str]:
        ws = srv.http.get(f"/api/v1/endpoints/{eid}").json()["workers"]
        return sorted(w["id"] for w in ws if w["state"] in ("IDLE", "RUNNING"))

    def ran_on() -> str:
        r = srv.http.post(f"/v2/{eid}/runsync", json={"input": {}}).json()
        assert r["status"] == "COMPLETED", r
        return srv.job(r["id"])["worker_id"]

    first = wait_until(lambda: len(ids := ready()) == 2 and ids, what="two warm workers")
    assert ran_on() in first, "a call runs on a warm worker"
    victim, survivor = first
    # Its pid as this machine sees it (in its sandbox, os.getpid() is its box's own numbering).
    os.kill(worker_pids(srv.proc.pid, eid)[victim], 9)
    after = wait_until(lambda: len(ids := ready()) == 2 and victim not in ids and ids, 30, what="a replacement")
    assert survivor in after, "the worker that did not crash is kept, idle as it is"
    [replacement] = set(after) - {survivor}
    assert replacement not in first
    assert ran_on() in after
    health = srv.http.get(f"/v2/{eid}/health").json()["workers"]
    assert health["idle"] + health["running"] == 2


def test_cli_front_door(server_factory, tmp_path):
    srv = server_factory()
    creds = srv.home / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert json.loads(creds.read_text())["api_key"] == srv.key
    out = srv.cli("deploy", str(SERVICES / "basic"), "--name", "hello").stdout
    assert "curl" in out and "/runsync" in out and srv.key not in out
    assert (
        srv.cli("call", "hello", "/hello", "-d", '{"number": 7}').stdout.strip()
        == '"Hello, world! My favorite number is 7"'
    )
    listed = json.loads(srv.cli("ls", "--json").stdout)
    assert [e["name"] for e in listed] == ["hello"]
    job_id = srv.http.post("/v2/hello/run", json={"input": {"value": 1}}).json()["id"]
    srv.wait_job(job_id)
    shown = json.loads(srv.cli("jobs", "show", job_id, "--json").stdout)
    assert shown["status"] == "COMPLETED" and shown["output"]["value"] == 1
    logs = json.loads(srv.cli("logs", "hello", "--json").stdout)
    assert logs["workers"] and any("initializer done" in line for w in logs["workers"] for line in w["lines"])
    key = json.loads(srv.cli("keys", "create", "--role", "invoke", "--json").stdout)
    assert key["key"].startswith("pod_live_") and key["role"] == "invoke"
    assert httpx.post(f"{srv.url}/hello/hello", json={}, headers={"x-api-key": key["key"]}).status_code == 200
    forbidden = httpx.post(f"{srv.url}/api/v1/keys", json={}, headers={"x-api-key": key["key"]})
    assert forbidden.status_code == 403


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["call", "nosuch", "/hello"], "no endpoint 'nosuch'"),
        (["call", "hello", "/hello", "-d", "{not json"], "--data is not valid JSON"),
        (["jobs", "show", "nosuchjob"], "no job 'nosuchjob'"),
        (["status", "nosuch"], "no endpoint 'nosuch'"),
        (["deploy", "/nonexistent/path", "--name", "x"], "no such file or directory"),
        (["deploy", str(SERVICES / "basic"), "--name", "Bad_Name"], "must match"),
    ],
)
def test_cli_errors_are_one_clear_line(server_factory, args, needle):
    srv = server_factory()
    srv.deploy(SERVICES / "basic", "hello")
    res = srv.cli(*args, check=False)
    assert res.returncode == 1
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_cli_without_a_server_says_so(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "PODIUM_HOME": str(tmp_path), "PODIUM_URL": "http://127.0.0.1:9", "PODIUM_API_KEY": "k"}
    res = subprocess.run([sys.executable, "-m", "podium", "ls"], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "is `podium up` running?" in res.stderr and "Traceback" not in res.stderr
    env.pop("PODIUM_API_KEY")
    res = subprocess.run([sys.executable, "-m", "podium", "ls"], env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "no API key" in res.stderr


def test_the_whole_path_on_postgresql(server_factory, pg_cluster):
    """Same server, store on PostgreSQL: deploy, route call, runsync, kill-free happy path."""
    url = pg_cluster.create_database("e2e")
    srv = server_factory(db_url=url)
    ep = srv.deploy(SERVICES / "basic", "basic")
    assert srv.http.post("/basic/hello", json={"number": 3}).json() == "Hello, world! My favorite number is 3"
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {"value": "pg"}}).json()
    assert r["status"] == "COMPLETED" and r["output"]["value"] == "pg"
    assert not (srv.home / "podium.db").exists()
