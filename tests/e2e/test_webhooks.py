"""Webhooks: a real receiver on loopback that fails, hangs or is down, against a real server."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conftest import SERVICES
from podium.config import Settings
from podium.server.webhooks import MAX_TRIES
from podium.signing import verify
from server import PodiumServer, free_port, wait_until

pytestmark = pytest.mark.slow

SECRET_S3 = "s3-secret-never-shown-0000"
QUICK = {
    "PODIUM_WEBHOOK_RETRY_DELAY": "0.3",
    "PODIUM_WEBHOOK_TIMEOUT": "1",
    "PODIUM_WEBHOOK_ALLOW_PRIVATE": "1",
}  # the receiver is on loopback


class Receiver:
    """Answers each POST with the next status of `script` (the last one repeats); `hang` seconds
    of silence first, when set. A `None` in the script holds its request unanswered until the
    receiver closes. Records every request."""

    def __init__(self, script: list[int | None], hang: float = 0.0, port: int | None = None) -> None:
        self.script = list(script)
        self.hang = hang
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.closing = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append((dict(self.headers.items()), body))
                if outer.hang:
                    time.sleep(outer.hang)
                code = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if code is None:
                    outer.closing.wait()
                    code = 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port or 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def hooks(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("hooks"), env=QUICK) as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        secret = srv.cli("webhook-secret").stdout.strip()
        yield srv, eid, secret


def deliveries(srv: PodiumServer, job_id: str, state: str) -> list[dict]:
    def done():
        hooks = srv.job(job_id)["webhooks"]
        return hooks if hooks and hooks[0]["state"] == state else None

    return wait_until(done, 20, what=f"webhook {state}")


def test_failed_deliveries_are_retried_with_the_same_signed_body(hooks):
    srv, eid, secret = hooks
    rx = Receiver([500, 503, 200])
    try:
        r = srv.http.post(
            f"/v2/{eid}/run",
            json={
                "input": {"value": 7},
                "webhook": rx.url,
                "s3Config": {
                    "accessId": "id",
                    "accessSecret": SECRET_S3,
                    "bucketName": "b",
                    "endpointUrl": "http://127.0.0.1:9",
                },
            },
        )
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


def test_deliveries_survive_a_server_crash(server_factory, tmp_path):
    """The promise: a failed delivery is retried twice, 10 s apart, each attempt given 10 s
    (the settings' defaults). Here both are shortened to `delay` and kept equal, so the ratios
    are checked: 1. the first attempt finds nothing listening; 2. the server is killed and
    restarted, and the receiver holds the second attempt past its time-out; 3. the third gets a
    200. Each attempt reaches the receiver exactly once, and each waits its delay (after the
    previous one's time-out) however long the crash took."""
    defaults = Settings.from_env()  # no PODIUM_WEBHOOK_* here: the defaults a server starts with
    assert (defaults.webhook_retry_delay, defaults.webhook_timeout, MAX_TRIES) == (10.0, 10.0, 3)
    delay = 1.5
    port = free_port()
    env = {**QUICK, "PODIUM_WEBHOOK_RETRY_DELAY": str(delay), "PODIUM_WEBHOOK_TIMEOUT": str(delay)}
    srv = server_factory(tmp_path / "home", env=env)
    rx = None
    try:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        url = f"http://127.0.0.1:{port}/hook"  # nothing listens yet: connection refused
        job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 1}, "webhook": url}).json()["id"]
        wait_until(lambda: srv.job(job_id)["webhooks"][0]["tries"] >= 1, what="first attempt")
        srv.stop(signal.SIGKILL)
        rx = Receiver([None, 200], port=port)
        srv.start()
        [hook] = deliveries(srv, job_id, "delivered")
    finally:
        if rx is not None:
            rx.close()
    first, second, third = hook["attempts"]
    assert hook["tries"] == 3 and "error" in first and "Timeout" in second["error"] and third["status_code"] == 200
    assert second["ms"] >= delay * 1000, "the second attempt had its whole time-out"
    assert second["at"] - first["at"] >= delay, "a retry waits its delay, even across a crash"
    assert third["at"] - second["at"] >= 2 * delay, "the time-out, then the delay"
    assert len(rx.requests) == 2, "the second and third attempts, each sent once"
    assert len({body for _, body in rx.requests}) == 1
    assert len({h["X-Podium-Delivery"] for h, _ in rx.requests}) == 1
    assert json.loads(rx.requests[-1][1])["output"]["value"] == 1


def test_the_webhook_secret_is_for_admins_only(hooks):
    srv, _, secret = hooks
    invoke = srv.http.post("/api/v1/keys", json={"role": "invoke"}).json()["key"]
    r = httpx.get(f"{srv.url}/api/v1/webhook-secret", headers={"Authorization": invoke})
    assert r.status_code == 403 and secret not in r.text


@pytest.fixture(scope="module")
def acme(hooks):
    """A second project on the same server, with its own endpoint and admin key."""
    srv, _, _ = hooks
    key = json.loads(srv.cli("projects", "create", "acme", "--json").stdout)["admin_key"]["key"]
    eid = json.loads(srv.cli("deploy", str(SERVICES / "rp.py"), "--name", "rp", "--json", "--key", key).stdout)[
        "endpoint_id"
    ]
    return key, eid


def delivered(srv: PodiumServer, eid: str, key: str) -> tuple[dict[str, str], bytes]:
    """The headers and body of one delivery of a job run on `eid` with `key`."""
    rx = Receiver([200])
    try:
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}"}) as c:
            job_id = c.post(f"/v2/{eid}/run", json={"input": {"value": 1}, "webhook": rx.url}).json()["id"]
            wait_until(
                lambda: [h["state"] for h in c.get(f"/api/v1/jobs/{job_id}").json()["webhooks"]] == ["delivered"],
                20,
                what="the delivery",
            )
    finally:
        rx.close()
    [request] = rx.requests
    return request


def secret_of(srv: PodiumServer, key: str) -> dict:
    r = httpx.get(f"{srv.url}/api/v1/webhook-secret", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_each_project_signs_with_its_own_secret_shown_to_its_admins_only(hooks, acme):
    """1. default and acme each have a secret, and they differ. 2. A delivery of acme verifies
    with acme's secret and not default's, and the other way round. 3. acme's admin asking for
    default's secret is told there is no such project; the operator may read acme's."""
    srv, eid, default_secret = hooks
    acme_key, acme_eid = acme
    acme_secret = srv.cli("webhook-secret", "--key", acme_key).stdout.strip()
    assert acme_secret.startswith("whsec_") and acme_secret != default_secret
    assert secret_of(srv, acme_key)["project"] == "acme"

    headers, body = delivered(srv, acme_eid, acme_key)
    assert verify(acme_secret, headers, body) and not verify(default_secret, headers, body)
    headers, body = delivered(srv, eid, srv.key)
    assert verify(default_secret, headers, body) and not verify(acme_secret, headers, body)

    r = httpx.get(
        f"{srv.url}/api/v1/webhook-secret",
        headers={"Authorization": f"Bearer {acme_key}", "X-Podium-Project": "default"},
    )
    assert r.status_code == 404 and default_secret not in r.text
    r = httpx.post(
        f"{srv.url}/api/v1/webhook-secret/rotate",
        headers={"Authorization": f"Bearer {acme_key}", "X-Podium-Project": "default"},
    )
    assert r.status_code == 404 and secret_of(srv, srv.key)["secret"] == default_secret
    assert srv.cli("webhook-secret", "--project", "acme").stdout.strip() == acme_secret


def test_after_a_rotation_deliveries_verify_with_the_old_secret_until_its_window_closes(hooks, acme):
    """1. acme rotates (`podium webhook-secret rotate`): the next delivery verifies with the old
    and the new secret. 2. It rotates again with a 1 s window; once the server says that window
    has closed, a delivery verifies with the newest secret only."""
    srv, _, _ = hooks
    acme_key, acme_eid = acme
    old = secret_of(srv, acme_key)["secret"]
    new = srv.cli("webhook-secret", "rotate", "--key", acme_key).stdout.strip()
    shown = secret_of(srv, acme_key)
    assert new != old and shown["secret"] == new
    assert shown["previous_valid_until"] > time.time() + 86000, "24 h by default"
    headers, body = delivered(srv, acme_eid, acme_key)
    assert verify(new, headers, body) and verify(old, headers, body)

    newest = json.loads(srv.cli("webhook-secret", "rotate", "--window", "1s", "--json", "--key", acme_key).stdout)
    wait_until(lambda: secret_of(srv, acme_key)["previous_valid_until"] is None, what="the window to close")
    headers, body = delivered(srv, acme_eid, acme_key)
    assert verify(newest["secret"], headers, body)
    assert not verify(new, headers, body) and not verify(old, headers, body)

    # A bad window is a 400; a field the request does not have, a 422 naming it (as for every
    # admin request body).
    for bad, status in (({"window": "soon"}, 400), ({"window": -1}, 400), ({"windows": "1h"}, 422)):
        r = httpx.post(
            f"{srv.url}/api/v1/webhook-secret/rotate", json=bad, headers={"Authorization": f"Bearer {acme_key}"}
        )
        assert r.status_code == status, (bad, r.text)
    assert secret_of(srv, acme_key)["secret"] == newest["secret"], "a refused rotation changes nothing"


def test_webhook_secrets_are_never_in_clear_under_podium_home(hooks, acme):
    """Every file the server keeps (the store, its log, workers' logs) searched for every secret."""
    srv, _, default_secret = hooks
    acme_key, _ = acme

    def nowhere_in_clear(*secrets: str) -> None:
        files = [p for p in srv.home.rglob("*") if p.is_file()]
        assert any(p.name == "podium.db" for p in files) and any(p.name == "server.log" for p in files)
        for path in files:
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, path

    nowhere_in_clear(default_secret, secret_of(srv, acme_key)["secret"])
    rotated = srv.cli("webhook-secret", "rotate", "--key", acme_key).stdout.strip()
    nowhere_in_clear(rotated)


def test_podium_webhook_secret_and_the_old_secret_file_seed_the_default_project(tmp_path):
    """Receivers set up before secrets were per project keep verifying the default project's
    deliveries: its first secret is PODIUM_WEBHOOK_SECRET, else the file earlier versions kept
    (which then goes: the secret is sealed in the store). Other projects get their own."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "webhook_secret").write_text("whsec_kept_by_an_earlier_version\n")
    with PodiumServer(home) as srv:
        assert secret_of(srv, srv.key)["secret"] == "whsec_kept_by_an_earlier_version"
        assert not (home / "webhook_secret").exists()
        key = json.loads(srv.cli("projects", "create", "other", "--json").stdout)["admin_key"]["key"]
        assert secret_of(srv, key)["secret"] != "whsec_kept_by_an_earlier_version"
    with PodiumServer(tmp_path / "home2", env={"PODIUM_WEBHOOK_SECRET": "whsec_from_the_environment"}) as srv:
        assert secret_of(srv, srv.key)["secret"] == "whsec_from_the_environment"


def test_private_webhook_targets_are_refused_by_default(tmp_path):
    with PodiumServer(tmp_path / "home") as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        for url in (
            "http://127.0.0.1:9/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost/x",
            "http://[::1]/x",
            "http://10.0.0.8/x",
        ):
            r = srv.http.post(f"/v2/{eid}/run", json={"input": {}, "webhook": url})
            assert r.status_code == 400 and r.json()["error"] == "invalid_webhook", (url, r.text)
            assert "PODIUM_WEBHOOK_ALLOW_PRIVATE" in r.json()["detail"]


@contextlib.contextmanager
def console_session(srv: PodiumServer) -> Iterator[httpx.Client]:
    """A console session signed in with the admin key, through the sign-in form."""
    with httpx.Client(base_url=srv.url, timeout=30) as web:
        csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/login").text).group(1)
        assert web.post("/console/login", data={"csrf": csrf, "api_key": srv.key}).status_code == 303
        yield web


def test_a_failed_delivery_is_listed_and_redelivered_signed_as_one_more_attempt(hooks):
    """1. A receiver that answers 500: the delivery fails after three attempts and the
    endpoint's console page lists it. 2. The receiver is fixed; `podium jobs redeliver` sends
    the same signed body once more: delivered, four attempts, the last a redelivery.
    3. The console's Redeliver button sends it a fifth time."""
    srv, eid, secret = hooks
    rx = Receiver([500])
    try:
        job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 3}, "webhook": rx.url}).json()["id"]
        [hook] = deliveries(srv, job_id, "failed")
        assert hook["tries"] == 3
        listed = srv.http.get("/api/v1/endpoints/rp/failed-deliveries").json()["deliveries"]
        assert listed[0]["job_id"] == job_id and listed[0]["state"] == "failed"
        with console_session(srv) as web:
            page = web.get("/console/endpoints/rp").text
            assert "Failed webhook deliveries" in page and job_id in page

            rx.script = [200]
            shown = srv.cli("jobs", "redeliver", job_id)
            assert "delivered" in shown.stdout and "tries 4" in shown.stdout
            [hook] = srv.job(job_id)["webhooks"]
            assert hook["state"] == "delivered" and hook["tries"] == 4
            assert hook["attempts"][-1]["redelivery"] is True and hook["attempts"][-1]["status_code"] == 200
            assert len(rx.requests) == 4 and len({b for _, b in rx.requests}) == 1
            headers, body = rx.requests[-1]
            assert verify(secret, headers, body) and json.loads(body)["id"] == job_id
            assert len({h["X-Podium-Delivery"] for h, _ in rx.requests}) == 1

            job_page = web.get(f"/console/jobs/{job_id}").text
            assert 'id="redeliver"' in job_page
            csrf = re.search(r'name="csrf" value="([^"]+)"', job_page).group(1)
            done = web.post(f"/console/jobs/{job_id}/redeliver", data={"csrf": csrf}, follow_redirects=True)
            assert done.status_code == 200 and "Webhook sent again: delivered (200)" in done.text
        assert len(rx.requests) == 5 and srv.job(job_id)["webhooks"][0]["tries"] == 5
    finally:
        rx.close()


def test_redelivery_needs_an_ended_job_with_a_webhook_and_a_deploy_key(hooks, tmp_path):
    srv, eid, _ = hooks
    plain = srv.http.post(f"/v2/{eid}/runsync", json={"input": {}}).json()["id"]
    r = srv.http.post(f"/api/v1/jobs/{plain}/redeliver")
    assert r.status_code == 400 and r.json()["error"] == "no_webhook"
    marker = str(tmp_path / "held")
    held = srv.http.post(
        f"/v2/{eid}/run", json={"input": {"marker": marker, "block": True}, "webhook": "http://127.0.0.1:9/x"}
    ).json()["id"]
    try:
        r = srv.http.post(f"/api/v1/jobs/{held}/redeliver")
        assert r.status_code == 409 and r.json()["error"] == "job_not_ended"
        reader = srv.cli("keys", "create", "--role", "read", "--json")
        key = json.loads(reader.stdout)["key"]
        r = httpx.post(f"{srv.url}/api/v1/jobs/{held}/redeliver", headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 403
    finally:
        (tmp_path / "held.release").touch()
