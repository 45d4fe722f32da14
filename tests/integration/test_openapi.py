"""OpenAPI descriptions (the server's and each endpoint's) pass a validator; annotations type the
arguments a route receives."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate

from conftest import SERVICES
from server import PodiumServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = PodiumServer(tmp_path_factory.mktemp("openapi-home"))
    s.start()
    try:
        s.deploy(SERVICES / "typed.py", "typed")
        s.deploy(SERVICES / "basic", "hello")
        yield s
    finally:
        s.close()


def test_the_servers_own_description_is_valid(srv):
    doc = httpx.get(f"{srv.url}/openapi.json").json()
    validate(doc)
    assert "/v2/{endpoint_id}/run" in doc["paths"] and "/v1/pipeline/run" in doc["paths"]


@pytest.mark.parametrize("name", ["typed", "hello"])
def test_each_endpoints_description_is_valid(srv, name):
    doc = srv.http.get(f"/{name}/openapi.json").json()
    validate(doc)


def test_argument_types_come_from_annotations(srv):
    doc = srv.http.get("/typed/openapi.json").json()
    body = doc["paths"]["/distance"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["a", "b"]
    assert body["properties"]["scale"] == {"type": "number", "default": 1.0}
    point = body["properties"]["a"]
    assert point["title"] == "Point" and point["properties"]["x"]["type"] == "number"
    tags = doc["paths"]["/tags"]["post"]
    props = tags["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert props["names"] == {"type": "array", "items": {"type": "string"}}
    assert props["note"] == {"default": None}
    assert tags["responses"]["200"]["content"]["application/json"]["schema"]["type"] == "object"
    assert "text/event-stream" in doc["paths"]["/count"]["post"]["responses"]["200"]["content"]


def test_routes_receive_annotated_types(srv):
    r = srv.http.post("/typed/distance", json={"a": {"x": 0, "y": 0}, "b": {"x": 3, "y": 4}, "scale": 2})
    assert r.json() == 10.0
    bad = srv.http.post("/typed/distance", json={"a": {"x": "far"}, "b": {"x": 0, "y": 0}})
    assert bad.status_code == 400 and "'a' does not fit" in bad.json()["detail"]


def test_an_unknown_endpoints_description_is_a_404(srv):
    assert srv.http.get("/nosuch/openapi.json").status_code == 404


def test_docs_serve_interactive_documentation(srv):
    import httpx

    r = httpx.get(f"{srv.url}/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower() and "/openapi.json" in r.text
