"""The real `digitalhub` SDK (with `digitalhub-runtime-python`) against a real Podium: projects,
Python serve functions in Nuclio style, runs (wait, invoke, refresh, stop, resume, logs, delete),
errors as the SDK maps them, and Core's gateway proxy.

The SDK is heavy and pins its own stack, so it lives in a side venv (tests/.venv-digitalhub,
tests/sidevenv.py, built by `make test` before pytest starts); its calls run there in a subprocess
(tests/digitalhub/sdk_flow.py), against the server on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import ADMIN_KEY, PodiumServer
from sidevenv import side_python

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent.parent  # tests/
FLOW = HERE / "digitalhub" / "sdk_flow.py"
ENV_SECRET = "env-secret-9f3c1a"  # as sdk_flow.py sends it in the run's envs


@pytest.fixture(scope="module")
def sdk_python() -> Path:
    return side_python("digitalhub")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    with PodiumServer(tmp_path_factory.mktemp("digitalhub-home")) as s:
        yield s


def sdk(python: Path, srv: PodiumServer, home: Path, scenario: str, project: str) -> dict[str, Any]:
    """Run one scenario of sdk_flow.py with the SDK pointed at the server; what it saw."""
    env = {
        **os.environ,
        "DHCORE_ENDPOINT": srv.url,
        "DHCORE_ACCESS_TOKEN": ADMIN_KEY,
        "HOME": str(home),
        "DH_CONFIG": str(home / "dhcore.ini"),
    }
    for name in ("DHCORE_PERSONAL_ACCESS_TOKEN", "DHCORE_USER", "DHCORE_PASSWORD", "DHCORE_REFRESH_TOKEN"):
        env.pop(name, None)
    done = subprocess.run(
        [str(python), str(FLOW), scenario, project], env=env, cwd=home, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_serve_run_from_create_to_delete(sdk_python, srv, tmp_path):
    seen = sdk(sdk_python, srv, tmp_path, "serve_flow", "demo")
    assert seen["project"] == ["demo", "demo"]  # get_or_create_project: created once, then read
    assert seen["state"] == "RUNNING"
    url = seen["service_url"]
    assert not url.startswith("http") and url.startswith(f"127.0.0.1:{srv.port}/")
    # init's parameters, then serve; the run's envs reach the worker and are never shown or stored in clear
    assert seen["post"] == [200, {"message": "Ciao, Ada!", "calls": 1, "token_len": len(ENV_SECRET)}]
    assert seen["stored_envs"] == [{"name": "SERVICE_TOKEN", "value": ""}]
    assert seen["get"] == [200, "Ciao from GET /hello"]
    assert seen["refreshed"] == seen["got"] == "RUNNING"
    assert seen["runs_listed"] == [seen["run_id"]]
    assert "init ran with greeting Ciao" in seen["logs"]
    assert seen["stopped"] == "STOPPED" and seen["stopped_has_service"] is False
    assert seen["old_url_after_stop"] == 404  # the stopped run's service URL is revoked
    assert seen["invoke_after_stop"].startswith("Url not specified and service not found")
    assert seen["resumed"] == "RUNNING"
    assert seen["post_after_resume"][1]["message"] == "Ciao, Bob!"
    assert seen["post_after_resume"][1]["calls"] == 1  # a new worker ran init again
    assert seen["after_delete"] == "EntityNotExistsError"
    names = [e["name"] for e in srv.http.get("/api/v1/endpoints").json()["endpoints"]]
    assert f"dh-echo-{seen['run_id'][:8]}" not in names  # its endpoint went with it


def test_failing_init_is_error_with_its_reason(sdk_python, srv, tmp_path):
    seen = sdk(sdk_python, srv, tmp_path, "failing_init", "broken")
    assert seen["state"] == "ERROR"
    assert seen["service"] is None
    assert "FileNotFoundError: no model at /models/m.bin" in seen["message"]


def test_unknown_run_and_bad_code_get_the_sdks_errors(sdk_python, srv, tmp_path):
    seen = sdk(sdk_python, srv, tmp_path, "errors", "errs")
    assert seen["unknown_run"] == "EntityNotExistsError"
    assert seen["bad_code"].startswith("BadRequestError") and "syntax error at line 1" in seen["bad_code"]


def test_deleting_a_function_with_cascade_removes_its_runs_and_endpoints(sdk_python, srv, tmp_path):
    seen = sdk(sdk_python, srv, tmp_path, "cleanup", "tidy")
    assert seen["functions"] == ["echo"]
    assert seen["runs_after"] == [] and seen["functions_after"] == []
    assert seen["project_after"] == "EntityNotExistsError"
    names = [e["name"] for e in srv.http.get("/api/v1/endpoints").json()["endpoints"]]
    assert f"dh-echo-{seen['run_id'][:8]}" not in names


@pytest.fixture(scope="module")
def running(sdk_python, srv, tmp_path_factory) -> dict[str, Any]:
    seen = sdk(sdk_python, srv, tmp_path_factory.mktemp("dh-sdk-home"), "start", "gateway")
    assert seen["state"] == "RUNNING"
    return seen


def _proxy(srv: PodiumServer, run: dict[str, Any], target: str, **kw: Any) -> httpx.Response:
    return srv.http.request(
        "POST" if "json" in kw else "GET",
        f"/api/v1/-/gateway/runs/{run['run_id']}/proxy",
        headers={"X-Proxy-URL": target, **kw.pop("headers", {})},
        **kw,
    )


def test_proxy_forwards_and_reports_the_upstream_answer(srv, running):
    r = _proxy(srv, running, f"http://{running['url']}/greet", json={"name": "Eve"}, headers={"X-Proxy-Method": "POST"})
    assert r.status_code == 200
    assert r.json()["message"] == "Hi, Eve!"
    assert r.headers["X-Proxy-Status"] == "200"
    assert r.headers["X-Proxy-Content-Type"] == "application/json"
    assert "X-Proxy-Status" in r.headers["Access-Control-Expose-Headers"]
    r = _proxy(srv, running, running["url"] + "/page")  # no scheme: http:// is implied; GET by default
    assert r.status_code == 200 and r.text == "Hi from GET /page"


def test_proxy_refuses_other_targets_and_callers_without_a_key(srv, running):
    r = _proxy(srv, running, f"http://127.0.0.1:{srv.port}/api/v1/keys")
    assert r.status_code == 400 and "must start with the run's service URL" in r.json()["message"]
    r = httpx.get(f"{srv.url}/api/v1/-/gateway/runs/{running['run_id']}/proxy", headers={"X-Proxy-URL": running["url"]})
    assert r.status_code == 401
    r = _proxy(srv, {"run_id": "nosuchrun"}, running["url"])
    assert r.status_code == 404 and "No such EntityName" in r.json()["message"]


def test_service_url_needs_its_token_and_nothing_else(srv, running):
    r = httpx.post(f"http://{running['url']}", json={"name": "Kim"})  # no key: the token is the credential
    assert r.status_code == 200 and r.json()["message"] == "Hi, Kim!"
    # A tenant's answer on the console's origin: sandboxed, never sniffed (issue 22, finding 1).
    assert r.headers["content-security-policy"] == "sandbox" and r.headers["x-content-type-options"] == "nosniff"
    proxied = _proxy(srv, running, running["url"] + "/page")
    assert proxied.headers["content-security-policy"] == "sandbox"
    assert proxied.headers["x-content-type-options"] == "nosniff"
    forged = running["url"].rpartition("/")[0] + "/not-the-token"
    assert httpx.post(f"http://{forged}", json={"name": "Kim"}).status_code == 404


def test_lists_are_spring_pages_and_admin_projects_still_work(srv, running):
    page = srv.http.get("/api/v1/-/gateway/runs", params={"page": 0, "size": 1}).json()
    assert page["totalPages"] >= 1 and len(page["content"]) == 1
    assert page["content"][0]["status"]["service"]["url"] == running["url"]
    assert page["content"][0]["spec"]["envs"] == [{"name": "SERVICE_TOKEN", "value": ""}]
    for f in srv.home.glob("podium.db*"):  # the run's envs are sealed with its endpoint
        assert ENV_SECRET.encode() not in f.read_bytes()
    r = srv.http.get("/api/v1/projects/nosuch")
    assert r.status_code == 404 and "No such EntityName" in r.json()["message"]
    r = srv.http.post("/api/v1/projects", json={"name": "plain-podium"})  # Podium's own (no `kind`)
    assert r.status_code == 200 and r.json()["admin_key"]["key"]


def test_run_ids_that_are_no_ids_are_refused_before_any_path_is_built(srv):
    """Issue 22, finding 8: the run id `/../../.` became part of an endpoint name, and that
    endpoint's worker log landed in PODIUM_HOME itself. Ids are checked; names are made of what
    an endpoint name may hold."""
    assert srv.http.post("/api/v1/projects", json={"name": "pathy", "kind": "project"}).status_code == 200
    code = base64.b64encode(b"def serve(context, event):\n    return 'hi'\n").decode()
    r = srv.http.post(
        "/api/v1/-/pathy/functions",
        json={"kind": "python", "name": "pathfn", "spec": {"source": {"handler": "serve", "base64": code}}},
    )
    assert r.status_code == 200, r.text
    function = f"python://pathy/pathfn:{r.json()['id']}"
    before = {p.name for p in srv.home.iterdir()}
    for bad in ("/../../.", "../x", "a/b", "a.b"):
        r = srv.http.post(
            "/api/v1/-/pathy/runs", json={"id": bad, "kind": "python+serve:run", "spec": {"function": function}}
        )
        assert r.status_code == 400 and repr(bad) in r.json()["message"], r.text
    names = [e["name"] for e in srv.http.get("/api/v1/endpoints").json()["endpoints"]]
    assert not any(n.startswith("dh-pathfn") for n in names)
    r = srv.http.post(
        "/api/v1/-/pathy/runs", json={"id": "Run_ABC-12", "kind": "python+serve:run", "spec": {"function": function}}
    )
    assert r.status_code == 200, r.text
    names = [e["name"] for e in srv.http.get("/api/v1/endpoints").json()["endpoints"]]
    assert "dh-pathfn-runabc12" in names
    assert {p.name for p in srv.home.iterdir()} <= before | {"envs", "cache", "run"}


def test_a_read_key_does_not_see_the_service_url(srv, running):
    """The URL carries the token that calls the service without a key: invoke keys and up only."""
    token = running["url"].rpartition("/")[2]
    keys = {role: srv.http.post("/api/v1/keys", json={"role": role}).json()["key"] for role in ("read", "invoke")}
    for path in (f"/api/v1/-/gateway/runs/{running['run_id']}", "/api/v1/-/gateway/runs"):
        seen = httpx.get(srv.url + path, headers={"Authorization": f"Bearer {keys['read']}"})
        assert seen.status_code == 200 and token not in seen.text and "RUNNING" in seen.text
        seen = httpx.get(srv.url + path, headers={"Authorization": f"Bearer {keys['invoke']}"})
        assert seen.status_code == 200 and token in seen.text
