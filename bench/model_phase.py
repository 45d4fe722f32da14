"""The model phase of `make bench-peers`: one numpy MLP (bench/peers/model/mlp.py) served by each
system, one model copy each, single-threaded BLAS everywhere, loaded with wrk at c=1 and c=64.

Systems: Podium with a batched route (batch_size=32, batch_wait_ms=5) and without batching,
BentoML with adaptive batching (`batchable=True, max_batch_size=32`), Ray Serve with
`@serve.batch(max_batch_size=32)` (5 ms), and the physical limit of one process: Starlette with a
hand-written asyncio micro-batcher (32 calls or 5 ms; and never waiting), next to Starlette
without batching. Every answer is checked (the same 4 values from every system); the batch sizes
Podium formed are read from its /metrics. c=1 runs in 1 s rounds, the systems taking turns (each
figure the median of its rounds). Timings are reported, never asserted.
"""

from __future__ import annotations

import re
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from harness import (
    HERE,
    HOST,
    NO_RATE_LIMIT,
    BenchError,
    Load,
    Podium,
    Server,
    call_load,
    child_env,
    descendants,
    fmt,
    free_port,
    ms,
    run_wrk,
    say,
    tree_pss_mib,
)

MODEL = HERE / "peers" / "model"
#: The model phase's high concurrency: twice a batch, so one batch fills while another runs.
MODEL_CONC = 64
PROFILES: dict[str, dict[str, float]] = {
    "full": {"warmup_s": 3, "c1_s": 5, "conc_s": 8},
    "quick": {"warmup_s": 1, "c1_s": 2, "conc_s": 3},
}
#: Every process the phase starts computes with one BLAS thread.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def request_x() -> list[float]:
    """mlp.request_x, without numpy (the bench runs in Podium's venv)."""
    return [((i % 17) - 8) / 8 for i in range(1024)]


def body(batched_input: bool = False) -> str:
    x = request_x()
    return httpx.Request("POST", "/", json={"x": [x] if batched_input else x}).content.decode()


def checked(url: str, content: str, headers: dict[str, str] | None = None) -> tuple[list[float], str]:
    """One call: its 4 values and its exact text (what wrk then expects every time)."""
    with httpx.Client(timeout=60, trust_env=False) as c:
        r = c.post(url, content=content, headers={"Content-Type": "application/json", **(headers or {})})
    if r.status_code != 200:
        raise BenchError(f"{url} answered {r.status_code} {r.text[:300]!r}")
    got = r.json()
    values = got[0] if got and isinstance(got[0], list) else got
    return values, r.text


def podium_batch_sizes(pod: Podium, endpoint_id: str) -> dict[str, float]:
    """Podium's podium_batch_size histogram of one endpoint, from /metrics: batches and calls."""
    text = httpx.get(f"{pod.url}/metrics", headers=pod.auth, timeout=10, trust_env=False).text
    found = {}
    for name in ("count", "sum"):
        m = re.search(rf'^podium_batch_size_{name}{{endpoint="{endpoint_id}"}} ([0-9.e+]+)$', text, re.M)
        found[name] = float(m.group(1)) if m else 0.0
    return found


def run(
    tmp: Path,
    servers: list[Server],
    profile: str,
    versions: dict[str, str],
    ray_venv: Path,
    bentoml_venv: Path,
    wait_line: Callable[[Server, str, float], None],
) -> dict[str, Any]:
    """Start every system, check their answers agree, load each; the report's model section."""
    prof = PROFILES[profile]
    env = dict(child_env(), **ONE_THREAD)
    ports = {name: free_port() for name in ("ray", "bentoml", "batcher", "batcher0", "plain")}
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    ray = Server(
        "ray serve (model)",
        [
            str(ray_venv / "bin" / "python"),
            str(MODEL / "ray_mlp.py"),
            "--port",
            str(ports["ray"]),
            "--temp-dir",
            str(tmp / "ray"),
        ],
        dict(env, RAY_USAGE_STATS_ENABLED="0", HOME=str(tmp / "ray-home")),
        tmp / "ray-model.log",
        cwd=MODEL,
    )
    servers.append(ray)
    bento = Server(
        "bentoml (model)",
        [
            str(bentoml_venv / "bin" / "bentoml"),
            "serve",
            "bentoml_mlp:Mlp",
            "--host",
            HOST,
            "--port",
            str(ports["bentoml"]),
        ],
        dict(env, BENTOML_HOME=str(tmp / "bentoml"), BENTOML_DO_NOT_TRACK="True"),
        tmp / "bentoml-model.log",
        cwd=MODEL,
    )
    servers.append(bento)
    starlettes = {}
    for key, batch, window in (("batcher", 32, 5), ("batcher0", 32, 0), ("plain", 1, 0)):
        starlettes[key] = Server(
            f"starlette {key}",
            [
                str(ray_venv / "bin" / "python"),
                str(MODEL / "starlette_mlp.py"),
                "--port",
                str(ports[key]),
                "--batch",
                str(batch),
                "--window-ms",
                str(window),
            ],
            env,
            tmp / f"starlette-{key}.log",
            cwd=MODEL,
        )
        servers.append(starlettes[key])
    pod = Podium(tmp, servers, "pod_bench_" + secrets.token_urlsafe(24), {**NO_RATE_LIMIT, **ONE_THREAD})
    say("model phase: starting Ray Serve, BentoML, three Starlette apps and Podium")
    pod.wait_ready()
    # The first deploy builds the environment with numpy (uv, from the package index): minutes
    # the first time, cached afterwards.
    eps = {}
    for name in ("mlp-batched", "mlp-plain"):
        eps[name] = pod.deploy(MODEL, name, timeout=900, entry="podium_mlp.py", service_name=name)
    for key in starlettes:
        starlettes[key].wait_http(f"{urls[key]}/predict", 60, ok=(405,))
    bento.wait_http(f"{urls['bentoml']}/readyz", 180)
    wait_line(ray, "ready", 240)

    plain_body, bento_body = body(), body(batched_input=True)
    want, _ = checked(f"{urls['plain']}/predict", plain_body)
    paths = {
        "podium_batched": (pod.url, "/mlp-batched/predict", plain_body, pod.auth),
        "podium_plain": (pod.url, "/mlp-plain/predict", plain_body, pod.auth),
        "bentoml": (urls["bentoml"], "/predict", bento_body, {}),
        "ray": (urls["ray"], "/predict", plain_body, {}),
        "batcher": (urls["batcher"], "/predict", plain_body, {}),
        "batcher0": (urls["batcher0"], "/predict", plain_body, {}),
        "plain": (urls["plain"], "/predict", plain_body, {}),
    }
    labels = {
        "podium_batched": "Podium, batched route (batch_size=32, batch_wait_ms=5)",
        "podium_plain": "Podium, route without batching",
        "bentoml": f"BentoML {versions['bentoml']}, adaptive batching (max_batch_size=32)",
        "ray": f"Ray Serve {versions['ray']}, @serve.batch(max_batch_size=32), 5 ms",
        "batcher": "Starlette + hand-written batcher, 32 or 5 ms",
        "batcher0": "Starlette + hand-written batcher, 32, never waits",
        "plain": "Starlette, no batching",
    }
    owners = {
        "podium_batched": pod.server,
        "podium_plain": pod.server,
        "bentoml": bento,
        "ray": ray,
        "batcher": starlettes["batcher"],
        "batcher0": starlettes["batcher0"],
        "plain": starlettes["plain"],
    }
    loads: dict[str, Load] = {}
    for key, (base, path, content, headers) in paths.items():
        values, text = checked(base + path, content, headers)
        if values != want:
            raise BenchError(f"{labels[key]} answered {values}, not {want} (Starlette without batching)")
        expect = text if key != "bentoml" else text.strip()

        def tree(server: Server) -> Callable[[], tuple[int, list[int]]]:
            return lambda: (server.pid, descendants(server.pid))

        loads[key] = call_load(key, base, path, content, expect, headers, pids=tree(owners[key]))
    say(f"model phase: every system answers {want}")

    results: dict[str, dict[str, Any]] = {key: {} for key in loads}
    for key, load in loads.items():
        say(f"{labels[key]}: warm-up ({prof['warmup_s']:.0f} s at c={MODEL_CONC}, 1 s at c=1)")
        results[key]["warmup"] = run_wrk(load, MODEL_CONC, prof["warmup_s"]).as_dict()
        results[key]["warmup_c1"] = run_wrk(load, 1, 1).as_dict()
    # c=1 in rounds of 1 s taking turns, each figure the median of its rounds: on a shared machine
    # the load drifts over seconds, and a difference of a millisecond between two systems measured
    # one after the other would be the drift's.
    rounds = max(1, round(prof["c1_s"]))
    say(f"c=1: {rounds} rounds of 1 s, each system in turn")
    c1_rounds: dict[str, list[dict[str, Any]]] = {key: [] for key in loads}
    for _ in range(rounds):
        for key, load in loads.items():
            c1_rounds[key].append(run_wrk(load, 1, 1).as_dict())
    for key, runs in c1_rounds.items():
        results[key]["c1"] = {
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "ok": sum(r["ok"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "rounds": runs,
        }
    before = podium_batch_sizes(pod, eps["mlp-batched"]["endpoint_id"])
    for key, load in loads.items():
        say(f"{labels[key]}: c={MODEL_CONC} for {prof['conc_s']:.0f} s")
        if key == "podium_plain":
            after = podium_batch_sizes(pod, eps["mlp-batched"]["endpoint_id"])
        results[key][f"c{MODEL_CONC}"] = run_wrk(load, MODEL_CONC, prof["conc_s"]).as_dict()
    batches = after["count"] - before["count"]
    podium_mean_batch = (after["sum"] - before["sum"]) / batches if batches else None
    memory = {key: tree_pss_mib(owners[key].pid) for key in loads if not key.startswith("podium")}
    memory["podium"] = tree_pss_mib(pod.server.pid)
    return {
        "labels": labels,
        "results": results,
        "answer": want,
        "podium_mean_batch_c64": podium_mean_batch,
        "memory": memory,
        "time": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def print_model(report: dict[str, Any]) -> None:
    res, labels = report["results"], report["labels"]
    cN = f"c{MODEL_CONC}"
    ref = res["batcher"][cN]["ok_per_s"]
    plain_p50 = res["podium_plain"]["c1"]["p50_ms"]
    print()
    print(
        "Model phase: numpy MLP (1024x4096, 4096x1024 float32), one model copy per system, one BLAS "
        f"thread, wrk c=1 and c={MODEL_CONC}; answers checked ({report['answer']})"
    )
    print()
    head = (
        "system",
        "c=1 p50 / p99",
        f"c={MODEL_CONC} req/s",
        "share of the hand-written batcher (5 ms)",
        f"c={MODEL_CONC} p50 / p99",
        "errors",
    )
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for key, label in labels.items():
        r = res[key]
        errors = sum(p["errors"] for p in r.values())
        rps = r[cN]["ok_per_s"]
        pct = f"{100 * rps / ref:.0f} %" if ref else "-"
        print(
            f"| {label} | {ms(r['c1']['p50_ms'])} / {ms(r['c1']['p99_ms'])} ms | {fmt(rps, 0)} | {pct} | "
            f"{ms(r[cN]['p50_ms'])} / {ms(r[cN]['p99_ms'])} ms | {fmt(errors)} |"
        )
    print()
    mean = report["podium_mean_batch_c64"]
    print(f"  Podium's batches at c={MODEL_CONC}: {fmt(mean, 1)} calls on average (podium_batch_size in /metrics).")
    b = res["podium_batched"]
    print(
        f"  Targets: Podium batched at c={MODEL_CONC} >= 70 % of the batcher: "
        f"{100 * b[cN]['ok_per_s'] / ref:.0f} %; its c=1 p50 within 1 ms of the unbatched route's: "
        f"{b['c1']['p50_ms'] - plain_p50:+.2f} ms."
        if ref and plain_p50 is not None and b["c1"]["p50_ms"] is not None
        else ""
    )
    print(
        "  CPU during c=64 (% of one core): "
        + "; ".join(
            f"{key}: wrk {fmt(res[key][cN]['client_cpu_pct'], 0)}, system "
            f"{fmt((res[key][cN]['server_cpu_pct'] or 0) + (res[key][cN]['workers_cpu_pct'] or 0), 0)}"
            for key in labels
        )
    )
    print()
