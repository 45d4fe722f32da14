"""Routes as jobs, and what /status says of a job that waits: a real server and real workers.

Any route of a service runs as an async job, either as a route call with `Prefer: respond-async`
(RFC 7240) or through /run and /runsync with `"route"` beside `input`; the job is then followed
like any RunPod job. A queued job waiting for a worker to start says so in its status, with a
Retry-After, and is held no longer than that; a running job's /status is held until it ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

import podium
from conftest import SERVICES
from podium.client.jobs import Endpoint, JobFailed
from podium.errors import APIError
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
#: A /status hold far longer than any request of these tests may take: a queued job's /status
#: answering at all shows it was not held.
HOLD = 60
ENV = {
    "PODIUM_STATUS_HOLD": str(HOLD),
    "PODIUM_WEBHOOK_RETRY_DELAY": "0.3",
    "PODIUM_WEBHOOK_ALLOW_PRIVATE": "1",  # the receiver is on loopback
}

COLD = """
import time
from pathlib import Path

import podium

GATE = Path({gate!r})


@podium.service(name="cold", min_workers=0, max_workers=1)
def init():
    while not GATE.exists():  # a cold start that lasts until the test opens the gate
        time.sleep(0.02)
    return {{}}


@init.endpoint("/echo", default=True)
def echo(value=None):
    return {{"value": value}}
"""


class Receiver:
    """A webhook receiver on loopback: answers 200, keeps each body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def body_of(self, job_id: str) -> dict[str, Any]:
        return wait_until(lambda: next((b for b in self.bodies if b["id"] == job_id), None), 20, what="the webhook")

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, str]]:
    """tests/services/basic as `basic`; its id."""
    with PodiumServer(tmp_path_factory.mktemp("routejobs"), env=ENV) as server:
        yield server, server.deploy(SERVICES / "basic", "basic")["endpoint_id"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def status(srv: PodiumServer, ep: str, job_id: str, timeout: float = 30) -> httpx.Response:
    r = srv.http.get(f"/v2/{ep}/status/{job_id}", timeout=timeout)
    assert r.status_code == 200, r.text
    return r


def final(srv: PodiumServer, ep: str, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: (b := status(srv, ep, job_id).json())["status"] in FINAL and b, 30, what="final")


ASYNC = {"Prefer": "respond-async"}


# -- a route call with Prefer: respond-async ---------------------------------------------------


def test_a_route_call_with_prefer_respond_async_answers_202_and_runs_as_a_job(srv):
    server, ep = srv
    r = server.http.post("/basic/hello", json={"name": "Ada"}, headers=ASYNC)
    assert r.status_code == 202, r.text
    assert r.headers["preference-applied"] == "respond-async"
    body = r.json()
    assert body["status"] == "IN_QUEUE" and set(body) == {"id", "status"}
    assert r.headers["location"] == f"/v2/{ep}/status/{body['id']}"
    done = final(server, ep, body["id"])
    assert done["status"] == "COMPLETED"
    assert done["output"] == "Hello, Ada! My favorite number is 42"
    # Other preferences beside it, in any case, in a list or a header of their own.
    again = server.http.post("/basic/hello", json={}, headers={"Prefer": "wait=5, Respond-Async; x=1"})
    assert again.status_code == 202 and again.headers["preference-applied"] == "respond-async"


def test_an_async_route_job_is_streamed_and_cancelled_like_any_job(srv, tmp_path):
    """1. A streaming route, submitted async, yields its first chunk and waits for a file.
    2. /stream gives that chunk while the job runs; after the file, the rest, each once.
    3. A blocking route submitted async is cancelled through /cancel."""
    server, ep = srv
    marker = str(tmp_path / "s")
    r = server.http.post("/basic/stream", json={"marker": marker, "items": 2}, headers=ASYNC)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    got: list[Any] = []

    def first_chunk() -> bool:
        got.extend(c["output"] for c in server.http.get(f"/v2/{ep}/stream/{job_id}").json()["stream"])
        return bool(got)

    wait_until(first_chunk, 30, what="the first chunk")
    assert got == ["first\n"]
    Path(f"{marker}.release").touch()
    assert final(server, ep, job_id)["status"] == "COMPLETED"
    rest = [c["output"] for c in server.http.get(f"/v2/{ep}/stream/{job_id}").json()["stream"]]
    assert rest == ["item 0\n", "item 1\n"]

    blocker = str(tmp_path / "b")
    r = server.http.post("/basic/work", json={"marker": blocker, "block": True}, headers=ASYNC)
    job_id = r.json()["id"]
    wait_until(lambda: Path(f"{blocker}.started.1").exists(), 30, what="the blocking job to start")
    assert server.http.post(f"/v2/{ep}/cancel/{job_id}").json()["status"] == "CANCELLED"
    assert status(server, ep, job_id).json()["status"] == "CANCELLED"


def test_an_async_route_call_is_checked_at_submit_and_takes_a_webhook(srv, receiver):
    server, ep = srv
    unknown = server.http.post("/basic/nosuch", json={}, headers=ASYNC)
    assert unknown.status_code == 404 and "/hello" in unknown.json()["detail"]
    bad = server.http.post("/basic/hello", json={"bogus": 1}, headers=ASYNC)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_arguments"
    not_url = server.http.post("/basic/hello", json={}, headers={**ASYNC, "X-Podium-Webhook": "ftp://x"})
    assert not_url.status_code == 400 and not_url.json()["error"] == "invalid_webhook"
    r = server.http.post("/basic/hello", json={"name": "Hook"}, headers={**ASYNC, "X-Podium-Webhook": receiver.url})
    hook = receiver.body_of(r.json()["id"])
    assert hook["status"] == "COMPLETED" and hook["output"] == "Hello, Hook! My favorite number is 42"


def test_the_same_idempotency_key_gives_the_same_async_job(srv):
    server, _ = srv
    headers = {**ASYNC, "Idempotency-Key": "route-async-1"}
    first = server.http.post("/basic/hello", json={"name": "Once"}, headers=headers)
    second = server.http.post("/basic/hello", json={"name": "Once"}, headers=headers)
    assert first.status_code == second.status_code == 202
    assert first.json()["id"] == second.json()["id"]


# -- /run and /runsync with a route ------------------------------------------------------------


def test_run_and_runsync_reach_a_named_route(srv, receiver):
    server, ep = srv
    r = server.http.post(f"/v2/{ep}/run", json={"input": {"name": "Bo"}, "route": "/hello", "webhook": receiver.url})
    assert r.status_code == 200 and r.json()["status"] == "IN_QUEUE"
    job_id = r.json()["id"]
    assert final(server, ep, job_id)["output"] == "Hello, Bo! My favorite number is 42"
    assert receiver.body_of(job_id)["output"] == "Hello, Bo! My favorite number is 42"
    sync = server.http.post(f"/v2/{ep}/runsync", json={"input": {"number": 7}, "route": "hello"})
    assert sync.json()["status"] == "COMPLETED"
    assert sync.json()["output"] == "Hello, world! My favorite number is 7"
    # Without a route, the default one (/work) as before.
    assert "pid" in server.http.post(f"/v2/{ep}/runsync", json={"input": {}}).json()["output"]


@pytest.mark.parametrize(
    ("body", "status_code", "error", "says"),
    [
        ({"input": {}, "route": "/nosuch"}, 404, "not_found", "/hello"),
        ({"input": {"bogus": 1}, "route": "/hello"}, 400, "invalid_arguments", "bogus"),
        ({"input": {}, "route": 3}, 400, "invalid_route", "route"),
        ({"input": {}, "route": "/"}, 400, "invalid_route", "route"),
    ],
)
def test_run_with_a_bad_route_or_arguments_is_refused_at_submit(srv, body, status_code, error, says):
    server, ep = srv
    for op in ("run", "runsync"):
        r = server.http.post(f"/v2/{ep}/{op}", json=body)
        assert r.status_code == status_code, r.text
        assert r.json()["error"] == error and says in r.json()["detail"]


# -- the Python client -------------------------------------------------------------------------


def test_the_python_clients_submit_routes_as_jobs(srv):
    server, _ = srv
    with Endpoint("basic", url=server.url, api_key=server.key) as ep:
        job = ep.run({"name": "Cy"}, route="/hello")
        assert job.output(timeout=30) == "Hello, Cy! My favorite number is 42"
        assert ep.run_sync({"name": "Di"}, route="/hello", timeout=30) == "Hello, Di! My favorite number is 42"
        with pytest.raises(JobFailed):
            ep.run({"message": "no"}, route="/fail").output(timeout=30)
        with pytest.raises(APIError) as info:
            ep.run({}, route="/nosuch")
        assert info.value.status_code == 404
    d = podium.get_deployment("basic", url=server.url, api_key=server.key)
    job = d.hello.submit(name="Ed")
    assert job.status() in {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert job.output(timeout=30) == "Hello, Ed! My favorite number is 42"
    assert d.hello(name="Fa") == "Hello, Fa! My favorite number is 42"  # the plain call is unchanged
    with pytest.raises(APIError) as info:
        d.hello.submit(bogus=1)
    assert info.value.status_code == 400


# -- /status of a job that waits ---------------------------------------------------------------


def test_a_job_behind_a_cold_start_says_it_waits_for_a_worker_and_is_not_held(srv, tmp_path):
    """1. Deploy a service whose initializer waits for a file; its first worker is starting.
    2. /run a job: /status answers IN_QUEUE with `waiting` and a Retry-After, RunPod's fields as
       they were, held no longer than that (not the 60 s hold of a running job).
    3. Open the gate: the job completes, and its status has no `waiting` any more."""
    server, _ = srv
    gate = tmp_path / "gate"
    app = tmp_path / "cold" / "app.py"
    app.parent.mkdir()
    app.write_text(COLD.format(gate=str(gate)))
    ep = server.cli("deploy", str(app), "--name", "cold", "--json", "--no-wait")
    ep_id = json.loads(ep.stdout)["endpoint_id"]
    try:
        job_id = server.http.post(f"/v2/{ep_id}/run", json={"input": {"value": 1}}).json()["id"]
        before = time.time()
        r = wait_until(lambda: (a := status(server, ep_id, job_id, timeout=HOLD / 4)).json().get("waiting") and a, 30)
        body = r.json()
        assert body["status"] == "IN_QUEUE"
        assert body["waiting"]["reason"] == "starting" and "cold start" in body["waiting"]["detail"]
        assert body["waiting"]["since"] <= before + 1
        assert int(r.headers["retry-after"]) >= 1
        assert {"id", "status", "delayTime", "executionTime"} <= set(body) and "output" not in body
        # /runsync's answer for a job still queued when its wait ends says the same.
        sync = server.http.post(f"/v2/{ep_id}/runsync?wait=1000", json={"input": {"value": 2}}).json()
        assert sync["status"] == "IN_QUEUE" and sync["waiting"]["reason"] == "starting"
    finally:
        gate.touch()
    done = final(server, ep_id, job_id)
    assert done["status"] == "COMPLETED" and done["output"] == {"value": 1}
    assert "waiting" not in done


def test_a_running_jobs_status_is_still_held_until_it_ends(srv, tmp_path):
    """1. A job blocks on its worker. 2. A /status request goes out and is held.
    3. The job is released: the held request answers COMPLETED."""
    server, ep = srv
    marker = str(tmp_path / "h")
    job_id = server.http.post(f"/v2/{ep}/run", json={"input": {"marker": marker, "block": True}}).json()["id"]
    wait_until(lambda: Path(f"{marker}.started.1").exists(), 30, what="the job to start")
    answer: dict[str, Any] = {}
    poll = threading.Thread(target=lambda: answer.update(status(server, ep, job_id, timeout=HOLD * 2).json()))
    poll.start()
    Path(f"{marker}.release").touch()
    poll.join(HOLD * 2)
    assert answer["status"] == "COMPLETED" and "waiting" not in answer
