"""Unmodified RunPod workers (tests/services/rpw: `runpod.serverless.start`, no Podium imports)
driven by the real `runpod` clients (sync and asyncio) against one real Podium server.

Endpoints (deployed once, in parallel): `echo` (sync handler, one worker, so jobs queue behind a
blocker), `slow` (the same file, for the ttl test), `lazy` (the same file, idle timeout 1 s: scale
from zero, lowPriority, health counts), `aio` (async handler, two jobs at once), `gen` (generator).
Blocking jobs wait for `<marker>.release`; the `markers` fixture releases them all after each test.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import runpod

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

RPW = SERVICES / "rpw"
MB = 1024 * 1024
SECRET = "s3-secret-Zq8vNw3PxL"
S3 = {
    "accessId": "AKIDTEST",
    "accessSecret": SECRET,
    "bucketName": "bkt",
    "endpointUrl": "http://127.0.0.1:9",
}
FINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT")

#: name -> (worker file, deploy flags)
ENDPOINTS = {
    "echo": ("echo.py", "--max-workers", "1"),
    "slow": ("echo.py", "--max-workers", "1"),
    "lazy": ("echo.py", "--max-workers", "1", "--idle-timeout", "1"),
    "aio": ("aio.py", "--max-workers", "1", "--concurrency", "2"),
    "gen": ("gen.py", "--max-workers", "1"),
}


@dataclass
class Ctx:
    srv: PodiumServer
    ids: dict[str, str]
    ep: dict[str, Any]  # name -> runpod.Endpoint

    def status(self, name: str, job_id: str) -> httpx.Response:
        return self.srv.http.get(f"/v2/{self.ids[name]}/status/{job_id}")

    def wait(self, name: str, job_id: str, *states: str, timeout: float = 30) -> dict[str, Any]:
        """The /status answer once the job is in one of `states` (any final state by default)."""
        want = states or FINAL

        def check() -> dict[str, Any] | None:
            r = self.status(name, job_id)
            if r.status_code == 200 and r.json()["status"] in want:
                return r.json()
            if r.status_code == 200 and r.json()["status"] in FINAL:
                raise AssertionError(f"job {job_id} ended {r.json()} while waiting for {want}")
            return None

        return wait_until(check, timeout, 0.1, f"job {job_id} in {want}")  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rpw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    with PodiumServer(tmp_path_factory.mktemp("rpw-home"), env={"PODIUM_RETENTION_RUNSYNC": "3"}) as srv:

        def deploy(name: str) -> str:
            file, *flags = ENDPOINTS[name]
            res = srv.cli("deploy", str(RPW / file), "--name", name, "--json", *flags)
            return json.loads(res.stdout)["endpoint_id"]  # type: ignore[no-any-return]

        with ThreadPoolExecutor(len(ENDPOINTS)) as pool:
            ids = dict(zip(ENDPOINTS, pool.map(deploy, ENDPOINTS), strict=True))
        runpod.endpoint_url_base = f"{srv.url}/v2"
        yield Ctx(srv, ids, {n: runpod.Endpoint(i, api_key=srv.key) for n, i in ids.items()})


@pytest.fixture
def markers(tmp_path: Path) -> Iterator[Any]:
    """`markers(name)` -> a marker path prefix; every one is released when the test ends."""
    made: list[str] = []

    def make(name: str) -> str:
        made.append(str(tmp_path / name))
        return made[-1]

    yield make
    for m in made:
        Path(m + ".release").touch()


def started(marker: str, timeout: float = 30, other_than: int | None = None) -> int:
    """The pid the handler wrote to `<marker>.started` (waiting for it, or for a different one)."""
    path = Path(marker + ".started")

    def pid() -> int | None:
        if not path.exists():
            return None
        value = int(path.read_text())
        return None if value == other_than else value

    return wait_until(pid, timeout, 0.05, f"{path.name}")  # type: ignore[no-any-return]


def release(marker: str) -> None:
    Path(marker + ".release").touch()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (its reaper may be slow in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def hold(ctx: Ctx, name: str, marker: str, **body: Any) -> tuple[Any, int]:
    """Occupy the endpoint's worker with a job blocked on `marker`; returns (job, worker pid)."""
    job = ctx.ep[name].run({"input": {"marker": marker, "block": True}, **body})
    return job, started(marker)


def bounded(fn: Any, timeout: float = 30) -> Any:
    """Run a client call that may loop forever (Job.stream) with a time bound."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn).result(timeout)
    finally:
        pool.shutdown(wait=False)


def worker_logs(ctx: Ctx, name: str) -> str:
    return "".join(p.read_text(errors="replace") for p in (ctx.srv.home / "logs" / ctx.ids[name]).glob("*.log"))


# -- 1. options reach the handler, s3Config never comes back ---------------------------------------


def test_run_sync_passes_policy_and_s3config_but_not_unknown_keys(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    policy = {"executionTimeout": 60_000, "ttl": 600_000}
    body = {"input": {"value": 1}, "policy": policy, "s3Config": S3, "junk": {"x": 1}}
    out = ep.run_sync(body, timeout=60)
    assert out["echo"] == {"value": 1}
    assert {"id", "input", "policy", "s3Config"} <= set(out["keys"])
    assert "junk" not in out["keys"]
    assert out["policy"] == policy and out["s3"] is True
    assert SECRET not in json.dumps(out)

    # While it runs and after it ends, nothing a caller can read holds the secret.
    m = markers("s3")
    job, _ = hold(rpw, "echo", m, policy=policy, s3Config=S3, junk=1)
    for r in (rpw.status("echo", job.job_id), rpw.srv.http.get(f"/api/v1/jobs/{job.job_id}")):
        assert r.status_code == 200 and SECRET not in r.text and "s3Config" not in r.text, r.text
    release(m)
    rpw.wait("echo", job.job_id, "COMPLETED")
    for r in (rpw.status("echo", job.job_id), rpw.srv.http.get(f"/api/v1/jobs/{job.job_id}")):
        assert r.status_code == 200 and SECRET not in r.text, r.text
    out = job.output()
    assert out["s3"] is True and "junk" not in out["keys"] and SECRET not in json.dumps(out)


# -- 2. run, status, progress ----------------------------------------------------------------------


def test_run_status_output_and_progress_while_in_progress(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("progress")
    job = ep.run({"progress": 3, "marker": m, "block": True})
    started(m)

    def latest() -> dict[str, Any] | None:
        b = rpw.status("echo", job.job_id).json()
        return b if b["status"] == "IN_PROGRESS" and b.get("output") == {"step": 2} else None

    running = wait_until(latest, 10, 0.1, "latest progress in /status")
    assert isinstance(running["delayTime"], int) and isinstance(running["executionTime"], int)
    assert running["executionTime"] >= 400  # three updates 0.2 s apart came first
    assert job.status() == "IN_PROGRESS"
    assert job.output() == {"step": 2}  # timeout=0: one GET, the progress value
    release(m)
    final = rpw.wait("echo", job.job_id, "COMPLETED")
    assert final["output"]["echo"]["progress"] == 3
    assert isinstance(final["delayTime"], int) and final["executionTime"] >= running["executionTime"]
    assert job.output(timeout=10)["echo"]["marker"] == m
    assert job.status() == "COMPLETED"


# -- 3. generator stream ---------------------------------------------------------------------------


def test_stream_each_chunk_once_in_order(rpw: Ctx) -> None:
    ep = rpw.ep["gen"]
    job = ep.run({"input": {"n": 5, "gap": 0.2}, "s3Config": S3})
    assert bounded(lambda: list(job.stream())) == [{"i": i} for i in range(5)]
    final = rpw.wait("gen", job.job_id, "COMPLETED")
    # return_aggregate_stream: the worker's final result holds every yield.
    assert final["output"] == [{"i": i} for i in range(5)]
    after = rpw.srv.http.get(f"/v2/{rpw.ids['gen']}/stream/{job.job_id}")
    assert after.json()["status"] == "COMPLETED" and after.json()["stream"] == []
    assert SECRET not in after.text and SECRET not in rpw.status("gen", job.job_id).text


def test_a_2mb_chunk_is_refused_and_fails_its_job_saying_so(rpw: Ctx) -> None:
    """The worker is told no (413) and logs it; the job fails saying why, where it used to go on
    with a stream that silently lacked the chunk."""
    job = rpw.ep["gen"].run({"input": {"n": 5, "big_at": 2, "gap": 0.2}})
    final = rpw.wait("gen", job.job_id, "FAILED")
    assert "stream chunk was over the 1 MB limit" in final["error"]
    wait_until(lambda: "413" in worker_logs(rpw, "gen"), 20, 0.1, "the worker to log the 413")


# -- 4, 5, 6. cancel ------------------------------------------------------------------------------


def test_cancel_a_queued_job_it_never_runs(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    busy_m, queued_m = markers("busy"), markers("queued")
    busy, _ = hold(rpw, "echo", busy_m)
    queued = ep.run({"marker": queued_m})
    assert rpw.status("echo", queued.job_id).json()["status"] == "IN_QUEUE"
    assert queued.cancel() == {"id": queued.job_id, "status": "CANCELLED"}
    release(busy_m)
    rpw.wait("echo", busy.job_id, "COMPLETED")
    assert ep.run_sync({"value": "after"}, timeout=30)["echo"] == {"value": "after"}
    assert not Path(queued_m + ".started").exists()
    assert rpw.status("echo", queued.job_id).json()["status"] == "CANCELLED"


def test_cancel_a_running_sync_job_replaces_its_worker(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("running")
    job, pid = hold(rpw, "echo", m)
    assert job.cancel() == {"id": job.job_id, "status": "CANCELLED"}
    wait_until(lambda: not alive(pid), 10, 0.05, f"worker process {pid} killed")
    after = ep.run_sync({"value": "next"}, timeout=60)
    assert after["echo"] == {"value": "next"} and after["pid"] != pid
    release(m)
    assert rpw.status("echo", job.job_id).json()["status"] == "CANCELLED"
    assert Path(m + ".started").read_text() == str(pid)  # never run again


def test_cancel_a_running_async_job_uses_the_stop_channel(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["aio"]
    m = markers("acancel")
    job, pid = hold(rpw, "aio", m)
    assert job.cancel() == {"id": job.job_id, "status": "CANCELLED"}
    cancelled = Path(m + ".cancelled")
    wait_until(cancelled.exists, 15, 0.05, "the handler's CancelledError")
    assert cancelled.read_text() == str(pid)
    after = ep.run_sync({"value": "same"}, timeout=30)
    assert after == {"echo": {"value": "same"}, "pid": pid}  # the process stayed
    assert alive(pid)
    assert rpw.status("aio", job.job_id).json()["status"] == "CANCELLED"


def test_async_worker_takes_two_jobs_at_once(rpw: Ctx, markers: Any) -> None:
    a, b = markers("a"), markers("b")
    ja, pa = hold(rpw, "aio", a)
    jb, pb = hold(rpw, "aio", b)  # runs while `a` still blocks: concurrency_modifier -> 2
    assert pa == pb
    release(a)
    release(b)
    assert rpw.wait("aio", ja.job_id, "COMPLETED")["output"]["pid"] == pa
    assert rpw.wait("aio", jb.job_id, "COMPLETED")["output"]["pid"] == pa


def test_cancel_one_of_two_async_jobs_the_other_goes_on(rpw: Ctx, markers: Any) -> None:
    keep, drop = markers("keep"), markers("drop")
    jk, pid = hold(rpw, "aio", keep)
    jd, _ = hold(rpw, "aio", drop)
    assert jd.cancel()["status"] == "CANCELLED"
    wait_until(Path(drop + ".cancelled").exists, 15, 0.05, "the cancelled job's CancelledError")
    assert rpw.status("aio", jk.job_id).json()["status"] == "IN_PROGRESS"
    release(keep)
    assert rpw.wait("aio", jk.job_id, "COMPLETED")["output"]["pid"] == pid
    assert not Path(keep + ".cancelled").exists()
    assert rpw.status("aio", jd.job_id).json()["status"] == "CANCELLED"


def test_worker_counts_as_idle_after_its_async_job_is_cancelled(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["aio"]
    m = markers("idle-after-cancel")
    job, _ = hold(rpw, "aio", m)
    assert ep.health()["workers"]["running"] == 1
    job.cancel()
    wait_until(Path(m + ".cancelled").exists, 15, 0.05, "the handler's CancelledError")
    wait_until(
        lambda: (w := ep.health()["workers"])["running"] == 0 and w["idle"] == 1,
        3,
        0.1,
        "the worker to count as idle again",
    )


# -- 7, 8. executionTimeout, ttl, retention -------------------------------------------------------


def test_execution_timeout_ends_the_job_and_replaces_the_worker(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("tmo")
    job = ep.run({"input": {"marker": m, "sleep": 60}, "policy": {"executionTimeout": 5000}})
    pid = started(m)
    # The handler sleeps 60 s: TIMED_OUT before that (the wait gives up at 50 s, a bound that only
    # stops a hung test) is the time-out's doing, and the job had its whole 5 s first.
    final = rpw.wait("echo", job.job_id, "TIMED_OUT", timeout=50)
    assert final["executionTime"] >= 5000, final
    assert "executionTimeout" in final["error"]
    assert job.status() == "TIMED_OUT"
    wait_until(lambda: not alive(pid), 10, 0.05, f"worker process {pid} killed")
    after = ep.run_sync({"value": "after timeout"}, timeout=60)
    assert after["echo"] == {"value": "after timeout"} and after["pid"] != pid
    assert rpw.status("echo", job.job_id).json()["status"] == "TIMED_OUT"

    r = rpw.srv.http.post(f"/v2/{rpw.ids['echo']}/run", json={"input": {}, "policy": {"executionTimeout": 4000}})
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert "executionTimeout" in r.json()["detail"] and "5000" in r.json()["detail"], r.text


def test_ttl_deletes_a_running_job_and_runsync_results_expire(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["slow"]
    m = markers("ttl")
    t0 = time.monotonic()
    job = ep.run({"input": {"marker": m, "block": True}, "policy": {"ttl": 10_000}})
    started(m)
    # Meanwhile: a /runsync result is readable, then gone after PODIUM_RETENTION_RUNSYNC=3 s.
    sync = rpw.srv.http.post(f"/v2/{rpw.ids['aio']}/runsync", json={"input": {"value": "kept"}}).json()
    assert sync["status"] == "COMPLETED" and sync["output"]["echo"] == {"value": "kept"}
    assert rpw.status("aio", sync["id"]).status_code == 200
    t_sync = time.monotonic()
    wait_until(lambda: rpw.status("aio", sync["id"]).status_code == 404, 10, 0.2, "runsync retention")
    print(f"\nrunsync result gone after {time.monotonic() - t_sync:.2f} s (retention 3 s)")
    assert time.monotonic() - t_sync >= 2.5
    assert rpw.status("slow", job.job_id).json()["status"] == "IN_PROGRESS"

    gone = wait_until(
        lambda: rpw.status("slow", job.job_id).status_code == 404 and time.monotonic(), 15, 0.1, "ttl expiry"
    )
    print(f"ttl 10000 ms: /status 404 after {gone - t0:.2f} s")
    assert gone - t0 >= 9.5
    r = rpw.status("slow", job.job_id)
    assert r.headers["content-type"].startswith("application/json") and r.json()["error"] == "not_found"
    with pytest.raises(requests.HTTPError):
        job.status()
    # The endpoint still works, and a late result of the deleted job does not bring it back.
    release(m)
    assert ep.run_sync({"value": "after ttl"}, timeout=60)["echo"] == {"value": "after ttl"}
    assert rpw.status("slow", job.job_id).status_code == 404


# -- 9, 12. lowPriority, health ------------------------------------------------------------------


def test_low_priority_never_starts_a_worker_and_health_counts(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["lazy"]

    def workers() -> dict[str, int]:
        return ep.health()["workers"]  # type: ignore[no-any-return]

    wait_until(lambda: sum(v for k, v in workers().items() if k != "ready") == 0, 30, 0.2, "lazy's workers to idle out")
    base = ep.health()["jobs"]
    assert base["inQueue"] == 0 and base["inProgress"] == 0

    m = markers("low")
    low = ep.run({"input": {"marker": m, "block": True}, "policy": {"lowPriority": True}})
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        h = ep.health()
        assert sum(v for k, v in h["workers"].items() if k != "ready") == 0, h
        assert h["jobs"]["inQueue"] == 1, h
        time.sleep(0.2)
    assert rpw.status("lazy", low.job_id).json()["status"] == "IN_QUEUE"
    assert not Path(m + ".started").exists()

    normal = ep.run({"value": "normal"})  # this one may start a worker
    started(m)  # ... which takes the older, low-priority job first
    bad = ep.run({"fail": "boom"})
    h = ep.health()
    assert h["jobs"]["inProgress"] == 1 and h["jobs"]["inQueue"] == 2, h
    assert h["workers"]["running"] == 1 and h["workers"]["idle"] == 0, h

    release(m)
    assert rpw.wait("lazy", low.job_id)["status"] == "COMPLETED"
    assert rpw.wait("lazy", normal.job_id)["output"]["echo"] == {"value": "normal"}
    assert "boom" in rpw.wait("lazy", bad.job_id, "FAILED")["error"]
    h = ep.health()
    assert h["jobs"]["inQueue"] == 0 and h["jobs"]["inProgress"] == 0, h
    assert h["jobs"]["completed"] == base["completed"] + 2, h
    assert h["jobs"]["failed"] == base["failed"] + 1, h
    assert h["workers"]["running"] == 0 and h["workers"]["idle"] + h["workers"]["draining"] <= 1, h


# -- 10, 11. retry, purge ------------------------------------------------------------------------


def test_retry_a_failed_job_with_the_same_id(rpw: Ctx, tmp_path: Path) -> None:
    ep = rpw.ep["echo"]
    flag = tmp_path / "flag"
    flag.touch()
    job = ep.run({"fail_if": str(flag)})
    failed = rpw.wait("echo", job.job_id, "FAILED")
    assert "exists" in failed["error"] and "output" not in failed
    flag.unlink()
    r = rpw.srv.http.post(f"/v2/{rpw.ids['echo']}/retry/{job.job_id}")
    assert r.json() == {"id": job.job_id, "status": "IN_QUEUE"}
    done = rpw.wait("echo", job.job_id, "COMPLETED")
    assert done["output"]["echo"] == {"fail_if": str(flag)} and "error" not in done
    assert job.output(timeout=10)["echo"] == {"fail_if": str(flag)}


def test_retry_runs_without_the_worker_only_fields(rpw: Ctx, tmp_path: Path) -> None:
    """s3Config and env are dropped from the store when a job ends (they are credentials), so a
    retried job runs without them; send a new request when the handler needs them."""
    ep = rpw.ep["echo"]
    flag = tmp_path / "flag"
    flag.touch()
    job = ep.run({"input": {"fail_if": str(flag)}, "s3Config": S3})
    rpw.wait("echo", job.job_id, "FAILED")
    flag.unlink()
    assert rpw.srv.http.post(f"/v2/{rpw.ids['echo']}/retry/{job.job_id}").status_code == 200
    assert rpw.wait("echo", job.job_id, "COMPLETED")["output"]["s3"] is False


def test_purge_queue_removes_the_queued_jobs_only(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("purge")
    busy, _ = hold(rpw, "echo", m)
    queued = [ep.run({"value": i}) for i in range(3)]
    assert ep.purge_queue() == {"removed": 3, "status": "completed"}
    assert all(rpw.status("echo", j.job_id).json()["status"] == "CANCELLED" for j in queued)
    release(m)
    assert rpw.wait("echo", busy.job_id, "COMPLETED")["output"]["echo"]["marker"] == m
    assert ep.purge_queue() == {"removed": 0, "status": "completed"}


# -- 13, 14. worker replacement --------------------------------------------------------------------


def test_refresh_worker_gives_the_next_job_a_new_process(rpw: Ctx) -> None:
    ep = rpw.ep["echo"]
    first = ep.run_sync({"refresh": True}, timeout=60)
    assert "refresh_worker" not in first  # the SDK turns it into stopPod
    second = ep.run_sync({"value": "fresh"}, timeout=60)
    assert second["pid"] != first["pid"]
    wait_until(lambda: not alive(first["pid"]), 15, 0.1, "the refreshed worker to exit")


def test_kill_9_of_the_worker_requeues_the_job(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("kill")
    job, pid = hold(rpw, "echo", m, s3Config=S3)
    os.kill(pid, signal.SIGKILL)

    def not_stuck() -> int | None:
        assert rpw.status("echo", job.job_id).json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
        p = Path(m + ".started")
        return int(p.read_text()) if p.exists() and p.read_text() != str(pid) else None

    new_pid = wait_until(not_stuck, 30, 0.1, "the job to start on a new worker")
    assert new_pid != pid
    assert rpw.srv.job(job.job_id)["attempt"] == 2
    release(m)
    out = rpw.wait("echo", job.job_id, "COMPLETED")["output"]
    assert out["pid"] == new_pid and out["s3"] is True  # the requeued job keeps its s3Config
    assert ep.health()["jobs"]["retried"] >= 1


# -- 15. payload limits ---------------------------------------------------------------------------


def test_payload_limits(rpw: Ctx) -> None:
    eid = rpw.ids["echo"]
    big = json.dumps({"input": {"x": "a" * (10 * MB + 100)}})
    r = rpw.srv.http.post(f"/v2/{eid}/run", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == "payload_too_large" and "10 MB" in r.json()["detail"]
    # /runsync takes up to 20 MB: 11 MB is fine there, 21 MB is not.
    r = rpw.srv.http.post(f"/v2/{eid}/runsync", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text[:300]
    bigger = json.dumps({"input": {"x": "a" * (20 * MB + 100)}})
    r = rpw.srv.http.post(f"/v2/{eid}/runsync", content=bigger, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "20 MB" in r.json()["detail"], r.text
    with pytest.raises(requests.HTTPError) as info:
        rpw.ep["echo"].run({"x": "a" * (10 * MB + 100)})
    assert info.value.response.status_code == 413


# -- 16. the asyncio client -----------------------------------------------------------------------


def test_asyncio_client(rpw: Ctx, markers: Any) -> None:
    import aiohttp

    m = markers("async-busy")

    async def main() -> None:
        runpod.endpoint_url_base = f"{rpw.srv.url}/v2"
        async with aiohttp.ClientSession() as session:
            aio = runpod.AsyncioEndpoint(rpw.ids["aio"], session, api_key=rpw.srv.key)
            gen = runpod.AsyncioEndpoint(rpw.ids["gen"], session, api_key=rpw.srv.key)
            echo = runpod.AsyncioEndpoint(rpw.ids["echo"], session, api_key=rpw.srv.key)

            job = await aio.run({"value": "async"})
            assert (await job.output(timeout=30))["echo"] == {"value": "async"}
            assert await job.status() == "COMPLETED"

            sjob = await gen.run({"n": 3})
            assert [c async for c in sjob.stream()] == [{"i": 0}, {"i": 1}, {"i": 2}]
            assert await sjob.status() == "COMPLETED"

            busy = await echo.run({"marker": m, "block": True})
            await asyncio.to_thread(started, m)
            assert await busy.status() == "IN_PROGRESS"
            queued = [await echo.run({"value": i}) for i in range(3)]
            assert await queued[0].cancel() == {"id": queued[0].job_id, "status": "CANCELLED"}
            health = await echo.health()
            assert health["jobs"]["inQueue"] == 2 and health["jobs"]["inProgress"] == 1, health
            assert health["workers"]["running"] == 1, health
            assert await echo.purge_queue() == {"removed": 2, "status": "completed"}
            assert all([await q.status() == "CANCELLED" for q in queued])
            release(m)
            assert (await busy.output(timeout=30))["echo"]["marker"] == m

    asyncio.run(asyncio.wait_for(main(), 90))


# -- 17. a progress update racing the result --------------------------------------------------------


def test_late_progress_does_not_undo_completion(rpw: Ctx, markers: Any) -> None:
    ep = rpw.ep["echo"]
    m = markers("late")
    job = ep.run({"late_progress": True, "marker": m})
    rpw.wait("echo", job.job_id, "COMPLETED")
    wait_until(Path(m + ".late").exists, 10, 0.05, "the progress update posted after the result")
    for _ in range(5):
        body = rpw.status("echo", job.job_id).json()
        assert body["status"] == "COMPLETED" and body["output"]["echo"]["marker"] == m, body
        time.sleep(0.05)
    assert job.output()["echo"]["late_progress"] is True
