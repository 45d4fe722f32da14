"""Workers on a real Ray cluster (`podium up --backend ray`): a throwaway cluster on loopback, a
real server placing its workers there as named actors, real drivers to look at and kill them.
Group: `pytest -m ray`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import SERVICES
from podium import sandbox
from podium.scaling.ray import actor_name, actor_options
from podium.scaling.resources import Resources
from raycluster import ENV, RayCluster, ray_bin
from server import PodiumServer, free_port, wait_until
from wheels import make_wheel

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.boxed, pytest.mark.timeout(300)]

WHERE = SERVICES / "ray" / "where.py"
#: Named actors of Podium on the cluster, name -> actor id.
ACTORS = """
result = {a["name"]: ray.get_actor(a["name"], namespace="podium")._actor_id.hex()
          for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "podium"}
"""


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the node's index has besides PyPI (the server's too): podium-raypkg 1.0 and 2.0."""
    found = tmp_path_factory.mktemp("wheels")
    for version in ("1.0", "2.0"):
        make_wheel(found, "podium_raypkg", version, f"VERSION = {version!r}\n")
    return found


@pytest.fixture(scope="module")
def cluster(wheels: Path) -> Iterator[RayCluster]:
    if ray_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("Ray is not installed: `make venv` installs podium[ray]")
        pytest.skip("Ray is not installed (pip install 'podium[ray]')")
    # The node builds environments from its own index settings, into its own PODIUM_NODE_HOME.
    c = RayCluster(num_cpus=4, node_env={"PIP_FIND_LINKS": str(wheels)})
    c.start()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def srv(cluster: RayCluster, wheels: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    # The server's index has one package more than the node's: podium-rayonly.
    only_here = tmp_path_factory.mktemp("server-wheels")
    make_wheel(only_here, "podium_rayonly", "1.0", "VERSION = '1.0'\n")
    with PodiumServer(
        tmp_path_factory.mktemp("ray-home"),
        env={**ENV, "PIP_FIND_LINKS": f"{wheels} {only_here}"},
        args=("--backend", "ray", "--ray-address", cluster.address),
    ) as server:
        yield server


@pytest.fixture(autouse=True)
def free_the_cluster(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each worker holds a CPU of the small cluster until it stops: after each test, its endpoints
    scale to zero at once, so the next test's workers find room."""
    yield
    if "srv" not in request.fixturenames:
        return
    srv: PodiumServer = request.getfixturevalue("srv")
    for ep in srv.http.get("/api/v1/endpoints").json()["endpoints"]:
        if ep["state"] != "ERROR":
            srv.http.patch(f"/api/v1/endpoints/{ep['name']}/scaling", json={"min_workers": 0, "idle_timeout": 0})

    def none_left() -> bool:
        return not any(ep["workers"] for ep in srv.http.get("/api/v1/endpoints").json()["endpoints"])

    wait_until(none_left, 60, 0.2, "the module's workers to stop")


def workers(srv: PodiumServer, name: str) -> list[dict[str, Any]]:
    return json.loads(srv.cli("status", name, "--json").stdout)["workers"]  # type: ignore[no-any-return]


def call(srv: PodiumServer, name: str, **kwargs: Any) -> dict[str, Any]:
    r = srv.http.post(f"/{name}/where", json=kwargs)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def worker_root(worker_id: str) -> Path:
    """The filesystem a worker of this machine sees (its box's, when it is sandboxed)."""
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            comm = (proc / "comm").read_text().strip()
        except OSError:
            continue
        if b"podium.worker" in argv and worker_id.encode() in argv and comm != "bwrap":
            return proc / "root"
    raise AssertionError(f"worker {worker_id} is not running here")


def test_jobs_run_on_named_ray_actors(srv: PodiumServer, cluster: RayCluster) -> None:
    srv.deploy(WHERE, "where")
    out = call(srv, "where")
    [w] = workers(srv, "where")
    assert w["node"] == "127.0.0.1" and w["actor_id"] and w["pid"] is None and w["local"] is True
    # Its bundle came over HTTP into its own cache (its box's home: this node has bwrap), and its
    # parent is the actor (or its box), not the server.
    assert out["home"] == sandbox.BOX_HOME
    # It runs in its bundle's directory, its thread pools sized to its 1 CPU.
    assert out["cwd"] == out["bundle_dir"] and out["cwd"].startswith(f"{sandbox.BOX_HOME}/cache/bundles/")
    assert out["threads"] == "1"
    assert "workers are sandboxed (bubblewrap)" in (srv.home / "server.log").read_text()
    assert srv.proc is not None and out["ppid"] != srv.proc.pid
    assert cluster.driver(ACTORS)[actor_name("where", w["id"])] == w["actor_id"]
    text = srv.cli("status", "where").stdout
    assert f"{w['id']}  IDLE  node 127.0.0.1  actor {w['actor_id']}" in text
    assert f"in pid {out['pid']}" in srv.cli("logs", "where").stdout, "the worker's output reaches podium logs"


def worker_log(srv: PodiumServer, name: str, worker_id: str) -> str:
    eid = srv.http.get(f"/api/v1/endpoints/{name}").json()["endpoint_id"]
    return (srv.home / "logs" / eid / f"{worker_id}.log").read_text()


def build_log(srv: PodiumServer, name: str) -> dict[str, Any]:
    """The build of the endpoint's version, as `GET /api/v1/versions/{id}/build` shows it."""
    version = srv.http.get(f"/api/v1/endpoints/{name}").json()["version"]
    return srv.http.get(f"/api/v1/versions/{version}/build", params={"offset": 0}).json()  # type: ignore[no-any-return]


def test_a_version_with_requirements_runs_in_an_environment_its_node_built(
    srv: PodiumServer, cluster: RayCluster
) -> None:
    """1. Deploy a version pinning podium-raypkg==1.0 (the node's index has 1.0 and 2.0; the
       Python the node runs actors with has neither).
    2. Deploy the same requirements as another endpoint.
    Result: the first worker runs in an environment its node built under its own
    PODIUM_NODE_HOME (not the server's home), with exactly 1.0; that build is the version's build
    log, and `podium envs ls` says the node holds it. The second worker finds it on the node and
    builds nothing."""
    bare = subprocess.run([sys.executable, "-c", "import podium_raypkg"], capture_output=True, timeout=60)
    assert bare.returncode != 0, "the node's own Python must lack the package"
    srv.cli("deploy", str(SERVICES / "ray" / "inenv"), "--name", "inenv", "--timeout", "110")
    out = srv.http.post("/inenv/which", json={}).json()
    node_envs = (cluster.node_home / "envs").resolve()
    assert out["pkg"] == "1.0" and Path(out["prefix"]).parent == node_envs, out
    key = Path(out["prefix"]).name
    [w] = workers(srv, "inenv")
    assert w["actor_id"] and w["node"] == "127.0.0.1"
    assert f"environment {key} built on node 127.0.0.1 in " in worker_log(srv, "inenv", w["id"])
    # Its bundle too is in the node's cache (shown to its box), for every worker of the version there.
    version = srv.http.get("/api/v1/endpoints/inenv").json()["version"]
    assert (cluster.node_home / "cache" / "bundles" / version / "app.py").exists()
    build = build_log(srv, "inenv")
    assert build["state"] == "ready" and build["env"] == key
    assert f"== building environment {key} (Python " in build["lines"][0]
    assert " on node 127.0.0.1 for version " in build["lines"][0], build["lines"][:3]
    assert "== environment ready ==" in build["lines"]
    [env] = [e for e in json.loads(srv.cli("envs", "ls", "--json").stdout) if e["hash"] == key]
    assert [n["address"] for n in env["nodes"]] == ["127.0.0.1"] and env["endpoints"] == ["inenv"]
    assert "127.0.0.1" in srv.cli("envs", "ls").stdout

    srv.cli("deploy", str(SERVICES / "ray" / "inenv"), "--name", "inenv2", "--timeout", "110")
    again = srv.http.post("/inenv2/which", json={}).json()
    assert again["prefix"] == out["prefix"] and again["pkg"] == "1.0"
    [w2] = workers(srv, "inenv2")
    assert f"environment {key} found on node 127.0.0.1" in worker_log(srv, "inenv2", w2["id"])
    assert (node_envs / f"{key}.log").read_text().count("== building environment ") == 1, "built once on the node"


def test_a_node_that_cannot_build_the_environment_puts_the_worker_in_error(
    srv: PodiumServer, cluster: RayCluster, tmp_path: Path
) -> None:
    """The server's index has podium-rayonly (its own build of the environment passes), the
    node's has not: the worker ends in ERROR with the installer's error, and runs on nothing else."""
    app = tmp_path / "nodeless" / "app.py"
    app.parent.mkdir()
    app.write_text(
        "import podium_rayonly\n\nimport podium\n\n\n"
        "@podium.service(name='nodeless', max_workers=1)\ndef init():\n    return {}\n\n\n"
        "@init.endpoint('/x')\ndef x():\n    return podium_rayonly.VERSION\n"
    )
    (app.parent / "requirements.txt").write_text("podium-rayonly==1.0\n")
    res = srv.cli("deploy", str(app.parent), "--name", "nodeless", "--timeout", "110", check=False)
    assert res.returncode == 1, res.stdout
    ep = json.loads(srv.cli("status", "nodeless", "--json").stdout)
    assert ep["state"] == "ERROR"
    version = srv.http.get("/api/v1/endpoints/nodeless").json()["version"]
    assert ep["error"].startswith(
        f"the environment of version {version} could not be built on node 127.0.0.1: installing the requirements failed:"
    ), ep["error"]
    assert "podium-rayonly" in ep["error"] and "No solution found" in ep["error"], ep["error"]
    build = build_log(srv, "nodeless")
    assert " on node 127.0.0.1 for version " in build["lines"][0]
    assert build["lines"][-1] == "== build failed: installing the requirements failed: ==", build["lines"][-3:]


def test_a_version_that_cannot_start_on_ray_is_an_error_with_its_log(srv: PodiumServer) -> None:
    res = srv.cli("deploy", str(SERVICES / "broken"), "--name", "broken", check=False)
    assert res.returncode == 1
    ep = json.loads(srv.cli("status", "broken", "--json").stdout)
    assert ep["state"] == "ERROR" and "model weights not found" in ep["error"]
    # The worker's own output, collected from its actor, is the log tail of the error.
    assert "--- worker log (last lines) ---" in ep["error"] and "RuntimeError: model weights not found" in ep["error"]


def test_workers_reserve_the_endpoints_resources_on_ray(srv: PodiumServer, cluster: RayCluster) -> None:
    srv.deploy(WHERE, "held")
    srv.cli("scale", "held", "--min", "1")
    wait_until(lambda: [w for w in workers(srv, "held") if w["node"]], 60, 0.2, "a worker of held placed")
    # Every Podium worker here asks for the default 1 CPU: the cluster's free CPUs say so.
    snapshot = """
names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "podium"]
result = [len(names), ray.cluster_resources()["CPU"], ray.available_resources().get("CPU", 0.0)]
"""
    wait_until(
        lambda: (s := cluster.driver(snapshot)) and s[1] - s[2] == s[0] >= 1,
        60,
        0.5,
        "free CPUs = total - one per worker actor",
    )


def test_a_worker_ray_cannot_place_ends_in_a_clear_error(srv: PodiumServer, cluster: RayCluster) -> None:
    """1. Fill the cluster: an endpoint keeps one worker per CPU.
    2. Deploy another: its actor waits for a node with a CPU free, past its startup_timeout (3 s).
    Result: ERROR, saying that Ray never placed it and what it asked for."""
    srv.deploy(WHERE, "fill")
    srv.cli("scale", "fill", "--min", str(cluster.num_cpus), "--max", str(cluster.num_cpus))
    wait_until(
        lambda: len([w for w in workers(srv, "fill") if w["node"]]) == cluster.num_cpus,
        60,
        0.2,
        "the cluster to be full",
    )
    res = srv.cli("deploy", str(SERVICES / "ray" / "starved.py"), "--name", "starved", "--json", check=False)
    assert res.returncode == 1
    error = json.loads(srv.cli("status", "starved", "--json").stdout)["error"]
    assert "did not become ready within 3 s" in error
    assert "Ray never placed its actor: no node had 1 CPUs, 0 GPUs and 0 MB of memory free for it" in error


def test_an_actor_killed_mid_job_is_replaced_and_the_job_completes(
    srv: PodiumServer, cluster: RayCluster, tmp_path: Path
) -> None:
    srv.deploy(WHERE, "crash")
    until = tmp_path / "go"
    job_id = srv.http.post("/v2/crash/run", json={"input": {"until": str(until)}}).json()["id"]
    wait_until(lambda: srv.job(job_id)["status"] == "IN_PROGRESS", 60, 0.1, "the job to start")
    [w] = [w for w in workers(srv, "crash") if job_id in w["jobs"]]
    cluster.driver(f"ray.kill(ray.get_actor({actor_name('crash', w['id'])!r}, namespace='podium'))")
    wait_until(lambda: w["id"] not in [x["id"] for x in workers(srv, "crash")], 60, 0.2, "the killed worker to go")
    until.touch()
    job = srv.wait_job(job_id, timeout=90)
    assert job["status"] == "COMPLETED" and job["output"]["attempt"] == 2, job
    assert all(x["actor_id"] != w["actor_id"] for x in workers(srv, "crash"))
    assert actor_name("crash", w["id"]) not in cluster.driver(ACTORS)
    eid = srv.http.get("/api/v1/endpoints/crash").json()["endpoint_id"]
    log = (srv.home / "logs" / eid / f"{w['id']}.log").read_text()
    assert f"the Ray actor {actor_name('crash', w['id'])} ended" in log


def test_a_restart_drains_each_actor_after_its_job_in_hand(
    srv: PodiumServer, cluster: RayCluster, tmp_path: Path
) -> None:
    srv.deploy(WHERE, "drain")
    until = f"/tmp/go-{tmp_path.name}"  # in the worker's /tmp: its box's own, when sandboxed
    job_id = srv.http.post("/v2/drain/run", json={"input": {"until": until}}).json()["id"]
    wait_until(lambda: srv.job(job_id)["status"] == "IN_PROGRESS", 60, 0.1, "the job to start")
    [old] = workers(srv, "drain")
    srv.cli("restart", "drain")
    assert [w["state"] for w in workers(srv, "drain") if w["id"] == old["id"]] == ["DRAINING"]
    (worker_root(old["id"]) / until.lstrip("/")).touch()
    job = srv.wait_job(job_id, timeout=60)
    assert job["status"] == "COMPLETED" and job["output"]["attempt"] == 1, "SIGTERM reached the worker: it finished"
    wait_until(
        lambda: actor_name("drain", old["id"]) not in cluster.driver(ACTORS), 60, 0.5, "the drained actor to end"
    )
    # Recycling after max_jobs_per_worker drains the same way.
    srv.cli("scale", "drain", "--max-jobs", "1")
    processes = [call(srv, "drain")["process"] for _ in range(2)]
    assert processes[0] != processes[1]


def test_idle_workers_stop_and_the_endpoint_scales_back_from_zero(srv: PodiumServer, cluster: RayCluster) -> None:
    srv.deploy(WHERE, "idle")
    srv.cli("scale", "idle", "--idle-timeout", "1")
    first = call(srv, "idle")
    wait_until(lambda: not workers(srv, "idle"), 60, 0.2, "the idle worker to stop")
    assert not [n for n in cluster.driver(ACTORS) if n.startswith("podium-idle-")], "its actor is gone too"
    # Kept now, while a driver (seconds to start on a busy machine) looks for its actor.
    srv.cli("scale", "idle", "--idle-timeout", "60")
    second = call(srv, "idle")
    assert second["process"] != first["process"]
    [w] = workers(srv, "idle")
    assert w["actor_id"] in cluster.driver(ACTORS).values()


def test_through_ray_client_and_a_stopping_server_ends_its_actors(cluster: RayCluster, tmp_path: Path) -> None:
    """A server off the cluster's machines joins it through Ray Client (ray://host:10001)."""
    with PodiumServer(
        tmp_path / "home", env=dict(ENV), args=("--backend", "ray", "--ray-address", cluster.client_address)
    ) as server:
        server.deploy(WHERE, "owned")
        assert call(server, "owned")["attempt"] == 1
        [w] = workers(server, "owned")
        assert w["node"] == "127.0.0.1" and cluster.driver(ACTORS)[actor_name("owned", w["id"])] == w["actor_id"]
    assert not [n for n in cluster.driver(ACTORS) if n.startswith("podium-owned-")]
    # Drained by the server itself (not only ended by Ray because their owner went away).
    assert "left the Ray cluster (1 actors drained" in (tmp_path / "home" / "server.log").read_text()


def test_an_unreachable_cluster_is_a_clear_endpoint_error(server_factory: Any) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    server = server_factory(env=dict(ENV), args=("--backend", "ray", "--ray-address", nowhere))
    res = server.cli("deploy", str(WHERE), "--name", "lost", "--json", check=False)
    assert res.returncode == 1 and json.loads(res.stdout)["state"] == "ERROR"
    error = json.loads(server.cli("status", "lost", "--json").stdout)["error"]
    assert error.startswith(f"cannot reach the Ray cluster at {nowhere}: ") and "refused" in error


def test_the_ray_backend_without_ray_is_one_clear_error(tmp_path: Any) -> None:
    # This interpreter as it would be without Ray installed: `import ray` fails.
    code = "import sys; sys.modules['ray'] = None; from podium.cli import main; main()"
    env = {**os.environ, "PODIUM_HOME": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-c", code, "up", "--backend", "ray"], env=env, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 2, res
    assert res.stderr.strip() == "error: the ray backend needs Ray: pip install 'podium[ray]'"
    bad = subprocess.run(
        [sys.executable, "-m", "podium", "up", "--backend", "k8s"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (
        bad.returncode == 1 and bad.stderr.strip() == "error: the worker backend must be one of local, ray, got 'k8s'"
    )


def test_resources_become_rays_reservation() -> None:
    assert actor_options(Resources()) == {"num_cpus": 1.0, "num_gpus": 0}
    assert actor_options(Resources(cpus=0.5, gpus=2, memory_mb=512)) == {
        "num_cpus": 0.5,
        "num_gpus": 2,
        "memory": 512 * 2**20,
    }
    assert actor_name("sdxl", "w-1") == "podium-sdxl-w-1"


def test_a_volume_under_the_shared_root_reaches_a_worker_on_ray(cluster: RayCluster, tmp_path: Path) -> None:
    """1. Start a server on the Ray backend with PODIUM_VOLUMES_ROOT (here one machine: the
       cluster's node sees the same path); put a file in a volume.
    2. Deploy a service naming it at /models; call it: it reads the file and writes one.
    Result: the worker (an actor, in its box) reads what was put and its write is in the volume's
    directory under the root."""
    root = tmp_path / "volumes-root"
    server = PodiumServer(
        tmp_path / "home",
        env={**ENV, "PODIUM_VOLUMES_ROOT": str(root)},
        args=("--backend", "ray", "--ray-address", cluster.address),
    )
    server.start()
    try:
        server.cli("volumes", "create", "weights")
        (tmp_path / "w.txt").write_text("on the share")
        server.cli("volumes", "put", "weights", str(tmp_path / "w.txt"))
        app = tmp_path / "svc" / "app.py"
        app.parent.mkdir()
        app.write_text(
            "import podium\n\n"
            "@podium.service(volumes={'weights': '/models'}, idle_timeout=0)\n"
            "def init():\n    return {'text': open('/models/w.txt').read()}\n\n"
            "@init.endpoint('/read')\n"
            "def read(text):\n    open('/models/from-ray.txt', 'w').write(text)\n    return text\n"
        )
        ep = server.deploy(app.parent, "vols")
        r = server.http.post(f"/{ep['endpoint_id']}/read", json={})
        assert r.status_code == 200 and r.json() == "on the share", r.text
        [written] = root.glob("*/weights/from-ray.txt")
        assert written.read_text() == "on the share"
    finally:
        server.close()
