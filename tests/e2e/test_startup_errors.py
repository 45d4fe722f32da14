"""A service whose initializer fails: what its author reads (the endpoint's error, the CLI) and what
a job that waited for it says. A real server and real workers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

APP = """
import time
from pathlib import Path

import podium


def load_model(path):
    raise RuntimeError(f"model file {{path}} is corrupt")


@podium.service(name="broken-init")
def init():
    while not Path({marker!r}).exists():  # the test queues a job first
        time.sleep(0.02)
    return {{"model": load_model("weights.bin")}}


@init.endpoint("/predict", default=True)
def predict(model, x: float = 0.0):
    return x
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("startup-home")) as s:
        yield s


def test_a_failing_initializer_shows_the_users_frames_and_its_waiting_job_says_why(
    srv: PodiumServer, tmp_path: Path
) -> None:
    """1. Deploy (without waiting) a service whose initializer raises in a helper; queue a job.
    2. Let the initializer run.
    Result: the endpoint's error (what `podium deploy` and the console print) is plain text: the
    exception line and the service's frames, none of Podium's, no JSON log records; the job
    that waited stays queued, its status saying why with that exception line."""
    marker = tmp_path / "go"
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "app.py").write_text(textwrap.dedent(APP.format(marker=str(marker))))
    ep = json.loads(srv.cli("deploy", str(tmp_path / "svc"), "--name", "broken-init", "--no-wait", "--json").stdout)
    eid = ep["endpoint_id"]
    r = srv.http.post(f"/v2/{eid}/run", json={"input": {"x": 1}})
    assert r.status_code == 200, r.text
    marker.touch()
    error = wait_until(lambda: (e := srv.http.get(f"/api/v1/endpoints/{eid}").json())["state"] == "ERROR" and e)[
        "error"
    ]
    assert error.splitlines()[0] == "RuntimeError: model file weights.bin is corrupt"
    assert "in load_model" in error and 'raise RuntimeError(f"model file {path} is corrupt")' in error
    assert "in init" in error
    assert "podium/worker" not in error and "podium/sdk" not in error and "<frozen" not in error
    assert '{"time"' not in error
    job = srv.http.get(f"/v2/{eid}/status/{r.json()['id']}").json()
    assert job["status"] == "IN_QUEUE"
    assert job["waiting"]["reason"] == "init_failing"
    assert "RuntimeError: model file weights.bin is corrupt" in job["waiting"]["detail"]
