"""The systems a user would pick instead of Podium, loaded with wrk next to it in the same run.

    .venv/bin/python bench/peers.py            # full run (about 5 minutes)
    .venv/bin/python bench/peers.py --quick    # shorter run
    .venv/bin/python bench/peers.py --json     # figures as JSON on stdout

Starts, on 127.0.0.1: the bare Starlette echo (the floor), BentoML serving bench/peers/bentoml_echo.py
(`bentoml serve`, two workers), Ray Serve serving bench/peers/ray_echo.py (a local Ray with 2 CPUs
started by that driver, two replicas) and `podium up` with bench/echo_service.py (two warm
workers). BentoML and Ray run from their own venvs, bench/.venv-bentoml and bench/.venv-ray
(created by bench/peers/ensure-venvs.sh with pinned releases), never Podium's. Each gets the same
wrk phases as `make bench` (warm-up, c=1, c=32; every answer checked). Prints issue 11's table:
| system | c=1 p50 / p99 | c=32 req/s | share of the floor |. Then, with those stopped, the model
phase (bench/model_phase.py, `--phase model` alone): one numpy MLP served by Podium (batched and
not), BentoML, Ray Serve and a hand-written Starlette batcher, at c=1 and c=64. Timings are
reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_phase
from harness import (
    BODY,
    CONC,
    HERE,
    HOST,
    NO_RATE_LIMIT,
    BenchError,
    Podium,
    Server,
    Target,
    call_load,
    child_env,
    descendants,
    fmt,
    free_port,
    guarded,
    measure,
    ms,
    publish,
    say,
    share,
    tree_pss_mib,
    wrk_version,
)
from run import PODIUM_OUTPUT, PROFILES

PEERS = HERE / "peers"
BENTOML_VENV = HERE / ".venv-bentoml"
RAY_VENV = HERE / ".venv-ray"


def venv_version(venv: Path, module: str) -> str:
    py = venv / "bin" / "python"
    if not py.exists():
        raise BenchError(f"{venv} is missing: run `bash bench/peers/ensure-venvs.sh` (or `make bench-peers`)")
    res = subprocess.run(
        [str(py), "-c", f"import {module}; print({module}.__version__)"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise BenchError(f"{module} does not import in {venv}:\n{res.stderr}")
    return res.stdout.strip()


def wait_line(server: Server, text: str, timeout: float) -> None:
    """Wait until the server's log has a line `text` (the Ray driver prints "ready")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited with code {server.proc.returncode}:\n{server.log_tail()}")
        if text in server.log_path.read_text(errors="replace").splitlines():
            return
        time.sleep(0.3)
    raise BenchError(f"{server.name} not ready after {timeout:.0f}s:\n{server.log_tail()}")


def answer_text(url: str, body: str, want: Any, headers: dict[str, str] | None = None) -> str:
    """One call checked by its parsed JSON; its exact text is what wrk then expects every time
    (each system spaces its JSON its own way)."""
    with httpx.Client(timeout=30, trust_env=False) as c:
        r = c.post(url, content=body, headers={"Content-Type": "application/json", **(headers or {})})
    got = r.json() if r.headers.get("content-type", "").startswith("application/json") else None
    if r.status_code != 200 or got != want:
        raise BenchError(f"{url} answered {r.status_code} {r.text[:300]!r}, expected {want}")
    return r.text


def print_report(report: dict[str, Any]) -> None:
    m, res, mem = report["meta"], report["results"], report["memory"]
    cN = f"c{CONC}"
    floor = res["echo"][cN]["ok_per_s"]
    print()
    print(
        f"Podium and its peers, trivial echo, wrk {m['wrk']} on {HOST}, {m['cpus']} cores, "
        f"Python {m['python']}, {m['profile']} run (c=1 for {m['c1_s']:.0f} s, c={CONC} for "
        f"{m['conc_s']:.0f} s, after a {m['warmup_s']:.0f} s warm-up; all in this one run)"
    )
    print()
    head = (
        "system",
        "c=1 p50 / p99",
        f"c={CONC} req/s",
        "share of the floor",
        f"c={CONC} p50 / p99",
        "errors",
        "memory (PSS)",
    )
    rows = []
    for key, label in report["labels"].items():
        r = res[key]
        errors = sum(p["errors"] for p in r.values())
        rows.append(
            (
                label,
                f"{ms(r['c1']['p50_ms'])} / {ms(r['c1']['p99_ms'])} ms",
                fmt(r[cN]["ok_per_s"], 0),
                share(r[cN]["ok_per_s"], floor),
                f"{ms(r[cN]['p50_ms'])} / {ms(r[cN]['p99_ms'])} ms",
                fmt(errors),
                f"{fmt(mem[key], 0)} MiB",
            )
        )
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print("  floor: bench/echo_app.py, one uvicorn process; BentoML: `bentoml serve`, workers=2, async api;")
    print("  Ray Serve: local Ray (2 CPUs, no dashboard), 2 replicas, async __call__, Serve's HTTP proxy;")
    print("  Podium: POST /v2/<id>/runsync, bench/echo_service.py, 2 warm workers, SQLite store, rate limit off.")
    print("  memory: PSS of every process of the system (Podium: server + 2 workers; Ray: driver, GCS,")
    print("  raylet, agents, controller, proxy, replicas). errors: non-2xx, socket errors, wrong answers.")
    print(
        "  CPU during c=32 (% of one core): "
        + "; ".join(
            f"{label}: wrk {fmt(res[key][cN]['client_cpu_pct'], 0)}, system "
            f"{fmt((res[key][cN]['server_cpu_pct'] or 0) + (res[key][cN]['workers_cpu_pct'] or 0), 0)}"
            for key, label in report["labels"].items()
        )
    )
    for key, r in res.items():
        for phase, v in r.items():
            sample = v["wrk"].get("sample")
            if v["errors"] and sample:
                print(f"note: {key} {phase}: {v['errors']} error(s), first: {sample}")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter run")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (every server's log)")
    ap.add_argument(
        "--phase", choices=("all", "echo", "model"), default="all", help="the trivial echo, the model, or both"
    )
    args = ap.parse_args(argv)
    profile = "quick" if args.quick else "full"
    prof = PROFILES[profile]
    started = time.monotonic()

    def body(tmp: Path, servers: list[Server]) -> int:
        versions = {
            "bentoml": venv_version(BENTOML_VENV, "bentoml"),
            "ray": venv_version(RAY_VENV, "ray"),
            "wrk": wrk_version(),
        }
        env = child_env()
        ports = {name: free_port() for name in ("echo", "bentoml", "ray")}
        urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}

        # Ray takes longest to come up: start it first, the rest while it does.
        ray = Server(
            "ray serve",
            [
                str(RAY_VENV / "bin" / "python"),
                str(PEERS / "ray_echo.py"),
                "--port",
                str(ports["ray"]),
                "--temp-dir",
                str(tmp / "ray"),
            ],
            # HOME: Ray writes its cluster token under ~/.ray; keep it in the temp dir.
            dict(env, RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp / "ray-home")),
            tmp / "ray.log",
        )
        servers.append(ray)
        bento = Server(
            "bentoml",
            [
                str(BENTOML_VENV / "bin" / "bentoml"),
                "serve",
                "bentoml_echo:Echo",
                "--host",
                HOST,
                "--port",
                str(ports["bentoml"]),
            ],
            dict(env, BENTOML_HOME=str(tmp / "bentoml"), BENTOML_DO_NOT_TRACK="True"),
            tmp / "bentoml.log",
            cwd=PEERS,
        )
        servers.append(bento)
        echo = Server(
            "starlette echo",
            [sys.executable, str(HERE / "echo_app.py"), "--host", HOST, "--port", str(ports["echo"])],
            env,
            tmp / "echo.log",
        )
        servers.append(echo)
        pod = Podium(tmp, servers, "pod_bench_" + secrets.token_urlsafe(24), NO_RATE_LIMIT)
        say(f"starting echo, BentoML {versions['bentoml']}, Ray Serve {versions['ray']} and Podium (temp {tmp})")

        echo.wait_http(f"{urls['echo']}/healthz", 30)
        pod.wait_ready()
        ep = pod.deploy(HERE / "echo_service.py", "bench")
        pod.wait_workers(ep["endpoint_id"])
        bento.wait_http(f"{urls['bentoml']}/readyz", 120)
        wait_line(ray, "ready", 180)
        say(f"all up after {time.monotonic() - started:.1f} s")

        want = json.loads(BODY)
        bento_answer = answer_text(f"{urls['bentoml']}/echo", BODY, want)
        ray_answer = answer_text(f"{urls['ray']}/echo", BODY, want)

        def tree(server: Server) -> Callable[[], tuple[int, list[int]]]:
            return lambda: (server.pid, descendants(server.pid))

        targets = [
            Target(
                "echo",
                "bare Starlette on uvicorn (the floor)",
                call_load("echo", urls["echo"], "/echo", BODY, BODY, pids=tree(echo)),
            ),
            Target(
                "bentoml",
                f"BentoML {versions['bentoml']}",
                call_load("bentoml", urls["bentoml"], "/echo", BODY, bento_answer, pids=tree(bento)),
            ),
            Target(
                "ray",
                f"Ray Serve {versions['ray']}",
                call_load("ray", urls["ray"], "/echo", BODY, ray_answer, pids=tree(ray)),
            ),
            Target(
                "podium",
                "Podium `/runsync`, 2 warm workers",
                call_load(
                    "podium",
                    pod.url,
                    f"/v2/{ep['endpoint_id']}/runsync",
                    BODY,
                    PODIUM_OUTPUT,
                    pod.auth,
                    pids=tree(pod.server),
                ),
            ),
        ]
        results = measure(targets, prof)
        time.sleep(1)
        memory = {
            "echo": tree_pss_mib(echo.pid),
            "bentoml": tree_pss_mib(bento.pid),
            "ray": tree_pss_mib(ray.pid),
            "podium": tree_pss_mib(pod.server.pid),
        }
        report = {
            "meta": {
                "profile": profile,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                **versions,
                "concurrency": CONC,
                **prof,
                "elapsed_s": round(time.monotonic() - started, 1),
            },
            "labels": {t.key: t.label for t in targets},
            "results": results,
            "memory": memory,
        }
        return publish(report, args.json, print_report)

    def model_body(tmp: Path, servers: list[Server]) -> int:
        versions = {"bentoml": venv_version(BENTOML_VENV, "bentoml"), "ray": venv_version(RAY_VENV, "ray")}
        for venv in (BENTOML_VENV, RAY_VENV):
            venv_version(venv, "numpy")
        report = model_phase.run(tmp, servers, profile, versions, RAY_VENV, BENTOML_VENV, wait_line)
        report["meta"] = {"profile": profile, "cpus": os.cpu_count(), "wrk": wrk_version(), **versions}
        return publish(report, args.json, model_phase.print_model)

    code = 0
    if args.phase in ("all", "echo"):
        code = guarded("podium-peers-", args.keep, "", body)
    if args.phase in ("all", "model") and code == 0:
        code = guarded("podium-peers-model-", args.keep, "", model_body)
    return code


if __name__ == "__main__":
    sys.exit(main())
