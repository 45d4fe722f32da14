"""Calls through a real server and real worker processes: RunPod surface, route calls, streaming."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import pytest

import podium
from server import wait_until

pytestmark = pytest.mark.slow


def test_runsync_runs_the_default_route_with_initializer_state(basic):
    srv, ep = basic
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {"value": 5}})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "COMPLETED"
    assert body["output"]["value"] == 5 and body["output"]["inits"] == 1
    assert body["output"]["job"] == body["id"]
    assert isinstance(body["delayTime"], int) and isinstance(body["executionTime"], int)


def test_run_then_poll_status(basic, tmp_path):
    srv, ep = basic
    marker = str(tmp_path / "m")
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"marker": marker, "block": True}})
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"
    job_id = r.json()["id"]
    wait_until(lambda: Path(f"{marker}.started.1").exists(), what="job start")
    status = srv.http.get(f"/v2/{ep['endpoint_id']}/status/{job_id}").json()
    assert status["status"] == "IN_PROGRESS"
    Path(f"{marker}.release").touch()
    done = wait_until(
        lambda: (s := srv.http.get(f"/v2/{ep['endpoint_id']}/status/{job_id}").json())["status"] == "COMPLETED" and s,
        what="COMPLETED",
    )
    assert done["output"]["attempt"] == 1


def test_route_call_uses_initializer_defaults_and_caller_overrides(basic):
    srv, ep = basic
    by_id = srv.http.post(f"/{ep['endpoint_id']}/hello", json={})
    assert by_id.status_code == 200
    assert by_id.json() == "Hello, world! My favorite number is 42"
    by_name = srv.http.post("/basic/hello", json={"number": 7, "name": "Ada"})
    assert by_name.json() == "Hello, Ada! My favorite number is 7"
    # The seed's curl sends no Content-Type: the body is read as JSON anyway.
    raw = srv.http.post("/basic/hello", content=b'{"greeting": "Hi"}', headers={"Content-Type": ""})
    assert raw.json() == "Hi, world! My favorite number is 42"


def test_progress_shows_as_output_while_in_progress(basic, tmp_path):
    srv, ep = basic
    marker = str(tmp_path / "p")
    result: dict[str, object] = {}
    t = threading.Thread(target=lambda: result.update(r=srv.http.post("/basic/progress", json={"marker": marker})))
    t.start()
    job = wait_until(lambda: next((j for j in _jobs_with_progress(srv, ep)), None), what="progress update")
    assert job["output"] == {"step": 1} and job["status"] == "IN_PROGRESS"
    Path(f"{marker}.release").touch()
    t.join(30)
    assert result["r"].json() == "done"  # type: ignore[union-attr]


def _jobs_with_progress(srv, ep):
    health = srv.http.get(f"/v2/{ep['endpoint_id']}/health").json()
    if not health["jobs"]["inProgress"]:
        return []
    ids = [w["jobs"] for w in srv.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}").json()["workers"]]
    out = []
    for job_id in (j for js in ids for j in js):
        s = srv.http.get(f"/v2/{ep['endpoint_id']}/status/{job_id}").json()
        if "output" in s:
            out.append(s)
    return out


def test_streaming_chunks_arrive_before_the_route_finishes(basic, tmp_path):
    """1. Call a streaming route that yields once, then waits for a file.
    2. Read the first chunk: it must arrive while the job is still IN_PROGRESS.
    3. Create the file: the rest arrives and the stream ends."""
    srv, ep = basic
    marker = str(tmp_path / "s")
    with srv.http.stream("POST", "/basic/stream", json={"marker": marker, "items": 2}) as r:
        assert r.status_code == 200
        chunks = r.iter_bytes()
        first = next(chunks)
        assert first == b"first\n"
        job_id = r.headers["x-podium-job-id"]
        assert srv.job(job_id)["status"] == "IN_PROGRESS"
        Path(f"{marker}.release").touch()
        rest = b"".join(chunks)
    assert rest == b"item 0\nitem 1\n"
    assert srv.job(job_id)["status"] == "COMPLETED"


def test_route_that_raises_gives_failed_with_its_message(basic):
    srv, _ = basic
    r = srv.http.post("/basic/fail", json={"message": "bad things"})
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "route_error" and body["type"] == "ValueError"
    assert "bad things" in body["message"] and "Traceback" in body["traceback"]
    job = srv.job(body["id"])
    assert job["status"] == "FAILED" and "bad things" in job["error"]


@pytest.mark.parametrize("status", [400, 403, 409, 422])
def test_route_raising_http_error_answers_its_status_without_traceback(basic, status):
    """1. A route raises podium.HTTPError(status, message).
    Result: the route call answers that status with the message and no traceback; the job is
    FAILED with that message, type and status, and its record holds no traceback either."""
    srv, ep = basic
    r = srv.http.post("/basic/fail", json={"message": "bad input: x", "status": status})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["detail"] == "bad input: x" and "traceback" not in body and "type" not in body
    job = srv.job(body["id"])
    assert job["status"] == "FAILED" and job["error"] == "bad input: x"
    assert job["error_info"] == {"type": "HTTPError", "message": "bad input: x", "status": status}
    assert job["attempt"] == 1  # answered, not retried


def test_route_not_found_reaches_the_python_client(basic):
    """podium.NotFound: 404 `not_found` on the route call, and the Python client's APIError with
    that status (not a RouteError)."""
    srv, _ = basic
    r = srv.http.post("/basic/item", json={"id": 2})
    assert r.status_code == 404 and r.json()["error"] == "not_found" and r.json()["detail"] == "no item 2"
    dep = podium.get_deployment("basic", url=srv.url, api_key=srv.key)
    with pytest.raises(podium.APIError) as exc:
        dep.item(id=2)
    assert exc.value.status_code == 404 and exc.value.detail == "no item 2"
    assert not isinstance(exc.value, podium.RouteError)
    assert dep.item(id=1) == {"id": 1}


def test_runsync_of_a_handler_raising_bad_request_reads_its_message(basic, tmp_path):
    """A RunPod-style handler raising podium.BadRequest: /runsync answers the job FAILED (RunPod's
    wire: 200) with the message as its error, and /status the same; no traceback anywhere."""
    srv, _ = basic
    (tmp_path / "strict.py").write_text(
        "import podium\n\n\ndef handler(job):\n"
        "    if 'x' not in job['input']:\n        raise podium.BadRequest('input needs x')\n"
        "    return job['input']['x']\n"
    )
    eid = srv.deploy(tmp_path / "strict.py", "strict")["endpoint_id"]
    r = srv.http.post(f"/v2/{eid}/runsync", json={"input": {}})
    assert r.status_code == 200 and r.json()["status"] == "FAILED" and r.json()["error"] == "input needs x", r.text
    status = srv.http.get(f"/v2/{eid}/status/{r.json()['id']}").json()
    assert status["error"] == "input needs x" and "Traceback" not in str(srv.job(r.json()["id"]))


def test_route_errors_show_tracebacks_to_deploy_keys_only(basic):
    """A route's unexpected exception: a deploy (here admin) key sees its traceback in the answer
    and the job record; an invoke key sees the type and message only (no server paths)."""
    srv, _ = basic
    invoke = srv.http.post("/api/v1/keys", json={"role": "invoke"}).json()["key"]
    r = srv.http.post("/basic/fail", json={"message": "oops"}, headers={"Authorization": f"Bearer {invoke}"})
    assert r.status_code == 500
    body = r.json()
    assert body["type"] == "ValueError" and body["message"] == "oops" and "traceback" not in body
    assert "/" not in r.text.replace(body["id"], "")  # no path of the server's or the worker's
    seen = srv.http.get(f"/api/v1/jobs/{body['id']}", headers={"Authorization": f"Bearer {invoke}"}).json()
    assert seen["error_info"] == {"type": "ValueError", "message": "oops"}
    assert "Traceback" in srv.job(body["id"])["error_info"]["traceback"]  # the admin key's view


def test_missing_route_argument_is_a_400(basic):
    srv, _ = basic
    r = srv.http.post("/basic/stream", json={})
    assert r.status_code == 400 and r.json()["error"] == "invalid_arguments"
    assert "marker" in r.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "error"),
    [
        ("POST", "/v2/{ep}/runsync", {"content": b'{"input": '}, 400, "invalid_json"),
        ("POST", "/v2/{ep}/runsync", {"json": {"prompt": "hi"}}, 400, "missing_input"),
        ("POST", "/v2/{ep}/run", {"json": {"input": [1, 2]}}, 400, "invalid_input"),
        ("POST", "/v2/{ep}/run", {"json": [1]}, 400, "invalid_request"),
        ("POST", "/v2/nosuchendpoint/runsync", {"json": {"input": {}}}, 404, "not_found"),
        ("GET", "/v2/{ep}/status/nosuchjob", {}, 404, "not_found"),
        ("POST", "/basic/nosuchroute", {"json": {}}, 404, "not_found"),
        ("POST", "/basic/hello", {"content": b"[1, 2]"}, 400, "invalid_request"),
        ("POST", "/basic/hello", {"json": {"bogus": 1}}, 400, "invalid_arguments"),
        ("POST", "/no/such/path/at/all", {"json": {}}, 404, "not_found"),
        ("GET", "/basic/hello", {}, 405, "method_not_allowed"),
        ("POST", "/v2/{ep}/runsync?wait=10", {"json": {"input": {}}}, 400, "invalid_wait"),
    ],
)
def test_bad_requests_get_clear_json_errors(basic, method, path, kwargs, status, error):
    srv, ep = basic
    r = srv.http.request(method, path.format(ep=ep["endpoint_id"]), **kwargs)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == error and r.json()["detail"]


def test_all_key_forms_are_accepted(basic):
    srv, ep = basic
    for headers in ({"Authorization": f"Bearer {srv.key}"}, {"Authorization": srv.key}, {"x-api-key": srv.key}):
        r = httpx.post(f"{srv.url}/basic/hello", json={}, headers=headers)
        assert r.status_code == 200, headers


def test_health_counts_real_jobs_and_workers(basic):
    srv, ep = basic
    h = srv.http.get(f"/v2/{ep['endpoint_id']}/health").json()
    assert h["jobs"]["completed"] >= 1 and h["jobs"]["failed"] >= 1
    assert h["workers"]["idle"] + h["workers"]["running"] >= 1


def test_same_content_deployed_twice_is_the_same_version(basic):
    srv, ep = basic
    again = srv.deploy(Path(__file__).parent.parent / "services" / "basic", "basic")
    assert again["version"] == ep["version"] and again["endpoint_id"] == ep["endpoint_id"]
