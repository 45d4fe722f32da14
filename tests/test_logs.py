"""Worker logs: JSON lines with endpoint, worker, job and attempt (user prints included), read per
job and followed live through `podium logs`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = PodiumServer(tmp_path_factory.mktemp("logs-home"))
    s.start()
    try:
        s.deploy(SERVICES / "logging", "chatty")
        yield s
    finally:
        s.close()


def call(srv, text):
    r = srv.http.post("/chatty/say", json={"text": text})
    assert r.status_code == 200
    return r.headers["x-podium-job-id"]


def test_every_line_carries_endpoint_worker_and_the_jobs_fields(srv):
    a, b = call(srv, "alpha"), call(srv, "beta")
    lines = [json.loads(line) for p in (srv.home / "logs" / "chatty").glob("*.log")
             for line in p.read_text().splitlines()]
    assert lines and all({"endpoint", "worker", "time", "level", "msg"} <= set(e) for e in lines)
    mine = [e for e in lines if e.get("job_id") == a]
    assert {e["msg"] for e in mine} >= {"printed alpha", "to stderr alpha", "logged alpha"}
    assert all(e["attempt"] == 1 for e in mine)
    assert any(e["msg"] == "initializer says hello" and "job_id" not in e for e in lines)

    shown = json.loads(srv.cli("logs", "chatty", "--job", a, "--json").stdout)
    texts = [json.loads(line)["msg"] for w in shown["workers"] for line in w["lines"]]
    assert "printed alpha" in texts and not any("beta" in t for t in texts)
    plain = srv.cli("logs", "chatty", "--job", b).stdout
    assert "printed beta" in plain and "alpha" not in plain


def test_follow_prints_new_lines_as_they_are_written(srv):
    proc = subprocess.Popen([sys.executable, "-m", "podium", "logs", "chatty", "--follow", "--tail", "1"],
                            env=srv.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        wait_until(lambda: seen, 20, 0.05, "the follower's first lines")
        call(srv, "gamma-follow")
        wait_until(lambda: any("printed gamma-follow" in line for line in seen), 20, 0.1, "the followed line")
    finally:
        proc.terminate()
        proc.wait(10)
