"""What every bench script shares: processes on 127.0.0.1, `wrk` runs, /proc figures, Podium set-up.

The HTTP load always comes from `wrk` (scripts/ensure-wrk.sh installs it), driven by the Lua
scripts in bench/lua/, which check every answer and print wrk's exact latency percentiles as one
JSON line. Nothing here asserts a timing: a run fails only when something does not work.
"""

from __future__ import annotations

import json
import os
import resource
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
LUA = HERE / "lua"
HOST = "127.0.0.1"
#: Podium's per-key rate limit (1000/s by default) would measure the limiter, not the call path.
NO_RATE_LIMIT = {"PODIUM_RATE_LIMIT": "1000000000", "PODIUM_RATE_BURST": "1000000000"}
BODY = '{"input":{"n":1}}'
CONC = 32


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


# -- /proc ------------------------------------------------------------------------------------------


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


def descendants(pid: int) -> list[int]:
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children(p)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the processes still alive, from /proc/<pid>/stat."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
        except (OSError, IndexError, ValueError):
            pass
    return total


def pss_mib(pid: int) -> float | None:
    """Proportional set size of one process (shared pages split among their users), in MiB."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def tree_pss_mib(pid: int) -> float | None:
    values = [pss_mib(p) for p in [pid, *descendants(pid)]]
    known = [v for v in values if v is not None]
    return round(sum(known), 1) if known else None


def fs_type(path: Path) -> str:
    """The filesystem a path lives on (SQLite's fsync cost depends on it)."""
    best, kind = "", "?"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                mnt, typ = line.split()[1:3]
                if str(path).startswith(mnt) and len(mnt) > len(best):
                    best, kind = mnt, typ
    except OSError:
        pass
    return kind


def fsync_ms(directory: Path, n: int = 30) -> dict[str, float]:
    """p50/p99 of a 4 KiB append plus fsync in `directory`: what one durable commit of the store
    costs on this disk right now (a shared machine's disk is often the noisiest part)."""
    path = directory / "fsync-probe"
    times = []
    with path.open("ab") as f:
        for _ in range(n):
            t0 = time.perf_counter()
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
            times.append((time.perf_counter() - t0) * 1000)
    path.unlink()
    times.sort()
    return {"p50": round(times[n // 2], 2), "p99": round(times[min(n - 1, int(n * 0.99))], 2)}


# -- processes ----------------------------------------------------------------------------------------


class Server:
    """A process tree we started: output to a log file; stopped with SIGTERM, then SIGKILL, and
    whatever it spawned that is still alive afterwards is stopped too (by pid, never by name)."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the bench only; it stops everything in order
        )
        self.seen: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def remember_tree(self) -> None:
        self.seen.update(descendants(self.pid))

    def log_tail(self, n: int = 30) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def wait_http(self, url: str, timeout: float, ok: tuple[int, ...] = (200,)) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0, trust_env=False) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited with code {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if c.get(url).status_code in ok:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        raise BenchError(f"{self.name} not ready after {timeout:.0f}s ({url}):\n{self.log_tail()}")

    def stop(self, grace: float = 15.0) -> None:
        self.remember_tree()
        t0 = time.monotonic()
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop within {grace:.0f}s; killing it")
                _kill_group(self.pid)
                self.proc.kill()
                self.proc.wait(5)
            say(f"{self.name} stopped in {time.monotonic() - t0:.1f} s (exit {self.proc.returncode})")
        # What it spawned and left behind: its remembered descendants and anything still in the
        # process group it leads (start_new_session), even if re-parented.
        left = [p for p in self.seen | set(group_members(self.pid)) if _alive(p)]
        if left:
            say(f"{self.name}: {len(left)} process(es) it started still running; stopping them")
            for p in left:
                _signal(p, signal.SIGTERM)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(_alive(p) for p in left):
                time.sleep(0.1)
            for p in left:
                if _alive(p):
                    _signal(p, signal.SIGKILL)
        self._log.close()


def group_members(pgid: int) -> list[int]:
    """Processes whose process group is `pgid` (from /proc/<pid>/stat)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) == pgid:
                    out.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError:
        pass


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


def on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def handle_signals() -> None:
    """SIGTERM and SIGINT both end up in the `finally` that stops the servers."""
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def publish(report: dict[str, Any], as_json: bool, printer: Callable[[dict[str, Any]], None]) -> int:
    """Print a run's report (as JSON, or as `printer` lays it out); non-zero if an answer failed."""
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        printer(report)
    errors = sum(p["errors"] for r in report["results"].values() for p in r.values())
    if errors:
        say(f"{errors} error(s) in the answers; see the notes above")
        return 1
    return 0


def guarded(prefix: str, keep: bool, kept_note: str, body: Callable[[Path, list[Server]], int]) -> int:
    """Run `body` with a temp dir and a list of the servers it starts; whatever happens (an error,
    Ctrl-C, SIGTERM), stop them all and remove the dir (unless `keep`). Returns the exit code."""
    started = time.monotonic()
    handle_signals()
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    servers: list[Server] = []
    try:
        return body(tmp, servers)
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        ignore_signals()
        stop_all(servers)
        if keep:
            say(f"kept {tmp}{kept_note}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        say(f"done in {time.monotonic() - started:.1f} s")


def ignore_signals() -> None:
    """While cleaning up: finish stopping the servers even if asked to stop again."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_all(servers: list[Server]) -> None:
    for s in reversed(servers):
        try:
            s.stop()
        except Exception as exc:  # noqa: BLE001 - keep cleaning up the rest
            say(f"stopping {s.name}: {exc}")


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # A fresh, private store for every Podium the bench starts: never one the environment names.
    for k in [k for k in env if k.startswith("PODIUM_")]:
        del env[k]
    env.pop("PYTHONPATH", None)
    return env


# -- wrk --------------------------------------------------------------------------------------------


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("wrk is not installed: run `bash scripts/ensure-wrk.sh` (or `make bench`)")
    return path


def wrk_version() -> str:
    res = subprocess.run([wrk_path(), "-v"], check=False, capture_output=True, text=True, timeout=10)
    return (res.stdout + res.stderr).split("Copyright")[0].replace("wrk", "", 1).strip() or "?"


@dataclass
class Load:
    """One thing to load with wrk: a base URL, a Lua script and its settings (BENCH_* variables)."""

    name: str
    base_url: str
    script: str  # a file in bench/lua/
    settings: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)
    #: The server's pid and those of its helpers (workers), read when a run starts.
    pids: Callable[[], tuple[int, list[int]]] | None = None


@dataclass
class Result:
    conc: int
    seconds: float
    requests: int
    ok: int  # answers checked and right (completed jobs for run+status)
    errors: int  # non-2xx + socket errors + timeouts + wrong answers
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    client_cpu_pct: float
    server_cpu_pct: float | None
    workers_cpu_pct: float | None
    raw: dict[str, Any]

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "raw"}
        d["ok_per_s"] = round(self.rps, 1)
        d["wrk"] = self.raw
        return d


def run_wrk(t: Load, conc: int, seconds: float, threads: int = 1) -> Result:
    """`conc` connections for `seconds`, each sending its next request as soon as one answers."""
    threads = min(threads, conc)
    cmd = [
        wrk_path(),
        "-t",
        str(threads),
        "-c",
        str(conc),
        "-d",
        f"{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA / t.script),
    ]
    for k, v in t.headers.items():
        cmd += ["-H", f"{k}: {v}"]
    cmd.append(t.base_url)
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA), BENCH_CONNECTIONS=str(conc // threads), **t.settings)
    main, helpers = t.pids() if t.pids else (None, [])
    s0, w0 = cpu_seconds([main] if main else []), cpu_seconds(helpers)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        res = subprocess.run(
            cmd, env=env, check=False, capture_output=True, text=True, timeout=seconds + 30, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk on {t.name} did not finish within {seconds + 30:.0f}s") from None
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    s1, w1 = cpu_seconds([main] if main else []), cpu_seconds(helpers)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if res.returncode != 0 or line is None:
        raise BenchError(f"wrk on {t.name} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
    raw = json.loads(line.removeprefix("BENCHJSON "))
    elapsed = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = sum(raw["errors"].values()) + int(raw.get("bad", 0))
    ok = int(raw["completed"] if "completed" in raw else raw["ok"])
    client = (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    return Result(
        conc=conc,
        seconds=round(elapsed, 3),
        requests=int(raw["requests"]),
        ok=ok,
        errors=errors,
        p50_ms=lat["p50"] / 1000 if raw["requests"] else None,
        p99_ms=lat["p99"] / 1000 if raw["requests"] else None,
        max_ms=lat["max"] / 1000 if raw["requests"] else None,
        client_cpu_pct=round(100 * client / elapsed, 1) if elapsed else 0.0,
        server_cpu_pct=round(100 * (s1 - s0) / elapsed, 1) if main and elapsed else None,
        workers_cpu_pct=round(100 * (w1 - w0) / elapsed, 1) if helpers and elapsed else None,
        raw=raw,
    )


def call_load(
    name: str,
    base_url: str,
    path: str,
    body: str,
    expect: str,
    headers: dict[str, str] | None = None,
    pids: Callable[[], tuple[int, list[int]]] | None = None,
) -> Load:
    """POST `path` with `body`; a 2xx answer must contain `expect`."""
    return Load(
        name,
        base_url,
        "call.lua",
        {"BENCH_PATH": path, "BENCH_BODY": body, "BENCH_EXPECT": expect},
        headers or {},
        pids,
    )


def run_status_load(
    name: str,
    base_url: str,
    ep_id: str,
    body: str,
    expect: str,
    poll_ms: float = 0,
    headers: dict[str, str] | None = None,
    pids: Callable[[], tuple[int, list[int]]] | None = None,
) -> Load:
    """POST `/v2/{ep_id}/run` with `body`, then poll its `/status` (at least `poll_ms` apart)
    until the job is done; its output must contain `expect`."""
    return Load(
        name,
        base_url,
        "run_status.lua",
        {
            "BENCH_RUN_PATH": f"/v2/{ep_id}/run",
            "BENCH_STATUS_PREFIX": f"/v2/{ep_id}/status/",
            "BENCH_BODY": body,
            "BENCH_EXPECT": expect,
            "BENCH_POLL_MS": str(poll_ms),
        },
        headers or {},
        pids,
    )


@dataclass
class Target:
    key: str
    label: str
    load: Load


def measure(targets: list[Target], prof: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Warm-up, c=1 and c=CONC, phase by phase across the targets, so slow drift of a noisy
    machine hits all alike."""
    results: dict[str, dict[str, Result]] = {t.key: {} for t in targets}
    for t in targets:
        say(f"{t.label}: warm-up ({prof['warmup_s']:.0f} s at c={CONC}, 1 s at c=1)")
        results[t.key]["warmup"] = run_wrk(t.load, CONC, prof["warmup_s"])
        results[t.key]["warmup_c1"] = run_wrk(t.load, 1, 1)
    for t in targets:
        say(f"{t.label}: c=1 for {prof['c1_s']:.0f} s")
        results[t.key]["c1"] = run_wrk(t.load, 1, prof["c1_s"])
    for t in targets:
        say(f"{t.label}: c={CONC} for {prof['conc_s']:.0f} s")
        results[t.key][f"c{CONC}"] = run_wrk(t.load, CONC, prof["conc_s"])
    return {key: {name: r.as_dict() for name, r in phases.items()} for key, phases in results.items()}


# -- Podium -----------------------------------------------------------------------------------------


class Podium:
    """`podium up` on 127.0.0.1 with a fresh SQLite store in `home`, and what it serves."""

    def __init__(self, tmp: Path, servers: list[Server], key: str, env: dict[str, str] | None = None) -> None:
        self.key = key
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        # The podium of this checkout (a venv's editable install may point at another one).
        src = str(HERE.parent / "src")
        self.env = dict(child_env(), PODIUM_HOME=str(tmp / "home"), PODIUM_ADMIN_KEY=key, PYTHONPATH=src, **(env or {}))
        self.home = tmp / "home"
        self.server = Server(
            "podium",
            [sys.executable, "-m", "podium", "up", "--host", HOST, "--port", str(self.port)],
            self.env,
            tmp / "podium.log",
        )
        servers.append(self.server)

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def wait_ready(self, timeout: float = 30) -> None:
        self.server.wait_http(f"{self.url}/healthz", timeout)

    def deploy(
        self, service: Path, name: str, timeout: float = 60, entry: str | None = None, service_name: str | None = None
    ) -> dict[str, Any]:
        """`podium deploy` (of `entry` in the directory `service`, and of the service
        `service_name` in it, when given)."""
        cmd = [
            sys.executable,
            "-m",
            "podium",
            "deploy",
            str(service),
            "--name",
            name,
            "--json",
            "--timeout",
            str(int(timeout)),
            "--url",
            self.url,
            "--key",
            self.key,
        ]
        if entry is not None:
            cmd += ["--entry", entry]
        if service_name is not None:
            cmd += ["--service", service_name]
        try:
            res = subprocess.run(
                cmd,
                env=self.env,
                check=False,
                capture_output=True,
                text=True,
                timeout=timeout + 10,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"podium deploy {name} did not finish within {timeout + 10:.0f}s") from None
        if res.returncode != 0:
            raise BenchError(f"podium deploy {name} failed ({res.returncode}):\n{res.stderr}{res.stdout}")
        ep: dict[str, Any] = json.loads(res.stdout)
        if ep.get("state") != "ACTIVE":
            raise BenchError(f"endpoint {name} is {ep.get('state')} after deploy: {ep}")
        return ep

    def wait_workers(self, ep_id: str, timeout: float = 20) -> dict[str, Any]:
        """Wait until the endpoint's min_workers are all ready (deploy returns once the first is)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, headers=self.auth, timeout=5.0, trust_env=False) as c:
            while True:
                view: dict[str, Any] = c.get(f"/api/v1/endpoints/{ep_id}").raise_for_status().json()
                want = max(1, view["scaling"]["min_workers"])
                ready = [w for w in view["workers"] if w["ready_at"] is not None]
                if len(ready) >= want:
                    return view
                if time.monotonic() > deadline:
                    raise BenchError(f"only {len(ready)} of {want} workers of {ep_id} ready after {timeout:.0f}s")
                time.sleep(0.1)

    def tree(self) -> list[int]:
        return [self.server.pid, *descendants(self.server.pid)]

    def workers_of(self, ep_id: str) -> list[int]:
        """Worker processes of one endpoint: spawned ones (found by their command line) and those
        forked by its fork server (the zygote's children; the zygote itself is no worker)."""
        mine = [p for p in children(self.server.pid) if "podium.worker" in cmdline(p) and ep_id in cmdline(p)]
        zygotes = {p for p in mine if "podium.worker.zygote" in cmdline(p)}
        return [p for p in mine if p not in zygotes] + [c for z in zygotes for c in children(z)]

    def memory(self, ep_id: str) -> dict[str, Any]:
        """PSS of the server, of each worker of `ep_id`, and of the server plus one idle worker."""
        server = pss_mib(self.server.pid)
        workers = sorted(v for v in (pss_mib(p) for p in self.workers_of(ep_id)) if v is not None)
        one = workers[len(workers) // 2] if workers else None
        return {
            "server_mib": round(server, 1) if server is not None else None,
            "workers_mib": [round(w, 1) for w in workers],
            "one_worker_mib": round(one, 1) if one is not None else None,
            "server_plus_one_worker_mib": round(server + one, 1) if server is not None and one is not None else None,
            "whole_tree_mib": tree_pss_mib(self.server.pid),
        }


# -- figures ----------------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def ms(v: float | None) -> str:
    """Milliseconds with the digits that mean something: 0.093, 1.27, 12.9, 321."""
    if v is None:
        return "-"
    if v < 1:
        return f"{v:.3f}"
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:,.0f}"


def share(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "-"
    pct = 100 * part / whole
    return f"{pct:.1f} %" if pct < 10 else f"{pct:.0f} %"
