"""OpenAPI descriptions (the server's and each endpoint's) pass a validator; annotations type the
arguments a route receives. In process: the documents are built from the deployed versions'
records, no worker runs (tests/e2e/test_openapi.py checks that a route receives those types)."""

from __future__ import annotations

import warnings

import pytest
from openapi_spec_validator import validate

from conftest import SERVICES


@pytest.fixture
async def srv(api):
    await api.deploy(SERVICES / "typed.py", "typed")
    await api.deploy(SERVICES / "basic", "hello")
    return api


async def test_the_servers_own_description_is_valid(srv):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FastAPI warns of a duplicate operation id, among others
        doc = (await srv.client().get("/openapi.json")).json()
    validate(doc)
    assert "/v2/{endpoint_id}/run" in doc["paths"] and "/v1/pipeline/run" in doc["paths"]


@pytest.mark.parametrize("name", ["typed", "hello"])
async def test_each_endpoints_description_is_valid(srv, name):
    doc = (await srv.http.get(f"/{name}/openapi.json")).json()
    validate(doc)


async def test_argument_types_come_from_annotations(srv):
    doc = (await srv.http.get("/typed/openapi.json")).json()
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


async def test_an_unknown_endpoints_description_is_a_404(srv):
    assert (await srv.http.get("/nosuch/openapi.json")).status_code == 404
