"""Workers in a box (sandbox.py): what deployed code can reach, through a real server and
real workers. The probe service (services/sandbox/probe.py) tries each forbidden thing from inside
its worker and answers what happened; the server's home, pid and another endpoint's bundle
directory are passed in its input, since a worker could not know them otherwise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SERVICES
from podium import sandbox
from server import PodiumServer, wait_until, worker_pids, zygotes

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

PROBE = SERVICES / "sandbox" / "probe.py"
FS = SERVICES / "forkserver"
#: Server variables no worker may see, and one it is not told about at all.
SERVER_SECRETS = {
    "PODIUM_SECRET_KEY": "k" * 43 + "=",
    "PODIUM_WEBHOOK_SECRET": "whsec-server-only",
    "PROBE_SERVER_ONLY": "server-only",
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    path = os.pathsep.join(filter(None, [str(FS / "lib"), os.environ.get("PYTHONPATH")]))
    with PodiumServer(
        tmp_path_factory.mktemp("sandbox-home"), env={**SERVER_SECRETS, "PODIUM_FORK_AFTER": "0", "PYTHONPATH": path}
    ) as s:
        yield s


def deploy(srv: PodiumServer, path: Path, name: str, *args: str) -> dict[str, Any]:
    return dict(json.loads(srv.cli("deploy", str(path), "--name", name, "--json", *args).stdout))


def call(srv: PodiumServer, endpoint: str, **inp: Any) -> dict[str, Any]:
    r = srv.http.post(f"/v2/{endpoint}/runsync", json={"input": inp})
    assert r.status_code == 200, r.text
    return dict(r.json())


def server_pid(srv: PodiumServer) -> int:
    assert srv.proc is not None
    return srv.proc.pid


def test_deployed_code_reaches_nothing_of_the_server(srv: PodiumServer) -> None:
    """1. Deploy the probe and another endpoint; give the probe an endpoint secret.
    2. The probe reads the server's secrets from its environment, the store, the keys, the
       credentials and the logs under PODIUM_HOME, the other endpoint's bundle, the server's
       /proc/<pid>/environ, and signals the server.
    Result: every try fails; its own secret, its bundle (read-only) and /tmp (writable) are there."""
    other = deploy(srv, SERVICES / "handler.py", "other")
    probe = deploy(srv, PROBE, "probe")
    srv.cli("secrets", "set", "probe", "MY_SECRET=mine")
    other_bundle = srv.home / "cache" / "bundles" / other["version"]
    assert other_bundle.is_dir()  # it exists: the probe must not see it
    inp = {"home": str(srv.home.resolve()), "server_pid": server_pid(srv), "other_bundle": str(other_bundle)}
    out = wait_until(
        lambda: (
            (r := call(srv, probe["endpoint_id"], **inp)).get("output", {}).get("env", {}).get("MY_SECRET")
            and r["output"]
        ),
        30,
        0.2,
        "a worker with the endpoint's secret",
    )
    assert out["env"]["MY_SECRET"] == "mine"
    assert out["env"]["PODIUM_API_KEY"] and out["env"]["PODIUM_API_KEY"] != srv.key  # its own token
    for name in ("PODIUM_ADMIN_KEY", "PODIUM_SECRET_KEY", "PODIUM_WEBHOOK_SECRET", "PODIUM_DATABASE_URL"):
        assert out["env"][name] is None, name
    assert out["server_env_names"] == []
    for attempt in (
        "podium.db",
        "secret.key",
        "credentials.json",
        "logs",
        "other_bundle",
        "server_environ",
        "signal_server",
        "own_bundle_write",
    ):
        assert not out[attempt]["ok"], (attempt, out[attempt])
    assert out["own_bundle_read"]["ok"] and out["tmp_write"]["ok"]
    assert "Read-only file system" in out["own_bundle_write"]["error"]
    assert out["pid"] == 1  # the first process of its own PID namespace


def test_a_job_over_the_memory_limit_fails_clearly_and_the_endpoint_serves_on(srv: PodiumServer) -> None:
    """1. Deploy the probe with 64 MB of memory per worker.
    2. A job allocates 2 GB at once.
    Result: it fails with an error that names the limit; the worker is replaced and the next job
    completes."""
    ep = deploy(srv, PROBE, "hog", "--memory-mb", "64")
    hog = call(srv, ep["endpoint_id"], hog_mb=2048)
    assert hog["status"] == "FAILED" and hog["error"] == "the worker exceeded its memory limit of 64 MB", hog
    job = srv.job(hog["id"])
    small = call(srv, ep["endpoint_id"], hog_mb=8)
    assert small["status"] == "COMPLETED" and small["output"] == 8 * 2**20
    assert srv.job(small["id"])["worker_id"] != job["worker_id"]  # replaced


@pytest.mark.parametrize("service", ["rp_slow.py", "svc_slow.py"])
def test_runpod_files_and_forked_workers_run_sandboxed(srv: PodiumServer, service: str) -> None:
    """1. Deploy an unmodified RunPod worker file, and a Podium handler, both with slow imports
       (PODIUM_FORK_AFTER=0: every version gets a fork server once its first worker is ready).
    2. Stop the workers; the next job's worker is forked from the fork server.
    Result: the fork server and both workers are boxed (pid 1, and 2 or more, in their PID
    namespace); the forked worker's imports were done by the fork server."""
    name = service.removesuffix(".py").replace("_", "-")
    ep = deploy(srv, FS / service, name, "--idle-timeout", "1")
    eid = ep["endpoint_id"]
    wait_until(
        lambda: any(
            o["--endpoint"] == eid and o["--socket"].startswith(sandbox.BOX_RUN)
            for o in zygotes(server_pid(srv)).values()
        ),
        60,
        0.1,
        "a boxed fork server",
    )
    wait_until(
        lambda: any(
            "listening for fork requests" in p.read_text()
            for p in srv.home.glob(f"logs/*/forkserver/{ep['version']}.log")
        ),
        60,
        0.1,
        "it listens",
    )
    wait_until(lambda: not worker_pids(server_pid(srv), eid), 30, 0.1, "scale to zero")
    r = call(srv, eid, n=1)
    assert r["status"] == "COMPLETED", r
    out = r["output"]
    assert out["loaded_by"] == 1 and out["pid"] > 1  # imported by the zygote, the first of its box
    log = (srv.home / "server.log").read_text()
    assert f"worker {srv.job(r['id'])['worker_id']} forked" in log


def test_the_installation_says_its_workers_are_sandboxed(srv: PodiumServer) -> None:
    status = srv.http.get("/api/v1/status").json()
    assert status["sandbox"] == {"on": True, "status": "workers are sandboxed (bubblewrap)"}
    assert "workers are sandboxed (bubblewrap)" in srv.cli("status").stdout


def test_sandbox_off_keeps_the_environment_allowlist(server_factory: Any) -> None:
    """PODIUM_SANDBOX=off: a warning in the log and in `podium status`; the worker sees the
    server's files, but still not its secrets."""
    srv = server_factory(env={**SERVER_SECRETS, "PODIUM_SANDBOX": "off"})
    ep = deploy(srv, PROBE, "probe")
    out = call(
        srv, ep["endpoint_id"], home=str(srv.home.resolve()), server_pid=server_pid(srv), other_bundle="/nonexistent"
    )["output"]
    for name in ("PODIUM_ADMIN_KEY", "PODIUM_SECRET_KEY", "PODIUM_WEBHOOK_SECRET", "PODIUM_DATABASE_URL"):
        assert out["env"][name] is None, name
    assert out["server_env_names"] == []
    assert out["podium.db"]["ok"]  # no box: only the allowlist
    assert "workers are NOT sandboxed (PODIUM_SANDBOX=off)" in (srv.home / "server.log").read_text()
    assert "workers are NOT sandboxed" in srv.cli("status").stdout
