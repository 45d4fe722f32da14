"""Throughput of Podium on PostgreSQL beside the same server on SQLite, in one run.

    .venv/bin/python bench/replicas.py            # about 2 minutes
    .venv/bin/python bench/replicas.py --quick    # shorter
    .venv/bin/python bench/replicas.py --json     # figures as JSON on stdout

Starts, on 127.0.0.1 only, `podium up` on SQLite with bench/echo_service.py (two warm workers)
deployed and measures it: `POST /v2/{id}/runsync` with wrk at c=32, `/run` then `/status` polls
at c=32, runsync at c=1. Then the same on a throwaway PostgreSQL cluster (tests/pgcluster.py:
initdb in a temp dir, as the `postgres` user when run as root, fsync on as SQLite's store has it,
`pg_stat_statements` loaded), with the statements the database ran and the round trips the server
made (its `podium_store_round_trips_total`) per job of each phase. Then a second replica joins the
same database and the runsync load is split between the two (c=16 on each, at once), as a load
balancer would: the leader's workers run every job, the follower's calls reach them through
LISTEN/NOTIFY. Everything runs in the same process tree on the same cores, so the ratios are what
matter on a noisy machine. Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

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
    run_status_load,
    run_wrk,
    say,
    stop_all,
    wrk_version,
)

from pgcluster import PgCluster, find_pg_bin  # noqa: E402

PROFILES = {
    "full": {"warmup_s": 3.0, "conc_s": 10.0, "c1_s": 5.0},
    "quick": {"warmup_s": 1.0, "conc_s": 4.0, "c1_s": 2.0},
}
PODIUM_OUTPUT = '"output":{"n":1}'
SECRET_KEY = "mZ3ApWl2cJ7Yl6bq2ZqJkqZ1Qm5m3bm2m7bZQ9X1k0A="


def together(loads: list[Load], conc: int, seconds: float) -> list[Result]:
    """Run one wrk per load at the same time."""
    with ThreadPoolExecutor(len(loads)) as pool:
        return list(pool.map(lambda load: run_wrk(load, conc, seconds), loads))


def phase(results: list[Result]) -> dict[str, Any]:
    """Several wrk runs at once, summed: answers per second, worst p50 and p99, errors, jobs."""
    seconds = max(r.seconds for r in results)
    return {
        "ok_per_s": round(sum(r.ok for r in results) / seconds, 1),
        "p50_ms": max((r.p50_ms for r in results if r.p50_ms is not None), default=None),
        "p99_ms": max((r.p99_ms for r in results if r.p99_ms is not None), default=None),
        "errors": sum(r.errors for r in results),
        # Jobs submitted: one per runsync request, one per /run of run+status.
        "jobs": sum(int(r.raw.get("submitted", r.raw["requests"])) for r in results),
        "runs": [r.as_dict() for r in results],
    }


class Loads:
    """The three loads of one server."""

    def __init__(self, pod: Podium, ep_id: str) -> None:
        self.pod = pod
        self.runsync = call_load(
            f"runsync on {pod.url}", pod.url, f"/v2/{ep_id}/runsync", BODY, PODIUM_OUTPUT, pod.auth
        )
        self.run_status = run_status_load(
            f"run+status on {pod.url}", pod.url, ep_id, BODY, PODIUM_OUTPUT, headers=pod.auth
        )


def store_counters(pod: Podium) -> dict[str, float]:
    """The server's store counters from /metrics (flushes, round trips)."""
    text = httpx.get(f"{pod.url}/metrics", headers=pod.auth, timeout=10, trust_env=False).raise_for_status().text
    found = re.findall(r"^podium_store_(\w+)_total (\S+)$", text, re.M)
    return {name: float(value) for name, value in found}


class Statements:
    """pg_stat_statements of the bench's database: reset before a phase, summed after it."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def reset(self) -> None:
        self.conn.execute("SELECT pg_stat_statements_reset()")

    def calls(self) -> dict[str, Any]:
        """Calls of every statement since the reset (BEGIN, COMMIT and SET included), and the
        most called ones."""
        rows = self.conn.execute(
            "SELECT calls, query FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' "
            "ORDER BY calls DESC"
        ).fetchall()
        return {"calls": sum(int(c) for c, _ in rows), "top": [[int(c), q[:100]] for c, q in rows[:8]]}


def measured(pod: Podium, load: Load, conc: int, seconds: float, stats: Statements | None) -> dict[str, Any]:
    """One wrk run, with the statements and round trips per job it cost on PostgreSQL."""
    before = store_counters(pod)
    if stats is not None:
        stats.reset()
    out = phase([run_wrk(load, conc, seconds)])
    after = store_counters(pod)
    jobs = max(1, out["jobs"])
    out["flushes_per_job"] = round((after.get("flushes", 0) - before.get("flushes", 0)) / jobs, 2)
    if stats is not None:
        calls = stats.calls()
        out["statements_per_job"] = round(calls["calls"] / jobs, 2)
        out["top_statements"] = calls["top"]
        out["round_trips_per_job"] = round((after.get("round_trips", 0) - before.get("round_trips", 0)) / jobs, 2)
    return out


def one_server(loads: Loads, prof: dict[str, float], stats: Statements | None) -> dict[str, Any]:
    say(f"{loads.pod.url}: warm-up, runsync c={CONC} {prof['conc_s']:.0f} s, run+status, c=1")
    run_wrk(loads.runsync, CONC, prof["warmup_s"])
    run_wrk(loads.run_status, CONC, prof["warmup_s"])
    run_wrk(loads.runsync, 1, 1)
    return {
        "c32": measured(loads.pod, loads.runsync, CONC, prof["conc_s"], stats),
        "run_status": measured(loads.pod, loads.run_status, CONC, prof["conc_s"], stats),
        "c1": measured(loads.pod, loads.runsync, 1, prof["c1_s"], stats),
    }


def print_report(report: dict[str, Any]) -> None:
    m, r = report["meta"], report["results"]
    print(
        f"\nPodium on PostgreSQL {m['postgresql']} (fsync {m['pg_fsync']}) beside SQLite  ({m['cpus']} CPUs, "
        f"Python {m['python']}, wrk {m['wrk']}, {m['conc_s']:.0f} s at c={CONC}, {m['c1_s']:.0f} s at c=1)\n"
    )
    head = f"{'':<30}{'ok/s':>9}{'p50':>9}{'p99':>9}{'errors':>7}{'stmts/job':>10}{'trips/job':>10}{'flush/job':>10}"
    print(head)
    rows = [
        ("sqlite", "c32", "SQLite runsync c=32"),
        ("one", "c32", "PG one replica runsync c=32"),
        ("sqlite", "run_status", "SQLite run+status c=32"),
        ("one", "run_status", "PG one replica run+status c=32"),
        ("sqlite", "c1", "SQLite runsync c=1"),
        ("one", "c1", "PG one replica runsync c=1"),
        ("two", "c32", "PG two replicas, c=16 each"),
    ]
    for key, name, label in rows:
        p = r.get(key, {}).get(name)
        if p is None:
            continue
        extra = "".join(
            f"{p[k]:>10.2f}" if k in p else f"{'-':>10}"
            for k in ("statements_per_job", "round_trips_per_job", "flushes_per_job")
        )
        print(f"{label:<30}{p['ok_per_s']:>9.0f}{ms(p['p50_ms']):>9}{ms(p['p99_ms']):>9}{p['errors']:>7}{extra}")
    print()
    for name, label in (("c32", "runsync c=32"), ("run_status", "run+status c=32")):
        sq, pg = r["sqlite"][name]["ok_per_s"], r["one"][name]["ok_per_s"]
        print(f"PG / SQLite, {label}: {pg / sq:.0%}" if sq else "")
    print(f"PG runsync c=1 p50: {ms(r['one']['c1']['p50_ms'])} ms")
    one, two = r["one"]["c32"]["ok_per_s"], r["two"]["c32"]["ok_per_s"]
    print(f"two replicas / one replica: {two / one:.2f}x" if one else "")
    print("\nmost called statements (PG runsync c=32, calls):")
    for calls, query in r["one"]["c32"].get("top_statements", []):
        print(f"  {calls:>8}  {query}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter run")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, homes)")
    ap.add_argument("--pg-fsync", choices=("on", "off"), default="on", help="PostgreSQL's fsync (default on)")
    args = ap.parse_args(argv)
    profile = "quick" if args.quick else "full"
    prof = PROFILES[profile]
    if find_pg_bin() is None:
        say("PostgreSQL is not installed: run `bash scripts/ensure-postgres.sh`")
        return 1
    key = "pod_bench_" + secrets.token_urlsafe(24)

    def start(tmp: Path, home: str, servers: list[Server], env: dict[str, str]) -> tuple[Podium, str]:
        (tmp / home).mkdir()
        pod = Podium(tmp / home, servers, key, env)
        pod.wait_ready()
        ep = pod.deploy(HERE / "echo_service.py", "bench")
        pod.wait_workers(ep["endpoint_id"])
        return pod, ep["endpoint_id"]

    def body(tmp: Path, servers: list[Server]) -> int:
        results: dict[str, dict[str, Any]] = {}
        say("SQLite")
        pod, ep = start(tmp, "sqlite", servers, {**NO_RATE_LIMIT, "PODIUM_SECRET_KEY": SECRET_KEY})
        results["sqlite"] = one_server(Loads(pod, ep), prof, None)
        stop_all(servers)  # its cores go to the next phases
        servers.clear()
        pg = PgCluster(
            tmp / "pg",
            fsync=args.pg_fsync == "on",
            settings={"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track_utility": "on"},
        )
        pg.start()
        try:
            return measure(tmp, servers, pg, results)
        finally:
            stop_all(servers)  # before the database they use goes
            servers.clear()
            pg.stop()

    def measure(tmp: Path, servers: list[Server], pg: PgCluster, results: dict[str, dict[str, Any]]) -> int:
        shared = {**NO_RATE_LIMIT, "PODIUM_DATABASE_URL": pg.url, "PODIUM_SECRET_KEY": SECRET_KEY}
        stats = Statements(pg.url)
        say("PostgreSQL, one replica")
        leader, ep = start(tmp, "a", servers, shared)
        lead = Loads(leader, ep)
        results["one"] = one_server(lead, prof, stats)
        (tmp / "b").mkdir()
        follower = Podium(tmp / "b", servers, key, shared)
        follower.wait_ready()
        follow = Loads(follower, ep)
        say(f"two replicas: warm-up, then c={CONC // 2} on each for {prof['conc_s']:.0f} s")
        together([lead.runsync, follow.runsync], CONC // 2, prof["warmup_s"])
        results["two"] = {"c32": phase(together([lead.runsync, follow.runsync], CONC // 2, prof["conc_s"]))}
        pg_bin = find_pg_bin()
        report = {
            "meta": {
                "profile": profile,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "wrk": wrk_version(),
                "postgresql": pg_bin.parent.name if pg_bin else "?",
                "pg_fsync": args.pg_fsync,
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
