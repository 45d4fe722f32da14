"""The real `runpod` client package (sync and asyncio) against a real Podium server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import SERVICES
from server import wait_until

runpod = pytest.importorskip("runpod")
pytestmark = pytest.mark.slow

# Workers unboxed (PODIUM_SANDBOX=off): these tests hand workers marker files under tmp_path and
# signal them by the pid they report, neither of which a sandboxed worker shares
# (tests/e2e/test_sandbox.py covers the box).


@pytest.fixture(scope="module")
def rp(tmp_path_factory):
    from server import PodiumServer

    with PodiumServer(tmp_path_factory.mktemp("rp-home")) as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        sid = srv.deploy(SERVICES / "rpstream.py", "rpstream")["endpoint_id"]
        runpod.endpoint_url_base = f"{srv.url}/v2"
        yield srv, runpod.Endpoint(eid, api_key=srv.key), runpod.Endpoint(sid, api_key=srv.key)


def blocker(srv, ep, tmp_path: Path, name: str):
    """Occupy the endpoint's only worker with a job that waits for `<marker>.release`."""
    marker = str(tmp_path / name)
    job = ep.run({"marker": marker, "block": True})
    wait_until(lambda: Path(marker + ".started").exists(), what="blocking job start")
    return job, marker


def test_run_sync_and_run_status_output(rp):
    _, ep, _ = rp
    assert ep.run_sync({"value": 1}, timeout=30)["value"] == 1
    job = ep.run({"value": 2})
    assert job.output(timeout=30)["value"] == 2
    assert job.status() == "COMPLETED"


def test_stream_returns_each_chunk_once(rp):
    _, _, stream_ep = rp
    job = stream_ep.run({"n": 4})
    assert list(job.stream()) == [{"i": i} for i in range(4)]


def test_failed_job_then_retry_with_the_same_id(rp):
    srv, ep, _ = rp
    job = ep.run({"fail": "nope"})
    wait_until(lambda: job.status() == "FAILED", what="FAILED")
    r = srv.http.post(f"/v2/{ep.endpoint_id}/retry/{job.job_id}")
    assert r.json() == {"id": job.job_id, "status": "IN_QUEUE"}
    final = srv.wait_job(job.job_id)
    assert final["status"] == "FAILED" and "nope" in final["error"]
    ok = ep.run({"value": 3})
    ok.output(timeout=30)
    again = srv.http.post(f"/v2/{ep.endpoint_id}/retry/{ok.job_id}")
    assert again.status_code == 400 and "COMPLETED" in again.json()["detail"]


def test_cancel_a_queued_job_it_never_runs(rp, tmp_path):
    srv, ep, _ = rp
    busy, marker = blocker(srv, ep, tmp_path, "busy")
    queued_marker = str(tmp_path / "queued")
    queued = ep.run({"marker": queued_marker})
    assert queued.cancel() == {"id": queued.job_id, "status": "CANCELLED"}
    Path(marker + ".release").touch()
    busy.output(timeout=30)
    assert ep.run_sync({"value": "after"}, timeout=30)["value"] == "after"
    assert not Path(queued_marker + ".started").exists()
    assert srv.job(queued.job_id)["status"] == "CANCELLED"


def test_cancel_a_running_job_stops_it_and_replaces_the_worker(rp, tmp_path):
    srv, ep, _ = rp
    running, marker = blocker(srv, ep, tmp_path, "running")
    assert running.cancel()["status"] == "CANCELLED"
    assert ep.run_sync({"value": "next"}, timeout=60)["value"] == "next"
    Path(marker + ".release").touch()
    assert srv.job(running.job_id)["status"] == "CANCELLED"


def test_purge_queue_removes_only_queued_jobs(rp, tmp_path):
    srv, ep, _ = rp
    busy, marker = blocker(srv, ep, tmp_path, "purge")
    queued = [ep.run({"value": i}) for i in range(3)]
    assert ep.purge_queue() == {"removed": 3, "status": "completed"}
    assert all(srv.job(j.job_id)["status"] == "CANCELLED" for j in queued)
    Path(marker + ".release").touch()
    assert busy.output(timeout=30)["value"] is None


def test_health(rp):
    _, ep, _ = rp
    health = ep.health()
    assert set(health["jobs"]) >= {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert set(health["workers"]) >= {"idle", "running"}
    assert health["jobs"]["completed"] >= 1


def test_wrong_key_is_the_sdks_401(rp):
    srv, ep, _ = rp
    bad = runpod.Endpoint(ep.endpoint_id, api_key="wrong")
    with pytest.raises(RuntimeError, match="401 Unauthorized"):
        bad.run({"value": 1})


def test_asyncio_endpoint(rp):
    import aiohttp

    srv, ep, stream_ep = rp

    async def main():
        async with aiohttp.ClientSession() as session:
            aep = runpod.AsyncioEndpoint(ep.endpoint_id, session, api_key=srv.key)
            job = await aep.run({"value": "async"})
            out = await job.output(timeout=30)
            assert out["value"] == "async" and await job.status() == "COMPLETED"
            health = await aep.health()
            assert "jobs" in health
            sjob = await runpod.AsyncioEndpoint(stream_ep.endpoint_id, session, api_key=srv.key).run({"n": 3})
            assert [c async for c in sjob.stream()] == [{"i": 0}, {"i": 1}, {"i": 2}]

    asyncio.run(main())
