"""Scaling figures: cold start, warm runsync latency, and the workers a burst gets.

    .venv/bin/python bench/scaling.py          # about a minute
    .venv/bin/python bench/scaling.py --json   # figures as JSON on stdout

Starts `podium up` on 127.0.0.1 with a fresh store, deploys bench/scale_service.py (min 0, max 4
workers, idle timeout 2 s) and measures:
- cold start: from scale-to-zero, the time to the first answer of a runsync, and the part of the
  job's delay Podium recorded as its cold start (median of 3);
- the cold starts of an unmodified RunPod worker (bench/rp_echo.py, which pays for importing the
  runpod package): its first, spawned as the version's first worker right after the deploy, and
  then from scale-to-zero once its version's fork server is up (forked, median of 3);
- warm runsync latency, p50 and p99 of wrk at c=1 for 3 s, started right after a runsync that
  brings up a worker (and, in the same run, a bare Starlette echo's, for the ratio);
- a burst of 200 jobs (each sleeping 50 ms) sent at once through /run: the most workers seen at
  once, how many distinct worker processes ran them, and the time until all were done.
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    BODY,
    HERE,
    HOST,
    NO_RATE_LIMIT,
    BenchError,
    Podium,
    Server,
    call_load,
    child_env,
    free_port,
    handle_signals,
    ignore_signals,
    run_wrk,
    say,
    stop_all,
)


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise BenchError(f"timed out waiting for {what}")


def workers(c: httpx.Client, ep: str) -> int:
    w = c.get(f"/v2/{ep}/health").json()["workers"]
    return int(w["initializing"] + w["idle"] + w["running"] + w["draining"])


def cold_start(c: httpx.Client, ep: str) -> dict[str, float]:
    wait(lambda: workers(c, ep) == 0, 30, "scale to zero")
    t0 = time.perf_counter()
    answer = c.post(f"/v2/{ep}/runsync", json={"input": {"n": 0}}).json()
    total = time.perf_counter() - t0
    if answer.get("status") != "COMPLETED":
        raise BenchError(f"cold runsync did not complete: {answer}")
    job = c.get(f"/api/v1/jobs/{answer['id']}").json()
    return {"first_answer_s": total, "cold_ms": job["cold_ms"] or 0, "delay_ms": job["delay_ms"]}


def runsync(c: httpx.Client, ep: str, n: int) -> dict[str, Any]:
    """One runsync from submission to answer; the job's cold-start share and its worker's start."""
    t0 = time.perf_counter()
    answer = c.post(f"/v2/{ep}/runsync", json={"input": {"n": n}}).json()
    total = time.perf_counter() - t0
    if answer.get("status") != "COMPLETED":
        raise BenchError(f"cold runsync did not complete: {answer}")
    job = c.get(f"/api/v1/jobs/{answer['id']}").json()
    return {"first_answer_s": total, "cold_ms": job["cold_ms"] or 0, "worker": job["worker_id"]}


def runpod_cold_starts(c: httpx.Client, pod: Podium) -> dict[str, Any]:
    """The first cold start of an unmodified RunPod worker (spawned: deployed without waiting, and
    called at once), then three from scale-to-zero once the fork server holds its imports."""
    cmd = [
        sys.executable,
        "-m",
        "podium",
        "deploy",
        str(HERE / "rp_echo.py"),
        "--name",
        "rp-echo",
        "--no-wait",
        "--idle-timeout",
        "1",
        "--json",
        "--url",
        pod.url,
        "--key",
        pod.key,
    ]
    res = subprocess.run(cmd, env=pod.env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise BenchError(f"podium deploy rp-echo failed:\n{res.stderr}{res.stdout}")
    first = runsync(c, "rp-echo", 0)
    # Its fork server listens once the runpod package is imported (a socket under home/run).
    wait(lambda: list((pod.home / "run").glob("*.sock")), 60, "the RunPod worker's fork server")
    forked = []
    for i in range(3):
        wait(lambda: workers(c, "rp-echo") == 0, 30, "scale to zero")
        forked.append(runsync(c, "rp-echo", i + 1))
    log = (pod.home.parent / "podium.log").read_text()
    how = {r["worker"]: "fork" if f"worker {r['worker']} forked" in log else "spawn" for r in [first, *forked]}
    return {
        "first": {**first, "started_by": how[first["worker"]]},
        "forked_median_answer_s": statistics.median(r["first_answer_s"] for r in forked),
        "forked_median_cold_ms": statistics.median(r["cold_ms"] for r in forked),
        "forked": [{**r, "started_by": how[r["worker"]]} for r in forked],
    }


def warm_latency(base_url: str, path: str, expect: str, headers: dict[str, str]) -> dict[str, float | None]:
    """wrk at c=1 for 3 s; every answer must be a 2xx containing `expect`."""
    r = run_wrk(call_load(path, base_url, path, BODY, expect, headers), 1, 3)
    if r.errors:
        raise BenchError(f"{path}: {r.errors} error(s), first: {r.raw.get('sample')}")
    return {"p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "requests": r.requests}


def burst(c: httpx.Client, ep: str, n: int = 200) -> dict[str, Any]:
    wait(lambda: workers(c, ep) == 0, 30, "scale to zero before the burst")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        ids = list(
            pool.map(lambda i: c.post(f"/v2/{ep}/run", json={"input": {"n": i, "sleep": 0.05}}).json()["id"], range(n))
        )
    most = 0
    while True:
        most = max(most, workers(c, ep))
        h = c.get(f"/v2/{ep}/health").json()["jobs"]
        if h["inQueue"] == 0 and h["inProgress"] == 0:
            break
        if time.perf_counter() - t0 > 120:
            raise BenchError("the burst did not finish within 120 s")
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    workers_used = {c.get(f"/api/v1/jobs/{i}").json()["worker_id"] for i in ids[:: max(1, n // 50)]}
    return {
        "jobs": n,
        "max_workers_seen": most,
        "seconds": elapsed,
        "jobs_per_s": n / elapsed,
        "distinct_workers_sampled": len(workers_used - {None}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    handle_signals()
    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-scaling-"))
    servers: list[Server] = []
    echo_port = free_port()
    try:
        pod = Podium(tmp, servers, "pod_live_" + secrets.token_hex(20), NO_RATE_LIMIT)
        echo = Server(
            "starlette echo",
            [sys.executable, str(HERE / "echo_app.py"), "--host", HOST, "--port", str(echo_port)],
            child_env(),
            tmp / "echo.log",
        )
        servers.append(echo)
        url, key = pod.url, pod.key
        pod.wait_ready()
        pod.deploy(HERE / "scale_service.py", "scale")
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60, trust_env=False) as c:
            say("cold starts (3, each from zero workers)")
            colds = [cold_start(c, "scale") for _ in range(3)]
            say("cold starts of an unmodified RunPod worker: the first, then 3 from zero (forked)")
            rp = runpod_cold_starts(c, pod)
            say("warm runsync latency (wrk, c=1 for 3 s, once a worker is up)")
            # The endpoint scaled to zero during the RunPod cold starts: without this, wrk's first
            # request is a cold start, and one such request made wrk report a p99 of 110-240 ms.
            runsync(c, "scale", 1)
            warm = warm_latency(url, "/v2/scale/runsync", '"output":{"n":1}', {"Authorization": f"Bearer {key}"})
            echo.wait_http(f"http://{HOST}:{echo_port}/healthz", 30)
            echo_warm = warm_latency(f"http://{HOST}:{echo_port}", "/echo", BODY, {})
            say("burst of 200 jobs, max 4 workers")
            b = burst(c, "scale")
        report: dict[str, Any] = {
            "cold_start": {
                "first_answer_s_median": statistics.median(x["first_answer_s"] for x in colds),
                "cold_ms_median": statistics.median(x["cold_ms"] for x in colds),
                "runs": colds,
            },
            "runpod_cold_start": rp,
            "warm_runsync": warm,
            "echo": echo_warm,
            "warm_ratio_p50": (warm["p50_ms"] or 0) / (echo_warm["p50_ms"] or 1),
            "burst": b,
        }
    finally:
        ignore_signals()
        stop_all(servers)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        cs = report["cold_start"]
        print(
            f"cold start (scale from zero, trivial handler): first answer {cs['first_answer_s_median']:.2f} s "
            f"(median of 3), of which worker start {cs['cold_ms_median']:.0f} ms"
        )
        first, forked = rp["first"], rp["forked"]
        print(
            f"cold start of an unmodified RunPod worker (bench/rp_echo.py): first {first['first_answer_s']:.2f} s "
            f"to the answer ({first['started_by']}ed, of which worker start {first['cold_ms']:.0f} ms); from zero "
            f"again: {rp['forked_median_answer_s']:.2f} s (median of 3, of which worker start "
            f"{rp['forked_median_cold_ms']:.0f} ms; {', '.join(r['started_by'] + 'ed' for r in forked)})"
        )
        print(
            f"warm runsync: p50 {warm['p50_ms']:.1f} ms, p99 {warm['p99_ms']:.1f} ms "
            f"(bare echo p50 {echo_warm['p50_ms']:.2f} ms: {report['warm_ratio_p50']:.1f}x)"
        )
        print(
            f"burst: {b['jobs']} jobs with max 4 workers: at most {b['max_workers_seen']} workers at once, "
            f"{b['seconds']:.1f} s in all ({b['jobs_per_s']:.0f} jobs/s)"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        say(f"failed: {exc}")
        sys.exit(1)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
