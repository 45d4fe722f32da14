"""Faults with real processes: kill -9 a worker mid-job, kill -9 the server with jobs queued."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from conftest import SERVICES
from server import wait_until

pytestmark = pytest.mark.slow


def test_worker_killed_mid_job_the_job_completes_on_a_fresh_worker(server_factory, tmp_path):
    """1. Start a job that blocks, and note the worker's pid.
    2. kill -9 that worker.
    3. Release the job: it runs again (attempt 2) on a new worker and completes."""
    srv = server_factory()
    ep = srv.deploy(SERVICES / "basic", "basic")
    marker = str(tmp_path / "k")
    job_id = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"marker": marker, "block": True}}).json()[
        "id"
    ]
    started = wait_until(lambda: Path(f"{marker}.started.1").exists() and Path(f"{marker}.started.1"), what="start")
    pid = int(started.read_text())
    os.kill(pid, signal.SIGKILL)
    Path(f"{marker}.release").touch()
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "COMPLETED"
    assert job["attempt"] == 2 and job["output"]["attempt"] == 2
    assert job["output"]["pid"] != pid
    assert "worker lost" in job["attempt_errors"][0]["error"]


def test_job_that_kills_its_worker_every_time_ends_failed(server_factory, tmp_path):
    """Every claim counts as an attempt: a job whose worker dies each time ends FAILED, no loop."""
    srv = server_factory()
    ep = srv.deploy(SERVICES / "basic", "basic")
    marker = str(tmp_path / "x")
    job_id = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"marker": marker, "block": True}}).json()[
        "id"
    ]
    for attempt in (1, 2, 3):
        started = wait_until(
            lambda a=attempt: Path(f"{marker}.started.{a}").exists() and Path(f"{marker}.started.{a}"),
            timeout=60,
            what=f"attempt {attempt}",
        )
        os.kill(int(started.read_text()), signal.SIGKILL)
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "FAILED" and job["error"].startswith("worker lost")
    assert job["attempt"] == 3 and len(job["attempt_errors"]) == 3
    status = srv.http.get(f"/v2/{ep['endpoint_id']}/status/{job_id}").json()
    assert status["status"] == "FAILED" and "worker lost" in status["error"]


def test_server_killed_with_jobs_queued_every_accepted_job_completes(server_factory, tmp_path):
    """1. One worker holds a blocking job; five more jobs wait behind it.
    2. kill -9 the server (its worker exits when it sees its parent gone).
    3. Start the server again on the same home: every accepted job completes."""
    home = tmp_path / "home"
    srv = server_factory(home)
    ep = srv.deploy(SERVICES / "basic", "basic")
    eid = ep["endpoint_id"]
    marker = str(tmp_path / "r")
    blocked = srv.http.post(f"/v2/{eid}/run", json={"input": {"marker": marker, "block": True}}).json()["id"]
    wait_until(lambda: Path(f"{marker}.started.1").exists(), what="blocked job start")
    # Both workers busy: the second gets a blocking job too, so the rest must wait in the queue.
    marker2 = str(tmp_path / "r2")
    blocked2 = srv.http.post(f"/v2/{eid}/run", json={"input": {"marker": marker2, "block": True}}).json()["id"]
    wait_until(lambda: Path(f"{marker2}.started.1").exists(), what="second blocked job start")
    queued = [srv.http.post(f"/v2/{eid}/run", json={"input": {"value": i}}).json()["id"] for i in range(5)]
    assert all(srv.job(j)["status"] == "IN_QUEUE" for j in queued)
    srv.stop(signal.SIGKILL)
    Path(f"{marker}.release").touch()
    Path(f"{marker2}.release").touch()
    again = server_factory(home)
    for job_id in [blocked, blocked2, *queued]:
        job = again.wait_job(job_id, timeout=60)
        assert job["status"] == "COMPLETED", job
    assert [again.job(j)["output"]["value"] for j in queued] == list(range(5))
