"""Throughput of Podium on PostgreSQL with one replica, then with two, in one run.

    .venv/bin/python bench/replicas.py            # about 60 s
    .venv/bin/python bench/replicas.py --quick    # shorter
    .venv/bin/python bench/replicas.py --json     # figures as JSON on stdout

Starts, on 127.0.0.1 only, a throwaway PostgreSQL cluster (tests/pgcluster.py: initdb in a temp
dir, as the `postgres` user when run as root), `podium up` on it with bench/echo_service.py (two
warm workers) deployed, and loads `POST /v2/{id}/runsync` with wrk at c=32. Then a second replica
joins the same database and the same load is split between the two (c=16 on each, at once), as a
load balancer would: the leader's workers run every job, the follower's calls reach them through
LISTEN/NOTIFY. Both phases run in the same process tree on the same cores, so the ratio is what
matters on a noisy machine. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))  # pgcluster.py: stdlib only

from harness import (  # noqa: E402
    BODY,
    CONC,
    NO_RATE_LIMIT,
    Load,
    Podium,
    Result,
    Server,
    call_load,
    guarded,
    ms,
    publish,
    run_wrk,
    say,
    stop_all,
    wrk_version,
)

from pgcluster import PgCluster, find_pg_bin  # noqa: E402

PROFILES = {"full": {"warmup_s": 3.0, "conc_s": 10.0}, "quick": {"warmup_s": 1.0, "conc_s": 4.0}}
PODIUM_OUTPUT = '"output":{"n":1}'


def together(loads: list[Load], conc: int, seconds: float) -> list[Result]:
    """Run one wrk per load at the same time."""
    with ThreadPoolExecutor(len(loads)) as pool:
        return list(pool.map(lambda load: run_wrk(load, conc, seconds), loads))


def phase(results: list[Result]) -> dict[str, Any]:
    """Several wrk runs at once, summed: answers per second, worst p99, errors."""
    seconds = max(r.seconds for r in results)
    return {
        "ok_per_s": round(sum(r.ok for r in results) / seconds, 1),
        "p50_ms": max((r.p50_ms for r in results if r.p50_ms is not None), default=None),
        "p99_ms": max((r.p99_ms for r in results if r.p99_ms is not None), default=None),
        "errors": sum(r.errors for r in results),
        "runs": [r.as_dict() for r in results],
    }


def print_report(report: dict[str, Any]) -> None:
    m, r = report["meta"], report["results"]
    print(
        f"\nPodium replicas on PostgreSQL {m['postgresql']}  ({m['cpus']} CPUs, Python {m['python']}, "
        f"wrk {m['wrk']}, {m['conc_s']:.0f} s at c={CONC} per phase)\n"
    )
    print(f"{'':<34}{'ok/s':>10}{'p50':>10}{'p99':>10}{'errors':>8}")
    for key, label in (("one", "one replica, c=32"), ("two", "two replicas, c=16 each")):
        p = r[key]["c32"]
        print(f"{label:<34}{p['ok_per_s']:>10.0f}{ms(p['p50_ms']):>10}{ms(p['p99_ms']):>10}{p['errors']:>8}")
    one, two = r["one"]["c32"]["ok_per_s"], r["two"]["c32"]["ok_per_s"]
    print(f"\ntwo replicas / one replica: {two / one:.2f}x" if one else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter run")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, homes)")
    args = ap.parse_args(argv)
    profile = "quick" if args.quick else "full"
    prof = PROFILES[profile]
    if find_pg_bin() is None:
        say("PostgreSQL is not installed: run `bash scripts/ensure-postgres.sh`")
        return 1

    def body(tmp: Path, servers: list[Server]) -> int:
        pg = PgCluster(tmp / "pg")
        pg.start()
        try:
            return measure(tmp, servers, pg)
        finally:
            stop_all(servers)  # before the database they use goes
            servers.clear()
            pg.stop()

    def measure(tmp: Path, servers: list[Server], pg: PgCluster) -> int:
        key = "pod_bench_" + secrets.token_urlsafe(24)
        shared = {
            **NO_RATE_LIMIT,
            "PODIUM_DATABASE_URL": pg.url,
            "PODIUM_SECRET_KEY": "mZ3ApWl2cJ7Yl6bq2ZqJkqZ1Qm5m3bm2m7bZQ9X1k0A=",
        }
        for home in ("a", "b"):
            (tmp / home).mkdir()
        leader = Podium(tmp / "a", servers, key, shared)
        leader.wait_ready()
        ep = leader.deploy(HERE / "echo_service.py", "bench")
        leader.wait_workers(ep["endpoint_id"])
        path = f"/v2/{ep['endpoint_id']}/runsync"

        def load(pod: Podium) -> Load:
            return call_load(f"runsync on {pod.url}", pod.url, path, BODY, PODIUM_OUTPUT, pod.auth)

        results: dict[str, dict[str, Any]] = {"one": {}, "two": {}}
        say(f"one replica: warm-up, then c={CONC} for {prof['conc_s']:.0f} s")
        run_wrk(load(leader), CONC, prof["warmup_s"])
        results["one"]["c32"] = phase([run_wrk(load(leader), CONC, prof["conc_s"])])
        follower = Podium(tmp / "b", servers, key, shared)
        follower.wait_ready()
        say(f"two replicas: warm-up, then c={CONC // 2} on each for {prof['conc_s']:.0f} s")
        together([load(leader), load(follower)], CONC // 2, prof["warmup_s"])
        results["two"]["c32"] = phase(together([load(leader), load(follower)], CONC // 2, prof["conc_s"]))
        report = {
            "meta": {
                "profile": profile,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "wrk": wrk_version(),
                "postgresql": find_pg_bin().parent.name if find_pg_bin() else "?",
                **prof,
            },
            "results": results,
        }
        return publish(report, args.json, print_report)

    started = time.monotonic()
    code = guarded("podium-replicas-", args.keep, " (logs and homes)", body)
    say(f"whole run {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
