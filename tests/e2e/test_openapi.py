"""OpenAPI descriptions (the server's and each endpoint's) pass a validator; annotations type the
arguments a route receives. The descriptions themselves are read in process:
tests/integration/test_openapi_docs.py."""

from __future__ import annotations

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
