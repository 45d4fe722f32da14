"""Health-gated deploys, through a real server and real workers: a redeploy becomes current only
once a worker of it has run the initializer; one that cannot start leaves the endpoint serving its
version, ACTIVE, and is recorded with its error."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import PodiumServer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.boxed]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    home = tmp_path_factory.mktemp("gated-home")
    with PodiumServer(home) as s:
        yield s


def service(path: Path, name: str, tag: str, init: str = "pass", **settings: Any) -> Path:
    """A service whose route answers `tag` (its version) and whose initializer runs `init`."""
    opts = "".join(f", {k}={v!r}" for k, v in settings.items())
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.py").write_text(
        "import time\n\nimport podium\n\n\n"
        f"@podium.service(name={name!r}{opts})\n"
        f"def init():\n    {init}\n    return {{}}\n\n\n"
        "@init.endpoint('/which')\n"
        f"def which(sleep: float = 0.0):\n    time.sleep(sleep)\n    return {tag!r}\n"
    )
    return path


def deploy(srv: PodiumServer, path: Path, name: str) -> tuple[int, dict[str, Any], str]:
    res = srv.cli("deploy", str(path), "--name", name, "--json", check=False)
    return res.returncode, json.loads(res.stdout), res.stderr


class Traffic:
    """Calls a route and submits /run jobs back to back until stopped, keeping every answer."""

    def __init__(self, srv: PodiumServer, name: str) -> None:
        self.srv, self.name = srv, name
        self.codes: list[int] = []
        self.outputs: list[Any] = []
        self.jobs: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.srv.url, headers=self.srv.http.headers, timeout=60) as http:
            while not self._stop.is_set():
                r = http.post(f"/{self.name}/which", json={"sleep": 0.05})
                self.codes.append(r.status_code)
                if r.status_code == 200:
                    self.outputs.append(r.json())
                r = http.post(f"/v2/{self.name}/run", json={"input": {"sleep": 0.05}})
                self.codes.append(r.status_code)
                if r.status_code == 200:
                    self.jobs.append(r.json()["id"])

    def __enter__(self) -> Traffic:
        self._thread.start()
        wait_until(lambda: len(self.outputs) >= 3, 30, what="traffic flowing")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_a_redeploy_whose_initializer_fails_keeps_the_old_version_serving(srv, tmp_path):
    """1. v1 serves under continuous traffic (route calls and /run jobs).
    2. v2, whose initializer raises after a second, is deployed: `podium deploy` exits 1 with the
       error's first line.
    3. Result: no answer was a 5xx, every call and every accepted job ran on v1, the endpoint is
       still ACTIVE on v1, and v2 is recorded as failed with the worker's error and log tail."""
    code, first, _ = deploy(srv, service(tmp_path / "v1", "gated", "v1", max_workers=2), "gated")
    assert code == 0 and first["state"] == "ACTIVE"
    broken = service(
        tmp_path / "v2", "gated", "v2", "time.sleep(1)\n    raise RuntimeError('the new model does not load')"
    )
    with Traffic(srv, "gated") as traffic:
        code, out, stderr = deploy(srv, broken, "gated")
        seen = len(traffic.codes)
        wait_until(lambda: len(traffic.codes) > seen + 6, 30, what="traffic after the deploy")
    fives = [c for c in traffic.codes if c >= 500]
    assert fives == [], f"{len(fives)} of {len(traffic.codes)} answers were 5xx while the deploy failed"
    assert set(traffic.outputs) == {"v1"}
    ended = [srv.wait_job(j) for j in traffic.jobs]
    assert {j["status"] for j in ended} == {"COMPLETED"} and {j["output"] for j in ended} == {"v1"}
    assert code == 1
    assert "RuntimeError: the new model does not load" in out["deploy_error"]
    assert out["version"] == first["version"] and out["state"] == "ACTIVE"
    print(f"\n{len(traffic.codes)} answers while v2 failed to start, none 5xx; {len(ended)} jobs ran on v1")

    ep = srv.http.get("/api/v1/endpoints/gated").json()
    assert ep["state"] == "ACTIVE" and ep["version"] == first["version"] and ep["pending_version"] is None
    failed = out["deploy_error"].split()[1]
    shown = srv.http.get(f"/api/v1/versions/{failed}").json()
    assert "RuntimeError: the new model does not load" in shown["start_error"]
    assert "worker log" in shown["start_error"], "the worker's log tail is kept with it"
    listed = json.loads(srv.cli("versions", "ls", "gated", "--json").stdout)["versions"]
    assert [(v["id"], v["current"], bool(v["start_error"])) for v in listed] == [
        (failed, False, True),
        (first["version"], True, False),
    ]
    history = srv.http.get("/api/v1/endpoints/gated/history").json()["history"]
    assert [(h["version"], h["current"], h["error"] is not None) for h in history] == [
        (failed, False, True),
        (first["version"], True, False),
    ]
    plain = srv.cli("deploy", str(broken), "--name", "gated", check=False)
    assert plain.returncode == 1
    assert plain.stderr.startswith(f"error: version {failed} did not start; endpoint gated stays on version")
    assert "RuntimeError: the new model does not load" in plain.stderr.splitlines()[1]

    code, fixed, _ = deploy(srv, service(tmp_path / "v3", "gated", "v3", max_workers=2), "gated")
    assert code == 0 and fixed["state"] == "ACTIVE" and fixed["version"] not in (first["version"], failed)
    assert srv.http.post("/gated/which", json={}).json() == "v3", "a good redeploy moves the endpoint"


def test_a_redeploy_past_startup_timeout_keeps_the_old_version(srv, tmp_path):
    """1. v1 serves. 2. v2's initializer outlasts its startup_timeout of 2 s.
    3. Result: deploy exits 1 saying so; the endpoint is ACTIVE on v1 and answers from it."""
    code, first, _ = deploy(srv, service(tmp_path / "v1", "slowstart", "v1"), "slowstart")
    assert code == 0
    hang = service(tmp_path / "v2", "slowstart", "v2", "time.sleep(3600)", startup_timeout=2)
    code, out, _ = deploy(srv, hang, "slowstart")
    assert code == 1 and "did not become ready within 2 s (startup_timeout)" in out["deploy_error"]
    assert out["state"] == "ACTIVE" and out["version"] == first["version"]
    assert srv.http.post("/slowstart/which", json={}).json() == "v1"


def test_a_scale_to_zero_endpoint_is_redeployed_through_a_probe_worker(srv, tmp_path):
    """1. v1 with min_workers=0 scales to zero.
    2. A failing v2 is deployed: a probe worker tries it; the endpoint stays ACTIVE on v1.
    3. A good v3 is deployed: it becomes current only with its probe ready, which then serves."""
    code, first, _ = deploy(srv, service(tmp_path / "v1", "zero", "v1", min_workers=0, idle_timeout=1), "zero")
    assert code == 0 and first["state"] == "ACTIVE"
    wait_until(lambda: not srv.http.get("/api/v1/endpoints/zero").json()["workers"], 30, what="scale to zero")
    bad = service(tmp_path / "v2", "zero", "v2", "raise RuntimeError('no GPU driver')", min_workers=0)
    code, out, _ = deploy(srv, bad, "zero")
    assert code == 1 and "RuntimeError: no GPU driver" in out["deploy_error"]
    assert out["state"] == "ACTIVE" and out["version"] == first["version"]
    assert srv.http.post("/zero/which", json={}).json() == "v1"

    good = service(tmp_path / "v3", "zero", "v3", "time.sleep(0.5)", min_workers=0, idle_timeout=30)
    code, out, _ = deploy(srv, good, "zero")
    assert code == 0 and out["state"] == "ACTIVE"
    ep = srv.http.get("/api/v1/endpoints/zero").json()
    probes = [w for w in ep["workers"] if w["version_id"] == out["version"] and w["ready_at"] is not None]
    assert ep["version"] == out["version"] and len(probes) == 1, ep["workers"]
    assert srv.http.post("/zero/which", json={}).json() == "v3"
    after = srv.http.get("/api/v1/endpoints/zero").json()["workers"]
    assert [w["id"] for w in after] == [probes[0]["id"]], "the probe serves: no other worker started"


def test_a_first_deploy_that_fails_puts_the_endpoint_in_error(srv, tmp_path):
    code, out, _ = deploy(srv, service(tmp_path / "v1", "never", "v1", "raise RuntimeError('bad init')"), "never")
    assert code == 1 and out["state"] == "ERROR"
    assert "RuntimeError: bad init" in srv.http.get("/api/v1/endpoints/never").json()["error"]


def test_a_redeploy_whose_workers_die_silently_is_refused_after_a_few(srv, tmp_path):
    """A version whose workers exit during the initializer without a word (os._exit, as an
    out-of-memory kill would) is refused after MAX_START_FAILURES probes; v1 serves on."""
    code, first, _ = deploy(srv, service(tmp_path / "v1", "silent", "v1"), "silent")
    assert code == 0
    code, out, _ = deploy(srv, service(tmp_path / "v2", "silent", "v2", "import os\n    os._exit(3)"), "silent")
    assert code == 1 and "worker exited with code 3 before it was ready" in out["deploy_error"]
    assert out["state"] == "ACTIVE" and out["version"] == first["version"]
    assert srv.http.post("/silent/which", json={}).json() == "v1"
