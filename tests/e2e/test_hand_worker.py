"""Workers started by hand (`podium worker --url URL --key KEY ENDPOINT`), as real processes against a
real server: they run the endpoint's current version and only its jobs, are told to stop after a
redeploy, show in status and health, and their jobs come back through leases when they die."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

SERVICE = """\
import os
import time
from pathlib import Path

import podium

if os.environ.get("HAND_BROKEN"):
    raise ImportError("No module named 'torch'")


@podium.handler(max_workers=1, idle_timeout=1)
def handler(job):
    gate = job["input"].get("gate")
    while gate and not Path(gate).exists():
        time.sleep(0.05)
    time.sleep(job["input"].get("sleep", 0))
    return {{"tag": "{tag}", "pid": os.getpid()}}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("hand-home")) as s:
        yield s


@pytest.fixture(scope="module")
def deploy_key(srv):
    return json.loads(srv.cli("keys", "create", "--role", "deploy", "--json").stdout)["key"]


class HandWorkers:
    """`podium worker` processes with a home of their own (as on another machine), all stopped after."""

    def __init__(self, srv: PodiumServer, home: Path) -> None:
        self.srv = srv
        self.home = home
        self.env = {k: v for k, v in os.environ.items() if k not in ("PODIUM_API_KEY", "PODIUM_URL")}
        self.env["PODIUM_HOME"] = str(home)
        self.env.pop("PODIUM_PING_INTERVAL", None)  # the server says how often (0.4 s: its leases are short)
        self.procs: list[subprocess.Popen[str]] = []

    def command(self, key: str, endpoint: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "podium", "worker", "--url", self.srv.url, "--key", key, endpoint, *extra]

    def start(self, key: str, endpoint: str, worker_id: str, **env: str) -> subprocess.Popen[str]:
        log = (self.home / f"{worker_id}.log").open("w")
        proc = subprocess.Popen(
            self.command(key, endpoint, "--worker-id", worker_id),
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, key: str, endpoint: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(key, endpoint), env=self.env, capture_output=True, text=True, timeout=60)

    def stop_all(self) -> None:
        """Each worker and whatever it started (a RunPod file and its ping process)."""
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            if p.stderr is not None:
                p.stderr.close()


@pytest.fixture
def hands(srv, tmp_path):
    home = tmp_path / "elsewhere"
    home.mkdir()
    h = HandWorkers(srv, home)
    yield h
    h.stop_all()


def deploy(srv, tmp_path, name, tag):
    src = tmp_path / f"{name}-{tag}"
    src.mkdir()
    (src / "handler.py").write_text(SERVICE.format(tag=tag))
    return srv.deploy(src, name)


def workers(srv, name):
    return {w["id"]: w for w in srv.http.get(f"/api/v1/endpoints/{name}").json()["workers"]}


def idle_out(srv, name):
    """Until the local worker that proved the version loads has idled out: hand workers alone serve."""
    wait_until(lambda: not workers(srv, name), what=f"{name}'s local worker to idle out")


def joined(srv, name, *ids):
    return wait_until(
        lambda: (ws := workers(srv, name)) and all(ws.get(i, {}).get("state") == "IDLE" for i in ids) and ws,
        what=f"{', '.join(ids)} to join {name}",
    )


def test_a_hand_worker_runs_its_version_and_stops_after_a_redeploy(srv, tmp_path, hands, deploy_key):
    v1 = deploy(srv, tmp_path, "hand", "one")["version"]
    idle_out(srv, "hand")
    proc = hands.start(deploy_key, "hand", "h-test-one")
    seen = joined(srv, "hand", "h-test-one")["h-test-one"]
    assert seen["local"] is False and seen["version_id"] == v1
    assert srv.http.get("/v2/hand/health").json()["workers"]["idle"] == 1
    shown = srv.cli("status", "hand").stdout
    assert "workers: 1 idle" in shown and f"h-test-one  IDLE  started elsewhere  version {v1}" in shown

    r = srv.http.post("/v2/hand/runsync", json={"input": {}})
    assert r.json()["output"] == {"tag": "one", "pid": proc.pid}, "the hand worker took the job"
    # Longer than the server's 2 s lease: the worker pings as often as the server asked it to.
    r = srv.http.post("/v2/hand/runsync", json={"input": {"sleep": 3}})
    assert r.json()["status"] == "COMPLETED" and srv.job(r.json()["id"])["attempt"] == 1

    v2 = deploy(srv, tmp_path, "hand", "two")["version"]
    assert v2 != v1
    assert proc.wait(timeout=60) == 0, "told to stop, it exits cleanly"
    said = proc.stderr.read()
    assert f"endpoint hand moved to version {v2}; this worker runs {v1}" in said
    assert "Traceback" not in said and deploy_key not in said
    r = srv.http.post("/v2/hand/runsync", json={"input": {}})
    assert r.json()["output"]["tag"] == "two"


def test_a_killed_hand_workers_job_completes_on_another_after_its_lease(srv, tmp_path, hands, deploy_key):
    deploy(srv, tmp_path, "leased", "one")
    idle_out(srv, "leased")
    procs = {wid: hands.start(deploy_key, "leased", wid) for wid in ("h-test-a", "h-test-b")}
    joined(srv, "leased", *procs)
    gate = tmp_path / "gate"
    job_id = srv.http.post("/v2/leased/run", json={"input": {"gate": str(gate)}}).json()["id"]
    holder = wait_until(
        lambda: (j := srv.job(job_id))["status"] == "IN_PROGRESS" and j["worker_id"],
        what="a hand worker to take the job",
    )
    procs[holder].send_signal(signal.SIGKILL)
    procs[holder].wait(timeout=10)
    gate.write_text("")
    (survivor,) = set(procs) - {holder}
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "COMPLETED" and job["attempt"] == 2
    assert job["output"]["pid"] == procs[survivor].pid
    wait_until(lambda: holder not in workers(srv, "leased"), what="the dead worker to leave the status")
    assert survivor in workers(srv, "leased")


def test_a_key_the_server_refuses_is_one_line_and_exit_code_2(srv, tmp_path, hands, deploy_key):
    deploy(srv, tmp_path, "guarded", "one")
    invoke_key = json.loads(srv.cli("keys", "create", "--role", "invoke", "--json").stdout)["key"]
    wrong = "pod_live_" + "x" * 40
    for key, endpoint, says in [
        (wrong, "guarded", "(401)"),
        (invoke_key, "guarded", "needs deploy"),
        (deploy_key, "no-such-endpoint", "no endpoint 'no-such-endpoint'"),
    ]:
        res = hands.run(key, endpoint)
        assert res.returncode == 2, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and lines[0].startswith("podium worker: the server refused")
        assert key not in res.stdout + res.stderr and "Traceback" not in res.stderr
    assert not any(not w["local"] for w in workers(srv, "guarded").values()), "no refused worker is recorded"


def test_a_runpod_worker_file_run_by_hand_gets_only_its_versions_jobs(srv, tmp_path, hands, deploy_key):
    """The runpod package cannot be told to stop; after a redeploy it is given nothing."""
    rp = SERVICES / "rpw" / "echo.py"
    v1 = json.loads(
        srv.cli("deploy", str(rp), "--name", "rp-hand", "--max-workers", "1", "--idle-timeout", "1", "--json").stdout
    )["version"]
    idle_out(srv, "rp-hand")
    proc = hands.start(deploy_key, "rp-hand", "h-test-rp")
    assert joined(srv, "rp-hand", "h-test-rp")["h-test-rp"]["version_id"] == v1
    first = srv.http.post("/v2/rp-hand/runsync", json={"input": {"n": 1}}).json()
    assert first["status"] == "COMPLETED" and srv.job(first["id"])["worker_id"] == "h-test-rp"

    srv.cli("deploy", str(rp), "--name", "rp-hand", "--max-workers", "1", "--idle-timeout", "30")
    second = srv.http.post("/v2/rp-hand/runsync", json={"input": {"n": 2}}).json()
    assert second["status"] == "COMPLETED" and srv.job(second["id"])["worker_id"] != "h-test-rp"
    assert proc.poll() is None, "still running, given nothing"
    # Killed outright, the worker takes the runpod file's process with it (it would poll for ever).
    children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    assert children
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(
        lambda: not any(Path(f"/proc/{c}").exists() for c in children),
        20,
        what="the runpod file's process to end with its worker",
    )


def test_a_hand_worker_that_cannot_load_says_why_and_the_endpoint_keeps_serving(srv, tmp_path, hands, deploy_key):
    v1 = deploy(srv, tmp_path, "sturdy", "one")["version"]
    proc = hands.start(deploy_key, "sturdy", "h-test-broken", HAND_BROKEN="1")
    assert proc.wait(timeout=60) == 1
    said = proc.stderr.read()
    line = said.strip().splitlines()[-1]
    assert line.startswith(f"podium worker: cannot load version {v1}: ") and "No module named 'torch'" in line
    assert deploy_key not in said
    ep = srv.http.get("/api/v1/endpoints/sturdy").json()
    assert ep["state"] == "ACTIVE" and ep["error"] is None, "one machine's missing package stops nothing"
    assert srv.http.post("/v2/sturdy/runsync", json={"input": {}}).json()["output"]["tag"] == "one"
