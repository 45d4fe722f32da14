"""Podium's call paths next to a bare Starlette echo, loaded with wrk in the same run.

    .venv/bin/python bench/run.py            # full run (about 75 s)
    .venv/bin/python bench/run.py --quick    # shorter run
    .venv/bin/python bench/run.py --json     # figures as JSON on stdout (progress goes to stderr)
    .venv/bin/python bench/run.py --memory-only   # only server + one idle worker's PSS (a few s)

Starts, on 127.0.0.1 only, a bare Starlette echo on uvicorn (bench/echo_app.py) and `podium up`
with bench/echo_service.py (a RunPod-style handler) and bench/echo_routes.py (a service route)
deployed, 2 warm workers each. Then, target by target and phase by phase: a warm-up, c=1
(p50/p99 latency) and c=32 (requests/s, p50/p99, errors), each a wrk run whose Lua script checks
every answer. Targets: the echo, `POST /v2/{id}/runsync`, `POST /{endpoint}/{route}`, and `/run`
followed by `/status` polls until COMPLETED (completed jobs/s). Timings are reported, never
asserted; the exit code is non-zero only when something failed (a server did not start, an answer
was an error or wrong).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (
    BODY,
    CONC,
    HERE,
    HOST,
    NO_RATE_LIMIT,
    Podium,
    Server,
    Target,
    call_load,
    fmt,
    free_port,
    fs_type,
    fsync_ms,
    guarded,
    measure,
    ms,
    publish,
    run_status_load,
    say,
    share,
    tree_pss_mib,
    wrk_version,
)

PROFILES: dict[str, dict[str, float]] = {
    "full": {"warmup_s": 3, "c1_s": 5, "conc_s": 8},
    "quick": {"warmup_s": 1, "c1_s": 2, "conc_s": 3},
}
#: Issue 11's targets, as shares of the echo measured in the same run.
TARGETS = (
    "c=1 p50 <= 1 ms, p99 <= 3 ms; c=32 >= 10 % of the echo's req/s; 0 errors; server + one idle worker <= 120 MiB PSS"
)
#: What the Podium answers must contain (orjson writes no spaces).
PODIUM_OUTPUT = '"output":{"n":1}'


def job_ms(phase: dict[str, Any]) -> dict[str, Any] | None:
    """run+status only: a job's time from its /run answer to the COMPLETED status seen."""
    v = phase["wrk"].get("job_ms")
    return v if isinstance(v, dict) else None


def print_report(report: dict[str, Any]) -> None:
    m, res = report["meta"], report["results"]
    cN = f"c{CONC}"
    echo = res["echo"]
    print()
    print(
        f"Podium call paths vs. a bare Starlette echo: wrk {m['wrk']} on {HOST} ({m['cpus']} CPUs, "
        f"Python {m['python']}, {m['profile']} run)"
    )
    print("  echo    : POST /echo, bench/echo_app.py on uvicorn (uvloop/httptools when installed), one process")
    print(
        f"  podium  : `podium up`, SQLite (WAL) on {m['store_fs']} (a 4 KiB write + fsync there: p50 "
        f"{ms(m['fsync_ms']['p50'])} ms, p99 {ms(m['fsync_ms']['p99'])} ms);"
    )
    print("            bench/echo_service.py and bench/echo_routes.py, 2 warm workers each; rate limit off")
    print(
        f"  wrk     : 1 thread; c=1 for {m['c1_s']:.0f} s, c={CONC} for {m['conc_s']:.0f} s after a "
        f"{m['warmup_s']:.0f} s warm-up; every answer checked; body {BODY}"
    )
    poll = f"at least {m['poll_ms']:g} ms apart" if m["poll_ms"] else "back to back (--poll-ms to space them)"
    print(f"  run+status: each connection a client with one job at a time; its polls {poll}")
    print()
    head = (
        "target",
        "c=1 p50",
        "c=1 p99",
        f"c={CONC} req/s",
        f"c={CONC} p50",
        f"c={CONC} p99",
        "errors",
        "share of echo",
    )
    rows = []
    for key, label in report["labels"].items():
        r = res[key]
        c1, cn = r["c1"], r[cN]
        errors = sum(p["errors"] for p in r.values())
        rows.append(
            (
                label,
                ms(c1["p50_ms"]),
                ms(c1["p99_ms"]),
                fmt(cn["ok_per_s"], 0),
                ms(cn["p50_ms"]),
                ms(cn["p99_ms"]),
                fmt(errors),
                share(cn["ok_per_s"], echo[cN]["ok_per_s"]),
            )
        )
    widths = [max(len(str(x[i])) for x in [head, *rows]) for i in range(len(head))]
    print("  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}" for i, (h, w) in enumerate(zip(head, widths))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(row, widths))))
    print(
        "(latencies in ms; errors = non-2xx + socket errors + timeouts + wrong answers, all phases;\n"
        " run+status: req/s counts completed jobs, latencies are those of single /run and /status requests)"
    )
    print()
    print("ratios to the echo (podium / echo; > 1 = podium slower):")
    for key, label in report["labels"].items():
        if key == "echo":
            continue
        r = res[key]
        print(
            f"  {label:<18} c=1 p50 {ratio(r['c1']['p50_ms'], echo['c1']['p50_ms'])}, "
            f"p99 {ratio(r['c1']['p99_ms'], echo['c1']['p99_ms'])}; "
            f"c={CONC} p50 {ratio(r[cN]['p50_ms'], echo[cN]['p50_ms'])}; "
            f"c={CONC} throughput {share(r[cN]['ok_per_s'], echo[cN]['ok_per_s'])} of the echo's"
        )
    rs = res.get("run_status")
    if rs:
        for phase, name in (("c1", "c=1"), (cN, f"c={CONC}")):
            j, p = job_ms(rs[phase]), rs[phase]
            if j:
                polls = p["wrk"].get("polls", 0) / max(1, p["ok"])
                print(
                    f"  run+status at {name}: a job took p50 {ms(j['p50'])} ms, p99 {ms(j['p99'])} ms from "
                    f"its /run answer to COMPLETED seen; {polls:.1f} status polls per job"
                )
    print()
    mem = report["memory"]
    print(
        f"memory (PSS): podium server {fmt(mem['server_mib'], 1)} MiB + one idle worker "
        f"{fmt(mem['one_worker_mib'], 1)} MiB = {fmt(mem['server_plus_one_worker_mib'], 1)} MiB; "
        f"whole tree ({mem['workers_total']} workers) {fmt(mem['whole_tree_mib'], 1)} MiB; "
        f"echo {fmt(mem['echo_mib'], 1)} MiB"
    )
    print(
        f"CPU during c={CONC} (% of one core): "
        + "; ".join(f"{label}: {cpu(res[key][cN])}" for key, label in report["labels"].items())
    )
    print(f"issue 11 targets: {TARGETS}")
    for key, label in report["labels"].items():
        if key != "echo":
            print(f"  {label:<18} {targets_met(res[key], echo, latency=key != 'run_status')}")
    mib = mem["server_plus_one_worker_mib"]
    print(f"  {'memory':<18} {yes(mib is not None and mib <= 120)} ({fmt(mib, 1)} MiB)")
    for key, r in res.items():
        for phase, v in r.items():
            sample = v["wrk"].get("sample")
            if v["errors"] and sample:
                print(f"note: {key} {phase}: {v['errors']} error(s), first: {sample}")
    print()


def cpu(phase: dict[str, Any]) -> str:
    out = f"wrk {fmt(phase['client_cpu_pct'], 0)}, server {fmt(phase['server_cpu_pct'], 0)}"
    if phase.get("workers_cpu_pct") is not None:
        out += f", workers {fmt(phase['workers_cpu_pct'], 0)}"
    return out


def yes(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets_met(r: dict[str, Any], echo: dict[str, Any], latency: bool) -> str:
    """Issue 11's targets for one target, each said met or not (reported, never asserted).
    run+status has only the throughput and error targets (its latencies mix /run and /status)."""
    cN = f"c{CONC}"
    p50, p99 = r["c1"]["p50_ms"], r["c1"]["p99_ms"]
    part = 100 * r[cN]["ok_per_s"] / echo[cN]["ok_per_s"] if echo[cN]["ok_per_s"] else 0.0
    errors = sum(p["errors"] for p in r.values())
    lat = (
        (f"c=1 p50 <= 1 ms {yes(p50 is not None and p50 <= 1)}, p99 <= 3 ms {yes(p99 is not None and p99 <= 3)}; ")
        if latency
        else ""
    )
    return f"{lat}c={CONC} >= 10 % {yes(part >= 10)} ({part:.1f} %); 0 errors {yes(errors == 0)}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.1f}x" if a is not None and b else "-"


def memory_only(pod: Podium) -> int:
    """Server plus one idle worker, without the load before (issue 11's memory target)."""
    ep_id = pod.deploy(HERE / "echo_service.py", "bench")["endpoint_id"]
    pod.wait_workers(ep_id)
    time.sleep(1)
    mem = pod.memory(ep_id)
    print(
        f"memory (PSS, idle, no load yet): podium server {fmt(mem['server_mib'], 1)} MiB + one idle worker "
        f"{fmt(mem['one_worker_mib'], 1)} MiB = {fmt(mem['server_plus_one_worker_mib'], 1)} MiB "
        f"(target <= 120 MiB); whole tree {fmt(mem['whole_tree_mib'], 1)} MiB"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter run (about 40 s)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, Podium's home)")
    ap.add_argument(
        "--memory-only",
        action="store_true",
        help="only deploy bench/echo_service.py and print the memory figures (PSS)",
    )
    ap.add_argument(
        "--poll-ms",
        type=float,
        default=0.0,
        help="run+status: least time between two polls of one job (default 0: poll again as soon as the answer is in)",
    )
    args = ap.parse_args(argv)
    profile = "quick" if args.quick else "full"
    prof = PROFILES[profile]
    started = time.monotonic()

    def body(tmp: Path, servers: list[Server]) -> int:
        version = wrk_version()
        echo_port = free_port()
        pod = Podium(tmp, servers, "pod_bench_" + secrets.token_urlsafe(24), NO_RATE_LIMIT)
        echo = Server(
            "starlette echo",
            [sys.executable, str(HERE / "echo_app.py"), "--host", HOST, "--port", str(echo_port)],
            pod.env,
            tmp / "echo.log",
        )
        servers.append(echo)
        say(f"starting servers (echo :{echo_port}, podium :{pod.port}, temp {tmp})")
        echo.wait_http(f"http://{HOST}:{echo_port}/healthz", 20)
        pod.wait_ready()
        if args.memory_only:
            return memory_only(pod)
        say("deploying bench/echo_service.py and bench/echo_routes.py")
        ep = pod.deploy(HERE / "echo_service.py", "bench")
        routes = pod.deploy(HERE / "echo_routes.py", "bench-routes")
        pod.wait_workers(ep["endpoint_id"])
        pod.wait_workers(routes["endpoint_id"])
        ep_id = ep["endpoint_id"]
        say(f"set-up took {time.monotonic() - started:.1f} s")

        def podium_pids() -> tuple[int, list[int]]:
            return pod.server.pid, pod.tree()[1:]

        targets = [
            Target(
                "echo",
                "starlette echo",
                call_load("echo", f"http://{HOST}:{echo_port}", "/echo", BODY, BODY, pids=lambda: (echo.pid, [])),
            ),
            Target(
                "runsync",
                "podium runsync",
                call_load("runsync", pod.url, f"/v2/{ep_id}/runsync", BODY, PODIUM_OUTPUT, pod.auth, podium_pids),
            ),
            Target(
                "route",
                "podium route call",
                call_load("route", pod.url, "/bench-routes/echo", '{"n":1}', '{"n":1}', pod.auth, podium_pids),
            ),
            Target(
                "run_status",
                "podium run+status",
                run_status_load("run_status", pod.url, ep_id, BODY, PODIUM_OUTPUT, args.poll_ms, pod.auth, podium_pids),
            ),
        ]
        results = measure(targets, prof)
        time.sleep(1)  # let the workers go idle before their memory is read
        mem = pod.memory(ep_id)
        report = {
            "meta": {
                "profile": profile,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "wrk": version,
                "concurrency": CONC,
                **prof,
                "store_fs": fs_type(pod.home.resolve()),
                "poll_ms": args.poll_ms,
                "fsync_ms": fsync_ms(pod.home),
                "elapsed_s": round(time.monotonic() - started, 1),
            },
            "labels": {t.key: t.label for t in targets},
            "results": results,
            "memory": {**mem, "workers_total": len(pod.tree()) - 1, "echo_mib": tree_pss_mib(echo.pid)},
            "targets": TARGETS,
        }
        return publish(report, args.json, print_report)

    return guarded("podium-bench-", args.keep, " (echo.log, podium.log, home/)", body)


if __name__ == "__main__":
    sys.exit(main())
