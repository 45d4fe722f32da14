"""Worker logs: JSON lines with endpoint, worker, job and attempt (user prints included), read per
job and followed live through `podium logs`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("logs-home")) as s:
        s.deploy(SERVICES / "logging", "chatty")
        yield s


def call(srv, text):
    r = srv.http.post("/chatty/say", json={"text": text})
    assert r.status_code == 200
    return r.headers["x-podium-job-id"]


def test_every_line_carries_endpoint_worker_and_the_jobs_fields(srv):
    a, b = call(srv, "alpha"), call(srv, "beta")
    eid = srv.http.get("/api/v1/endpoints/chatty").json()["endpoint_id"]
    lines = [json.loads(line) for p in (srv.home / "logs" / eid).glob("*.log") for line in p.read_text().splitlines()]
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
    proc = subprocess.Popen(
        [sys.executable, "-m", "podium", "logs", "chatty", "--follow", "--tail", "1"],
        env=srv.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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


def test_an_endpoint_of_the_same_name_in_another_project_does_not_see_its_logs(srv):
    """Issue 22, finding 3: worker logs were kept by endpoint name, so project beta's `chatty`
    read the lines of the default project's `chatty`."""
    call(srv, "alpha-private-line")
    beta_key = json.loads(srv.cli("projects", "create", "beta", "--json").stdout)["admin_key"]["key"]
    srv.cli("deploy", str(SERVICES / "logging"), "--name", "chatty", "--project", "beta", "--json")
    beta = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {beta_key}"}, timeout=30)
    with beta:
        assert beta.post("/chatty/say", json={"text": "beta-own-line"}).status_code == 200
        shown = beta.get("/api/v1/endpoints/chatty/logs", params={"tail_lines": 10_000}).json()
    texts = [line for w in shown["workers"] for line in w["lines"]]
    assert any("beta-own-line" in t for t in texts)
    assert not any("alpha-private-line" in t for t in texts), "another project's log lines"
    mine = srv.http.get("/api/v1/endpoints/chatty/logs", params={"tail_lines": 10_000}).json()
    assert not any("beta-own-line" in line for w in mine["workers"] for line in w["lines"])


def test_logs_kept_by_name_are_moved_by_the_endpoint_their_lines_name(server_factory, tmp_path):
    """A home from before logs were kept by endpoint id: on start, each log goes to the folder of
    the endpoint its lines carry; one that names no endpoint goes where no endpoint reads it."""
    home = tmp_path / "old-home"
    srv = server_factory(home)
    eid = srv.deploy(SERVICES / "logging", "chatty")["endpoint_id"]
    srv.stop()
    old = home / "logs" / "chatty"
    old.mkdir()
    line = {"time": "2026-01-01T00:00:00.000Z", "level": "info", "msg": "from before", "endpoint": eid}
    (old / "w-old.log").write_text(json.dumps(line) + "\n")
    (old / "w-plain.log").write_text("a line naming no endpoint\n")
    (home / "logs" / ".by-endpoint-id").unlink()
    srv.start()
    shown = srv.http.get("/api/v1/endpoints/chatty/logs").json()
    assert {w["worker"]: w["lines"] for w in shown["workers"]}.get("w-old") == [json.dumps(line)]
    assert not old.exists()
    assert (home / "logs" / ".unsorted" / "chatty" / "w-plain.log").exists()
