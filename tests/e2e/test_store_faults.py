"""The store locked by another process while jobs arrive: a clear 503, never a 200 for a job that
was not stored; service resumes when the lock is released."""

from __future__ import annotations

import sqlite3

import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


def test_a_locked_database_answers_503_and_stores_nothing(tmp_path):
    with PodiumServer(tmp_path / "home", env={"PODIUM_DB_BUSY_TIMEOUT": "0.5"}) as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        before = srv.http.get(f"/v2/{eid}/health").json()["jobs"]
        lock = sqlite3.connect(tmp_path / "home" / "podium.db", timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            r = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 1}})
            assert r.status_code == 503, r.text
            assert r.json()["error"] == "store_unavailable" and r.headers["retry-after"] == "1"
            assert "nothing was stored" in r.json()["detail"]
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        after = srv.http.get(f"/v2/{eid}/health").json()["jobs"]
        assert after == before, "the refused job was not stored"
        job = srv.wait_job(srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 2}}).json()["id"])
        assert job["status"] == "COMPLETED" and job["output"]["value"] == 2


def test_a_worker_waits_out_a_locked_store_and_serves_on(tmp_path):
    """Its job-take is answered 503 while another process holds the write lock: the worker tries
    again (it used to die on it), and once the lock is gone the same worker runs the next job."""
    home = tmp_path / "home"
    with PodiumServer(home, env={"PODIUM_DB_BUSY_TIMEOUT": "0.5"}) as srv:
        srv.deploy(SERVICES / "basic" / "app.py", "basic")
        assert srv.http.post("/v2/basic/runsync", json={"input": {"value": 1}}).json()["status"] == "COMPLETED"
        ep = srv.http.get("/api/v1/endpoints/basic").json()
        [worker] = [w["id"] for w in ep["workers"]]
        worker_log = home / "logs" / ep["endpoint_id"] / f"{worker}.log"
        lock = sqlite3.connect(home / "podium.db", timeout=5, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")
        try:
            wait_until(lambda: "store_unavailable" in worker_log.read_text(), 30, what="a job-take answered 503")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        job = srv.wait_job(srv.http.post("/v2/basic/run", json={"input": {"value": 2}}).json()["id"])
        assert job["status"] == "COMPLETED" and job["output"]["value"] == 2
        assert [w["id"] for w in srv.http.get("/api/v1/endpoints/basic").json()["workers"]] == [worker]
        assert "Traceback" not in worker_log.read_text()
