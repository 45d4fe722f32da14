"""Where a worker runs and what it may use: its bundle directory as its current directory, and
its CPU reservation as thread-pool sizes and (on the local backend) cores. One real server,
workers boxed (the product's default) and forked from a fork server (PODIUM_FORK_AFTER=0).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podium.scaling.cpus import CpuPool, thread_env
from server import PodiumServer, wait_until, worker_pids, zygotes

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

APP = textwrap.dedent(
    """
    import os

    import podium


    @podium.service(name="setup-probe", idle_timeout=1)
    def init():
        with open("weights.txt") as f:  # shipped beside app.py
            return {"weights": f.read()}


    @init.endpoint("/probe")
    def probe(weights):
        return {
            "weights": weights,
            "read_in_route": (podium.context.bundle_dir / "weights.txt").read_text(),
            "cwd": os.getcwd(),
            "bundle_dir": str(podium.context.bundle_dir),
            "threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
            "cores": sorted(os.sched_getaffinity(0)),
        }
    """
)
MACHINE_CORES = len(os.sched_getaffinity(0))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("setup-home"), env={"PODIUM_FORK_AFTER": "0"}) as s:
        yield s


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("setup-bundle")
    (root / "app.py").write_text(APP)
    (root / "weights.txt").write_text("0.25 0.75")
    return root


def server_pid(srv: PodiumServer) -> int:
    assert srv.proc is not None
    return srv.proc.pid


def probe(srv: PodiumServer, endpoint_id: str, *, cold: bool = True) -> tuple[dict[str, Any], str]:
    """A call (`cold`: from zero workers): its output and how its worker was started."""
    if cold:
        wait_until(lambda: not worker_pids(server_pid(srv), endpoint_id), 30, 0.1, "scale to zero")
    r = srv.http.post(f"/v2/{endpoint_id}/runsync", json={"input": {}})
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    worker = srv.job(r.json()["id"])["worker_id"]
    started = "fork" if f"worker {worker} forked" in (srv.home / "server.log").read_text() else "spawn"
    return r.json()["output"], started


def deploy(srv: PodiumServer, bundle: Path, name: str, *args: str) -> str:
    out = srv.cli("deploy", str(bundle), "--name", name, "--json", *args)
    return str(json.loads(out.stdout)["endpoint_id"])


def wait_for_fork_server(srv: PodiumServer, endpoint_id: str) -> None:
    def listening() -> bool:
        return any(
            o["--endpoint"] == endpoint_id and Path(f"/proc/{pid}/root{o['--socket']}").exists()
            for pid, o in zygotes(server_pid(srv)).items()
        )

    wait_until(listening, 60, 0.1, "a listening fork server")


def test_workers_run_in_their_bundle_directory_spawned_and_forked(srv: PodiumServer, bundle: Path) -> None:
    """1. Deploy a service whose initializer opens `weights.txt` (shipped beside app.py) by name:
       the deploy's spawned worker loads it.
    2. Call it on that worker, then (once its fork server listens) from a forked one.
    Result: both answer; their current directory is the bundle as the box shows it,
    `podium.context.bundle_dir` too, and they take 1 thread and 1 core for `cpus=1`."""
    eid = deploy(srv, bundle, "setup-cwd", "--cpus", "1", "--idle-timeout", "5")
    first, started = probe(srv, eid, cold=False)
    assert started == "spawn"
    wait_for_fork_server(srv, eid)
    forked, started = probe(srv, eid)
    assert started == "fork"
    for out in (first, forked):
        assert out["weights"] == out["read_in_route"] == "0.25 0.75"
        assert out["cwd"] == out["bundle_dir"] and out["cwd"].startswith("/home/worker/cache/bundles/"), out
        assert out["threads"] == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        assert len(out["cores"]) == 1


def test_cpus_set_thread_pools_and_cores_unless_secrets_do(srv: PodiumServer, bundle: Path) -> None:
    """1. Deploy with `--cpus 2` and a secret `OMP_NUM_THREADS=5`.
    Result: OpenBLAS and MKL get 2 threads, OpenMP keeps the secret's 5; the worker is pinned
    to 2 cores when the machine has them."""
    eid = deploy(srv, bundle, "setup-cpus", "--cpus", "2")
    srv.cli("secrets", "set", "setup-cpus", "OMP_NUM_THREADS=5")
    out, _ = probe(srv, eid)
    assert out["threads"] == {"OMP_NUM_THREADS": "5", "OPENBLAS_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    assert len(out["cores"]) == (2 if MACHINE_CORES >= 2 else MACHINE_CORES)


def test_cpu_pool_spreads_workers_over_the_least_used_cores() -> None:
    pool = CpuPool([0, 1, 2, 3])
    assert pool.take("a", 1) == (0,)
    assert pool.take("b", 2) == (1, 2)
    assert pool.take("c", 0.5) == (3,)
    assert pool.take("d", 8) == ()  # more than the machine has: not pinned
    pool.release("b")
    assert pool.take("e", 2) == (1, 2)
    assert thread_env(2.5, {}) == {"OMP_NUM_THREADS": "3", "OPENBLAS_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    assert thread_env(1, {"MKL_NUM_THREADS": "4"}) == {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
