"""Tenant isolation at the HTTP surface (issue 22): endpoint-bound keys stay on their endpoint,
/metrics needs a key, unknown keys are rate-limited per address, against a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import SERVICES
from podium.store import open_store
from podium.store.catalog import Catalog
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, dict[str, Any], dict[str, Any]]]:
    """A server with two endpoints of one project, each with one finished job."""
    with PodiumServer(tmp_path_factory.mktemp("iso-home")) as srv:
        one = srv.deploy(SERVICES / "rp.py", "one")
        other = srv.deploy(SERVICES / "handler.py", "other")
        for ep in (one, other):
            job_id = srv.http.post(f"/v2/{ep['endpoint_id']}/run", json={"input": {"value": 1}}).json()["id"]
            ep["job"] = srv.wait_job(job_id)["id"]
        yield srv, one, other


def bound_key(srv: PodiumServer, endpoint_id: str) -> str:
    """An invoke key bound to one endpoint, as a Covalent deployment's inference key is, made
    in the server's own store."""

    async def make() -> str:
        store = open_store(f"sqlite:///{srv.home / 'podium.db'}")
        try:
            catalog = Catalog(store)
            project = await catalog.project("default")
            assert project is not None
            _, key = await catalog.create_key(project.id, "invoke", name="inference", endpoint_id=endpoint_id)
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
        for path in (
            f"/api/v1/jobs/{other['job']}",
            f"/api/v1/endpoints/{other['endpoint_id']}",
            f"/api/v1/versions/{other['version']}",
            f"/api/v1/versions/{other['version']}/bundle",
            f"/api/v1/versions/{other['version']}/build",
            f"/v2/{other['endpoint_id']}/status/{other['job']}",
            f"/api/v1/jobs?endpoint={other['endpoint_id']}",
        ):
            assert c.get(path).status_code == 404, path
        assert c.post(f"/v2/{other['endpoint_id']}/run", json={"input": {}}).status_code == 404
        assert c.post(f"/api/v1/jobs/{other['job']}/retry").status_code == 404
        # Routes that see the whole project find nothing for it.
        for path in (
            "/api/v1/-/proj/functions",
            "/api/v1/projects/proj",
            "/api/v1/status",
            "/api/v1/projects",
            "/fn/api/v0/functions",
        ):
            assert c.get(path).status_code == 404, path


def test_one_failing_endpoint_does_not_stop_the_autoscaler(tmp_path):
    """A version stored with an environment hash but no requirement set (what a forged deploy
    could store) fails its endpoint's pass; another project's new endpoint starts all the same,
    and the failure is logged once, not every tick."""
    with PodiumServer(tmp_path / "home") as srv:
        good = srv.deploy(SERVICES / "rp.py", "good")
        version = srv.http.get(f"/api/v1/versions/{good['version']}").json()

        async def forge() -> None:
            store = open_store(f"sqlite:///{srv.home / 'podium.db'}")
            try:
                catalog = Catalog(store)
                project = await catalog.project("default")
                assert project is not None
                row = await catalog.put_version(
                    project.id, {**version, "id": "v-forged", "env_hash": "0" * 24, "requirements": None}
                )
                await catalog.point_endpoint(project.id, "aaa-broken", row, key_id=None, message="forged")
            finally:
                await store.close()

        asyncio.run(forge())  # created before the next one: earlier in every pass
        acme = json.loads(srv.cli("projects", "create", "acme", "--json").stdout)["admin_key"]["key"]
        env = {**srv.env, "PODIUM_API_KEY": acme}
        subprocess.run(
            [sys.executable, "-m", "podium", "deploy", str(SERVICES / "handler.py"), "--name", "fresh", "--no-wait"],
            env=env,
            capture_output=True,
            timeout=60,
            check=True,
        )
        with client(srv, acme) as c:
            wait_until(
                lambda: c.get("/api/v1/endpoints/fresh").json()["state"] == "ACTIVE",
                30,
                0.1,
                "the other project's endpoint to start",
            )
        assert srv.http.get("/api/v1/endpoints/aaa-broken").json()["state"] == "CREATING"
        assert (srv.home / "server.log").read_text().count("autoscaling endpoint aaa-broken") == 1


def test_answers_that_carry_user_content_are_sandboxed(two):
    """Everything but the server's own pages answers with CSP sandbox and nosniff (the browser
    side of this is test_console's tenant page)."""
    srv, one, _ = two
    eid = one["endpoint_id"]
    answers = {
        "route call (hot path)": srv.http.post(f"/{eid}/handler", json={"value": 1}),
        "runsync (hot path)": srv.http.post(f"/v2/{eid}/runsync", json={"input": {"value": 1}}),
        "status": srv.http.get(f"/v2/{eid}/status/{one['job']}"),
        "job output": srv.http.get(f"/api/v1/jobs/{one['job']}"),
        "an error": srv.http.get("/api/v1/jobs/nosuchjob"),
        "an unknown path": srv.http.get("/no/such/path/at/all"),
        "a route by name": srv.http.post("/one/handler", json={"value": 1}),
        "an endpoint named like a page": srv.http.post("/console-like/handler", json={}),
    }
    for what, r in answers.items():
        assert r.headers.get("content-security-policy") == "sandbox", what
        assert r.headers.get("x-content-type-options") == "nosniff", what
    page = httpx.get(f"{srv.url}/console/login")
    assert page.status_code == 200 and "sandbox" not in page.headers["content-security-policy"]
    assert "sandbox" not in httpx.get(f"{srv.url}/docs").headers.get("content-security-policy", "")


def test_user_content_can_have_an_origin_of_its_own(tmp_path):
    """PODIUM_USER_CONTENT_URL names this same server by another origin (here `localhost` for
    127.0.0.1): the URLs handed out for user content use it, and the console is not served there."""
    srv = PodiumServer(tmp_path / "home")
    content = f"http://localhost:{srv.port}"
    srv.env["PODIUM_USER_CONTENT_URL"] = content
    with srv:
        ep = srv.deploy(SERVICES / "rp.py", "rp")
        view = srv.http.get(f"/api/v1/endpoints/{ep['endpoint_id']}").json()
        assert view["urls"]["runsync"] == f"{content}/v2/{ep['endpoint_id']}/runsync"
        assert view["service"]["url"] == f"localhost:{srv.port}/{ep['endpoint_id']}"
        r = httpx.post(view["urls"]["runsync"], json={"input": {"value": 3}}, headers=srv.http.headers, timeout=60)
        assert r.json()["output"]["value"] == 3 and r.headers["content-security-policy"] == "sandbox"
        assert httpx.get(f"{content}/console/login").status_code == 404
        assert httpx.get(f"{srv.url}/console/login").status_code == 200
