"""Soak: 500 jobs through four workers while a killer SIGKILLs a random ready worker every second.

Every job must end final; every COMPLETED job must carry the right output for its input; a FAILED
one only because worker deaths used up its attempts. The figures (kills, completed, failed,
retried) are printed as one summary line (`-s` shows it), never asserted on timing.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from conftest import SERVICES
from server import wait_until, worker_pids

pytestmark = pytest.mark.slow

JOBS = 500
MAX_ATTEMPTS = 10
SLEEP = 0.1  #: seconds per job: 500 jobs keep 4 workers busy for 12.5 s at least
KILL_AFTER_SUBMIT = 10.0  #: seconds the killer goes on after the last submission
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}


@pytest.mark.timeout(240)
def test_soak_500_jobs_while_workers_are_killed_every_second(server_factory):
    srv = server_factory(env={"PODIUM_MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    ep = json.loads(
        srv.cli(
            "deploy",
            str(SERVICES / "faults" / "square.py"),
            "--name",
            "square",
            "--json",
            "--min-workers",
            "2",
            "--max-workers",
            "4",
        ).stdout
    )
    eid = ep["endpoint_id"]
    server_pid = srv.proc.pid
    headers = {"Authorization": f"Bearer {srv.key}"}

    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=srv.url, headers=headers, timeout=60)
            clients.append(local.http)
        return local.http

    clients: list[httpx.Client] = []
    kills: list[tuple[float, str, int]] = []
    stop_killing = threading.Event()

    def killer() -> None:
        """Every second: SIGKILL one random worker the server reports ready (IDLE or RUNNING)."""
        rng = random.Random(1234)
        with httpx.Client(base_url=srv.url, headers=headers, timeout=10) as http:
            while not stop_killing.wait(1.0):
                try:
                    listed = http.get(f"/api/v1/endpoints/{eid}").json()["workers"]
                except (httpx.HTTPError, KeyError, ValueError):
                    continue
                ready = {w["id"] for w in listed if w["state"] in ("IDLE", "RUNNING")}
                pids = {wid: pid for wid, pid in worker_pids(server_pid, eid).items() if wid in ready}
                if not pids:
                    continue
                wid = rng.choice(sorted(pids))
                try:
                    os.kill(pids[wid], signal.SIGKILL)
                except ProcessLookupError:
                    continue
                kills.append((time.monotonic(), wid, pids[wid]))

    def submit(x: int) -> tuple[str, int]:
        r = client().post(f"/v2/{eid}/run", json={"input": {"x": x, "sleep": SLEEP}})
        r.raise_for_status()
        return r.json()["id"], x

    def fetch(job_id: str) -> dict[str, Any]:
        r = client().get(f"/api/v1/jobs/{job_id}")
        r.raise_for_status()
        return r.json()

    t0 = time.monotonic()
    kill_thread = threading.Thread(target=killer, name="soak-killer", daemon=True)
    kill_thread.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            inputs = dict(pool.map(submit, range(JOBS)))
            submitted = time.monotonic()
            assert len(inputs) == JOBS
            # Keep killing for a few seconds past the last submission, then let the queue drain.
            time.sleep(KILL_AFTER_SUBMIT)
            stop_killing.set()
            kill_thread.join(15)
            killing_stopped = time.monotonic()

            final: dict[str, dict[str, Any]] = {}

            def drained() -> bool:
                pending = [j for j in inputs if j not in final]
                for job in pool.map(fetch, pending):
                    if job["status"] in FINAL:
                        final[job["id"]] = job
                return len(final) == JOBS

            try:
                wait_until(drained, timeout=120, interval=0.5, what="all 500 jobs final")
            except AssertionError:
                stuck = {j: fetch(j)["status"] for j in inputs if j not in final}
                raise AssertionError(f"{len(stuck)} jobs not final after 120 s: {list(stuck.items())[:10]}")
            drained_at = time.monotonic()
    finally:
        stop_killing.set()
        kill_thread.join(15)
        for c in clients:
            c.close()

    completed = [j for j in final.values() if j["status"] == "COMPLETED"]
    failed = [j for j in final.values() if j["status"] == "FAILED"]
    retried = [j for j in final.values() if j["attempt"] > 1]
    others = [j for j in final.values() if j["status"] not in ("COMPLETED", "FAILED")]
    max_attempt = max(j["attempt"] for j in final.values())
    print(
        f"\nSOAK SUMMARY: jobs={JOBS} kills={len(kills)} completed={len(completed)} "
        f"failed={len(failed)} retried={len(retried)} max_attempt={max_attempt} "
        f"submit={submitted - t0:.1f}s kill_window={killing_stopped - t0:.1f}s "
        f"drained={drained_at - t0:.1f}s"
    )
    assert not others, [(j["id"], j["status"], j["error"]) for j in others[:5]]
    for job in completed:
        x = inputs[job["id"]]
        assert job["input"] == {"x": x, "sleep": SLEEP}
        assert job["output"]["x"] == x and job["output"]["y"] == x * x, job
        assert job["output"]["attempt"] == job["attempt"], job
        # Every attempt before the one that completed was lost with its worker, and is on record.
        assert len(job["attempt_errors"] or []) == job["attempt"] - 1, job
        assert all("worker lost" in e["error"] for e in job["attempt_errors"] or []), job
    for job in failed:
        assert job["error"].startswith("worker lost"), job
        assert job["attempt"] == MAX_ATTEMPTS, job
        assert len(job["attempt_errors"] or []) == MAX_ATTEMPTS, job
    # Kills really happened; the server's own counts agree with what the jobs say.
    assert kills, "the killer never found a ready worker to kill"
    health = srv.http.get(f"/v2/{eid}/health").json()
    assert health["jobs"]["completed"] == len(completed)
    assert health["jobs"]["failed"] == len(failed)
    assert health["jobs"]["retried"] == len(retried)
    assert health["jobs"]["inProgress"] == 0 and health["jobs"]["inQueue"] == 0
