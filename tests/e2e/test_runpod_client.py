"""The real `runpod` client package (sync and asyncio) against a real Podium server."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
import runpod

from conftest import SERVICES
from server import wait_until

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


def test_a_queued_jobs_waiting_is_ignored_by_the_sdk(rp, tmp_path):
    """1. The only worker is busy: a second job queues, its /status says at_capacity with a
    detail and since. 2. RunPod's client reads that status as IN_QUEUE and, once the worker is
    free, the output, both clients unbothered by the extra field."""
    srv, ep, _ = rp
    busy, marker = blocker(srv, ep, tmp_path, "waits")
    try:
        queued = ep.run({"value": "queued"})
        raw = srv.http.get(f"/v2/{ep.endpoint_id}/status/{queued.job_id}").json()
        assert raw["status"] == "IN_QUEUE" and raw["waiting"]["reason"] == "at_capacity"
        assert raw["waiting"]["detail"] and isinstance(raw["waiting"]["since"], float)
        assert queued.status() == "IN_QUEUE"

        async def queue_async() -> tuple[str, Any]:
            import aiohttp

            async with aiohttp.ClientSession() as session:
                job = await runpod.AsyncioEndpoint(ep.endpoint_id, session, api_key=srv.key).run({"value": "aio"})
                status = await job.status()
                Path(marker + ".release").touch()
                return status, await job.output(timeout=30)

        status, out = asyncio.run(queue_async())
        assert status == "IN_QUEUE" and out["value"] == "aio"
    finally:
        Path(marker + ".release").touch()
    assert queued.output(timeout=30)["value"] == "queued"
    assert busy.output(timeout=30)["value"] is None


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


# -- /status-sync and paths under /v2/{endpoint}/ that are not operations -----------------------


def test_status_sync_of_a_running_job_answers_when_it_ends(rp, tmp_path):
    """1. A job blocks on the endpoint's only worker. 2. /status-sync goes out, held (wait=60 s).
    3. The job is released: the held request answers COMPLETED with /status's envelope."""
    srv, ep, _ = rp
    job, marker = blocker(srv, ep, tmp_path, "sync")
    answer: dict[str, Any] = {}
    url = f"/v2/{ep.endpoint_id}/status-sync/{job.job_id}?wait=60000"
    poll = threading.Thread(target=lambda: answer.update(srv.http.get(url, timeout=90).json()))
    poll.start()
    Path(marker + ".release").touch()
    poll.join(90)
    assert answer["status"] == "COMPLETED" and answer["id"] == job.job_id, answer
    assert answer["output"]["value"] is None and {"delayTime", "executionTime"} <= set(answer)


def test_status_sync_clamps_its_wait_into_runpods_range(rp, tmp_path):
    """A wait below 1000 ms is held 1000 ms and answers the job as it is; one above 90000 ms is
    taken too (RunPod clamps, it does not refuse); an unknown job is /status's 404."""
    srv, ep, _ = rp
    job, marker = blocker(srv, ep, tmp_path, "clamp")
    base = f"/v2/{ep.endpoint_id}/status-sync/{job.job_id}"
    try:
        for wait in (0, -5, 999):
            r = srv.http.get(f"{base}?wait={wait}")
            assert r.status_code == 200 and r.json()["status"] == "IN_PROGRESS", r.text
    finally:
        Path(marker + ".release").touch()
    r = srv.http.get(f"{base}?wait=100000000")
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
    missing = srv.http.get(f"/v2/{ep.endpoint_id}/status-sync/nosuchjob?wait=1000")
    assert (
        missing.status_code == 404 and missing.json() == srv.http.get(f"/v2/{ep.endpoint_id}/status/nosuchjob").json()
    )


def test_a_path_under_v2_that_is_no_operation_names_the_operation(rp):
    srv, ep, _ = rp
    eid = ep.endpoint_id
    r = srv.http.get(f"/v2/{eid}/status-synk/abc")
    assert r.status_code == 404, r.text
    detail = r.json()["detail"]
    assert "no operation 'status-synk'" in detail and "status-sync" in detail and "'v2'" not in detail
    r = srv.http.post(f"/v2/{eid}/nosuch", json={"input": {}})
    assert r.status_code == 404 and "no operation 'nosuch'" in r.json()["detail"], r.text
    r = srv.http.get(f"/v2/{eid}/run")
    assert r.status_code == 405 and r.headers["allow"] == "POST" and "run is called with POST" in r.json()["detail"]
    r = srv.http.get(f"/v2/{eid}/status-sync/")
    assert r.status_code == 400 and r.json()["error"] == "missing_job_id", r.text
    # OpenAI-compatible paths belong to that surface: this rule does not claim them.
    r = srv.http.post(f"/v2/{eid}/openai/nosuch", json={})
    assert r.status_code == 404 and "no operation" not in r.text and "'v2'" not in r.text
