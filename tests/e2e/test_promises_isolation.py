"""Anything of another project answers 404, on every surface (docs/security.md, "Projects"):
test_security covers the RunPod, route, Laminar and admin surfaces; here a key of project alpha
(its admin, the most it can be) asks the console, the Covalent surface and the DigitalHub
surface for project beta's endpoint, jobs, versions, keys, Covalent deployment and DigitalHub
run, and beta's things are left as they were.

Beta's Covalent deployment is made with the real covalent-cloud package (its side venv);
its DigitalHub run over Core's REST surface (tests/dhruns.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import HERE, SERVICES
from dhruns import serve_run
from server import PodiumServer
from sidevenv import side_python

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first run may build the side venv

#: Names that appear nowhere but in beta's things: an answer that holds one leaked it.
ENDPOINT = "beta-private-endpoint"
DH_CODE = "def serve(context, event):\n    return 'beta-private-service'\n"


class Beta:
    """Project beta's things, and keys of both projects."""

    def __init__(self, srv: PodiumServer) -> None:
        self.srv = srv
        self.alpha_key = self._project("alpha")
        self.key = self._project("beta")
        self.http = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60)
        deployed = json.loads(
            srv.cli("deploy", str(SERVICES / "rp.py"), "--name", ENDPOINT, "--project", "beta", "--json").stdout
        )
        self.endpoint_id, self.version = deployed["endpoint_id"], deployed["version"]
        self.job = self.http.post(f"/v2/{self.endpoint_id}/runsync", json={"input": {"value": 1}}).json()["id"]
        self.key_id = self.http.post("/api/v1/keys", json={"role": "invoke", "name": "beta-invoke"}).json()["id"]
        self.run = serve_run(self.http, DH_CODE)
        self.covalent = self._covalent()
        self.asset = self.http.post("/fn/api/v0/assets").json()[0]["id"]

    def _project(self, name: str) -> str:
        return str(json.loads(self.srv.cli("projects", "create", name, "--json").stdout)["admin_key"]["key"])

    def _covalent(self) -> dict[str, Any]:
        python = side_python("covalent")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COVALENT_", "PODIUM_"))}
        env.update(
            HOME=str(self.srv.home / "covalent-user"),
            COVALENT_CLOUD_DISPATCHER_URI="http://127.0.0.1",
            COVALENT_CLOUD_DISPATCHER_PORT=str(self.srv.port),
            COVALENT_CLOUD_AUTH__API_KEY=self.key,
        )
        done = subprocess.run(
            [str(python), "-W", "ignore", str(HERE / "covalent" / "private_service.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        assert seen["word"] == "beta-only", seen
        return seen

    def unchanged(self) -> None:
        """Beta's things are as they were, and beta still reaches them."""
        assert self.http.get(f"/api/v1/endpoints/{self.endpoint_id}").json()["state"] == "ACTIVE"
        assert self.http.get(f"/api/v1/jobs/{self.job}").json()["status"] == "COMPLETED"
        assert self.key_id in {k["id"] for k in self.http.get("/api/v1/keys").json()["keys"]}
        fn = self.http.get(f"/fn/api/v0/functions/{self.covalent['id']}").json()
        assert fn["status"] == "ACTIVE", fn
        keys = self.http.get(f"/fn/api/v0/functions/{self.covalent['id']}/inference-keys").json()
        assert self.covalent["key_id"] in {k["id"] for k in keys}
        assert self.http.post(f"/fn/{self.covalent['id']}/word", json={}).json() == "beta-only"
        run = self.http.get(f"/api/v1/-/{self.run['project']}/runs/{self.run['run_id']}").json()
        assert run["status"]["state"] == "RUNNING", run
        assert httpx.get(self.run["url"], timeout=60).text == "beta-private-service"


@pytest.fixture(scope="module")
def beta(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beta]:
    with PodiumServer(tmp_path_factory.mktemp("isolation-home")) as srv:
        b = Beta(srv)
        yield b
        b.http.close()


def alpha(beta: Beta) -> httpx.Client:
    return httpx.Client(base_url=beta.srv.url, headers={"Authorization": f"Bearer {beta.alpha_key}"}, timeout=60)


def leaks(beta: Beta, text: str, asked: str = "") -> list[str]:
    """Beta's names and ids in an answer to alpha, but those alpha named in what it `asked`
    (a 404 may say what was not found)."""
    marks = (ENDPOINT, beta.endpoint_id, beta.job, beta.version, beta.covalent["id"], beta.run["run_id"])
    return [m for m in marks if m in text and m not in asked]


def test_the_console_shows_alpha_nothing_of_beta(beta: Beta) -> None:
    with httpx.Client(base_url=beta.srv.url, timeout=60) as browser:
        form = browser.get("/console/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        signed = browser.post("/console/login", data={"csrf": csrf.group(1), "api_key": beta.alpha_key})
        assert signed.status_code == 303, signed.text
        token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/console").text)
        assert token
        posted = {"csrf": token.group(1)}
        asked: list[tuple[str, str, dict[str, str] | None]] = []
        for ref in (ENDPOINT, beta.endpoint_id):
            asked += [
                ("GET", f"/console/endpoints/{ref}", None),
                ("GET", f"/console/api/endpoints/{ref}", None),
                ("GET", f"/console/api/endpoints/{ref}/charts", None),
                ("GET", f"/console/api/endpoints/{ref}/logs", None),
                ("POST", f"/console/endpoints/{ref}/rollback", {**posted, "version": beta.version}),
                ("POST", f"/console/endpoints/{ref}/scaling", {**posted, "max_workers": "3"}),
                ("POST", f"/console/endpoints/{ref}/schedules/pause", posted),
                ("POST", f"/console/endpoints/{ref}/rollout/abort", posted),
                ("POST", f"/console/endpoints/{ref}/stop", posted),
            ]
        asked += [
            ("GET", f"/console/jobs?endpoint={ENDPOINT}", None),
            ("GET", f"/console/jobs/{beta.job}", None),
            ("POST", f"/console/jobs/{beta.job}/cancel", posted),
            ("POST", f"/console/jobs/{beta.job}/retry", posted),
            ("POST", f"/console/jobs/{beta.job}/redeliver", posted),
            ("POST", f"/console/versions/{beta.version}/deploy", {**posted, "endpoint": ENDPOINT}),
            ("POST", f"/console/versions/{beta.version}/new-endpoint", {**posted, "name": "stolen"}),
            ("POST", f"/console/keys/{beta.key_id}/revoke", posted),
            ("POST", "/console/project", {**posted, "project": "beta"}),
        ]
        for method, path, data in asked:
            answer = browser.request(method, path, data=data)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text[:300])
            assert leaks(beta, answer.text, f"{path} {data}") == [], (path, answer.text[:300])
        sent = browser.post(
            "/console/api/client/send",
            json={"endpoint": ENDPOINT, "method": "POST", "path": "/handler", "headers": "", "body": "{}"},
            headers={"X-CSRF-Token": posted["csrf"]},
        )
        assert sent.status_code == 200 and sent.json()["status"] == 404, sent.text  # the answer it relays
        for page in ("/console", "/console/jobs", "/console/versions", "/console/usage"):
            shown = browser.get(page)
            assert shown.status_code == 200 and leaks(beta, shown.text, page) == [], page
        assert leaks(beta, browser.get("/console/api/services").text) == []
    beta.unchanged()


def test_the_covalent_surface_shows_alpha_nothing_of_beta(beta: Beta) -> None:
    fn = beta.covalent["id"]
    asked = [
        ("GET", f"/fn/api/v0/functions/{fn}"),
        ("PUT", f"/fn/api/v0/functions/{fn}/teardown"),
        ("POST", f"/fn/api/v0/functions/{fn}/inference-keys"),
        ("GET", f"/fn/api/v0/functions/{fn}/inference-keys"),
        ("DELETE", f"/fn/api/v0/functions/{fn}/inference-keys/{beta.covalent['key_id']}"),
        ("POST", f"/fn/{fn}/info"),
        ("POST", f"/fn/{fn}/word"),
        ("PUT", f"/fn/api/v0/assets/{beta.asset}"),
    ]
    with alpha(beta) as c:
        for method, path in asked:
            answer = c.request(method, path, json={} if method != "PUT" or "assets" not in path else None)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
            assert leaks(beta, answer.text, path) == [], (path, answer.text)
        listed = c.get("/fn/api/v0/functions", params={"count": 100}).json()
        assert listed["records"] == [] and listed["metadata"]["total_count"] == 0, listed
    beta.unchanged()


def test_the_digitalhub_surface_shows_alpha_nothing_of_beta(beta: Beta) -> None:
    project, run = beta.run["project"], beta.run["run_id"]
    asked = [
        ("GET", f"/api/v1/projects/{project}"),
        ("PUT", f"/api/v1/projects/{project}"),
        ("GET", f"/api/v1/-/{project}/functions"),
        ("GET", f"/api/v1/-/{project}/runs"),
        ("GET", f"/api/v1/-/{project}/runs/{run}"),
        ("PUT", f"/api/v1/-/{project}/runs/{run}"),
        ("POST", f"/api/v1/-/{project}/runs/{run}/stop"),
        ("POST", f"/api/v1/-/{project}/runs/{run}/resume"),
        ("GET", f"/api/v1/-/{project}/runs/{run}/logs"),
        ("DELETE", f"/api/v1/-/{project}/runs/{run}"),
        ("DELETE", f"/api/v1/-/{project}/runs"),
        ("DELETE", f"/api/v1/projects/{project}"),
    ]
    with alpha(beta) as c:
        for method, path in asked:
            body = {"name": project, "kind": "project"} if method == "PUT" else None
            answer = c.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.status_code, answer.text)
            assert leaks(beta, answer.text, path) == [], (path, answer.text)
        proxied = c.get(f"/api/v1/-/gateway/runs/{run}/proxy", headers={"X-Proxy-URL": beta.run["url"]})
        assert proxied.status_code == 404, proxied.text
        # Alpha may have a DigitalHub project of the same name: its own, empty.
        assert c.post("/api/v1/projects", json={"name": project, "kind": "project"}).status_code == 200
        for collection in ("functions", "runs"):
            page = c.get(f"/api/v1/-/{project}/{collection}").json()
            assert page["content"] == [], page
        assert c.get(f"/api/v1/-/{project}/runs/{run}").status_code == 404
    beta.unchanged()
