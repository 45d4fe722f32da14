"""Several machines, simulated honestly: each party in a network namespace of its own (tests/netns.py),
on a private /24, with its own PODIUM_HOME and no loopback address.

    pg      PostgreSQL, listening on its own address only
    a       replica A (started first: it leads), `podium up --host <its address>`
    b       replica B
    worker  a worker started by hand (`podium worker --url <A's address>`)
    client  this test process (its main thread joins the namespace) and the CLI it runs

Nothing shares a loopback: a party that bound or called 127.0.0.1 (or ::1) would fail, since no
namespace has a loopback address. The safety sweep is set to ten minutes: wake-ups cross between
the replicas by NOTIFY or the tests time out. The tests run in order on one cluster, as
test_replicas.py's do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from netns import Hub, Machine, NetnsUnavailable
from pgcluster import PgCluster, find_pg_bin
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

SHARED = {
    "PODIUM_SECRET_KEY": "mZ3ApWl2cJ7Yl6bq2ZqJkqZ1Qm5m3bm2m7bZQ9X1k0A=",
    "PODIUM_WEBHOOK_SECRET": "whsec_netns_test",
    "PODIUM_RELAY_SWEEP": "600",  # wake-ups cross between the replicas by NOTIFY alone
}

SERVICE = """\
import os
import time
from pathlib import Path

import podium


@podium.handler(max_workers=1, idle_timeout=1)
def handler(job):
    gate = job["input"].get("gate")
    while gate and not Path(gate).exists():
        time.sleep(0.05)
    return {"pid": os.getpid(), "value": job["input"].get("value")}
"""


def unavailable(reason: str) -> None:
    """Skip here; under CI=1 a machine that cannot run these tests is a failure."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    h = Hub()
    try:
        h.start()
    except NetnsUnavailable as exc:
        unavailable(f"network namespaces: {exc}")
    try:
        yield h
    finally:
        h.close()


@pytest.fixture(scope="module")
def net(hub: Hub) -> dict[str, Machine]:
    return {role: hub.machine(role) for role in ("pg", "a", "b", "worker", "client")}


@pytest.fixture(scope="module")
def cluster(net: dict[str, Machine], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """PostgreSQL on `pg`, replica A on `a` (leading), B on `b`, the endpoint deployed through B;
    this thread in `client` until the module's end."""
    if find_pg_bin() is None:
        unavailable("PostgreSQL is not installed (scripts/ensure-postgres.sh installs it)")
    base = tmp_path_factory.mktemp("netns")
    pg = PgCluster(base / "pg", host=net["pg"].address, prefix=net["pg"].prefix)
    with contextlib.ExitStack() as stack:
        pg.start()
        stack.callback(pg.stop)
        db = pg.create_database("netns")
        # Made here, where a free port can be asked for: no other process lives in a namespace.
        a, b = (
            PodiumServer(base / name, db_url=db, env=SHARED, host=net[name].address, prefix=net[name].prefix)
            for name in ("a", "b")
        )
        stack.enter_context(net["client"].entered())
        stack.enter_context(a)
        wait_until(lambda: a.http.get("/api/v1/status").json()["leading"], 15, what="replica A to lead")
        stack.enter_context(b)
        src = base / "svc"
        src.mkdir()
        (src / "handler.py").write_text(SERVICE)
        ep = b.deploy(src, "far")
        yield {"a": a, "b": b, "pg": pg, "ep": ep, "base": base}


def status(srv: PodiumServer) -> dict[str, Any]:
    return srv.http.get("/api/v1/status").json()


def workers(srv: PodiumServer) -> dict[str, dict[str, Any]]:
    return {w["id"]: w for w in srv.http.get("/api/v1/endpoints/far").json()["workers"]}


class HandWorker:
    """`podium worker --url URL` in the `worker` namespace, with a PODIUM_HOME of its own."""

    ID = "h-netns-worker"

    def __init__(self, machine: Machine, home: Path, url: str, key: str) -> None:
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("PODIUM_API_KEY", "PODIUM_URL", "PODIUM_PING_INTERVAL")}
        env["PODIUM_HOME"] = str(home)
        self.log = home / "worker.log"
        argv = [sys.executable, "-m", "podium", "worker", "--url", url, "--key", key, "far", "--worker-id", self.ID]
        with self.log.open("w") as out:
            self.proc = machine.popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


@pytest.fixture(scope="module")
def hand(cluster: dict[str, Any], net: dict[str, Machine]) -> Iterator[HandWorker]:
    """The hand worker, joined once the local worker that proved the version has idled out (so
    that from then on every job is the hand worker's)."""
    a, b = cluster["a"], cluster["b"]
    wait_until(lambda: not workers(a), 30, what="the leader's local worker to idle out")
    key = json.loads(b.cli("keys", "create", "--role", "deploy", "--json").stdout)["key"]
    h = HandWorker(net["worker"], cluster["base"] / "worker-home", a.url, key)
    try:
        for srv in (a, b):
            wait_until(
                lambda srv=srv: workers(srv).get(h.ID, {}).get("state") == "IDLE",
                30,
                what=f"the hand worker to show IDLE on {srv.url}",
            )
        yield h
    finally:
        h.stop()


def test_a_client_on_its_own_machine_calls_both_replicas(cluster, net):
    """1. From `client`: runsync on A; /run on A, then /status on B.
    2. Result: both complete, run by a worker the leader A started on its machine (it reached A at
       A's address: there is no other); the replicas agree on who leads, over one PostgreSQL."""
    a, b = cluster["a"], cluster["b"]
    sa, sb = status(a), status(b)
    assert sa["leading"] and not sb["leading"] and sa["leader"] == sb["leader"] == sa["replica"]
    assert {r["id"] for r in sa["replicas"]} == {sa["replica"], sb["replica"]}
    assert sa["store"] == sb["store"] == "postgresql"

    r = a.http.post("/v2/far/runsync", json={"input": {"value": 1}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "COMPLETED" and r.json()["output"]["value"] == 1
    job_id = a.http.post("/v2/far/run", json={"input": {"value": 2}}).json()["id"]
    done = wait_until(
        lambda: (s := b.http.get(f"/v2/far/status/{job_id}").json())["status"] == "COMPLETED" and s,
        30,
        what="the job, seen through B",
    )
    assert done["output"]["value"] == 2


def test_a_hand_worker_on_its_own_machine_takes_jobs_sent_to_the_other_replica(cluster, hand):
    """1. The hand worker on `worker` long-polls A at A's address. 2. Jobs are sent to B only.
    3. Result: every one runs in the hand worker's process; both replicas list it."""
    a, b = cluster["a"], cluster["b"]
    for srv in (a, b):
        seen = workers(srv)[hand.ID]
        assert seen["local"] is False and seen["version_id"] == cluster["ep"]["version"]
    r = b.http.post("/v2/far/runsync", json={"input": {"value": 3}})
    assert r.json()["output"] == {"pid": hand.proc.pid, "value": 3}, r.text
    ids = [b.http.post("/v2/far/run", json={"input": {"value": i}}).json()["id"] for i in range(4)]
    for i, job_id in enumerate(ids):
        job = b.wait_job(job_id, 30)
        assert (job["status"], job["output"]) == ("COMPLETED", {"pid": hand.proc.pid, "value": i})
        assert job["worker_id"] == hand.ID


def test_each_party_listens_on_its_own_address_and_talks_only_across_the_network(cluster, net, hand):
    """No machine has a loopback address; each server listens on its own address alone; the hand worker's
    connections go to A, the replicas' to PostgreSQL."""
    a, b, pg = cluster["a"], cluster["b"], cluster["pg"]
    for m in net.values():
        assert "inet" not in m.run("ip", "-o", "addr", "show", "dev", "lo"), f"{m.name} has a loopback address"
    assert net["a"].listening() == {f"{net['a'].address}:{a.port}"}
    assert net["b"].listening() == {f"{net['b'].address}:{b.port}"}
    assert net["pg"].listening() == {f"{net['pg'].address}:{pg.port}"}
    assert net["worker"].listening() == set()

    def peers(m: Machine) -> set[str]:
        rows = m.run("ss", "-Htn", "state", "established").splitlines()
        return {row.split()[-1].rsplit(":", 1)[0] for row in rows if row.strip()}

    assert peers(net["worker"]) == {net["a"].address}
    assert net["pg"].address in peers(net["a"]) and net["pg"].address in peers(net["b"])
    assert peers(net["pg"]) <= {net["a"].address, net["b"].address, net["client"].address}


def test_when_the_leader_dies_b_leads_and_the_hand_worker_comes_back_with_a(cluster, hand, tmp_path):
    """1. The hand worker holds a job sent to B. 2. A, which it talks to, is killed (-9); B takes
    the lead; another job is sent to B. 3. A starts again on its address (now a follower).
    Result: both jobs complete; the same hand worker process, never restarted, takes B's jobs
    through A again; B still leads."""
    a, b = cluster["a"], cluster["b"]
    gate = tmp_path / "gate"
    held = b.http.post("/v2/far/run", json={"input": {"gate": str(gate), "value": 7}}).json()["id"]
    wait_until(lambda: b.job(held)["status"] == "IN_PROGRESS", 30, what="the hand worker to take the held job")
    assert b.job(held)["worker_id"] == hand.ID

    a.stop(signal.SIGKILL)
    wait_until(lambda: status(b)["leading"], 20, what="B to lead")
    queued = b.http.post("/v2/far/run", json={"input": {"value": 8}}).json()["id"]
    gate.touch()
    a.start()  # the same address and home: the machine back after a crash

    assert b.wait_job(held, 90)["status"] == "COMPLETED"
    assert b.wait_job(queued, 60)["output"]["value"] == 8
    assert hand.proc.poll() is None, "the hand worker kept going"
    sa, sb = status(a), status(b)
    assert sb["leading"] and not sa["leading"] and sa["leader"] == sb["replica"]
    assert httpx.get(f"{a.url}/readyz", timeout=10).json()["status"] == "ready"
    # Whatever B started while the hand worker was out of reach idles out; then the hand worker,
    # reached through A, takes B's jobs again.
    wait_until(lambda: set(workers(b)) == {hand.ID}, 60, what="only the hand worker on B's list")
    r = b.http.post("/v2/far/runsync", json={"input": {"value": 9}})
    assert r.json()["output"] == {"pid": hand.proc.pid, "value": 9}, r.text


def test_the_leader_counts_a_hand_worker_that_only_the_other_replica_hears_from(cluster, hand, tmp_path):
    """B leads; the hand worker talks to A (max_workers 1). 1. It holds a job sent to B. 2. Another
    job is sent to B. Result: B's autoscaler counts the hand worker, busy: it wants no worker of its
    own, starts none, and the second job waits for the hand worker, which runs it after the first."""
    a, b = cluster["a"], cluster["b"]
    assert status(b)["leading"] and workers(a)[hand.ID]["replica"] == status(a)["replica"]
    gate = tmp_path / "gate"
    held = b.http.post("/v2/far/run", json={"input": {"gate": str(gate), "value": 1}}).json()["id"]
    wait_until(lambda: b.job(held)["status"] == "IN_PROGRESS", 30, what="the hand worker to take the job")
    queued = b.http.post("/v2/far/run", json={"input": {"value": 2}}).json()["id"]
    seen = wait_until(
        # A records its worker's state when the worker reports: B may see it idle for a pass.
        lambda: (
            (s := b.http.get("/api/v1/endpoints/far").json()["autoscaler"])
            and (s["queued_jobs"], s["running_jobs"]) == (1, 1)
            and s
        ),
        30,
        what="B's autoscaler to see the waiting job and the busy hand worker",
    )
    assert (seen["workers"], seen["running_jobs"], seen["wanted_workers"]) == (1, 1, 1), seen
    assert set(workers(b)) == {hand.ID}
    gate.touch()
    for job_id, value in ((held, 1), (queued, 2)):
        assert b.wait_job(job_id, 30)["output"] == {"pid": hand.proc.pid, "value": value}
