"""What the README promises is on disk before its answer, seen through the HTTP surface.

The store counts its durable commits (`podium_store_flushes_total` in /metrics: SQLite's WAL
fsyncs, PostgreSQL's commits that waited for their WAL flush), so each promise is checked where it
is made: a `/run` is flushed before its 200, a `/runsync` whose result comes back inline is not
(its caller holds the answer; a crash runs the job again), one whose id goes out without the
result is, a stored result is before anyone is shown it, an admin write before its answer. On
SQLite and on PostgreSQL with fsync on. Then the promise itself: PostgreSQL killed (every process
at once, as a power cut would) right after the 200s of `/run`, restarted, holds every job.

Nothing else writes durably while these tests look: the server is idle between calls (its workers'
pings and leases are not durable writes), so the counter moves only by what the call did.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

#: Async commits stay in PostgreSQL's memory this long (its longest): a /run that did not wait for
#: its flush is lost to the kill below, not saved by the WAL writer first.
PG_SETTINGS = {"wal_writer_delay": "10000ms"}


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pgcluster import PgCluster, find_pg_bin

    if find_pg_bin() is None:
        pytest.skip("PostgreSQL is not installed (scripts/ensure-postgres.sh installs it)")
    with PgCluster(tmp_path_factory.mktemp("pg-fsync"), fsync=True, settings=PG_SETTINGS) as cluster:
        yield cluster


def flushes(srv: PodiumServer) -> float:
    text = srv.http.get("/metrics").raise_for_status().text
    found = re.search(r"^podium_store_flushes_total (\S+)$", text, re.M)
    assert found, "podium_store_flushes_total is in /metrics"
    return float(found.group(1))


def settled(srv: PodiumServer) -> float:
    """The flush count once nothing is flushing (a flush started by an earlier call may still be
    running): the same value read twice, a scrape apart."""
    last = [flushes(srv)]

    def same() -> bool:
        now = flushes(srv)
        stable, last[0] = now == last[0], now
        return stable

    wait_until(same, 10, interval=0.3, what="the flush count to settle")
    return last[0]


@pytest.fixture(params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path: Path, server_factory: Any) -> PodiumServer:
    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("pg").create_database(f"flush{abs(hash(request.node.name))}")
    server: PodiumServer = server_factory(tmp_path / "home", db_url=db_url)
    server.deploy(SERVICES / "rp.py", "rp")
    # A first call brings the worker up and warms every path.
    assert server.http.post("/v2/rp/runsync", json={"input": {"value": 0}}).json()["status"] == "COMPLETED"
    return server


def test_a_run_is_flushed_before_its_200_and_its_result_before_it_is_shown(srv: PodiumServer, tmp_path: Path) -> None:
    marker = str(tmp_path / "run")
    before = settled(srv)
    r = srv.http.post("/v2/rp/run", json={"input": {"marker": marker, "block": True, "value": 1}})
    assert r.status_code == 200, r.text
    accepted = flushes(srv)
    assert accepted > before, "the job was flushed before the 200 of /run"
    wait_until(lambda: Path(marker + ".started").exists(), 30, what="the job to start")
    running = settled(srv)
    Path(marker + ".release").touch()
    job = srv.wait_job(r.json()["id"])
    assert job["status"] == "COMPLETED" and job["output"]["value"] == 1
    assert flushes(srv) > running, "the stored result was flushed before /status showed it"


def test_a_runsync_answered_inline_is_not_flushed(srv: PodiumServer) -> None:
    before = settled(srv)
    for value in range(5):
        r = srv.http.post("/v2/rp/runsync", json={"input": {"value": value}})
        assert r.json()["status"] == "COMPLETED" and r.json()["output"]["value"] == value
    assert flushes(srv) == before, "a result handed to its waiting caller costs no flush"


def test_a_runsync_whose_id_goes_out_without_its_result_is_flushed(srv: PodiumServer, tmp_path: Path) -> None:
    marker = str(tmp_path / "slow")
    before = settled(srv)
    r = srv.http.post("/v2/rp/runsync?wait=1000", json={"input": {"marker": marker, "block": True, "value": 2}})
    assert r.json()["status"] in ("IN_QUEUE", "IN_PROGRESS"), r.text
    assert flushes(srv) > before, "the job was flushed before its id went out"
    Path(marker + ".release").touch()
    assert srv.wait_job(r.json()["id"])["status"] == "COMPLETED"


def test_an_admin_write_is_flushed_before_its_answer(srv: PodiumServer) -> None:
    before = settled(srv)
    r = srv.http.post("/api/v1/keys", json={"role": "invoke", "name": "durable"})
    assert r.status_code in (200, 201), r.text
    assert flushes(srv) > before, "the new key was flushed before its answer"


def test_accepted_runs_survive_postgresql_killed(pg: Any, tmp_path: Path, server_factory: Any) -> None:
    """kill -9 of every PostgreSQL process right after the 200s of /run, then a restart: every
    job accepted is there (read back through the same server, which replaces its cut connections)."""
    db_url = pg.create_database("crash")
    srv: PodiumServer = server_factory(tmp_path / "home", db_url=db_url)
    srv.deploy(SERVICES / "rp.py", "rp")
    marker = str(tmp_path / "hold")
    # The worker holds the first job, so the others stay queued: only their insert stores them.
    ids = [srv.http.post("/v2/rp/run", json={"input": {"marker": marker, "block": True}}).json()["id"]]
    wait_until(lambda: Path(marker + ".started").exists(), 30, what="the first job to start")
    for value in range(20):
        r = srv.http.post("/v2/rp/run", json={"input": {"value": value}})
        assert r.status_code == 200, r.text
        ids.append(r.json()["id"])
    pg.kill()
    pg.restart()
    Path(marker + ".release").touch()

    def found(job_id: str) -> bool:
        try:
            r = srv.http.get(f"/v2/rp/status/{job_id}")
        except httpx.HTTPError:
            return False
        assert r.status_code in (200, 503), f"{job_id}: {r.status_code} {r.text}"
        return r.status_code == 200

    for job_id in ids:
        wait_until(lambda job_id=job_id: found(job_id), 30, interval=0.2, what=f"job {job_id} after the restart")
    for job_id in ids:
        assert srv.wait_job(job_id, timeout=60)["status"] == "COMPLETED"
