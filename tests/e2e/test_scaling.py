"""Scaling settings, queue cap, retries, recycling and broken versions, against a real server."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

# Workers unboxed (PODIUM_SANDBOX=off): these tests hand workers marker files under tmp_path and
# signal them by the pid they report, neither of which a sandboxed worker shares
# (tests/e2e/test_sandbox.py covers the box).

SC = SERVICES / "scaling"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    home = tmp_path_factory.mktemp("scaling-home")
    with PodiumServer(home) as s:
        yield s


def run(srv, name, **inp):
    r = srv.http.post(f"/v2/{name}/run", json={"input": inp})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def test_scale_changes_settings_without_a_redeploy(srv):
    srv.deploy(SC / "pid.py", "pid")
    out = json.loads(
        srv.cli(
            "scale",
            "pid",
            "--max",
            "3",
            "--min",
            "1",
            "--idle-timeout",
            "1",
            "--scaler",
            "queue-delay",
            "--target",
            "0.5",
            "--queue-cap",
            "7",
            "--json",
        ).stdout
    )
    assert out["scaling"] | {} == {
        **out["scaling"],
        "max_workers": 3,
        "min_workers": 1,
        "scaler": "queue-delay",
        "target": 0.5,
        "queue_cap": 7,
        "idle_timeout": 1.0,
    }
    bad = srv.cli("scale", "pid", "--scaler", "vibes", check=False)
    assert bad.returncode == 1 and "scaler must be one of" in bad.stderr
    bad = srv.cli("scale", "pid", "--min", "5", "--max", "2", check=False)
    assert bad.returncode == 1 and "max_workers" in bad.stderr


def test_a_full_queue_answers_429_with_retry_after(srv, tmp_path):
    srv.deploy(SC / "pid.py", "capped")
    srv.cli("scale", "capped", "--queue-cap", "2", "--max", "1")
    ids = [run(srv, "capped", sleep=1.0) for _ in range(3)]  # one taken, two waiting
    wait_until(lambda: srv.http.get("/v2/capped/health").json()["jobs"]["inQueue"] == 2, what="two waiting")
    r = srv.http.post("/v2/capped/run", json={"input": {}})
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    assert "queue cap" in r.json()["detail"]
    for i in ids:
        srv.wait_job(i)


def test_retryable_errors_are_retried_with_backoff_others_fail_at_once(srv, tmp_path):
    srv.deploy(SC / "flaky.py", "flaky")
    fails = tmp_path / "fails"
    fails.write_text("2")
    job = srv.wait_job(run(srv, "flaky", fails_file=str(fails)))
    assert job["status"] == "COMPLETED" and job["output"]["attempt"] == 3
    assert [e["error"] for e in job["attempt_errors"]] == ["Flaky: 2 failures to go", "Flaky: 1 failures to go"]
    fatal = srv.wait_job(run(srv, "flaky", fatal=True))
    assert fatal["status"] == "FAILED" and fatal["attempt"] == 1 and "not worth retrying" in fatal["error"]
    fails.write_text("9")
    spent = srv.wait_job(run(srv, "flaky", fails_file=str(fails)))
    assert spent["status"] == "FAILED" and spent["attempt"] == 4, "three retries, then it fails"

    dead = json.loads(srv.cli("jobs", "ls", "--status", "FAILED", "--endpoint", "flaky", "--json").stdout)
    assert {j["id"] for j in dead} == {fatal["id"], spent["id"]}
    fails.write_text("0")
    srv.cli("jobs", "retry", spent["id"])
    assert srv.wait_job(spent["id"])["status"] == "COMPLETED"
    again = srv.cli("jobs", "retry", spent["id"], check=False)
    assert again.returncode == 1 and "only FAILED or TIMED_OUT" in again.stderr
    bad = srv.cli("jobs", "ls", "--status", "BROKEN", check=False)
    assert bad.returncode == 1 and "status must be one of" in bad.stderr


def test_workers_are_recycled_after_max_jobs(srv):
    srv.deploy(SC / "pid.py", "recycled")
    srv.cli("scale", "recycled", "--max-jobs", "2", "--max", "1")
    pids = [srv.wait_job(run(srv, "recycled"))["output"] for _ in range(4)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[1] != pids[2], pids


def test_workers_are_recycled_past_their_memory_limit(srv):
    srv.deploy(SC / "pid.py", "hungry")
    srv.cli("scale", "hungry", "--max-memory", "120", "--max", "1")
    small = srv.http.post("/hungry/hog", json={"mb": 1}).json()
    assert srv.http.post("/hungry/hog", json={"mb": 1}).json() == small, "under the limit: same worker"
    big = srv.http.post("/hungry/hog", json={"mb": 200}).json()
    assert big == small
    after = srv.http.post("/hungry/hog", json={"mb": 1}).json()
    assert after != big, "past max_worker_memory_mb the worker is replaced after its job"


def test_an_initializer_that_hangs_is_an_error_after_startup_timeout(srv):
    t0 = time.monotonic()
    res = srv.cli("deploy", str(SC / "hang.py"), "--name", "hang", "--json", check=False)
    assert res.returncode == 1
    ep = json.loads(res.stdout)
    assert ep["state"] == "ERROR"
    detail = json.loads(srv.cli("status", "hang", "--json").stdout)["error"]
    assert "did not become ready within 2 s" in detail
    assert time.monotonic() - t0 < 60


def test_a_version_that_stops_importing_puts_the_endpoint_in_error_and_its_jobs_wait(srv):
    """1. The endpoint serves; then its version's import breaks (a crash loop on restart).
    2. Result: ERROR with the reason; a job queued meanwhile stays IN_QUEUE, its status says why,
       and new calls are refused with the reason.
    3. The import is mended and the endpoint started: the waiting job runs."""
    srv.deploy(SC / "noimport.py", "noimport")
    broken = srv.home / "break-import"
    srv.cli("secrets", "set", "noimport", f"BREAK_IMPORT={broken}")  # workers see no server variable
    assert srv.wait_job(run(srv, "noimport"))["status"] == "COMPLETED"
    broken.touch()
    srv.cli("scale", "noimport", "--idle-timeout", "0")
    srv.cli("restart", "noimport")
    queued = run(srv, "noimport")
    status = wait_until(
        lambda: (s := json.loads(srv.cli("status", "noimport", "--json").stdout))["state"] == "ERROR" and s,
        60,
        0.2,
        "the endpoint in ERROR",
    )
    assert "weights_loader" in status["error"]
    job = srv.http.get(f"/v2/noimport/status/{queued}").json()
    assert job["status"] == "IN_QUEUE", "a job is not failed by its endpoint's failure"
    assert job["waiting"]["reason"] == "init_failing"
    assert "cannot start its workers" in job["waiting"]["detail"] and "weights_loader" in job["waiting"]["detail"]
    r = srv.http.post("/v2/noimport/run", json={"input": {}})
    assert r.status_code == 503 and "cannot start its workers" in r.json()["detail"]
    broken.unlink()
    srv.cli("start", "noimport")
    assert srv.wait_job(queued, timeout=60)["status"] == "COMPLETED"


def test_a_burst_scales_up_to_max_and_back_down(srv):
    srv.deploy(SC / "pid.py", "burst")
    srv.cli("scale", "burst", "--max", "4", "--idle-timeout", "1")
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: run(srv, "burst", sleep=0.2), range(40)))
    seen = set()
    for i in ids:
        seen.add(srv.wait_job(i)["output"])
    print(f"\nburst of 40 jobs (max 4): ran on {len(seen)} worker processes")
    assert 2 <= len(seen) <= 4
    wait_until(
        lambda: (
            srv.http.get("/v2/burst/health").json()["workers"]["idle"] == 0
            and srv.http.get("/v2/burst/health").json()["workers"]["running"] == 0
        ),
        30,
        0.2,
        "scale back to zero after idle_timeout",
    )
    cold = srv.wait_job(run(srv, "burst"))
    assert cold["status"] == "COMPLETED"
    assert 0 < cold["cold_ms"] <= cold["delay_ms"], "the first job after scale-to-zero waited for a cold start"
    print(f"cold start: delay {cold['delay_ms']} ms, of which cold start {cold['cold_ms']} ms")


def overlapping(results):
    """How many of these [start, end] intervals overlap the busiest instant."""
    points = sorted([(r["start"], 1) for r in results] + [(r["end"], -1) for r in results])
    best = now = 0
    for _, d in points:
        now += d
        best = max(best, now)
    return best


@pytest.mark.parametrize("route", ["sync", "aio"])
def test_one_worker_runs_concurrency_jobs_at_once(srv, route):
    srv.deploy(SC / "conc.py", "conc")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: srv.http.post(f"/conc/{route}", json={"sleep": 0.6}).json(), range(4)))
    assert len({r["pid"] for r in results}) == 1, "one worker (max_workers=1)"
    assert len({r["job"] for r in results}) == 4, "each route saw its own job id"
    assert overlapping(results) >= 3, results
    if route == "sync":
        assert len({r["thread"] for r in results}) >= 3, "sync routes run in threads"


def test_async_generators_keep_their_job_context(srv):
    srv.deploy(SC / "conc.py", "conc")
    with ThreadPoolExecutor(3) as pool:
        bodies = list(pool.map(lambda _: srv.http.post("/conc/agen", json={"n": 3}), range(3)))
    for b in bodies:
        job = b.headers["x-podium-job-id"]
        assert b.text == "".join(f"{job}:{i}\n" for i in range(3))
