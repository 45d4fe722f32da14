"""Crashes with real processes: a worker killed mid-job, the server killed with jobs in hand, a
worker frozen mid-job (SIGSTOP: alive but silent), a job that SIGKILLs its own worker every time,
and a restart with a job queued and no workers.

Service: tests/services/faults/crash.py. `<marker>.started.<attempt>` holds the pid of the worker
running that attempt; a `block`ing job waits for `<marker>.release`; `die` SIGKILLs the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import SERVICES
from server import wait_until, worker_pids

pytestmark = pytest.mark.slow


CRASH = SERVICES / "faults" / "crash.py"


# -- helpers ------------------------------------------------------------------------------------


def deploy(srv: Any, name: str, *flags: str) -> str:
    """Deploy the crash service as `name` with scaling flags; returns the endpoint id."""
    return json.loads(srv.cli("deploy", str(CRASH), "--name", name, "--json", *flags).stdout)["endpoint_id"]


def run(srv: Any, eid: str, **inp: Any) -> str:
    r = srv.http.post(f"/v2/{eid}/run", json={"input": inp})
    r.raise_for_status()
    return r.json()["id"]


def alive(pid: int) -> bool:
    """Running or stopped (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return "gone"


def started(marker: Path, attempt: int, timeout: float = 30) -> int:
    """Wait for attempt `attempt` of a marker job to start; returns its worker's pid."""
    path = Path(f"{marker}.started.{attempt}")
    wait_until(lambda: path.exists() and path.read_text(), timeout, what=f"{path.name}")
    return int(path.read_text())


def endpoint_workers(srv: Any, eid: str) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in srv.http.get(f"/api/v1/endpoints/{eid}").json()["workers"]}


def lost_errors(job: dict[str, Any]) -> list[dict[str, Any]]:
    errors = job["attempt_errors"] or []
    assert all(e["error"].startswith("worker lost") for e in errors), errors
    return errors


# -- (a) a worker is killed mid-job; the server is killed with one job running and more queued --


def test_worker_killed_mid_job_the_job_completes_on_a_fresh_worker(server_factory, tmp_path):
    """1. Start a job that blocks, and note its worker's pid.
    2. kill -9 that worker.
    3. Release the job: it runs again (attempt 2) on a new worker and completes, attempt 1 on
       record as "worker lost"."""
    srv = server_factory()
    eid = deploy(srv, "crash", "--min-workers", "1", "--max-workers", "1")
    marker = tmp_path / "k"
    job_id = run(srv, eid, marker=str(marker), block=True, value="k")
    pid = started(marker, 1)
    os.kill(pid, signal.SIGKILL)
    Path(f"{marker}.release").touch()
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "COMPLETED", job
    assert job["attempt"] == 2 and job["output"]["attempt"] == 2, job
    assert job["output"]["pid"] != pid and job["output"]["value"] == "k"
    assert [e["attempt"] for e in lost_errors(job)] == [1]


def test_server_kill9_workers_exit_on_their_own_and_every_job_ends(server_factory, tmp_path):
    """1. One worker (max 1) runs a blocking job; four more wait behind it.
    2. kill -9 the server: its worker notices its parent is gone and exits by itself.
    3. Release the marker, start the server again (same port, same home): the running job comes
       back through its lapsed lease and completes on attempt 2; the queued ones complete on
       attempt 1; none is left IN_PROGRESS."""
    home = tmp_path / "home"
    srv = server_factory(home)
    eid = deploy(srv, "crash", "--min-workers", "1", "--max-workers", "1")
    marker = tmp_path / "a"
    release = Path(f"{marker}.release")
    try:
        blocked = run(srv, eid, marker=str(marker), block=True, value="blocked")
        pid = started(marker, 1)
        queued = [run(srv, eid, value=i) for i in range(4)]
        assert srv.job(blocked)["status"] == "IN_PROGRESS"
        assert [srv.job(j)["status"] for j in queued] == ["IN_QUEUE"] * 4
        server_pid = srv.proc.pid
        workers = worker_pids(server_pid, eid)
        assert pid in workers.values(), (pid, workers)

        srv.stop(signal.SIGKILL)
        # Nobody kills the workers for the server: they watch their parent (checked on each ping).
        wait_until(
            lambda: not any(alive(p) for p in workers.values()),
            timeout=10,
            what="the dead server's workers to exit by themselves",
        )
    finally:
        release.touch()

    srv.start()
    job = srv.wait_job(blocked, timeout=60)
    assert job["status"] == "COMPLETED", job
    assert job["attempt"] == 2 and job["output"]["attempt"] == 2, job
    assert job["output"]["pid"] != pid and job["output"]["value"] == "blocked"
    assert [e["attempt"] for e in lost_errors(job)] == [1]
    for i, job_id in enumerate(queued):
        job = srv.wait_job(job_id, timeout=60)
        assert job["status"] == "COMPLETED", job
        assert job["output"]["value"] == i
        assert job["attempt"] == 1 and not job["attempt_errors"], job
    health = srv.http.get(f"/v2/{eid}/health").json()["jobs"]
    assert health["inProgress"] == 0 and health["inQueue"] == 0 and health["completed"] == 5


def test_jobs_accepted_together_survive_a_kill9_right_after_their_200s(server_factory, tmp_path):
    """1. 200 /run requests from 32 threads at once: their jobs share commits and fsyncs.
    2. kill -9 the server the moment the last 200 is in.
    3. Start it again on the same home: every job that was answered 200 is there and completes."""
    srv = server_factory(tmp_path / "home")
    eid = deploy(srv, "burst", "--min-workers", "0", "--max-workers", "1")
    with ThreadPoolExecutor(32) as pool:
        accepted = list(pool.map(lambda i: run(srv, eid, value=i), range(200)))
    srv.stop(signal.SIGKILL)

    srv.start()
    for i, job_id in enumerate(accepted):
        job = srv.wait_job(job_id, timeout=60)
        assert job["status"] == "COMPLETED" and job["output"]["value"] == i, job


# -- (b) a worker that stops pinging without dying ----------------------------------------------


def test_frozen_worker_job_is_requeued_and_its_late_result_is_dropped(server_factory, tmp_path):
    """1. SIGSTOP the worker running a blocking job (alive, but no pings, no progress).
    2. Its lease (2 s) lapses: the job is requeued, attempt 1 on record as "worker lost".
    3. SIGCONT it: attempt 1 finishes late and posts its result, which must change nothing; the
       job completes with attempt 2's result (on whichever worker takes it)."""
    srv = server_factory()
    eid = deploy(srv, "crash", "--min-workers", "1", "--max-workers", "2")
    marker = tmp_path / "b"
    release = Path(f"{marker}.release")
    frozen = None
    try:
        job_id = run(srv, eid, marker=str(marker), block=True, value="b")
        frozen = started(marker, 1)
        os.kill(frozen, signal.SIGSTOP)
        release.touch()  # the frozen worker cannot see it yet; attempt 2 returns at once
        wait_until(lambda: srv.job(job_id)["attempt_errors"], timeout=10, what="the lease to lapse")
        os.kill(frozen, signal.SIGCONT)
        late = Path(f"{marker}.finished.1")
        wait_until(lambda: late.exists() or not alive(frozen), timeout=10, what="the thawed attempt 1 to finish")
        job = srv.wait_job(job_id, timeout=30)
        assert job["status"] == "COMPLETED", job
        assert job["attempt"] == 2 and job["output"]["attempt"] == 2, job
        assert [e["attempt"] for e in lost_errors(job)] == [1]
        # The late attempt-1 result (posted right after `finished.1` was written) changes nothing.
        for _ in range(20):
            assert srv.job(job_id)["output"] == job["output"]
            time.sleep(0.05)
        assert srv.http.get(f"/v2/{eid}/health").json()["jobs"]["retried"] == 1
    finally:
        release.touch()
        if frozen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)


def test_frozen_worker_is_declared_lost_killed_and_replaced(server_factory, tmp_path):
    """With at most 1 worker: SIGSTOP it mid-job and leave it frozen. Its job is requeued when the
    lease lapses; the silent worker must then be treated as lost (killed, dropped from the
    endpoint's workers) and replaced, or the job would wait forever behind it."""
    srv = server_factory()
    eid = deploy(srv, "crash", "--min-workers", "1", "--max-workers", "1")
    marker = tmp_path / "f"
    release = Path(f"{marker}.release")
    frozen = None
    try:
        job_id = run(srv, eid, marker=str(marker), block=True, value="f")
        frozen = started(marker, 1)
        frozen_id = {p: w for w, p in worker_pids(srv.proc.pid, eid).items()}[frozen]
        os.kill(frozen, signal.SIGSTOP)
        release.touch()
        # Lease 2 s, ticks of 0.2 s: the bound only stops a hung test (10 s was once too short for
        # a loaded CI machine running the whole suite).
        wait_until(lambda: srv.job(job_id)["attempt_errors"], timeout=30, what="the lease to lapse")
        # Lease 2 s, pings every 0.4 s, ticks of 0.2 s: 15 s is ample to give up on a silent worker.
        wait_until(
            lambda: frozen_id not in endpoint_workers(srv, eid),
            timeout=15,
            what="the silent worker to be dropped from the endpoint's workers",
        )
        wait_until(
            lambda: not alive(frozen), timeout=5, what=f"the silent worker to be killed (state {proc_state(frozen)})"
        )
        job = srv.wait_job(job_id, timeout=20)
        assert job["status"] == "COMPLETED" and job["attempt"] == 2, job
        assert job["output"]["pid"] != frozen
        assert [e["attempt"] for e in lost_errors(job)] == [1]
    finally:
        release.touch()
        if frozen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(frozen, signal.SIGCONT)


# -- (c) a job that SIGKILLs its own worker on every attempt -------------------------------------


@pytest.mark.parametrize("limit", [None, 2], ids=["default-3", "env-2"])
def test_job_that_sigkills_its_own_worker_fails_after_attempt_limit(server_factory, tmp_path, limit):
    """The route SIGKILLs its own process (a simulated OOM kill) on every attempt. The job ends
    FAILED "worker lost" after exactly the attempt limit (default 3, or PODIUM_MAX_ATTEMPTS), one
    attempt_errors entry each, each attempt on a fresh worker; no further attempt; the endpoint
    stays ACTIVE and serves the next job."""
    attempts = limit or 3
    srv = server_factory(env={"PODIUM_MAX_ATTEMPTS": str(limit)} if limit else None)
    eid = deploy(srv, "crash", "--min-workers", "1", "--max-workers", "1")
    marker = tmp_path / "c"
    job_id = run(srv, eid, marker=str(marker), die=True)
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "FAILED", job
    assert job["error"].startswith("worker lost"), job
    status = srv.http.get(f"/v2/{eid}/status/{job_id}").json()
    assert status["status"] == "FAILED" and "worker lost" in status["error"], "RunPod's view says so too"
    assert job["attempt"] == job["max_attempts"] == attempts, job
    assert [e["attempt"] for e in lost_errors(job)] == list(range(1, attempts + 1))
    pids = [int(Path(f"{marker}.started.{a}").read_text()) for a in range(1, attempts + 1)]
    assert len(set(pids)) == attempts, pids  # the pool respawned its worker each time
    assert not Path(f"{marker}.started.{attempts + 1}").exists()

    ok = srv.wait_job(run(srv, eid, value=7), timeout=30)
    assert ok["status"] == "COMPLETED" and ok["output"]["value"] == 7, ok
    assert ok["output"]["pid"] not in pids
    ep = srv.http.get(f"/api/v1/endpoints/{eid}").json()
    assert ep["state"] == "ACTIVE", ep.get("error")
    health = srv.http.get(f"/v2/{eid}/health").json()["jobs"]
    assert health["failed"] == 1 and health["completed"] == 1 and health["retried"] == 1, health
    # Still no further attempt of the failed job, even after more time passed.
    assert srv.job(job_id)["attempt"] == attempts
    assert not Path(f"{marker}.started.{attempts + 1}").exists()


# -- (d) restart with a job queued and no workers ------------------------------------------------


def test_restart_with_queued_job_and_no_workers_runs_it(server_factory, tmp_path):
    """1. min 0 workers: wait until the endpoint has none.
    2. Hold the initializer shut (gate file gone) and submit a job: the worker started for it
       cannot take it, so the job is certainly still IN_QUEUE.
    3. Stop the server cleanly (SIGTERM); no worker of the endpoint survives it.
    4. Open the gate and start the server again: nothing but the stored queue tells it a worker
       is needed, and the job runs (attempt 1)."""
    home = tmp_path / "home"
    gate = tmp_path / "gate"
    gate.touch()
    srv = server_factory(home, env={"PODIUM_DRAIN_GRACE": "1"})
    eid = deploy(srv, "crash", "--min-workers", "0", "--max-workers", "1", "--idle-timeout", "1")
    srv.cli("secrets", "set", eid, f"FAULTS_GATE={gate}")  # workers see no server variable
    wait_until(
        lambda: not endpoint_workers(srv, eid) and not worker_pids(srv.proc.pid, eid),
        timeout=20,
        what="the endpoint to scale to zero",
    )
    marker = tmp_path / "d"
    gate.unlink()
    job_id = run(srv, eid, marker=str(marker), value="d")
    server_pid = srv.proc.pid
    # Scale from zero starts a worker for it (held in its initializer).
    wait_until(lambda: worker_pids(server_pid, eid), timeout=10, what="a worker started for the job")
    assert srv.job(job_id)["status"] == "IN_QUEUE"

    srv.stop(signal.SIGTERM)
    assert srv.proc.returncode is not None
    wait_until(lambda: not worker_pids(server_pid, eid), timeout=10, what="no worker left after shutdown")
    assert not list(tmp_path.glob("d.started.*")), "the job ran before the restart"

    gate.touch()
    srv.start()
    job = srv.wait_job(job_id, timeout=30)
    assert job["status"] == "COMPLETED", job
    assert job["output"]["value"] == "d" and job["attempt"] == 1 and not job["attempt_errors"], job
    assert Path(f"{marker}.started.1").exists()
