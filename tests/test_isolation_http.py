"""Tenant isolation at the HTTP surface (issue 22): endpoint-bound keys stay on their endpoint,
/metrics needs a key, unknown keys are rate-limited per address, against a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import SERVICES
from podium.store.catalog import Catalog
from podium.store.engine import Store
from server import PodiumServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, dict[str, Any], dict[str, Any]]]:
    """A server with two endpoints of one project, each with one finished job."""
    srv = PodiumServer(tmp_path_factory.mktemp("iso-home"))
    srv.start()
    try:
        one = srv.deploy(SERVICES / "rp.py", "one")
        other = srv.deploy(SERVICES / "handler.py", "other")
        for ep in (one, other):
            job_id = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"value": 1}}).json()["id"]
            ep["job"] = srv.wait_job(job_id)["id"]
        yield srv, one, other
    finally:
        srv.close()


def bound_key(srv: PodiumServer, endpoint_id: str) -> str:
    """An invoke key bound to one endpoint, as a Covalent deployment's inference key is, made
    in the server's own store."""

    async def make() -> str:
        store = Store(f"sqlite:///{srv.home / 'podium.db'}")
        try:
            catalog = Catalog(store)
            project = await catalog.project("default")
            assert project is not None
            _, key = await catalog.create_key(project["id"], "invoke", name="inference", endpoint_id=endpoint_id)
            return key
        finally:
            await store.close()

    return asyncio.run(make())


def client(srv: PodiumServer, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=srv.url, headers=headers, timeout=30)


def test_an_endpoint_bound_key_reaches_its_endpoint_only(two):
    srv, one, other = two
    with client(srv, bound_key(srv, one["endpoint_id"])) as c:
        # Its own endpoint works on every surface.
        assert c.post(f"/v2/{one['endpoint_id']}/runsync", json={"input": {"value": 2}}).json()["output"]["value"] == 2
        assert c.get(f"/api/v1/jobs/{one['job']}").status_code == 200
        assert c.get(f"/api/v1/endpoints/{one['endpoint_id']}").status_code == 200
        assert [e["name"] for e in c.get("/api/v1/endpoints").json()["endpoints"]] == ["one"]
        listed = {j["endpoint_id"] for j in c.get("/api/v1/jobs").json()["jobs"]}
        assert listed == {one["endpoint_id"]}
        assert c.get(f"/api/v1/versions/{one['version']}/bundle").status_code == 200
        # The other endpoint, its jobs and its version are not found, as another project's are.
        for path in (f"/api/v1/jobs/{other['job']}", f"/api/v1/endpoints/{other['endpoint_id']}",
                     f"/api/v1/versions/{other['version']}", f"/api/v1/versions/{other['version']}/bundle",
                     f"/api/v1/versions/{other['version']}/build", f"/v2/{other['endpoint_id']}/status/{other['job']}",
                     f"/api/v1/jobs?endpoint={other['endpoint_id']}"):
            assert c.get(path).status_code == 404, path
        assert c.post(f"/v2/{other['endpoint_id']}/run", json={"input": {}}).status_code == 404
        assert c.post(f"/api/v1/jobs/{other['job']}/retry").status_code == 404
        # Routes that see the whole project find nothing for it.
        for path in ("/api/v1/-/proj/functions", "/api/v1/projects/proj", "/api/v1/status", "/api/v1/projects",
                     "/fn/api/v0/functions"):
            assert c.get(path).status_code == 404, path


def test_metrics_need_the_operator_or_a_metrics_key(two):
    srv, _, _ = two
    with client(srv, None) as c:
        r = c.get("/metrics")
        assert r.status_code == 401 and "podium_" not in r.text
    invoke = srv.http.post("/api/v1/keys", json={"role": "invoke"}).json()["key"]
    with client(srv, invoke) as c:
        assert c.get("/metrics").status_code == 403
    assert "podium_jobs" in srv.http.get("/metrics").text  # the operator's key
    made = json.loads(srv.cli("keys", "create", "--role", "metrics", "--name", "prometheus", "--json").stdout)
    assert made["role"] == "metrics"
    with client(srv, made["key"]) as c:
        assert "podium_jobs" in c.get("/metrics").text
        assert c.get("/api/v1/endpoints").status_code == 403  # metrics only
        assert c.get("/api/v1/versions/v").status_code == 403
    acme = json.loads(srv.cli("projects", "create", "acme", "--json").stdout)["admin_key"]["key"]
    with client(srv, acme) as c:  # a project's admin: metrics list every project's endpoints
        r = c.post("/api/v1/keys", json={"role": "metrics"})
        assert r.status_code == 403 and "operator" in r.json()["detail"]
        assert c.get("/metrics").status_code == 403


def test_metrics_can_be_public(tmp_path):
    srv = PodiumServer(tmp_path / "home", env={"PODIUM_METRICS_PUBLIC": "1"})
    srv.start()
    try:
        assert "podium_" in httpx.get(f"{srv.url}/metrics").text
    finally:
        srv.close()


def test_unknown_keys_are_rate_limited_per_address(tmp_path):
    srv = PodiumServer(tmp_path / "home")
    srv.start()
    try:
        with client(srv, "pod_live_guess") as c:
            codes = [c.get("/api/v1/endpoints").status_code for _ in range(30)]
            assert codes[0] == 401 and codes[-1] == 429
            r = c.get("/api/v1/endpoints")
            assert int(r.headers["retry-after"]) >= 1 and "invalid API keys" in r.json()["detail"]
        with client(srv, None) as c:  # no key at all is not a guess
            assert c.get("/api/v1/endpoints").status_code == 401
    finally:
        srv.close()

