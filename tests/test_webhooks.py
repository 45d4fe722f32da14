"""Webhooks: a real receiver on loopback that fails, hangs or is down, against a real server."""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import SERVICES
from podium.signing import verify
from server import PodiumServer, free_port, wait_until

pytestmark = pytest.mark.slow

SECRET_S3 = "s3-secret-never-shown-0000"
QUICK = {"PODIUM_WEBHOOK_RETRY_DELAY": "0.3", "PODIUM_WEBHOOK_TIMEOUT": "1",
         "PODIUM_WEBHOOK_ALLOW_PRIVATE": "1"}  # the receiver is on loopback


class Receiver:
    """Answers each POST with the next status of `script` (the last one repeats); `hang` seconds
    of silence first, when set. Records every request."""

    def __init__(self, script: list[int], hang: float = 0.0, port: int | None = None) -> None:
        self.script = list(script)
        self.hang = hang
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((dict(self.headers.items()), body))
                if outer.hang:
                    time.sleep(outer.hang)
                code = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    # Unboxed: a test blocks its worker on a marker file under tmp_path, which a sandboxed worker
    # cannot see.
    srv = PodiumServer(tmp_path_factory.mktemp("hooks"), env={**QUICK, "PODIUM_SANDBOX": "off"})
    srv.start()
    try:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        secret = srv.cli("webhook-secret").stdout.strip()
        yield srv, eid, secret
    finally:
        srv.close()


def deliveries(srv: PodiumServer, job_id: str, state: str) -> list[dict]:
    def done():
        hooks = srv.job(job_id)["webhooks"]
        return hooks if hooks and hooks[0]["state"] == state else None

    return wait_until(done, 20, what=f"webhook {state}")


def test_failed_deliveries_are_retried_with_the_same_signed_body(hooks):
    srv, eid, secret = hooks
    rx = Receiver([500, 503, 200])
    try:
        r = srv.http.post(f"/v2/{eid}/run", json={
            "input": {"value": 7}, "webhook": rx.url,
            "s3Config": {"accessId": "id", "accessSecret": SECRET_S3, "bucketName": "b",
                         "endpointUrl": "http://127.0.0.1:9"},
        })
        job_id = r.json()["id"]
        [hook] = deliveries(srv, job_id, "delivered")
    finally:
        rx.close()
    assert [a["status_code"] for a in hook["attempts"]] == [500, 503, 200]
    bodies = {body for _, body in rx.requests}
    assert len(rx.requests) == 3 and len(bodies) == 1
    headers, body = rx.requests[-1]
    assert verify(secret, headers, body)
    assert not verify("whsec_wrong", headers, body)
    assert not verify(secret, headers, body + b" ")
    sent = json.loads(body)
    assert sent["id"] == job_id and sent["status"] == "COMPLETED"
    assert sent["output"]["value"] == 7 and sent["input"] == {"value": 7} and sent["webhook"] == rx.url
    assert {"delayTime", "executionTime"} <= set(sent)
    assert SECRET_S3 not in body.decode()
    assert len({h["X-Podium-Delivery"] for h, _ in rx.requests}) == 1
    shown = srv.cli("jobs", "show", job_id).stdout
    assert "delivered" in shown and "503" in shown


def test_failed_and_cancelled_jobs_are_delivered_too(hooks, tmp_path):
    srv, eid, _ = hooks
    rx = Receiver([200])
    try:
        failed = srv.http.post(f"/v2/{eid}/run", json={"input": {"fail": "boom"}, "webhook": rx.url}).json()["id"]
        marker = str(tmp_path / "block")
        blocker = srv.http.post(f"/v2/{eid}/run", json={"input": {"marker": marker, "block": True}}).json()["id"]
        wait_until(lambda: (tmp_path / "block.started").exists(), what="blocker")
        queued = srv.http.post(f"/v2/{eid}/run", json={"input": {}, "webhook": rx.url}).json()["id"]
        srv.http.post(f"/v2/{eid}/cancel/{queued}")
        (tmp_path / "block.release").touch()
        srv.wait_job(blocker)
        deliveries(srv, failed, "delivered")
        deliveries(srv, queued, "delivered")
    finally:
        rx.close()
    statuses = {json.loads(b)["id"]: json.loads(b)["status"] for _, b in rx.requests}
    assert statuses == {failed: "FAILED", queued: "CANCELLED"}
    assert "boom" in json.loads(next(b for _, b in rx.requests if json.loads(b)["id"] == failed))["error"]


def test_a_receiver_that_never_answers_in_time_fails_after_three_attempts(hooks):
    srv, eid, _ = hooks
    rx = Receiver([200], hang=2.0)  # the timeout is 1 s
    try:
        job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {}, "webhook": rx.url}).json()["id"]
        [hook] = deliveries(srv, job_id, "failed")
    finally:
        rx.close()
    assert hook["tries"] == 3
    assert all("Timeout" in a["error"] for a in hook["attempts"])


def test_bad_webhook_urls_are_refused(hooks):
    srv, eid, _ = hooks
    for bad in ("ftp://x/y", "not a url", 42):
        r = srv.http.post(f"/v2/{eid}/run", json={"input": {}, "webhook": bad})
        assert r.status_code == 400 and r.json()["error"] == "invalid_webhook"


def test_deliveries_survive_a_server_crash(tmp_path):
    port = free_port()
    srv = PodiumServer(tmp_path / "home", env={**QUICK, "PODIUM_WEBHOOK_RETRY_DELAY": "2"})
    srv.start()
    rx = None
    try:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        url = f"http://127.0.0.1:{port}/hook"  # nothing listens yet: connection refused
        job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 1}, "webhook": url}).json()["id"]
        wait_until(lambda: srv.job(job_id)["webhooks"][0]["tries"] >= 1, what="first attempt")
        srv.stop(signal.SIGKILL)
        rx = Receiver([200], port=port)
        srv.start()
        [hook] = deliveries(srv, job_id, "delivered")
        assert "error" in hook["attempts"][0] and hook["attempts"][-1]["status_code"] == 200
        assert json.loads(rx.requests[-1][1])["output"]["value"] == 1
    finally:
        srv.close()
        if rx is not None:
            rx.close()


def test_the_webhook_secret_is_for_admins_only(hooks):
    srv, _, secret = hooks
    invoke = srv.http.post("/api/v1/keys", json={"role": "invoke"}).json()["key"]
    r = httpx.get(f"{srv.url}/api/v1/webhook-secret", headers={"Authorization": invoke})
    assert r.status_code == 403 and secret not in r.text


def test_private_webhook_targets_are_refused_by_default(tmp_path):
    srv = PodiumServer(tmp_path / "home")
    srv.start()
    try:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data",
                    "http://localhost/x", "http://[::1]/x", "http://10.0.0.8/x"):
            r = srv.http.post(f"/v2/{eid}/run", json={"input": {}, "webhook": url})
            assert r.status_code == 400 and r.json()["error"] == "invalid_webhook", (url, r.text)
            assert "PODIUM_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"]
    finally:
        srv.close()
