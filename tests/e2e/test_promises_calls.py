"""Promises about calls, each checked against a real server on SQLite and on PostgreSQL
(docs/index.md, docs/guides/runpod.md, docs/concepts/jobs.md and versions.md):

- the server never imports your code: only the deploying side and the workers do;
- `/status` of a running job holds its answer (up to 50 ms), so a client polling in a loop costs a
  request or two per job: the requests are counted by the server;
- results stay readable 30 min after `/run` and 1 min after `/runsync`, and an Idempotency-Key
  holds 24 h: with the server's default settings, the store's clock for a job (or key) is moved
  to just inside and just past each, and the server's answers change at that line;
- a redeploy or a rollback drops no call: clients keep calling through both."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from podium.config import Settings
from podium.dispatch.submit import IDEMPOTENCY_SECONDS
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

SERVICE = """
import os
import sys
import time

import podium

with open({marker!r}, "a") as f:  # who imports this module: a line per process
    f.write(f"{{os.getpid()}} {{os.getppid()}} {{' '.join(sys.argv)}}\\n")

VERSION = {version!r}


@podium.service(name="calls", max_workers=2)
def init():
    return {{}}


@init.endpoint("/work", default=True)
def work(sleep=0.0, release=""):
    time.sleep(sleep)
    while release and not os.path.exists(release):
        time.sleep(0.02)
    return {{"version": VERSION, "pid": os.getpid()}}
"""


class Calls:
    """The module's server, its `calls` endpoint, and the marker its bundles write on import."""

    def __init__(self, srv: PodiumServer, root: Path, url: str) -> None:
        self.srv, self.root, self.url = srv, root, url
        self.marker = root / "imported"
        self.versions: dict[str, str] = {}

    def deploy(self, version: str) -> str:
        code = self.root / version / "app.py"
        code.parent.mkdir(exist_ok=True)
        code.write_text(SERVICE.format(marker=str(self.marker), version=version))
        self.versions[version] = self.srv.deploy(code.parent, "calls")["version"]
        return self.versions[version]

    def run(self, **inp: Any) -> dict[str, Any]:
        done = self.srv.http.post("/v2/calls/runsync", json={"input": inp})
        assert done.status_code == 200 and done.json()["status"] == "COMPLETED", done.text
        return done.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def calls(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Calls]:
    home = tmp_path_factory.mktemp(f"calls-{request.param}")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"calls{secrets.token_hex(4)}")
    with PodiumServer(home, db_url=url) as srv:
        assert not {k for k in srv.env if k.startswith("PODIUM_RETENTION")}, "the defaults are under test"
        c = Calls(srv, tmp_path_factory.mktemp("calls-code"), url or f"sqlite:///{home / 'podium.db'}")
        c.deploy("one")
        yield c


def test_the_server_never_imports_your_code(calls: Calls) -> None:
    """Deploy, call, read the version every way the server shows it, restart the server, call
    again; the bundle's import wrote a line per process: the deploying CLI's and the workers'
    (children of the server), never a server's own."""
    srv = calls.srv
    assert srv.proc is not None
    version = calls.versions["one"]
    worker = calls.run()["output"]["pid"]
    for path in (
        "/api/v1/endpoints/calls",
        f"/api/v1/versions/{version}",
        "/calls/openapi.json",
        "/api/v1/endpoints/calls/versions",
        "/api/v1/endpoints/calls/history",
    ):
        assert srv.http.get(path).status_code == 200, path
    srv.cli("versions", "show", version)
    servers = {srv.proc.pid}
    srv.stop()  # and a restart, which recovers the endpoint and its workers
    srv.start()
    assert srv.proc is not None
    servers.add(srv.proc.pid)
    workers = {worker, calls.run()["output"]["pid"]}
    importers = [line.split(" ", 2) for line in calls.marker.read_text().splitlines()]
    pids = {int(pid) for pid, _, _ in importers}
    assert not servers & pids, importers
    assert workers <= pids, "the workers imported it"
    for pid, ppid, argv in importers:
        deployer = " deploy " in f" {argv} "
        assert deployer or int(ppid) in servers or int(pid) in workers, (pid, ppid, argv)


def runpod_gets(srv: PodiumServer) -> float:
    """GET requests the server answered on its RunPod surface (/status, /stream, /health)."""
    text = srv.http.get("/metrics").text
    pattern = r"^podium_http_requests_total\{([^}]*)\} (\S+)$"
    return sum(
        float(value)
        for labels, value in re.findall(pattern, text, re.MULTILINE)
        if 'surface="runpod"' in labels and 'method="GET"' in labels
    )


def test_a_client_polling_status_in_a_loop_costs_a_request_or_two_per_job(calls: Calls) -> None:
    """Jobs that run 30 ms, polled by a client that asks again the moment it has an answer: the
    server holds /status while the job runs, so it counts one or two of them per job, where a
    server answering at once would count many."""
    srv = calls.srv
    calls.run()  # a warm worker
    jobs, asked = 20, 0
    before = runpod_gets(srv)
    with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.key}"}, timeout=60) as client:
        for _ in range(jobs):
            job_id = client.post("/v2/calls/run", json={"input": {"sleep": 0.03}}).json()["id"]
            while True:
                asked += 1
                if client.get(f"/v2/calls/status/{job_id}").json()["status"] == "COMPLETED":
                    break
    counted = runpod_gets(srv) - before
    assert counted == asked, "the server counts what the client sent"
    assert counted <= 2 * jobs, f"{counted:.0f} status requests for {jobs} jobs"


def test_status_holds_a_running_job_only_so_long(calls: Calls, tmp_path: Path) -> None:
    """The hold is bounded: a job that runs on is answered IN_PROGRESS while it still runs."""
    srv = calls.srv
    release = tmp_path / "release"
    job_id = srv.http.post("/v2/calls/run", json={"input": {"release": str(release)}}).json()["id"]
    wait_until(lambda: srv.job(job_id)["status"] == "IN_PROGRESS", 60, what="the job to start")
    try:
        for _ in range(3):
            assert srv.http.get(f"/v2/calls/status/{job_id}", timeout=30).json()["status"] == "IN_PROGRESS"
    finally:
        release.write_text("")
    assert srv.wait_job(job_id)["status"] == "COMPLETED"


def _set(calls: Calls, sql: str, **values: Any) -> None:
    """Change one row in the server's store, behind its back (its clock for that row)."""
    engine = sa.create_engine(calls.url)
    try:
        with engine.begin() as conn:
            assert conn.execute(sa.text(sql), values).rowcount == 1, sql
    finally:
        engine.dispose()


def test_results_are_kept_30_min_after_run_and_1_min_after_runsync(calls: Calls) -> None:
    srv = calls.srv
    settings = Settings.from_env()
    assert (settings.retention_run, settings.retention_runsync) == (1800.0, 60.0)
    run_id = srv.http.post("/v2/calls/run", json={"input": {}}).json()["id"]
    srv.wait_job(run_id)
    runsync_id = calls.run()["id"]
    for job_id, keep in ((run_id, 1800.0), (runsync_id, 60.0)):
        _set(calls, "UPDATE jobs SET finished_at = :t WHERE id = :id", t=time.time() - keep + 10, id=job_id)
        assert srv.http.get(f"/v2/calls/status/{job_id}").json()["status"] == "COMPLETED", "still kept"
        _set(calls, "UPDATE jobs SET finished_at = :t WHERE id = :id", t=time.time() - keep - 10, id=job_id)
        assert srv.http.get(f"/v2/calls/status/{job_id}").status_code == 404, "gone once its retention is over"


def test_an_idempotency_key_holds_24_hours(calls: Calls) -> None:
    srv = calls.srv
    assert IDEMPOTENCY_SECONDS == 24 * 3600
    key = {"Idempotency-Key": "promise-24h"}
    first = srv.http.post("/v2/calls/run", json={"input": {}}, headers=key).json()["id"]
    moved = "UPDATE idempotency_keys SET created_at = :t WHERE key = :k"
    _set(calls, moved, t=time.time() - 86400 + 10, k="promise-24h")
    assert srv.http.post("/v2/calls/run", json={"input": {}}, headers=key).json()["id"] == first
    _set(calls, moved, t=time.time() - 86400 - 10, k="promise-24h")
    again = srv.http.post("/v2/calls/run", json={"input": {}}, headers=key)
    assert again.status_code == 200 and again.json()["id"] != first, again.text


class Stream:
    """Clients calling in a loop, each on its own connection, half of them /runsync and half the
    route; every answer recorded with when it was sent."""

    def __init__(self, srv: PodiumServer, clients: int) -> None:
        self.srv = srv
        self.answers: list[tuple[float, str | None, str]] = []  # (sent at, version, what went wrong)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, args=(n % 2 == 0,)) for n in range(clients)]

    def _loop(self, runsync: bool) -> None:
        with httpx.Client(base_url=self.srv.url, headers={"Authorization": f"Bearer {self.srv.key}"}) as c:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    if runsync:
                        r = c.post("/v2/calls/runsync", json={"input": {"sleep": 0.05}}, timeout=120)
                        ok = r.status_code == 200 and r.json().get("status") == "COMPLETED"
                        output = r.json()["output"] if ok else None
                    else:
                        r = c.post("/calls/work", json={"sleep": 0.05}, timeout=120)
                        ok, output = r.status_code == 200, r.json()
                    self.answers.append((sent, output["version"] if ok else None, "" if ok else r.text))
                except (httpx.HTTPError, ValueError) as exc:
                    self.answers.append((sent, None, repr(exc)))

    def __enter__(self) -> Stream:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(150)

    def answered(self, version: str, since: float, count: int) -> bool:
        return sum(1 for sent, v, _ in list(self.answers) if sent >= since and v == version) >= count


def test_a_redeploy_and_a_rollback_drop_no_call(calls: Calls) -> None:
    srv = calls.srv
    calls.run()
    with Stream(srv, clients=4) as stream:
        wait_until(lambda: stream.answered("one", 0, 8), 60, 0.05, "calls to version one")
        two = calls.deploy("two")  # returns once `two` is current
        assert srv.http.get("/api/v1/endpoints/calls").json()["version"] == two
        switched = time.monotonic()
        wait_until(lambda: stream.answered("two", switched, 8), 60, 0.05, "calls to version two")
        rolling = time.monotonic()
        srv.cli("rollback", "calls", calls.versions["one"])
        rolled = time.monotonic()
        wait_until(lambda: stream.answered("one", rolled, 8), 60, 0.05, "calls to version one again")
    failed = [a for a in stream.answers if a[1] is None]
    assert failed == [], failed[:5]
    late = [a for a in stream.answers if switched <= a[0] < rolling and a[1] != "two"]
    assert late == [], "sent after the redeploy returned, answered by the old version"
    late = [a for a in stream.answers if a[0] >= rolled and a[1] != "one"]
    assert late == [], "sent after the rollback returned, answered by the version rolled away from"
    assert len(stream.answers) >= 24
