"""Schedules: routes that run by themselves, fired by the leader as ordinary jobs, once per tick.

No test waits on the clock: periods are a second and the tests wait for fires (a schedule's
`last_job` changing); cron schedules are made due by moving their `next_fire_at` in the store.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

import podium
from conftest import SERVICES
from podium.clock import Clock
from podium.core.access import Access
from podium.core.calls import Calls
from podium.core.schedules import Scheduler, spec
from podium.dispatch import JobQueue
from podium.metrics import Metrics
from podium.store.catalog import Catalog
from podium.store.engine import Store
from podium.store.schedules import Schedules
from podium.store.secretbox import SecretBox
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

APP = SERVICES / "schedules" / "app.py"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("schedules-home"), env={"PODIUM_WEBHOOK_ALLOW_PRIVATE": "1"}) as server:
        server.deploy(APP, "ticker")
        yield server


def schedules(srv: PodiumServer, name: str) -> dict[str, dict[str, Any]]:
    r = srv.http.get(f"/api/v1/endpoints/{name}/schedules")
    assert r.status_code == 200, r.text
    return {s["route"]: s for s in r.json()["schedules"]}


def jobs_of(srv: PodiumServer, name: str, route: str) -> list[dict[str, Any]]:
    found = srv.http.get("/api/v1/jobs", params={"endpoint": name, "limit": 1000}).json()["jobs"]
    return [j for j in found if j["route"] == route]


def next_fire(srv: PodiumServer, name: str, route: str) -> float:
    return datetime.fromisoformat(schedules(srv, name)[route]["next_fire_at"]).timestamp()


def make_due(srv: PodiumServer, name: str, route: str, ago: float) -> None:
    """Move a schedule's next fire `ago` seconds into the past, in the store (listing them first
    stores the ones a just deployed version declares)."""
    assert route in schedules(srv, name)
    ep = srv.http.get(f"/api/v1/endpoints/{name}").json()["endpoint_id"]
    with sqlite3.connect(srv.home / "podium.db", timeout=30) as db:
        moved = db.execute(
            "UPDATE schedules SET next_fire_at = ? WHERE endpoint_id = ? AND route = ?", (time.time() - ago, ep, route)
        )
        assert moved.rowcount == 1


def fired_after(srv: PodiumServer, name: str, route: str, before: str | None) -> dict[str, Any]:
    """The schedule once its last job is another than `before` and has ended."""

    def fired() -> dict[str, Any] | None:
        s = schedules(srv, name)[route]
        job = s["last_job"]
        if job is None or job["id"] == before or job["status"] not in ("COMPLETED", "FAILED"):
            return None
        return s

    found: dict[str, Any] = wait_until(fired, 60, 0.1, f"a fire of {name} {route}")
    return found


def last_job_id(srv: PodiumServer, name: str, route: str) -> str | None:
    job = schedules(srv, name)[route]["last_job"]
    return None if job is None else str(job["id"])


def test_code_schedules_fire_jobs_with_their_input(srv: PodiumServer) -> None:
    listed = schedules(srv, "ticker")
    assert set(listed) == {"/tick", "/nightly"}
    assert listed["/tick"]["every"] == 1 and listed["/tick"]["source"] == "code"
    assert listed["/nightly"]["cron"] == "0 3 * * *" and listed["/nightly"]["timezone"] == "Europe/Rome"

    tick = fired_after(srv, "ticker", "/tick", None)
    job = srv.job(tick["last_job"]["id"])
    assert job["output"] == "every" and job["input"] == {"tag": "every"} and job["kind"] == "schedule"

    make_due(srv, "ticker", "/nightly", 1)
    nightly = fired_after(srv, "ticker", "/nightly", None)
    assert srv.job(nightly["last_job"]["id"])["output"] == 7  # the route's default
    # Its next fire is 03:00 in Rome (01:00 or 02:00 UTC), after now.
    upcoming = datetime.fromisoformat(nightly["next_fire_at"])
    assert upcoming.timestamp() > time.time() and upcoming.minute == 0 and upcoming.hour in (1, 2)


def test_ticks_missed_while_no_leader_ran_fire_once(srv: PodiumServer) -> None:
    before = last_job_id(srv, "ticker", "/nightly")
    count = len(jobs_of(srv, "ticker", "/nightly"))
    make_due(srv, "ticker", "/nightly", 10 * 86400)  # ten nightly ticks missed
    fired_after(srv, "ticker", "/nightly", before)
    assert next_fire(srv, "ticker", "/nightly") > time.time()
    assert len(jobs_of(srv, "ticker", "/nightly")) == count + 1


def test_a_fire_while_the_previous_job_runs_is_skipped_and_recorded(srv: PodiumServer, tmp_path: Path) -> None:
    marker = str(tmp_path / "slow")
    srv.cli("schedules", "add", "ticker", "/slow", "--every", "1s", "--input", json.dumps({"marker": marker}))
    try:
        skipped = wait_until(
            lambda: (s := schedules(srv, "ticker")["/slow"])["skipped"] >= 2 and s, 60, 0.1, "a skipped fire"
        )
        assert skipped["last_job"]["status"] in ("IN_QUEUE", "IN_PROGRESS") and skipped["last_skipped_at"]
        assert len(jobs_of(srv, "ticker", "/slow")) == 1
    finally:
        Path(f"{marker}.release").touch()
        srv.cli("schedules", "rm", "ticker", "/slow")
    assert "/slow" not in schedules(srv, "ticker")


def test_pause_resume_and_rm(srv: PodiumServer) -> None:
    srv.cli("schedules", "add", "ticker", "/echo", "--every", "1s", "--input", '{"value": 3}')
    first = fired_after(srv, "ticker", "/echo", None)
    assert srv.job(first["last_job"]["id"])["output"]["value"] == 3

    srv.cli("schedules", "pause", "ticker", "/echo")
    paused = schedules(srv, "ticker")["/echo"]
    assert paused["paused"] is True
    # While /tick fires twice more, the paused schedule does not fire.
    tick = last_job_id(srv, "ticker", "/tick")
    tick = fired_after(srv, "ticker", "/tick", tick)["last_job"]["id"]
    fired_after(srv, "ticker", "/tick", tick)
    assert schedules(srv, "ticker")["/echo"]["last_job"]["id"] == paused["last_job"]["id"]

    srv.cli("schedules", "resume", "ticker", "/echo")
    assert schedules(srv, "ticker")["/echo"]["paused"] is False
    fired_after(srv, "ticker", "/echo", paused["last_job"]["id"])

    srv.cli("schedules", "rm", "ticker", "/echo")
    assert "/echo" not in schedules(srv, "ticker")
    # One declared in code cannot be removed (the code would bring it back): pause it instead.
    res = srv.cli("schedules", "rm", "ticker", "/tick", check=False)
    assert res.returncode == 1 and "declared in its code" in res.stderr


def test_ls_json_shape(srv: PodiumServer) -> None:
    fired_after(srv, "ticker", "/tick", None)
    listed = json.loads(srv.cli("schedules", "ls", "ticker", "--json").stdout)
    tick = next(s for s in listed if s["route"] == "/tick")
    assert {"every", "timezone", "paused", "next_fire_at", "last_fire_at", "last_job"} <= set(tick)
    assert "cron" not in tick and tick["timezone"] == "UTC" and tick["paused"] is False
    for at in (tick["next_fire_at"], tick["last_fire_at"]):
        assert datetime.fromisoformat(at).utcoffset() is not None  # ISO 8601, with its offset
    assert set(tick["last_job"]) == {"id", "status"}
    nightly = next(s for s in listed if s["route"] == "/nightly")
    assert nightly["cron"] == "0 3 * * *" and "every" not in nightly
    table = srv.cli("schedules", "ls", "ticker").stdout
    assert "at 0 3 * * * (Europe/Rome) (code)" in table and "every 1s (code)" in table
    # Without a name: the project's schedules, every endpoint's.
    everything = json.loads(srv.cli("schedules", "ls", "--json").stdout)
    assert {(s["endpoint"], s["route"]) for s in listed} <= {(s["endpoint"], s["route"]) for s in everything}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"route": "/echo", "cron": "61 * * * *"}, "61 * * * *"),
        ({"route": "/echo", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"route": "/echo", "every": 0.1}, "at least 1"),
        ({"route": "/echo", "cron": "* * * * *", "every": 5}, "not both"),
    ],
)
def test_an_invalid_schedule_is_a_422_naming_it(srv: PodiumServer, body: dict[str, Any], named: str) -> None:
    r = srv.http.post("/api/v1/endpoints/ticker/schedules", json=body)
    assert r.status_code == 422, r.text
    assert named in r.json()["detail"]


def test_a_deploy_with_an_invalid_schedule_is_a_422_naming_it(srv: PodiumServer) -> None:
    version = srv.http.get("/api/v1/endpoints/ticker").json()
    routes = version["routes"]
    bad = [{**r, "schedule": {"cron": "* * * * *", "timezone": "Nowhere/Land", "overlap": False}} for r in routes]
    r = srv.http.post(
        "/api/v1/deploy",
        json={
            "name": "ticker-bad",
            "version": {
                "sha256": "0" * 64,
                "service": "ticker",
                "entry": "app.py",
                "routes": bad,
                "config": {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 1},
                "size": 1,
            },
        },
    )
    assert r.status_code == 422, r.text
    assert "Nowhere/Land" in r.json()["detail"]


def test_a_stopped_endpoint_does_not_fire(srv: PodiumServer) -> None:
    srv.deploy(APP, "ticker-stopped")
    srv.cli("stop", "ticker-stopped")
    # A first job from before the stop may exist; from now on none is added.
    count = len(jobs_of(srv, "ticker-stopped", "/tick"))
    # Its ticks pass (its next fire moves on twice) without a job.
    first = next_fire(srv, "ticker-stopped", "/tick")
    later = wait_until(lambda: (t := next_fire(srv, "ticker-stopped", "/tick")) > first and t, 30, 0.1, "a tick")
    wait_until(lambda: next_fire(srv, "ticker-stopped", "/tick") > later, 30, 0.1, "another tick")
    assert len(jobs_of(srv, "ticker-stopped", "/tick")) == count


def variant(tmp_path: Path, old: str, new: str) -> Path:
    """The test service with one line changed."""
    text = APP.read_text()
    assert old in text
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "app.py"
    out.write_text(text.replace(old, new))
    return out


def test_a_redeploy_keeps_declared_schedules_and_drops_undeclared_ones(srv: PodiumServer, tmp_path: Path) -> None:
    srv.deploy(APP, "ticker-redeploy")
    srv.cli("schedules", "add", "ticker-redeploy", "/echo", "--every", "1h")
    srv.cli("schedules", "pause", "ticker-redeploy", "/tick")
    # Another version that still declares both: both stay, /tick still paused.
    v2 = variant(tmp_path / "v2", 'return {"value": value', 'return {"v": 2, "value": value')
    ep = srv.deploy(v2, "ticker-redeploy")
    wait_until(
        lambda: srv.http.get("/api/v1/endpoints/ticker-redeploy").json()["version"] == ep["version"],
        60,
        0.1,
        "the second version to be current",
    )
    kept = schedules(srv, "ticker-redeploy")
    assert set(kept) == {"/tick", "/nightly", "/echo"} and kept["/tick"]["paused"] is True

    # A version whose code no longer schedules /tick: its schedule goes, the operator's stays.
    v3 = variant(
        tmp_path / "v3",
        '@init.endpoint("/tick", schedule=podium.every(seconds=1), schedule_input={"tag": "every"})',
        '@init.endpoint("/tick")',
    )
    ep = srv.deploy(v3, "ticker-redeploy")
    wait_until(lambda: "/tick" not in schedules(srv, "ticker-redeploy"), 60, 0.1, "/tick's schedule to go")
    assert set(schedules(srv, "ticker-redeploy")) == {"/nightly", "/echo"}


class Engine:
    """The fire path on a real store, without a server: two schedulers stand for two leaders."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.clock = Clock()
        self.catalog = Catalog(store, self.clock)
        self.queue = JobQueue(store, box=SecretBox(Fernet.generate_key()))
        self.calls = Calls(self.queue, self.catalog, Access(self.catalog), Metrics(), max_attempts=3)
        self.table = Schedules(store, self.clock)

    def scheduler(self) -> Scheduler:
        return Scheduler(self.table, self.catalog, self.calls, self.queue, self.clock)


ROUTE: dict[str, Any] = {
    "path": "/nightly",
    "method": "nightly",
    "kind": "route",
    "streaming": False,
    "is_async": False,
    "params": [],
    "var_keyword": False,
}
VERSION = {
    "id": "v1",
    "sha256": "0" * 64,
    "service": "ticker",
    "entry": "app.py",
    "routes": [ROUTE],
    "config": {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 1},
    "size": 1,
}


async def test_two_leaders_that_read_the_same_tick_fire_it_once(store: Store) -> None:
    """1. A schedule is due. 2. Leader A reads it, then leader B reads the same tick. 3. A fires.
    4. B fires from what it read. Result: one job; B's job is not stored (its guard found the
    tick moved on), on SQLite and on PostgreSQL."""
    engine = Engine(store)
    project = await engine.catalog.ensure_project("default")
    version = await engine.catalog.put_version(project, VERSION)
    ep, _ = await engine.catalog.point_endpoint(project, "ticker", version, key_id=None, message=None)
    definition = spec(cron="0 3 * * *", every=None, timezone="Europe/Rome")
    assert await engine.table.add(project, ep.id, "/nightly", definition, source="api", next_fire_at=1.0)
    (seen_by_a,) = await engine.table.find(endpoint_id=ep.id)
    (seen_by_b,) = await engine.table.find(endpoint_id=ep.id)
    a, b = engine.scheduler(), engine.scheduler()
    now = engine.clock.now()
    await a._fire(seen_by_a, ep, now)
    await b._fire(seen_by_b, ep, now)
    jobs = await engine.queue.find(project, endpoint_id=ep.id)
    assert len(jobs) == 1 and jobs[0].kind == "schedule"
    (after,) = await engine.table.find(endpoint_id=ep.id)
    assert after.last_job_id == jobs[0].id and after.next_fire_at > now and after.skipped == 0


async def test_a_leader_that_read_a_schedule_before_it_was_paused_does_not_fire_it(store: Store) -> None:
    """1. A due schedule is read by the leader. 2. An operator pauses it. 3. The leader fires
    from what it read. Result: no job."""
    engine = Engine(store)
    project = await engine.catalog.ensure_project("default")
    version = await engine.catalog.put_version(project, VERSION)
    ep, _ = await engine.catalog.point_endpoint(project, "ticker", version, key_id=None, message=None)
    definition = spec(cron=None, every=60.0)
    assert await engine.table.add(project, ep.id, "/nightly", definition, source="api", next_fire_at=1.0)
    (read,) = await engine.table.find(endpoint_id=ep.id)
    await engine.scheduler().pause(ep, "/nightly")
    await engine.scheduler()._fire(read, ep, engine.clock.now())
    assert await engine.queue.find(project, endpoint_id=ep.id) == []


def test_a_restart_right_after_a_fire_does_not_fire_that_tick_again(server_factory: Any) -> None:
    """1. A cron schedule is made due. 2. The leader fires it. 3. The server is killed at once
    (SIGKILL) and started again. Result: the tick's one job, and no second one, once the new
    leader has ticked (its every-second schedule fired again)."""
    server = server_factory()
    server.deploy(APP, "ticker")
    make_due(server, "ticker", "/nightly", 1)
    wait_until(lambda: last_job_id(server, "ticker", "/nightly"), 60, 0.05, "the fire")
    server.stop(signal.SIGKILL)
    server.start()
    tick = last_job_id(server, "ticker", "/tick")
    tick = fired_after(server, "ticker", "/tick", tick)["last_job"]["id"]
    fired_after(server, "ticker", "/tick", tick)
    assert len(jobs_of(server, "ticker", "/nightly")) == 1


def test_the_console_lists_an_endpoints_schedules_and_pauses_one(srv: PodiumServer) -> None:
    fired_after(srv, "ticker", "/tick", None)
    with httpx.Client(base_url=srv.url, follow_redirects=True, timeout=30) as browser:
        csrf = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console/login").text)
        assert csrf is not None
        browser.post("/console/login", data={"csrf": csrf.group(1), "api_key": srv.key})
        page = browser.get("/console/endpoints/ticker").text
        assert 'id="schedules"' in page and "0 3 * * * (Europe/Rome)" in page and "every 1s" in page
        token = re.search(r'name="csrf" value="([^"]+)"', page)
        assert token is not None
        r = browser.post(
            "/console/endpoints/ticker/schedules/pause", data={"csrf": token.group(1), "route": "/nightly"}
        )
        assert r.status_code == 200 and "is paused" in r.text
        assert schedules(srv, "ticker")["/nightly"]["paused"] is True
        assert "Resume the schedule of /nightly" in browser.get("/console/endpoints/ticker").text
        browser.post("/console/endpoints/ticker/schedules/resume", data={"csrf": token.group(1), "route": "/nightly"})
    assert schedules(srv, "ticker")["/nightly"]["paused"] is False


def test_a_runpod_worker_file_is_scheduled_at_its_route_slash_with_the_jobs_input(srv: PodiumServer) -> None:
    srv.deploy(SERVICES / "rpw" / "echo.py", "rp-echo")
    srv.cli("schedules", "add", "rp-echo", "/", "--every", "1s", "--input", '{"hi": 1}')
    try:
        fired = fired_after(srv, "rp-echo", "/", None)
        job = srv.job(fired["last_job"]["id"])
        assert job["status"] == "COMPLETED" and job["output"]["echo"] == {"hi": 1}
    finally:
        srv.cli("schedules", "rm", "rp-echo", "/")
    assert schedules(srv, "rp-echo") == {}


def test_the_sdk_records_a_routes_schedule_and_refuses_one_it_cannot_use() -> None:
    svc = podium.Service(None, name="sdk-ticker")

    @svc.endpoint("/refresh", schedule="*/15 * * * *", timezone="Europe/Rome", schedule_input={"full": True})
    def refresh(full: bool = False) -> bool:
        return full

    (route,) = svc.route_table()
    assert route["schedule"] == {
        "cron": "*/15 * * * *",
        "timezone": "Europe/Rome",
        "overlap": False,
        "input": {"full": True},
    }
    for kwargs, named in (
        ({"schedule": "0 25 * * *"}, "0 25 * * *"),
        ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "Mars/Olympus"),
        ({"schedule": podium.every(seconds=30), "timezone": "Nowhere"}, "Nowhere"),
        ({"schedule_input": {"full": True}}, "need a schedule="),
    ):
        with pytest.raises(podium.ServiceDefinitionError, match=re.escape(named)):
            svc.endpoint("/other", **kwargs)
    with pytest.raises(Exception, match="at least 1 s"):
        podium.every(seconds=0.5)


def test_the_python_client_adds_lists_pauses_resumes_and_removes(srv: PodiumServer) -> None:
    d = podium.get_deployment("ticker", url=srv.url, api_key=srv.key)
    added = d.add_schedule("/echo", every="2h", input={"value": 5})
    assert (added["route"], added["every"], added["input"], added["source"]) == ("/echo", 7200, {"value": 5}, "api")
    assert "/echo" in {s["route"] for s in d.schedules()}
    assert d.pause_schedule("/echo")["paused"] is True
    assert d.resume_schedule("/echo")["paused"] is False
    with pytest.raises(podium.APIError, match="has a schedule already"):
        d.add_schedule("/echo", cron="0 3 * * *")
    d.remove_schedule("/echo")
    assert "/echo" not in {s["route"] for s in d.schedules()}
    with pytest.raises(podium.APIError, match="no schedule on /echo"):
        d.pause_schedule("/echo")


def test_a_schedules_jobs_post_their_final_status_to_its_webhook(srv: PodiumServer) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        refused = srv.http.post(
            "/api/v1/endpoints/ticker/schedules", json={"route": "/echo", "every": 1, "webhook": "file:///etc/passwd"}
        )
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_webhook"
        srv.cli("schedules", "add", "ticker", "/echo", "--every", "1s", "--input", '{"value": 8}', "--webhook", url)
        fired = fired_after(srv, "ticker", "/echo", None)
        assert fired["webhook"] == url
        job = fired["last_job"]["id"]
        body = wait_until(lambda: next((b for b in received if b["id"] == job), None), 30, 0.1, "the delivery")
        assert body["status"] == "COMPLETED" and body["output"]["value"] == 8
    finally:
        srv.cli("schedules", "rm", "ticker", "/echo")
        httpd.shutdown()


def test_a_workers_environment_without_cronsim_still_loads_a_cron_route(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's environment (built from the service's requirements) has Podium's runtime
    packages only: declaring a cron schedule there must not need cronsim."""
    monkeypatch.setitem(sys.modules, "cronsim", None)  # `import cronsim` raises ModuleNotFoundError
    svc = podium.Service(None, name="no-cronsim")

    @svc.endpoint("/nightly", schedule="0 3 * * *", timezone="Europe/Rome")
    def nightly() -> None:
        pass

    assert svc.route_table()[0]["schedule"]["cron"] == "0 3 * * *"
