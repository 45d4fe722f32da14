"""Podium's call path next to a bare Starlette echo, measured in the same run.

    .venv/bin/python bench/run.py            # full run (well under 2 minutes)
    .venv/bin/python bench/run.py --quick    # shorter run
    .venv/bin/python bench/run.py --json     # figures as JSON on stdout (progress goes to stderr)

Starts, on 127.0.0.1 only, a bare Starlette echo on uvicorn (bench/echo_app.py) and a `podium up`
server with bench/echo_service.py deployed, then measures both with one httpx AsyncClient each:
warm-up, concurrency 1 (p50/p99 latency), concurrency 32 for a fixed time (requests/s). Timings
are reported, never asserted; the exit code is non-zero only when something failed (a server did
not start, or a request did not answer correctly).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 10.0

PROFILES: dict[str, dict[str, Any]] = {
    # c1_max_s / warmup_max_s bound a phase's time whatever the latency; deadline bounds the run.
    "full": {"warmup": 200, "warmup_seq": 50, "warmup_max_s": 15.0, "c1": 500, "c1_max_s": 20.0,
             "conc": 32, "conc_s": 5.0, "deadline_s": 115.0},
    "quick": {"warmup": 50, "warmup_seq": 20, "warmup_max_s": 8.0, "c1": 150, "c1_max_s": 8.0,
              "conc": 32, "conc_s": 2.0, "deadline_s": 60.0},
}


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc; [] elsewhere)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pids: list[int]) -> float | None:
    """utime+stime of processes, from /proc (None when unavailable)."""
    total = 0.0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None
    return total


def fs_type(path: Path) -> str:
    """The filesystem a path lives on (SQLite's fsync cost depends on it)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt = parts[1]
                if str(path).startswith(mnt) and len(mnt) > len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


class Server:
    """A subprocess we started: output to a log file, stopped by pid with SIGTERM then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
        )
        self.seen_children: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait_healthy(self, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited with code {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
                try:
                    if c.get(url).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        raise BenchError(f"{self.name} not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, grace: float = 10.0) -> None:
        self.seen_children.update(children(self.pid))
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {grace:.0f}s; killing it")
                self.proc.kill()
                self.proc.wait(5)
            say(f"{self.name} stopped in {time.monotonic() - t0:.1f} s (exit {self.proc.returncode})")
        # Podium stops its workers itself; if it was killed, do not leave them behind.
        for pid in self.seen_children:
            try:
                os.kill(pid, 0)
            except OSError:
                continue
            say(f"{self.name}: child {pid} still running; sending SIGTERM")
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        self._log.close()


# -- targets ----------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    body: Callable[[int], bytes]
    #: Parsed answer -> (ok, server-reported timings or None); raise or return False on mismatch.
    check: Callable[[int, Any], tuple[bool, tuple[int, int] | None]]
    pids: Callable[[], list[int]]
    server_pid: int


def echo_body(i: int) -> bytes:
    return json.dumps({"input": {"n": i}}).encode()


def check_echo(i: int, answer: Any) -> tuple[bool, None]:
    return answer == {"input": {"n": i}}, None


def check_podium(i: int, answer: Any) -> tuple[bool, tuple[int, int] | None]:
    ok = (isinstance(answer, dict) and answer.get("status") == "COMPLETED"
          and answer.get("output") == {"n": i})
    timings = None
    if isinstance(answer, dict) and "delayTime" in answer:
        timings = (int(answer["delayTime"]), int(answer["executionTime"]))
    return ok, timings


@dataclass
class Phase:
    requests: int = 0
    errors: int = 0
    first_error: str | None = None
    latencies_ms: list[float] = field(default_factory=list)
    server_timings: list[tuple[int, int]] = field(default_factory=list)
    elapsed_s: float = 0.0
    client_cpu_s: float | None = None
    server_cpu_s: float | None = None
    workers_cpu_s: float | None = None
    truncated: bool = False

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        out: dict[str, Any] = {
            "requests": self.requests,
            "ok": len(lat),
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "p50_ms": pct(lat, 50),
            "p90_ms": pct(lat, 90),
            "p99_ms": pct(lat, 99),
            "max_ms": round(lat[-1], 3) if lat else None,
            "rps": round(len(lat) / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
            "truncated_by_time": self.truncated,
        }
        if self.first_error:
            out["first_error"] = self.first_error
        for key, secs in (("client_cpu_pct", self.client_cpu_s), ("server_cpu_pct", self.server_cpu_s),
                          ("workers_cpu_pct", self.workers_cpu_s)):
            if secs is not None and self.elapsed_s > 0:
                out[key] = round(100 * secs / self.elapsed_s, 1)
        if self.server_timings:
            delays = sorted(float(d) for d, _ in self.server_timings)
            execs = sorted(float(e) for _, e in self.server_timings)
            out["server_delay_ms"] = {"p50": pct(delays, 50), "p99": pct(delays, 99)}
            out["server_execution_ms"] = {"p50": pct(execs, 50), "p99": pct(execs, 99)}
        return out


def pct(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return round(sorted_values[k], 3)


# -- measuring --------------------------------------------------------------------------------------


async def one(client: httpx.AsyncClient, t: Target, i: int, phase: Phase) -> None:
    phase.requests += 1
    start = time.perf_counter()
    try:
        r = await client.post(t.url, content=t.body(i), headers=t.headers)
        elapsed = (time.perf_counter() - start) * 1000
        if r.status_code != 200:
            raise BenchError(f"HTTP {r.status_code}: {r.text[:300]}")
        ok, timings = t.check(i, r.json())
        if not ok:
            raise BenchError(f"unexpected answer: {r.text[:300]}")
    except (httpx.HTTPError, BenchError, ValueError) as exc:
        phase.errors += 1
        if phase.first_error is None:
            phase.first_error = f"{type(exc).__name__}: {exc}"
        return
    phase.latencies_ms.append(elapsed)
    if timings is not None:
        phase.server_timings.append(timings)


class Meter:
    """CPU seconds of the bench process, the server process and its children over a phase."""

    def __init__(self, t: Target) -> None:
        self.t = t
        self.workers = [p for p in t.pids() if p != t.server_pid]
        self.c0 = time.process_time()
        self.s0 = cpu_seconds([t.server_pid])
        self.w0 = cpu_seconds(self.workers) if self.workers else None

    def into(self, phase: Phase) -> None:
        phase.client_cpu_s = time.process_time() - self.c0
        s1 = cpu_seconds([self.t.server_pid])
        phase.server_cpu_s = s1 - self.s0 if s1 is not None and self.s0 is not None else None
        if self.w0 is not None:
            w1 = cpu_seconds(self.workers)
            phase.workers_cpu_s = w1 - self.w0 if w1 is not None else None


async def run_count(client: httpx.AsyncClient, t: Target, n: int, conc: int, max_s: float) -> Phase:
    """`n` requests by `conc` loops, stopping early (truncated) after `max_s` seconds."""
    phase = Phase()
    counter = iter(range(n))
    stop_at = time.perf_counter() + max_s
    meter = Meter(t)

    async def loop() -> None:
        for i in counter:
            if time.perf_counter() > stop_at:
                phase.truncated = True
                return
            await one(client, t, i, phase)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(conc)))
    phase.elapsed_s = time.perf_counter() - t0
    meter.into(phase)
    return phase


async def run_for(client: httpx.AsyncClient, t: Target, conc: int, seconds: float) -> Phase:
    """Closed loop: `conc` loops each sending its next request as soon as one answers."""
    phase = Phase()
    stop_at = time.perf_counter() + seconds
    seq = iter(range(10**9))
    meter = Meter(t)

    async def loop() -> None:
        while time.perf_counter() < stop_at:
            await one(client, t, next(seq), phase)

    t0 = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(conc)))
    phase.elapsed_s = time.perf_counter() - t0
    meter.into(phase)
    return phase


def make_client(conc: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
        timeout=REQUEST_TIMEOUT,
        trust_env=False,  # never route 127.0.0.1 through a proxy from the environment
    )


async def measure(targets: list[Target], prof: dict[str, Any], deadline: float) -> dict[str, Any]:
    conc = prof["conc"]
    results: dict[str, dict[str, Any]] = {t.name: {} for t in targets}
    # One keep-alive pool per target and concurrency, sized for it: httpx's pool costs CPU per
    # request in proportion to the connections it holds, so a 32-connection pool would add
    # client time to every c=1 request (about 1 ms on a small machine).
    seq = {t.name: make_client(1) for t in targets}
    par = {t.name: make_client(conc) for t in targets}

    def left(cap: float) -> float:
        return max(1.0, min(cap, deadline - time.monotonic()))

    try:
        # Phases interleave the targets, so slow drift of a noisy machine hits both alike.
        for t in targets:
            say(f"{t.name}: warm-up ({prof['warmup']} requests, up to {conc} at a time, "
                f"then {prof['warmup_seq']} one at a time)")
            w = await run_count(par[t.name], t, prof["warmup"], conc, left(prof["warmup_max_s"]))
            results[t.name]["warmup"] = w.summary()
            w = await run_count(seq[t.name], t, prof["warmup_seq"], 1, left(prof["warmup_max_s"]))
            results[t.name]["warmup_c1"] = w.summary()
        for t in targets:
            say(f"{t.name}: concurrency 1 ({prof['c1']} sequential requests)")
            p = await run_count(seq[t.name], t, prof["c1"], 1, left(prof["c1_max_s"]))
            results[t.name]["c1"] = p.summary()
        for t in targets:
            secs = min(prof["conc_s"], left(prof["conc_s"]))
            say(f"{t.name}: concurrency {conc} for {secs:.1f} s")
            p = await run_for(par[t.name], t, conc, secs)
            results[t.name][f"c{conc}"] = p.summary()
    finally:
        for c in [*seq.values(), *par.values()]:
            await c.aclose()
    return results


# -- set-up -----------------------------------------------------------------------------------------


def deploy(podium_url: str, key: str, env: dict[str, str], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "podium", "deploy", str(HERE / "echo_service.py"),
           "--name", "bench", "--json", "--timeout", str(int(timeout))]
    denv = dict(env, PODIUM_URL=podium_url, PODIUM_API_KEY=key)
    try:
        res = subprocess.run(cmd, env=denv, capture_output=True, text=True, timeout=timeout + 10,
                             stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"podium deploy did not finish within {timeout + 10:.0f}s") from None
    if res.returncode != 0:
        raise BenchError(f"podium deploy failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    ep = json.loads(res.stdout)
    if ep.get("state") != "ACTIVE":
        raise BenchError(f"endpoint is {ep.get('state')} after deploy: {ep}")
    return ep  # type: ignore[no-any-return]


def wait_workers(podium_url: str, key: str, ep_id: str, timeout: float) -> dict[str, Any]:
    """Wait until the endpoint's min_workers are all ready (deploy returns once the first is)."""
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=podium_url, headers=headers, timeout=5.0, trust_env=False) as c:
        while True:
            view = c.get(f"/api/v1/endpoints/{ep_id}").raise_for_status().json()
            want = max(1, view["scaling"]["min_workers"])
            ready = [w for w in view["workers"] if w["ready_at"] is not None]
            if len(ready) >= want or time.monotonic() > deadline:
                if len(ready) < want:
                    say(f"only {len(ready)} of {want} workers ready after {timeout:.0f}s; measuring anyway")
                return view  # type: ignore[no-any-return]
            time.sleep(0.1)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # A fresh, private SQLite store: never a database the environment points at.
    for k in [k for k in env if k.startswith("PODIUM_")]:
        del env[k]
    env.pop("PYTHONPATH", None)
    return env


# -- report -----------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 2)


def compute_ratios(res: dict[str, Any], conc: int) -> dict[str, Any]:
    e, p = res["starlette_echo"], res["podium_runsync"]
    cN = f"c{conc}"
    return {
        "c1_p50_latency": ratio(p["c1"]["p50_ms"], e["c1"]["p50_ms"]),
        "c1_p99_latency": ratio(p["c1"]["p99_ms"], e["c1"]["p99_ms"]),
        f"{cN}_throughput": ratio(e[cN]["rps"], p[cN]["rps"]),
        f"{cN}_p50_latency": ratio(p[cN]["p50_ms"], e[cN]["p50_ms"]),
        f"{cN}_p99_latency": ratio(p[cN]["p99_ms"], e[cN]["p99_ms"]),
    }


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def print_table(report: dict[str, Any]) -> None:
    m, res, rat = report["meta"], report["results"], report["ratios"]
    conc = m["concurrency"]
    cN = f"c{conc}"
    e, p = res["starlette_echo"], res["podium_runsync"]
    print()
    print(f"Podium call path vs. bare Starlette echo  ({m['cpus']} CPUs, Python {m['python']}, "
          f"{m['profile']} run)")
    print(f"  echo   : POST /echo on Starlette {m['starlette']} / uvicorn {m['uvicorn']} "
          "(loop auto, http auto, log warning, no access log), one process")
    s = m["podium_scaling"]
    print(f"  podium : POST /v2/<id>/runsync -> bench/echo_service.py handler; "
          f"min_workers={s.get('min_workers')} max_workers={s.get('max_workers')} "
          f"concurrency={s.get('concurrency')}; {m['podium_workers_ready']} worker(s) ready")
    print(f"           store SQLite (WAL, synchronous=FULL) on {m['store_fs']} ({m['home']})")
    print(f"  client : httpx {m['httpx']} AsyncClient on {m['client_loop']}, keep-alive pools of 1 and "
          f"{conc} connections per target; body {{\"input\": {{\"n\": i}}}}")
    print(f"  phases : warm-up {m['warmup']} req at c={conc} + {m['warmup_seq']} at c=1; "
          f"c=1: {m['c1_requests']} sequential req; "
          f"c={conc}: {m['conc_seconds']:.1f} s closed loop")
    print()
    rows = [
        ("c=1   p50 latency (ms)", e["c1"]["p50_ms"], p["c1"]["p50_ms"], rat["c1_p50_latency"]),
        ("c=1   p99 latency (ms)", e["c1"]["p99_ms"], p["c1"]["p99_ms"], rat["c1_p99_latency"]),
        (f"c={conc}  throughput (req/s)", e[cN]["rps"], p[cN]["rps"], rat[f"{cN}_throughput"]),
        (f"c={conc}  p50 latency (ms)", e[cN]["p50_ms"], p[cN]["p50_ms"], rat[f"{cN}_p50_latency"]),
        (f"c={conc}  p99 latency (ms)", e[cN]["p99_ms"], p[cN]["p99_ms"], rat[f"{cN}_p99_latency"]),
    ]
    head = ("metric", "starlette echo", "podium runsync", "ratio (>1 = podium slower)")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    print(f"{head[0]:<{w0}}  {head[1]:>14}  {head[2]:>14}  {head[3]}")
    print(f"{'-' * w0}  {'-' * 14}  {'-' * 14}  {'-' * len(head[3])}")
    for name, a, b, r in rows:
        how = "echo/podium" if "throughput" in name else "podium/echo"
        rs = f"{r:.2f}x" if r is not None else "-"
        print(f"{name:<{w0}}  {fmt(a):>14}  {fmt(b):>14}  {rs:>7}  ({how})")
    errs_e = sum(e[k]["errors"] for k in ("c1", cN))
    errs_p = sum(p[k]["errors"] for k in ("c1", cN))
    reqs_e = sum(e[k]["requests"] for k in ("c1", cN))
    reqs_p = sum(p[k]["requests"] for k in ("c1", cN))
    print(f"{'errors / measured requests':<{w0}}  {f'{errs_e}/{reqs_e}':>14}  {f'{errs_p}/{reqs_p}':>14}")
    print()
    for phase in ("c1", cN):
        sd, se = p[phase].get("server_delay_ms"), p[phase].get("server_execution_ms")
        if sd and se:
            label = "c=1 " if phase == "c1" else f"c={conc}"
            print(f"podium at {label}: server-reported delayTime p50 {fmt(sd['p50'], 0)} ms "
                  f"(p99 {fmt(sd['p99'], 0)}), executionTime p50 {fmt(se['p50'], 0)} ms "
                  f"(p99 {fmt(se['p99'], 0)})")
    print(f"CPU during c={conc} (% of one core): "
          f"echo: client {fmt(e[cN].get('client_cpu_pct'), 0)}, server {fmt(e[cN].get('server_cpu_pct'), 0)}"
          f" | podium: client {fmt(p[cN].get('client_cpu_pct'), 0)}, "
          f"server {fmt(p[cN].get('server_cpu_pct'), 0)}, workers {fmt(p[cN].get('workers_cpu_pct'), 0)}")
    if (e[cN].get("client_cpu_pct") or 0) >= 90:
        print(f"note: the bench client used ~{fmt(e[cN]['client_cpu_pct'], 0)}% of a core during the echo's "
              f"c={conc} phase, so the echo figure is bounded by the client (httpx), not the server:")
        print("      the throughput ratio understates the difference between the servers.")
    for name, r in res.items():
        for phase, v in r.items():
            if v.get("truncated_by_time"):
                print(f"note: {name} {phase} stopped at its time cap after {v['requests']} requests")
            if v.get("first_error"):
                print(f"note: {name} {phase} first error: {v['first_error']}")
    print()


# -- main -------------------------------------------------------------------------------------------


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def run_async(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter run (about 30 s)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temp dir (server logs, Podium's home) and print where it is")
    args = ap.parse_args(argv)
    prof = PROFILES["quick" if args.quick else "full"]
    started = time.monotonic()
    deadline = started + prof["deadline_s"]
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored

    tmp = Path(tempfile.mkdtemp(prefix="podium-bench-"))
    servers: list[Server] = []
    try:
        env = child_env()
        key = "pod_bench_" + secrets.token_urlsafe(24)
        home = tmp / "home"

        echo_port = free_port()
        echo = Server("starlette echo", [sys.executable, str(HERE / "echo_app.py"), "--host", HOST,
                                         "--port", str(echo_port)], env, tmp / "echo.log")
        servers.append(echo)

        pod_port = free_port()
        pod_url = f"http://{HOST}:{pod_port}"
        pod_env = dict(env, PODIUM_HOME=str(home), PODIUM_ADMIN_KEY=key)
        pod = Server("podium", [sys.executable, "-m", "podium", "up", "--host", HOST, "--port",
                                str(pod_port)], pod_env, tmp / "podium.log")
        servers.append(pod)

        say(f"starting servers (echo :{echo_port}, podium :{pod_port}, temp {tmp})")
        echo.wait_healthy(f"http://{HOST}:{echo_port}/healthz", 20)
        pod.wait_healthy(f"{pod_url}/healthz", 30)
        say("deploying bench/echo_service.py")
        ep = deploy(pod_url, key, env, timeout=40)
        view = wait_workers(pod_url, key, ep["endpoint_id"], timeout=15)
        ready = sum(1 for w in view["workers"] if w["ready_at"] is not None)
        say(f"endpoint {ep['endpoint_id']} {ep['state']}, {ready} worker(s) ready "
            f"(set-up took {time.monotonic() - started:.1f} s)")

        targets = [
            Target("starlette_echo", f"http://{HOST}:{echo_port}/echo",
                   {"Content-Type": "application/json"}, echo_body, check_echo,
                   lambda: [echo.pid], echo.pid),
            Target("podium_runsync", f"{pod_url}/v2/{ep['endpoint_id']}/runsync",
                   {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
                   echo_body, check_podium, lambda: [pod.pid, *children(pod.pid)], pod.pid),
        ]
        remaining = deadline - time.monotonic()
        if remaining < 10:
            raise BenchError(f"set-up took too long ({time.monotonic() - started:.0f} s)")
        try:
            results = run_async(asyncio.wait_for(measure(targets, prof, deadline), remaining))
        except TimeoutError:
            raise BenchError(f"measuring ran past the {prof['deadline_s']:.0f} s limit") from None

        import starlette
        import uvicorn

        try:
            import uvloop  # noqa: F401

            client_loop = "uvloop"
        except ImportError:
            client_loop = "asyncio"
        report = {
            "meta": {
                "profile": "quick" if args.quick else "full",
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "starlette": starlette.__version__,
                "uvicorn": uvicorn.__version__,
                "httpx": httpx.__version__,
                "client_loop": client_loop,
                "concurrency": prof["conc"],
                "warmup": prof["warmup"],
                "warmup_seq": prof["warmup_seq"],
                "c1_requests": prof["c1"],
                "conc_seconds": prof["conc_s"],
                "podium_scaling": view.get("scaling", {}),
                "podium_workers_ready": ready,
                "store_fs": fs_type(home.resolve()),
                "home": str(home),
                "elapsed_s": None,
            },
            "results": results,
            "ratios": compute_ratios(results, prof["conc"]),
            "ratio_note": "latency ratios are podium/echo, throughput ratio is echo/podium: "
                          ">1 means podium is slower",
        }
        report["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
        if args.json:
            sys.stdout.write(json.dumps(report, indent=2) + "\n")
        else:
            print_table(report)
        errors = sum(v["errors"] for r in results.values() for v in r.values())
        if errors:
            say(f"{errors} request(s) failed; see first_error above")
            return 1
        return 0
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        # Finish cleaning up even if asked to stop again.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for s in reversed(servers):
            try:
                s.stop()
            except Exception as exc:  # keep cleaning up the rest
                say(f"stopping {s.name}: {exc}")
        if args.keep:
            say(f"kept {tmp} (echo.log, podium.log, home/)")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"done in {time.monotonic() - started:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
