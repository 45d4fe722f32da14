"""GPUs on the local backend, against a real server that declares two (`PODIUM_GPUS=0,1`): each
worker its own device, no third worker while both are taken (the status says why), services asking
more than the machine has refused, `podium scale --gpus`."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

# Workers unboxed (PODIUM_SANDBOX=off): these tests hand workers marker files under tmp_path and
# signal them by the pid they report, neither of which a sandboxed worker shares
# (tests/e2e/test_sandbox.py covers the box).

GPUS = SERVICES / "gpus"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("gpus-home"), env={"PODIUM_GPUS": "0,1"}) as s:
        yield s


def run(srv, name, **inp):
    r = srv.http.post(f"/v2/{name}/run", json={"input": inp})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def status(srv, name):
    return json.loads(srv.cli("status", name, "--json").stdout)


def console_page(srv, path):
    """A console page's HTML, signed in with the admin key through the sign-in form."""
    with httpx.Client(base_url=srv.url, timeout=30) as web:
        csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/login").text).group(1)
        assert web.post("/console/login", data={"csrf": csrf, "api_key": srv.key}).status_code == 303
        return web.get(path).text


def test_each_worker_gets_its_own_gpu_and_a_third_waits_for_one(srv, tmp_path):
    srv.deploy(GPUS / "devices.py", "gpu")
    gate = tmp_path / "open"
    held = [run(srv, "gpu", gate=str(gate)) for _ in range(2)]
    wait_until(lambda: all(srv.job(j)["status"] == "IN_PROGRESS" for j in held), what="two jobs running")
    third = run(srv, "gpu", gate=str(gate))
    ep = wait_until(lambda: (e := status(srv, "gpu"))["waiting_for"] and e, what="the endpoint to say why it waits")
    assert ep["waiting_for"] == "waiting for 1 GPU (2 of 2 in use)"
    assert len(ep["workers"]) == 2 and srv.job(third)["status"] == "IN_QUEUE"
    polled = srv.http.get(f"/v2/gpu/status/{third}")  # the job's own status says it too
    assert polled.json()["waiting"]["reason"] == "no_gpu"
    assert polled.json()["waiting"]["detail"].startswith("waiting for 1 GPU (2 of 2 in use)")
    assert polled.headers["retry-after"] == "1"
    shown = srv.cli("status", "gpu").stdout
    assert "waiting: waiting for 1 GPU (2 of 2 in use)" in shown and "1 CPU, 1 GPU" in shown
    assert "Jobs wait: waiting for 1 GPU (2 of 2 in use)" in console_page(srv, "/console/endpoints/gpu")

    gate.write_text("")
    done = [srv.wait_job(j) for j in [*held, third]]
    assert all(j["status"] == "COMPLETED" for j in done)
    first, second = (j["output"] for j in done[:2])
    assert {first["devices"], second["devices"]} == {"0", "1"} and first["pid"] != second["pid"]
    assert done[2]["output"]["devices"] in {"0", "1"}
    assert len(status(srv, "gpu")["workers"]) == 2, "never a third worker on two GPUs"
    srv.cli("stop", "gpu")  # its workers give their GPUs back as they stop


def test_a_worker_asking_no_gpu_sees_none(srv):
    out = srv.deploy(GPUS / "cpu_only.py", "cpu-only")
    assert out["state"] == "ACTIVE"
    job = srv.wait_job(run(srv, "cpu-only"))
    assert job["output"] == {"devices": ""}
    scaling = status(srv, "cpu-only")["scaling"]
    assert (scaling["cpus"], scaling["gpus"], scaling["memory_mb"]) == (0.5, 0, 256)


def test_more_gpus_than_the_machine_has_is_a_deploy_error(srv):
    res = srv.cli("deploy", str(GPUS / "devices.py"), "--name", "greedy", "--gpus", "3", check=False)
    assert res.returncode == 1
    assert "the service asks for 3 GPUs; this machine has 2 (0, 1)" in res.stderr
    assert "Traceback" not in res.stderr
    assert srv.http.get("/api/v1/endpoints/greedy").status_code == 404, "nothing deployed"
    r = srv.http.patch("/api/v1/endpoints/gpu/scaling", json={"gpus": 3})
    assert r.status_code == 422 and r.json()["error"] == "insufficient_resources"
    assert "3 GPUs; this machine has 2" in r.json()["detail"]


def test_scale_gpus_replaces_the_workers(srv):
    srv.deploy(GPUS / "devices.py", "pair")
    out = json.loads(srv.cli("scale", "pair", "--gpus", "2", "--json").stdout)
    assert out["scaling"]["gpus"] == 2
    job = srv.wait_job(run(srv, "pair"))
    assert job["status"] == "COMPLETED" and job["output"]["devices"] == "0,1"
    assert "1 CPU, 2 GPU" in srv.cli("status", "pair").stdout
    bad = srv.cli("scale", "pair", "--gpus", "-1", check=False)
    assert bad.returncode == 1 and "gpus must be a whole number" in bad.stderr
    srv.cli("stop", "pair")


def test_a_runpod_worker_file_gets_its_resources_from_the_deploy_command(srv):
    out = json.loads(
        srv.cli(
            "deploy",
            str(SERVICES / "rpw" / "echo.py"),
            "--name",
            "rp-gpu",
            "--gpus",
            "1",
            "--cpus",
            "2",
            "--memory-mb",
            "4096",
            "--no-wait",
            "--json",
        ).stdout
    )
    scaling = status(srv, out["endpoint_id"])["scaling"]
    assert (scaling["cpus"], scaling["gpus"], scaling["memory_mb"]) == (2.0, 1, 4096)


def test_idle_workers_of_another_endpoint_give_their_gpus_up(srv):
    srv.deploy(GPUS / "devices.py", "hog")
    srv.cli("scale", "hog", "--gpus", "2")
    assert srv.wait_job(run(srv, "hog"))["output"]["devices"] == "0,1"
    assert len(status(srv, "hog")["workers"]) == 1, "idle, holding both GPUs for minutes (idle_timeout)"
    out = srv.deploy(GPUS / "cpu_only.py", "small")  # a deploy waits for one worker: it needs no GPU
    assert out["state"] == "ACTIVE" and len(status(srv, "hog")["workers"]) == 1
    srv.cli("scale", "small", "--gpus", "1")
    job = srv.wait_job(run(srv, "small"), timeout=60)
    assert job["status"] == "COMPLETED" and job["output"]["devices"] in {"0", "1"}
    assert status(srv, "hog")["workers"] == [], "the idle worker of hog made room"
