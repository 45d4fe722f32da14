"""Workers forked from their version's pre-imported parent (scaling/forkserver.py, worker/zygote.py).

One real server; two endpoints whose imports are slow (`slow_import`, a library outside the bundle
that sleeps while imported, stands in for torch): an unmodified RunPod worker file and a Podium
service. Each handler answers its pid and the pid of the process that imported `slow_import`:
a worker that imported it itself was spawned, one that found it imported was forked.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SERVICES
from podium.scaling import forkserver
from podium.worker import preimport
from podium.worker import zygote as zygote_mod
from server import PodiumServer, wait_until, worker_pids, zygotes

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

FS = SERVICES / "forkserver"
#: `slow_import`'s directory, ahead of the PYTHONPATH the tests run with (which may point at the
#: checkout under test).
LIB_PATH = os.pathsep.join(filter(None, [str(FS / "lib"), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("fork-home"), env={"PYTHONPATH": LIB_PATH}) as s:
        yield s
        left = list(zygotes(server_pid(s)))
    wait_until(lambda: not any(map(running, left)), 10, 0.1, "the fork servers to stop with the server")


def deploy(srv: PodiumServer, path: Path, name: str) -> str:
    out = srv.cli("deploy", str(path), "--name", name, "--idle-timeout", "1", "--json")
    return str(json.loads(out.stdout)["endpoint_id"])


def server_pid(srv: PodiumServer) -> int:
    assert srv.proc is not None
    return srv.proc.pid


def ready_zygote(srv: PodiumServer, endpoint_id: str, version: str | None = None) -> int:
    """The pid of the endpoint's fork server once it listens."""

    def find() -> int | None:
        for pid, opts in zygotes(server_pid(srv)).items():
            if (
                opts["--endpoint"] == endpoint_id
                and version in (None, opts["--version"])
                and Path(f"/proc/{pid}/root{opts['--socket']}").exists()
            ):  # as the zygote sees it
                return pid
        return None

    return int(wait_until(find, 60, 0.1, f"a ready fork server for {endpoint_id}"))


def cold_call(srv: PodiumServer, endpoint_id: str, **inp: Any) -> dict[str, Any]:
    """A runsync from zero workers; the job's record."""
    wait_until(lambda: not worker_pids(server_pid(srv), endpoint_id), 30, 0.1, "scale to zero")
    r = srv.http.post(f"/v2/{endpoint_id}/runsync", json={"input": inp})
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    return srv.job(r.json()["id"])


def started_by(srv: PodiumServer, worker_id: str) -> str:
    log = (srv.home / "server.log").read_text()
    if f"worker {worker_id} forked" in log:
        return "fork"
    assert f"started worker {worker_id}" in log
    return "spawn"


@pytest.mark.parametrize("service", ["rp_slow.py", "svc_slow.py"])
def test_the_second_cold_start_is_forked_from_the_preimported_parent(srv: PodiumServer, service: str) -> None:
    eid = deploy(srv, FS / service, service.removesuffix(".py").replace("_", "-"))
    zygote = ready_zygote(srv, eid)
    job = cold_call(srv, eid, n=1)
    out = job["output"]
    assert out["loaded_by"] == own_pid(zygote) != out["pid"]  # imported before the fork, by the zygote
    assert started_by(srv, job["worker_id"]) == "fork"
    assert job["cold_ms"] is not None  # its share of the wait is recorded, as for a spawned one
    # a second forked start from the same parent
    again = cold_call(srv, eid, n=2)
    assert again["output"]["loaded_by"] == own_pid(zygote) and again["worker_id"] != job["worker_id"]


def test_a_dead_zygote_means_a_spawn_then_a_new_zygote(srv: PodiumServer) -> None:
    eid = deploy(srv, FS / "rp_slow.py", "rp-killed")
    zygote = ready_zygote(srv, eid)
    os.kill(zygote, signal.SIGKILL)
    wait_until(lambda: zygote not in zygotes(server_pid(srv)), 10, 0.1, "the zygote gone")
    job = cold_call(srv, eid, n=3)
    assert job["output"]["loaded_by"] == job["output"]["pid"]  # imported by the worker itself
    assert started_by(srv, job["worker_id"]) == "spawn"
    assert ready_zygote(srv, eid) != zygote  # that worker was slow too: a new parent for the next


def test_a_redeploy_starts_a_new_zygote_and_stops_the_old(srv: PodiumServer, tmp_path: Path) -> None:
    eid = deploy(srv, FS / "rp_slow.py", "rp-redeployed")
    old = ready_zygote(srv, eid)
    old_version = zygotes(server_pid(srv))[old]["--version"]
    changed = tmp_path / "rp_slow.py"
    shutil.copy(FS / "rp_slow.py", changed)
    changed.write_text(changed.read_text() + "# version 2\n")
    deploy(srv, changed, "rp-redeployed")
    cold_call(srv, eid, n=4)  # runs the new version (in a spawned worker: it has no zygote yet)
    wait_until(lambda: old not in zygotes(server_pid(srv)), 20, 0.1, "the old version's zygote stopped")
    new = ready_zygote(srv, eid)
    assert zygotes(server_pid(srv))[new]["--version"] not in (old_version, None)
    assert cold_call(srv, eid, n=5)["output"]["loaded_by"] == own_pid(new)


def test_workers_and_zygotes_end_with_a_killed_server(server_factory: Any) -> None:
    srv = server_factory(env={"PYTHONPATH": LIB_PATH})
    eid = deploy(srv, FS / "svc_slow.py", "svc-orphaned")
    zygote = ready_zygote(srv, eid)
    job = cold_call(srv, eid, n=6)
    worker = worker_pids(server_pid(srv), eid)[job["worker_id"]]
    assert job["output"]["loaded_by"] == own_pid(zygote)
    srv.stop(signal.SIGKILL)
    wait_until(lambda: not running(zygote) and not running(worker), 20, 0.1, "the zygote and its worker to end")


def own_pid(pid: int) -> int:
    """A process's pid as it sees it: in its sandbox's PID namespace (where the services' os.getpid()
    answers), else the same as this machine's."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return pid


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for a reaper)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_preimport_reads_the_installed_modules_the_bundle_imports(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("import json\nfrom . import sibling\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "inner.py").write_text("from email.message import Message\n")
    (tmp_path / "app.py").write_text(
        "from __future__ import annotations\nimport helpers, pkg.inner\nfrom typing import TYPE_CHECKING\n"
        "try:\n    import csv\nexcept ImportError:\n    csv = None\n"
        "if TYPE_CHECKING:\n    import decimal\n"
        "def later():\n    import fractions\n"
    )
    assert preimport.wanted(tmp_path) == {
        "typing": ("TYPE_CHECKING",),
        "csv": (),
        "json": (),
        "email.message": ("Message",),
    }
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    imported, failed = preimport.load(tmp_path)
    assert "csv" in imported and "no_such_module_here" not in imported
    assert failed and failed[0].startswith("no_such_module_here: ModuleNotFoundError")


def test_a_zygote_whose_imports_start_threads_does_not_fork(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "app.py").write_text("import threaded_import\n")
    sock = tmp_path / "z.sock"
    env = {**os.environ, "PYTHONPATH": str(FS / "lib")}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "podium.worker.zygote",
            "--socket",
            str(sock),
            "--bundle",
            str(bundle),
            "--server-pid",
            str(os.getpid()),
            "--endpoint",
            "ep",
            "--version",
            "v",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == zygote_mod.UNFIT == forkserver.UNFIT
    assert "started threads (threaded-import)" in res.stderr and not sock.exists()
