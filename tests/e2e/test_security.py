"""Projects, keys, roles, isolation, secrets, rate limits and idempotency, against a real server."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

S3_SECRET = "s3-secret-4b1d9e77"
ENV_SECRET = "env-secret-0c2f8a91"
ENDPOINT_SECRET = "endpoint-secret-77aa31"


@pytest.fixture(scope="module")
def sec(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("sec-home")) as srv:
        ep = srv.deploy(SERVICES / "rp.py", "rp")
        acme = json.loads(srv.cli("projects", "create", "acme", "--json").stdout)
        yield srv, ep, acme["admin_key"]["key"]


def client(srv: PodiumServer, key: str, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {key}", **headers}, timeout=30)


def make_key(srv: PodiumServer, admin_key: str, role: str, **extra: str) -> dict:
    with client(srv, admin_key) as c:
        r = c.post("/api/v1/keys", json={"role": role, **extra})
        assert r.status_code == 200, r.text
        return r.json()


def test_keys_are_shown_once_listed_by_prefix_and_revoked_at_once(sec):
    srv, _, acme_admin = sec
    out = json.loads(
        srv.cli("keys", "create", "--role", "invoke", "--name", "ci", "--json", "--key", acme_admin).stdout
    )
    assert set(out) == {"id", "key", "prefix", "role", "project"} and out["project"] == "acme"
    assert out["key"].startswith("pod_live_") and out["key"].startswith(out["prefix"])
    listed = json.loads(srv.cli("keys", "ls", "--json", "--key", acme_admin).stdout)
    row = next(k for k in listed if k["id"] == out["id"])
    assert row["prefix"] == out["prefix"] and row["name"] == "ci" and "key" not in row and "key_hash" not in row
    with client(srv, out["key"]) as c:
        assert c.get("/api/v1/endpoints").status_code == 200
        srv.cli("keys", "revoke", out["id"], "--key", acme_admin)
        r = c.get("/api/v1/endpoints")
        assert r.status_code == 401 and out["key"] not in r.text
    assert json.loads(srv.cli("keys", "ls", "--json", "--key", acme_admin).stdout)[0]["last_used_at"]


def test_roles(sec):
    srv, ep, _ = sec
    eid = ep["endpoint_id"]
    keys = {role: make_key(srv, srv.key, role)["key"] for role in ("read", "invoke", "deploy", "admin")}
    job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 1}}).json()["id"]
    srv.wait_job(job_id)
    table = [  # (method, path, body, lowest role that may)
        ("GET", f"/v2/{eid}/status/{job_id}", None, "read"),
        ("GET", f"/v2/{eid}/status-sync/{job_id}?wait=1000", None, "read"),
        ("GET", f"/v2/{eid}/health", None, "read"),
        ("GET", "/api/v1/endpoints", None, "read"),
        ("POST", f"/v2/{eid}/run", {"input": {}}, "invoke"),
        ("POST", f"/v2/{eid}/purge-queue", None, "invoke"),
        ("PATCH", f"/api/v1/endpoints/{eid}/scaling", {"max_workers": 1}, "deploy"),
        ("GET", "/api/v1/keys", None, "admin"),
    ]
    rank = ["read", "invoke", "deploy", "admin"]
    for method, path, body, lowest in table:
        for role, key in keys.items():
            with client(srv, key) as c:
                r = c.request(method, path, json=body)
            allowed = rank.index(role) >= rank.index(lowest)
            assert (r.status_code < 400) == allowed, (method, path, role, r.status_code, r.text)
            if not allowed:
                assert r.status_code == 403 and "needs" in r.json()["detail"]
    with client(srv, keys["admin"]) as c:
        assert c.post("/api/v1/projects", json={"name": "nope"}).status_code == 403, "operator only"


def test_a_key_of_another_project_finds_nothing(sec):
    srv, _, acme_admin = sec
    # A distinctive name, so "the answer does not name it" cannot be fooled by chance.
    ep = srv.deploy(SERVICES / "rp.py", "hidden-default-endpoint")
    eid, name, version = ep["endpoint_id"], ep["name"], ep["version"]
    job_id = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 2}}).json()["id"]
    srv.wait_job(job_id)
    worker = srv.http.get(f"/api/v1/endpoints/{eid}").json()["workers"][0]["id"]
    requests = []
    for ref in (eid, name):
        requests += [
            ("POST", f"/v2/{ref}/run", {"input": {}}),
            ("POST", f"/v2/{ref}/runsync", {"input": {}}),
            ("GET", f"/v2/{ref}/status/{job_id}", None),
            ("GET", f"/v2/{ref}/status-sync/{job_id}?wait=1000", None),
            ("GET", f"/v2/{ref}/stream/{job_id}", None),
            ("POST", f"/v2/{ref}/cancel/{job_id}", None),
            ("POST", f"/v2/{ref}/retry/{job_id}", None),
            ("POST", f"/v2/{ref}/purge-queue", None),
            ("GET", f"/v2/{ref}/health", None),
            ("POST", f"/{ref}/handler", {}),
            ("GET", f"/{ref}/openapi.json", None),
            ("GET", f"/api/v1/endpoints/{ref}", None),
            ("GET", f"/api/v1/endpoints/{ref}/logs", None),
            ("GET", f"/api/v1/endpoints/{ref}/history", None),
            ("GET", f"/api/v1/endpoints/{ref}/versions", None),
            ("GET", f"/api/v1/endpoints/{ref}/secrets", None),
            ("POST", f"/api/v1/endpoints/{ref}/stop", None),
            ("PATCH", f"/api/v1/endpoints/{ref}/scaling", {"max_workers": 3}),
            ("DELETE", f"/api/v1/endpoints/{ref}", None),
            ("GET", f"/v2/{ref}/job-take/{worker}", None),
            ("GET", f"/v2/{ref}/ping/{worker}", None),
            ("POST", f"/v2/{ref}/job-done/{worker}/{job_id}", {"output": "forged"}),
        ]
    requests += [
        ("GET", f"/api/v1/jobs/{job_id}", None),
        ("POST", f"/api/v1/jobs/{job_id}/retry", None),
        ("GET", f"/api/v1/versions/{version}", None),
        ("GET", f"/api/v1/versions/{version}/bundle", None),
    ]
    with client(srv, acme_admin) as c:
        for method, path, body in requests:
            r = c.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert name not in r.text or path.endswith(f"/{name}") or f"/{name}/" in path, (path, r.text)
        r = c.post("/v1/pipeline/run", json={"pipeline": name, "inputs": {}, "env": {}})
        assert r.json()["error_code"] == "api.noTargetPipeline"
        assert c.get("/api/v1/endpoints").json()["endpoints"] == []
        assert c.get("/api/v1/jobs").json()["jobs"] == []
    with client(srv, acme_admin, **{"X-Podium-Project": "default"}) as c:
        assert c.get(f"/api/v1/endpoints/{eid}").status_code == 404, "only the operator may pick a project"
    # and nothing was changed through those requests
    assert srv.http.get(f"/api/v1/endpoints/{eid}").json()["state"] == "ACTIVE"
    assert srv.job(job_id)["status"] == "COMPLETED" and srv.job(job_id)["output"] != "forged"


def test_the_operator_acts_in_any_project_it_names(sec, tmp_path):
    srv, _, acme_admin = sec
    res = srv.cli("deploy", str(SERVICES / "rp.py"), "--name", "acme-rp", "--project", "acme", "--json")
    eid = json.loads(res.stdout)["endpoint_id"]
    with client(srv, acme_admin) as c:
        assert c.get(f"/api/v1/endpoints/{eid}").status_code == 200, "it is acme's"
    assert srv.http.get(f"/api/v1/endpoints/{eid}").status_code == 404, "not in the operator's own project"
    listed = json.loads(srv.cli("ls", "--json", "--project", "acme").stdout)
    assert [e["name"] for e in listed] == ["acme-rp"]
    assert {p["name"] for p in json.loads(srv.cli("projects", "ls", "--json").stdout)} >= {"default", "acme"}
    assert srv.cli("ls", "--project", "nosuch", check=False).returncode == 1


def test_endpoint_secrets_are_encrypted_at_rest_and_reach_workers(sec):
    srv, _, _ = sec
    srv.deploy(SERVICES / "secret_env.py", "secret-env")
    srv.cli("secrets", "set", "secret-env", f"TOKEN={ENDPOINT_SECRET}")
    want = hashlib.sha256(ENDPOINT_SECRET.encode()).hexdigest()
    wait_until(
        lambda: (
            srv.http.post("/v2/secret-env/runsync", json={"input": {}}).json().get("output", {}).get("token_sha256")
            == want
        ),
        30,
        0.2,
        "workers with the secret",
    )
    listed = srv.cli("secrets", "ls", "secret-env").stdout
    assert "TOKEN" in listed and ENDPOINT_SECRET not in listed
    db = (srv.home / "podium.db").read_bytes() + (srv.home / "podium.db-wal").read_bytes()
    assert ENDPOINT_SECRET.encode() not in db, "stored encrypted"
    bad = srv.http.put("/api/v1/endpoints/secret-env/secrets", json={"PODIUM_URL": "x"})
    assert bad.status_code == 400


def test_secrets_never_come_back_out(sec):
    """Every answer of a run that carries secrets, and every log file, searched for them: an
    endpoint secret this test sets and sees reach a worker, a run's env and s3Config, a failing
    run's too, and the keys."""
    srv, ep, acme_admin = sec
    endpoint_secret = "endpoint-secret-out-5e0c19"
    srv.deploy(SERVICES / "secret_env.py", "secret-out")
    srv.cli("secrets", "set", "secret-out", f"TOKEN={endpoint_secret}")
    want = hashlib.sha256(endpoint_secret.encode()).hexdigest()
    answers = []

    def secret_reached_a_worker() -> bool:
        r = srv.http.post("/v2/secret-out/runsync", json={"input": {"value": 1}, "env": {"X": ENV_SECRET}})
        answers.append(r.text)
        return r.json().get("output", {}).get("token_sha256") == want

    wait_until(secret_reached_a_worker, 30, 0.2, "a worker with the endpoint secret")
    eid = ep["endpoint_id"]
    s3 = {"accessId": "AKIA", "accessSecret": S3_SECRET, "bucketName": "b", "endpointUrl": "http://s3"}
    r = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 3}, "env": {"API_TOKEN": ENV_SECRET}, "s3Config": s3})
    answers.append(r.text)
    job_id = r.json()["id"]
    srv.wait_job(job_id)
    failed = srv.http.post(
        f"/v2/{eid}/runsync", json={"input": {"fail": "boom"}, "env": {"X": ENV_SECRET}, "s3Config": s3}
    )
    assert failed.json()["status"] == "FAILED", failed.text
    answers.append(failed.text)
    for path in (
        f"/v2/{eid}/status/{job_id}",
        f"/v2/{eid}/stream/{job_id}",
        f"/api/v1/jobs/{job_id}",
        f"/api/v1/jobs/{failed.json()['id']}",
        f"/api/v1/endpoints/{eid}",
        f"/api/v1/endpoints/{eid}/logs",
        "/api/v1/endpoints/secret-out",
        "/api/v1/endpoints/secret-out/secrets",
        "/api/v1/endpoints/secret-out/logs",
        "/api/v1/keys",
        "/metrics",
    ):
        answers.append(srv.http.get(path).text)
    answers.append(srv.http.post(f"/v2/{eid}/run", json={"input": {}, "s3Config": {"accessSecret": S3_SECRET}}).text)
    answers.append(httpx.get(f"{srv.url}/api/v1/endpoints", headers={"Authorization": f"Bearer {acme_admin}x"}).text)
    answers.append(srv.cli("jobs", "show", job_id).stdout)
    logs = "".join(p.read_text(errors="replace") for p in srv.home.rglob("*.log"))
    secrets = (
        S3_SECRET,
        ENV_SECRET,
        endpoint_secret,
        acme_admin,
        srv.key,
        srv.http.get("/api/v1/webhook-secret").json()["secret"],
    )
    for secret in secrets:
        for text in answers:
            assert secret not in text
        assert secret not in logs


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    with PodiumServer(tmp_path / "home", env={"PODIUM_RATE_LIMIT": "2", "PODIUM_RATE_BURST": "3"}) as srv:
        codes = [srv.http.get("/api/v1/endpoints") for _ in range(6)]
        limited = [r for r in codes if r.status_code == 429]
        assert limited and int(limited[0].headers["retry-after"]) >= 1
        assert "requests per second" in limited[0].json()["detail"]
        time.sleep(1.1)
        assert srv.http.get("/api/v1/endpoints").status_code == 200


def test_idempotency_keys_run_a_request_once_even_across_a_restart(tmp_path):
    with PodiumServer(tmp_path / "home") as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        h = {"Idempotency-Key": "order-42"}
        first = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 42}}, headers=h).json()["id"]
        again = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 42}}, headers=h).json()["id"]
        assert again == first
        other = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 43}}, headers=h)
        assert other.status_code == 422 and "different request" in other.json()["detail"]
        srv.wait_job(first)
        srv.stop()
        srv.start()
        after = srv.http.post(f"/v2/{eid}/run", json={"input": {"value": 42}}, headers=h).json()["id"]
        assert after == first
        sync = srv.http.post(f"/v2/{eid}/runsync", json={"input": {"value": 42}}, headers=h).json()
        assert sync["id"] == first and sync["output"]["value"] == 42
        route = [
            srv.http.post(f"/{eid}/handler", json={"value": 7}, headers={"Idempotency-Key": "r-1"}) for _ in range(2)
        ]
        assert route[0].headers["x-podium-job-id"] == route[1].headers["x-podium-job-id"]
        jobs = srv.http.get("/api/v1/jobs", params={"endpoint": eid}).json()["jobs"]
        assert len(jobs) == 2, "two requests ran, whatever the retries"


def _open_to_others(home: Path) -> list[str]:
    """Files and folders under `home` that another user could read, write or enter."""
    found = []
    for path in [home, *home.rglob("*")]:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or path == home / "server.log":  # the test harness's own file
            continue
        if mode & 0o077:
            found.append(f"{path.relative_to(home)} {stat.filemode(mode)}")
    return found


def test_the_home_is_private_whatever_the_umask(server_factory, tmp_path):
    """Issue 22, finding 11: with umask 022 the home, logs/ and blobs/ were 0755 and podium.db
    (job inputs and outputs) 0644. Everything the server and its workers make there is for the
    server's user alone, and a home an older server left open is closed on start."""
    old = os.umask(0o022)
    try:
        home = tmp_path / "home"
        srv = server_factory(home)
        srv.deploy(SERVICES / "rp.py", "rp")
        job = srv.http.post("/v2/rp/runsync", json={"input": {"x": 1}}).json()
        assert job["status"] == "COMPLETED", job
        assert list(home.glob("logs/*/*.log")) and list(home.glob("blobs/*"))
        assert _open_to_others(home) == []
        srv.stop()
        home.chmod(0o755)
        for path in (home / "logs", home / "podium.db", home / "credentials.json", home / "secret.key"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        srv.start()
        assert srv.http.get("/api/v1/endpoints/rp").status_code == 200
        assert _open_to_others(home) == []
    finally:
        os.umask(old)
