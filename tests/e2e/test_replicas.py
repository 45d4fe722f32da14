"""Two `podium up` replicas on one throwaway PostgreSQL, as behind a load balancer.

The leader (started first) runs the autoscaler, so every worker long-polls the leader; calls go to
the follower. Wake-ups must cross between them through LISTEN/NOTIFY: the safety sweep is set to
ten minutes here, so a test that only passed thanks to the sweep would run into its time-outs.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from conftest import SERVICES
from podium.dispatch.counts import COUNT_FRESH
from podium.signing import verify
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

SHARED = {
    "PODIUM_SECRET_KEY": "mZ3ApWl2cJ7Yl6bq2ZqJkqZ1Qm5m3bm2m7bZQ9X1k0A=",
    "PODIUM_WEBHOOK_SECRET": "whsec_replicas_test",
    "PODIUM_WEBHOOK_ALLOW_PRIVATE": "1",
    "PODIUM_WEBHOOK_RETRY_DELAY": "0.5",
    "PODIUM_WEBHOOK_TIMEOUT": "2",
    "PODIUM_RELAY_SWEEP": "600",
    "PODIUM_USAGE_ROLLUP": "0.5",
}


class Receiver:
    """A webhook receiver on loopback: counts each delivery id it is sent."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.bodies: dict[str, dict[str, Any]] = {}
        #: The headers and raw body of each delivery's last attempt (for their signatures).
        self.raw: dict[str, tuple[dict[str, str], bytes]] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                delivery = self.headers["X-Podium-Delivery"]
                outer.seen[delivery] += 1
                outer.bodies[delivery] = json.loads(body)
                outer.raw[delivery] = (dict(self.headers.items()), body)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def jobs(self) -> set[str]:
        return {b["id"] for b in self.bodies.values()}


@pytest.fixture(scope="module")
def cluster(pg_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    db = pg_cluster.create_database("replicas")
    base = tmp_path_factory.mktemp("replicas")
    with contextlib.ExitStack() as stack:
        leader = stack.enter_context(PodiumServer(base / "a", db_url=db, env=SHARED))
        wait_until(lambda: leader.http.get("/api/v1/status").json()["leading"], 15, what="the first replica to lead")
        follower = stack.enter_context(PodiumServer(base / "b", db_url=db, env=SHARED))
        receiver = Receiver()
        ep = follower.deploy(SERVICES / "basic" / "app.py", "basic")
        yield {"leader": leader, "follower": follower, "db": db, "ep": ep, "receiver": receiver, "base": base}
        receiver.httpd.shutdown()


def leader_first(cluster: dict[str, Any]) -> tuple[PodiumServer, PodiumServer]:
    """(The replica that leads, the other one), once one does. Each is asked itself: the replicas
    table can still name a leader that has just stepped down."""
    a, b = cluster["leader"], cluster["follower"]

    def leads(srv: PodiumServer) -> bool:
        return bool(httpx.get(f"{srv.url}/readyz", timeout=10).json().get("leader"))

    return wait_until(lambda: (a, b) if leads(a) else (b, a) if leads(b) else None, 20, what="a replica to lead")


def test_the_installation_says_which_replica_leads(cluster):
    leader, follower = leader_first(cluster)
    a, b = leader.http.get("/api/v1/status").json(), follower.http.get("/api/v1/status").json()
    assert a["leading"] and not b["leading"]
    assert a["leader"] == b["leader"] == a["replica"] != b["replica"]
    assert {r["id"] for r in a["replicas"]} == {a["replica"], b["replica"]}
    assert a["store"] == "postgresql"
    out = json.loads(follower.cli("status", "--json").stdout)
    assert out["leader"] == a["replica"]
    for srv, flag in ((leader, 1), (follower, 0)):
        assert f"podium_replica_leader {flag}.0" in srv.http.get("/metrics").text
        ready = httpx.get(f"{srv.url}/readyz").json()
        assert ready["status"] == "ready" and ready["leader"] == bool(flag)


def test_a_call_to_the_follower_is_run_by_a_worker_polling_the_leader(cluster):
    leader, follower = leader_first(cluster)
    r = follower.http.post("/v2/basic/runsync", json={"input": {"value": 5}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "COMPLETED" and body["output"]["value"] == 5
    # The worker was started by the leader and talks to it; the bundle came to it from the store.
    workers = leader.http.get("/api/v1/endpoints/basic").json()["workers"]
    assert workers and all(w["replica"] == leader.http.get("/api/v1/status").json()["replica"] for w in workers)
    # Both replicas count the same workers (read from the store, not from memory).
    wait_until(
        lambda: (
            follower.http.get("/api/v1/endpoints/basic").json()["workers_by_state"]
            == leader.http.get("/api/v1/endpoints/basic").json()["workers_by_state"]
        ),
        10,
        what="the same worker counts on both replicas",
    )


def test_a_stream_on_the_follower_gets_chunks_stored_through_the_leader(cluster, tmp_path):
    follower = cluster["follower"]
    marker = str(tmp_path / "s")
    with follower.http.stream(
        "POST", "/basic/stream", json={"marker": marker, "items": 2}, headers={"Accept": "text/event-stream"}
    ) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert "first" in first
        Path(f"{marker}.release").touch()
        rest = [line for line in lines if line.startswith("data:")]
    assert any("item 1" in line for line in rest)


def test_an_idempotency_key_holds_across_replicas(cluster):
    leader, follower = leader_first(cluster)
    h = {"Idempotency-Key": "replicas-order-1"}
    first = follower.http.post("/v2/basic/run", json={"input": {"value": 1}}, headers=h).json()
    second = leader.http.post("/v2/basic/run", json={"input": {"value": 1}}, headers=h).json()
    assert first["id"] == second["id"]


def test_a_queue_cap_holds_across_replicas(cluster, tmp_path):
    """One worker held by a blocking job submitted to the follower; the cap of 2 waiting jobs is
    filled through the leader; then the follower, which stored none of them, refuses the next."""
    leader, follower = leader_first(cluster)
    follower.deploy(SERVICES / "basic" / "app.py", "capped")
    assert (
        follower.http.patch("/api/v1/endpoints/capped/scaling", json={"max_workers": 1, "queue_cap": 2}).status_code
        == 200
    )
    marker = str(tmp_path / "cap")
    held = follower.http.post("/v2/capped/run", json={"input": {"marker": marker, "block": True}}).json()["id"]
    wait_until(lambda: Path(f"{marker}.started.1").exists(), 30, what="the held job to start")
    waiting = [leader.http.post("/v2/capped/run", json={"input": {"value": i}}).json()["id"] for i in range(2)]
    # Each replica counts the queue in the store again once its own count is COUNT_FRESH old: an
    # age, so only time passing makes it so (a lower bound, which load can only lengthen).
    time.sleep(2 * COUNT_FRESH)
    for srv in (follower, leader):
        r = srv.http.post("/v2/capped/run", json={"input": {"value": 2}})
        assert r.status_code == 429, r.text
    Path(f"{marker}.release").touch()
    for job_id in [held, *waiting]:
        assert follower.wait_job(job_id, 60)["status"] == "COMPLETED"


def test_waiting_reasons_usage_and_redelivery_hold_across_replicas(cluster, tmp_path):
    """1. One worker (max_workers 1), held by a job sent to the follower; a job sent to the
    leader waits: both replicas say at_capacity, from the worker records in the store.
    2. The endpoint's usage, rolled up by the leader into PostgreSQL, reads the same on both.
    3. A redelivery asked of the follower is sent by the leader, as one more attempt."""
    (leader, follower), receiver = leader_first(cluster), cluster["receiver"]
    follower.deploy(SERVICES / "basic" / "app.py", "waits")
    assert follower.http.patch("/api/v1/endpoints/waits/scaling", json={"max_workers": 1}).status_code == 200
    marker = str(tmp_path / "waits")
    held = follower.http.post("/v2/waits/run", json={"input": {"marker": marker, "block": True}}).json()["id"]
    wait_until(lambda: Path(f"{marker}.started.1").exists(), 30, what="the held job to start")
    queued = leader.http.post("/v2/waits/run", json={"input": {"value": 1}, "webhook": receiver.url}).json()
    assert queued["waiting"]["reason"] == "at_capacity", queued
    for srv in (leader, follower):
        wait_until(
            lambda srv=srv: (
                srv.http.get(f"/v2/waits/status/{queued['id']}").json().get("waiting", {}).get("reason")
                == "at_capacity"
            ),
            15,
            what="at_capacity on each replica",
        )
    Path(f"{marker}.release").touch()
    for job_id in (held, queued["id"]):
        assert follower.wait_job(job_id, 60)["status"] == "COMPLETED"

    def rows(srv: PodiumServer) -> list[dict[str, Any]]:
        found = srv.http.get("/api/v1/usage", params={"by": "endpoint"}).json()["rows"]
        return [r for r in found if r["endpoint"] == "waits"]

    wait_until(lambda: rows(follower) and rows(follower)[0]["jobs"] == 2, 30, what="usage rolled up")
    wait_until(lambda: rows(leader) == rows(follower), 10, what="the same usage on both replicas")
    assert rows(follower)[0]["worker_seconds"]["cpu"] > 0

    [hook] = wait_until(
        lambda: [h for h in follower.job(queued["id"])["webhooks"] if h["state"] == "delivered"], 20, what="delivery"
    )
    again = follower.http.post(f"/api/v1/jobs/{queued['id']}/redeliver")
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "delivered" and again.json()["tries"] == hook["tries"] + 1
    assert receiver.seen[hook["id"]] == hook["tries"] + 1


def test_a_revoked_key_stops_working_on_every_replica_at_once(cluster):
    leader, follower = leader_first(cluster)
    made = leader.http.post("/api/v1/keys", json={"name": "short-lived", "role": "read"}).json()
    h = {"Authorization": f"Bearer {made['key']}"}
    assert httpx.get(f"{follower.url}/api/v1/endpoints", headers=h).status_code == 200  # now cached there
    assert leader.http.delete(f"/api/v1/keys/{made['id']}").status_code in (200, 204)
    wait_until(
        lambda: httpx.get(f"{follower.url}/api/v1/endpoints", headers=h).status_code == 401,
        3,
        what="the follower to refuse the revoked key",
    )


def test_a_webhook_secret_rotated_on_the_follower_signs_the_leaders_next_delivery(cluster):
    """1. The default project's secret, seeded from PODIUM_WEBHOOK_SECRET, is the same on both
    replicas. 2. It is rotated on the follower; the leader shows the new one at once. 3. The
    leader sends the next delivery signed with the new secret and, within the window, the old."""
    (leader, follower), receiver = leader_first(cluster), cluster["receiver"]
    assert leader.http.get("/api/v1/webhook-secret").json()["secret"] == "whsec_replicas_test"
    new = follower.http.post("/api/v1/webhook-secret/rotate").json()["secret"]
    assert leader.http.get("/api/v1/webhook-secret").json()["secret"] == new
    job_id = follower.http.post("/v2/basic/run", json={"input": {"value": 1}, "webhook": receiver.url}).json()["id"]
    wait_until(lambda: job_id in receiver.jobs(), 30, what="the delivery")
    [(headers, body)] = [raw for d, raw in receiver.raw.items() if receiver.bodies[d]["id"] == job_id]
    assert verify(new, headers, body) and verify("whsec_replicas_test", headers, body)
    assert not verify("whsec_another", headers, body)


def test_a_redeploy_through_the_follower_is_gated_by_the_leader(cluster, tmp_path):
    """1. v1 is deployed through the follower; the leader starts its workers.
    2. v2, whose initializer fails, is deployed through the follower: the leader's probe fails it.
    3. Result: on both replicas the endpoint is ACTIVE on v1, v2 is recorded failed; a good v3
       deployed through the follower becomes current on both."""
    leader, follower = leader_first(cluster)

    def version(tag: str, init: str) -> Path:
        path = tmp_path / tag / "app.py"
        path.parent.mkdir()
        path.write_text(
            "import podium\n\n\n@podium.service(name='relay')\n"
            f"def init():\n    {init}\n    return {{}}\n\n\n"
            f"@init.endpoint('/which')\ndef which():\n    return {tag!r}\n"
        )
        return path

    first = follower.deploy(version("v1", "pass"), "relay")
    res = follower.cli(
        "deploy", str(version("v2", "raise RuntimeError('v2 cannot load')")), "--name", "relay", "--json", check=False
    )
    assert res.returncode == 1 and "RuntimeError: v2 cannot load" in json.loads(res.stdout)["deploy_error"]
    for srv in (leader, follower):
        ep = srv.http.get("/api/v1/endpoints/relay").json()
        assert (ep["state"], ep["version"], ep["pending_version"]) == ("ACTIVE", first["version"], None)
        assert srv.http.post("/relay/which", json={}).json() == "v1"
    third = follower.deploy(version("v3", "pass"), "relay")
    assert third["state"] == "ACTIVE" and third["version"] != first["version"]
    wait_until(lambda: leader.http.post("/relay/which", json={}).json() == "v3", 10, what="v3 on the leader")


def test_a_schedule_fires_once_per_tick_across_replicas(cluster):
    """1. A cron schedule is added through the follower; both replicas list it.
    2. Its tick is made due in the store. 3. Result: one job for that tick (the leader fires;
    the follower never does), seen alike on both replicas, while an every-second schedule shows
    that the leader keeps ticking."""
    leader, follower = leader_first(cluster)
    base = "/api/v1/endpoints/basic/schedules"
    r = follower.http.post(base, json={"route": "/hello", "cron": "0 3 * * *", "timezone": "Asia/Tokyo"})
    assert r.status_code == 201, r.text
    assert follower.http.post(base, json={"route": "/work", "every": 1}).status_code == 201

    def listed(srv: PodiumServer) -> dict[str, Any]:
        return {s["route"]: s for s in srv.http.get(base).json()["schedules"]}

    assert set(listed(leader)) == set(listed(follower)) == {"/hello", "/work"}
    try:
        with psycopg.connect(cluster["db"].replace("+psycopg", ""), autocommit=True) as db:
            db.execute("UPDATE schedules SET next_fire_at = 0 WHERE route = '/hello'")
        fired = wait_until(lambda: listed(follower)["/hello"]["last_job"], 30, 0.1, "the fire")
        assert follower.wait_job(fired["id"])["output"] == "Hello, world! My favorite number is 42"
        work = listed(leader)["/work"]["last_job"]
        wait_until(lambda: listed(leader)["/work"]["last_job"] != work, 30, 0.1, "a tick after the fire")
        found = follower.http.get("/api/v1/jobs?endpoint=basic&limit=1000").json()["jobs"]
        assert [j["id"] for j in found if j["route"] == "/hello" and j["kind"] == "schedule"] == [fired["id"]]
    finally:
        for route in ("hello", "work"):
            follower.http.delete(f"{base}/{route}")


def test_a_canary_rollout_through_the_follower_is_split_alike_and_guarded_by_the_leader(cluster, tmp_path):
    """1. v1 serves; v2, which fails every call, is deployed through the follower as a canary at
       50 % with --max-failure-rate 0.05.
    2. Route calls go to the follower until the rollout is gone.
    3. Result: every job ran on the version the hash of its id names, the leader's guard ended
       the rollout (both replicas show the step in the history), and every call answers v1."""
    from podium.core.split import routed_to_canary

    leader, follower = leader_first(cluster)

    def version(tag: str, body: str) -> Path:
        path = tmp_path / tag / "app.py"
        path.parent.mkdir()
        path.write_text(
            "import podium\n\n\n@podium.service(name='canary', max_workers=1)\n"
            "def init():\n    return {}\n\n\n"
            f"@init.endpoint('/which')\ndef which():\n    {body}\n"
        )
        return path

    first = follower.deploy(version("v1", "return 'v1'"), "canary")
    res = follower.cli(
        "deploy",
        str(version("v2", "raise RuntimeError('v2 is broken')")),
        *("--name", "canary", "--canary", "50", "--max-failure-rate", "0.05", "--json"),
    )
    canary = json.loads(res.stdout)["rollout"]["version_id"]
    for _ in range(400):
        follower.http.post("/canary/which", json={}, timeout=60)
        if follower.http.get("/api/v1/endpoints/canary/rollout").json()["rollout"] is None:
            break
    wait_until(
        lambda: leader.http.get("/api/v1/endpoints/canary/rollout").json()["rollout"] is None, 30, what="the abort"
    )
    for srv in (leader, follower):
        latest = srv.http.get("/api/v1/endpoints/canary/history").json()["history"][0]
        assert (latest["action"], latest["version"], latest["key_id"]) == ("guard", canary, None)
    aborted_at = latest["at"]
    # Jobs that ended while the rollout held went where the hash of their id says (a replica may
    # route a call to the canary for up to a second after the abort: its cached view).
    listed = follower.http.get("/api/v1/jobs", params={"endpoint": "canary", "limit": 1000}).json()["jobs"]
    held = [job for j in listed if (job := follower.wait_job(j["id"]))["finished_at"] < aborted_at]
    for job in held:
        assert job["version_id"] == (canary if routed_to_canary(job["id"], 50) else first["version"]), job["id"]
        assert job["status"] == ("FAILED" if job["version_id"] == canary else "COMPLETED")
    assert sum(job["version_id"] == canary for job in held) >= 20
    assert [follower.http.post("/canary/which", json={}).json() for _ in range(5)] == ["v1"] * 5


def test_readiness_fails_while_the_store_is_unreachable(cluster, pg_cluster):
    """Connections to the database are refused (and the replicas' own cut) until the leader has
    noticed and stepped down; its autoscaler meets the outage too. Then one of the two leads
    again, and it goes on leading: whichever dies next, the other takes over (the next test)."""
    leader, follower = leader_first(cluster)
    leader_log = leader.home / "server.log"
    seen = len(leader_log.read_text())
    admin = psycopg.connect(pg_cluster.url.replace("+psycopg", "").rsplit("/", 1)[0] + "/postgres", autocommit=True)
    try:
        admin.execute("ALTER DATABASE replicas ALLOW_CONNECTIONS false")
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'replicas'")
        wait_until(
            lambda: httpx.get(f"{follower.url}/readyz", timeout=10).status_code == 503, 20, what="/readyz to fail"
        )
        assert httpx.get(f"{follower.url}/healthz").status_code == 200  # alive, just not ready
        wait_until(lambda: "no longer leads" in leader_log.read_text()[seen:], 20, what="the leader to step down")
    finally:
        admin.execute("ALTER DATABASE replicas ALLOW_CONNECTIONS true")
        admin.close()
    wait_until(
        lambda: httpx.get(f"{follower.url}/readyz", timeout=10).status_code == 200, 20, what="/readyz to recover"
    )
    # One of the two leads again (whichever took the lock first), and wake-ups cross again once
    # the LISTEN connections are back.
    leader_first(cluster)
    r = follower.http.post("/v2/basic/runsync", json={"input": {"value": 9}})
    assert r.json()["status"] == "COMPLETED"
    for srv in (leader, follower):  # every failure the outage caused was met by code that expected it
        assert "exception was never retrieved" not in (srv.home / "server.log").read_text()


def test_when_the_leader_dies_the_follower_takes_over_and_nothing_is_lost(cluster, tmp_path):
    """1. The store's webhook_secrets table is locked, so the leader, having claimed a delivery,
    waits to sign it: claimed, not sent. A job blocks on the leader's worker.
    2. `kill -9` the leader there; the lock is let go: the follower leads, starts workers,
    recovers the held job, and sends the claimed delivery once its claim has run out.
    3. Every job completes; each delivery arrives exactly once per recorded attempt (one here).
    The killed replica is started again, so no test depends on running before this one."""
    receiver = cluster["receiver"]
    leader, follower = leader_first(cluster)  # the store outage may have moved it
    db = cluster["db"].replace("+psycopg", "")
    lock = psycopg.connect(db)
    try:
        lock.execute("LOCK TABLE webhook_secrets IN ACCESS EXCLUSIVE MODE")
        queued = [
            follower.http.post("/v2/basic/run", json={"input": {"value": i}, "webhook": receiver.url}).json()["id"]
            for i in range(3)
        ]
        for job_id in queued:
            assert follower.wait_job(job_id, 60)["status"] == "COMPLETED"
        with psycopg.connect(db, autocommit=True) as look:

            def claimed() -> list[str]:
                """Deliveries of these jobs claimed (next_at moved past now) and not yet tried,
                once the leader waits on the lock to sign one of them."""
                waiting = look.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'webhook_secrets'::regclass AND NOT granted"
                ).fetchone()[0]
                rows = look.execute(
                    "SELECT id FROM webhook_deliveries WHERE job_id = ANY(%s) AND state = 'pending' AND tries = 0"
                    " AND next_at > extract(epoch FROM clock_timestamp())",
                    (queued,),
                ).fetchall()
                return [r[0] for r in rows] if waiting else []

            between = wait_until(claimed, 30, what="a delivery claimed and not sent")
        marker = str(tmp_path / "held")
        held = follower.http.post(
            "/v2/basic/run", json={"input": {"marker": marker, "block": True}, "webhook": receiver.url}
        ).json()["id"]
        wait_until(lambda: Path(f"{marker}.started.1").exists(), 30, what="the held job to start")
        leader.stop(signal.SIGKILL)
    finally:
        lock.rollback()
        lock.close()
    assert not set(between) & set(receiver.seen), "nothing claimed was sent before the handover"
    wait_until(lambda: follower.http.get("/api/v1/status").json()["leading"], 15, what="the follower to lead")
    Path(f"{marker}.release").touch()
    for job_id in [held, *queued]:
        assert follower.wait_job(job_id, 60)["status"] == "COMPLETED"

    def ended() -> list[dict[str, Any]]:
        found = [follower.http.get(f"/api/v1/jobs/{job_id}").json()["webhooks"] for job_id in [held, *queued]]
        return [d for [d] in found] if all(d["state"] in ("delivered", "failed") for [d] in found) else []

    for d in wait_until(ended, 30, what="every delivery to end"):
        assert (d["state"], d["tries"], receiver.seen[d["id"]]) == ("delivered", 1, 1), d
    status = follower.http.get("/api/v1/status").json()
    assert [r["id"] for r in status["replicas"] if r["leader"]] == [status["replica"]]
    leader.start()

    def listed() -> set[str]:
        return {r["id"] for r in follower.http.get("/api/v1/status").json()["replicas"]}

    def running() -> set[str]:
        return {srv.http.get("/api/v1/status").json()["replica"] for srv in (leader, follower)}

    wait_until(lambda: listed() == running(), 30, what="the killed replica to age out of the list")
