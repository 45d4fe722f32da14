"""Why a queued job waits, in its own status: a real server and real workers.

Every IN_QUEUE answer of /run, /runsync, /status, /status-sync and GET /api/v1/jobs/{id} carries
`waiting: {reason, detail, since}`. Each test makes one cause happen for real and reads it back
(`no_gpu` is in test_gpus.py, with fake GPUs; `starting` also in test_route_jobs.py; `building`
with a package index that never answers).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

#: One worker at most; a job blocks until its marker's release file exists; the initializer
#: waits for a gate file, then fails if a `fail` file is there.
BUSY = """
import time
from pathlib import Path

import podium

HERE = Path({here!r})


@podium.service(name="{name}", min_workers=0, max_workers=1)
def init():
    while not (HERE / "gate").exists():
        time.sleep(0.02)
    if (HERE / "fail").exists():
        raise RuntimeError("model weights not found\\nat /models/x")
    return {{}}


@init.endpoint("/work", default=True)
def work(tag=""):
    while not (HERE / f"release-{{tag}}").exists():
        time.sleep(0.02)
    return {{"tag": tag}}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("waiting"), env={"PODIUM_STATUS_HOLD": "0.05"}) as server:
        yield server


def deploy(srv: PodiumServer, tmp_path: Path, name: str, *, gate: bool = True) -> tuple[str, Path]:
    here = tmp_path / name
    here.mkdir()
    if gate:
        (here / "gate").touch()
    (here / "app.py").write_text(BUSY.format(here=str(here), name=name))
    out = srv.cli("deploy", str(here / "app.py"), "--name", name, "--json", "--no-wait")
    return json.loads(out.stdout)["endpoint_id"], here


def run(srv: PodiumServer, ep: str, tag: str, **more: Any) -> dict[str, Any]:
    r = srv.http.post(f"/v2/{ep}/run", json={"input": {"tag": tag}, **more})
    assert r.status_code == 200, r.text
    return dict(r.json())


def waiting(srv: PodiumServer, ep: str, job_id: str, reason: str) -> dict[str, Any]:
    """The job's /status once it says it waits for `reason`."""
    return wait_until(
        lambda: (
            (b := srv.http.get(f"/v2/{ep}/status/{job_id}").json()).get("waiting", {}).get("reason") == reason and b
        ),
        30,
        what=f"waiting for {reason}",
    )


def test_jobs_behind_a_busy_worker_say_at_capacity_and_how_many_are_ahead(srv, tmp_path):
    """1. One worker at most, busy with job a. 2. Jobs b and c queue: at_capacity, c with one
    ahead, on /status, /status-sync, /runsync, the job API and the CLI; no Retry-After (its turn
    comes when a job ends). 3. A low-priority job d says low_priority. 4. Release all: done."""
    ep, here = deploy(srv, tmp_path, "busy")
    a = run(srv, ep, "a")["id"]
    wait_until(lambda: srv.job(a)["status"] == "IN_PROGRESS", 30, what="a to run")
    before = time.time()
    b = run(srv, ep, "b")
    assert b["waiting"]["reason"] == "at_capacity"  # /run says it already
    c = run(srv, ep, "c")["id"]
    body = waiting(srv, ep, c, "at_capacity")
    assert body["status"] == "IN_QUEUE"
    assert set(body["waiting"]) == {"reason", "detail", "since"}
    assert "1 job ahead" in body["waiting"]["detail"] and "busy" in body["waiting"]["detail"]
    assert before - 1 <= body["waiting"]["since"] <= time.time()
    assert "retry-after" not in srv.http.get(f"/v2/{ep}/status/{c}").headers
    synced = srv.http.get(f"/v2/{ep}/status-sync/{c}?wait=1000").json()
    assert synced["waiting"]["reason"] == "at_capacity"
    sync = srv.http.post(f"/v2/{ep}/runsync?wait=1000", json={"input": {"tag": "s"}}).json()
    assert sync["status"] == "IN_QUEUE" and sync["waiting"]["reason"] == "at_capacity"
    assert srv.job(c)["waiting"]["reason"] == "at_capacity"
    shown = srv.cli("jobs", "show", c).stdout
    assert "waiting: at_capacity" in shown and "1 job ahead" in shown
    with httpx.Client(base_url=srv.url, timeout=30) as web:  # the console's job page says it too
        csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/login").text).group(1)
        assert web.post("/console/login", data={"csrf": csrf, "api_key": srv.key}).status_code == 303
        page = web.get(f"/console/jobs/{c}").text
        assert 'id="job-waiting"' in page and "at_capacity" in page and "1 job ahead" in page
    d = run(srv, ep, "d", policy={"lowPriority": True})["id"]
    assert "low-priority" in waiting(srv, ep, d, "low_priority")["waiting"]["detail"]
    for tag in "abcsd":
        (here / f"release-{tag}").touch()
    for job in (a, b["id"], c, d):
        done = srv.wait_job(job)
        assert done["status"] == "COMPLETED" and done["waiting"] is None


def test_a_job_queued_before_its_endpoint_stops_says_stopped(srv, tmp_path):
    ep, here = deploy(srv, tmp_path, "stops")
    a = run(srv, ep, "a")["id"]
    wait_until(lambda: srv.job(a)["status"] == "IN_PROGRESS", 30, what="a to run")
    b = run(srv, ep, "b")["id"]
    srv.cli("stop", "stops")
    body = waiting(srv, ep, b, "stopped")
    assert "is stopped" in body["waiting"]["detail"]
    assert srv.job(b)["waiting"]["reason"] == "stopped"
    (here / "release-a").touch()


def test_a_job_behind_a_failing_initializer_says_init_failing_with_the_first_line(srv, tmp_path):
    """1. Deploy (no wait); the first worker's initializer waits for a gate. 2. A job queues:
    starting, with a Retry-After. 3. The initializer fails: the endpoint is in ERROR and the job
    says init_failing, with the error's first line only."""
    ep, here = deploy(srv, tmp_path, "fails", gate=False)
    job = run(srv, ep, "a")["id"]
    r = srv.http.get(f"/v2/{ep}/status/{job}")
    assert r.json()["waiting"]["reason"] == "starting" and r.headers["retry-after"] == "1"
    assert "cold start" in r.json()["waiting"]["detail"]
    (here / "fail").touch()
    (here / "gate").touch()
    body = waiting(srv, ep, job, "init_failing")
    detail = body["waiting"]["detail"]
    assert "model weights not found" in detail and "/models/x" not in detail
    assert srv.job(job)["waiting"]["reason"] == "init_failing"


def test_a_job_on_an_endpoint_whose_environment_builds_says_building(tmp_path):
    """1. The package index accepts connections and never answers: a version that needs a
    package builds until the server stops. 2. A job on its endpoint says building."""
    index = socket.socket()
    index.bind(("127.0.0.1", 0))
    index.listen(16)
    url = f"http://127.0.0.1:{index.getsockname()[1]}/simple"
    env = {"PIP_INDEX_URL": url, "UV_INDEX_URL": url, "UV_HTTP_TIMEOUT": "600", "PIP_FIND_LINKS": ""}
    try:
        with PodiumServer(tmp_path / "home", env=env) as srv:
            here = tmp_path / "builds"
            here.mkdir()
            (here / "gate").touch()
            (here / "app.py").write_text(BUSY.format(here=str(here), name="builds"))
            (here / "requirements.txt").write_text("podium-envpkg==1.0\n")
            ep = json.loads(srv.cli("deploy", str(here), "--name", "builds", "--json", "--no-wait").stdout)[
                "endpoint_id"
            ]
            job = run(srv, ep, "a")
            assert job["waiting"]["reason"] == "building", job
            body = waiting(srv, ep, job["id"], "building")
            assert "is being built" in body["waiting"]["detail"]
            assert srv.job(job["id"])["waiting"]["reason"] == "building"
    finally:
        index.close()
