"""OpenAPI descriptions (the server's and each endpoint's) pass a validator; annotations type the
arguments a route receives. The descriptions themselves are read in process:
tests/integration/test_openapi_docs.py."""

from __future__ import annotations

import json
import shlex

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("openapi-home")) as s:
        s.deploy(SERVICES / "typed.py", "typed")
        s.deploy(SERVICES / "basic", "hello")
        yield s


def test_routes_receive_annotated_types(srv):
    r = srv.http.post("/typed/distance", json={"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": 4}, "scale": 2})
    assert r.json() == 10.0
    bad = srv.http.post("/typed/distance", json={"a": {"x": "far"}, "b": {"x": 0, "y": 0}})
    assert bad.status_code == 400 and "'a' does not fit" in bad.json()["detail"]


def test_docs_serve_interactive_documentation(srv):
    r = httpx.get(f"{srv.url}/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower() and "/openapi.json" in r.text


def _body(doc, path):
    return doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def test_arguments_the_initializer_provides_are_optional_and_say_so(srv):
    """`/hello(number, greeting, name="world")` of a service whose initializer returns `number` and
    `greeting`: only what the caller must send is required, and the example body passes."""
    doc = srv.http.get("/hello/openapi.json").json()
    body = _body(doc, "/hello")
    assert "required" not in body
    for name in ("number", "greeting"):
        assert body["properties"][name]["x-podium-source"] == "initializer"
    assert body["examples"] == [{"name": "world"}]
    r = srv.http.post("/hello/hello", json=body["examples"][0])
    assert r.status_code == 200 and r.json() == "Hello, world! My favorite number is 42"


def test_example_bodies_pass_and_the_deploys_try_line_sends_one(srv):
    """Each route's example (defaults, a placeholder for each required argument, a model's
    required fields) is a body the route accepts; `podium deploy` prints a curl line whose body
    /runsync accepts."""
    doc = srv.http.get("/typed/openapi.json").json()
    for path in ("/distance", "/tags"):
        example = _body(doc, path)["examples"][0]
        r = srv.http.post(f"/typed{path}", json=example)
        assert r.status_code == 200, (path, example, r.text)
    out = srv.cli("deploy", str(SERVICES / "typed.py"), "--name", "typed").stdout
    line = next(line for line in out.splitlines() if line.strip().startswith("curl"))
    body = json.loads(shlex.split(line)[shlex.split(line).index("-d") + 1])
    assert body == {"input": {"a": {"x": 0, "y": 0}, "b": {"x": 0, "y": 0}, "scale": 1.0}}
    r = srv.http.post("/v2/typed/runsync", json=body)
    assert r.status_code == 200 and r.json()["status"] == "COMPLETED", r.text
