"""Deploying from Python and calling routes as methods, against a real server and workers."""

from __future__ import annotations

import asyncio
import importlib.util
import sys

import pytest

import podium
from conftest import SERVICES
from server import PodiumServer

pytestmark = pytest.mark.slow

FN = SERVICES / "fn"


def load(name: str):
    """Import a service file under a unique module name, as a user's code would be imported."""
    spec = importlib.util.spec_from_file_location(f"fn_{name}", FN / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("fn-home")) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv):
    hello = load("hello")
    first = podium.deploy(hello.hello_service, url=srv.url, api_key=srv.key)(number=1867)
    assert first.status == "CREATING", "deploy returns at once"
    return podium.get_deployment(first, wait=True, timeout=60)


def test_routes_are_methods_with_initializer_defaults(client):
    assert client.status == "ACTIVE"
    assert client.hello() == "Hello, world! My favorite number is 1867"
    assert client.hello(message="Hi!", number=7) == "Hi! My favorite number is 7"
    assert client.custom_endpoint(number=21) == {"doubled": 42}
    assert client.address.endswith(f"/{client.id}") and client.info["name"] == "fn-hello"
    assert {"hello", "async_hello", "custom_endpoint"} <= set(dir(client))


def test_positional_arguments_and_unknown_methods_are_clear_errors(client):
    with pytest.raises(TypeError, match="keyword arguments only"):
        client.hello(5)
    with pytest.raises(AttributeError, match="no route method 'goodbye'"):
        client.goodbye()


def test_streaming_routes_yield_bytes_as_they_come(client, tmp_path):
    text = b"".join(client.stream(items=list(range(3)))).decode()
    assert text == "Hello, world!\nItems: 0 1 2\nDone streaming\n"
    marker = tmp_path / "go"
    chunks = client.slow_stream(marker=str(marker))
    assert next(chunks) == b"first\n", "the first chunk arrives while the route still runs"
    marker.touch()
    assert b"".join(chunks) == b"second\n"


def test_remote_errors_carry_type_message_and_traceback(client):
    with pytest.raises(podium.RouteError) as exc:
        client.fail(reason="no such thing")
    assert exc.value.error_type == "ValueError"
    assert exc.value.error_message == "no such thing"
    assert "raise ValueError(reason)" in exc.value.traceback


def test_async_twins(client):
    async def main():
        value = await client.async_hello(number=3)
        chunks = [c async for c in client.async_stream(items=[9])]
        with pytest.raises(TypeError):
            await client.async_hello(1)
        return value, b"".join(chunks)

    value, streamed = asyncio.run(main())
    assert value == "Hello, world! My favorite number is 3"
    assert streamed == b"Hello, world!\nItems: 9\nDone streaming\n"


def test_get_deployment_by_id_and_name(srv, client):
    by_id = podium.get_deployment(client.id, url=srv.url, api_key=srv.key)
    by_name = podium.get_deployment("fn-hello", url=srv.url, api_key=srv.key)
    assert by_id.id == by_name.id == client.id and by_name.hello(number=1).endswith("number is 1")


def test_bad_init_arguments_are_refused_before_deploying(srv):
    hello = load("hello")
    with pytest.raises(TypeError, match="hello_service"):
        podium.deploy(hello.hello_service, url=srv.url, api_key=srv.key)(colour="red")
    with pytest.raises(TypeError, match="JSON"):
        podium.deploy(hello.hello_service, url=srv.url, api_key=srv.key)(number=object())


def test_a_failing_initializer_reaches_error_with_its_message(srv):
    broken = load("broken")
    d = podium.deploy(broken.broken_service, url=srv.url, api_key=srv.key)(model="weights.bin")
    with pytest.raises(podium.DeploymentError) as exc:
        podium.get_deployment(d, wait=True, timeout=60)
    assert "cannot load model weights.bin" in str(exc.value)


def test_teardown_stops_the_deployment(srv):
    hello = load("hello")
    d = podium.deploy(hello.hello_service, name="fn-teardown", url=srv.url, api_key=srv.key)()
    d = podium.get_deployment(d, wait=True, timeout=60)
    assert d.hello() == "Hello, world! My favorite number is 42"
    d.teardown()
    assert d.status == "INACTIVE"
    with pytest.raises(podium.APIError) as exc:
        d.hello()
    assert exc.value.status_code == 503 and "stopped" in str(exc.value)
    with pytest.raises(podium.DeploymentError, match="INACTIVE"):
        podium.get_deployment(d, wait=True, timeout=5)


def test_the_same_over_plain_http(srv, client):
    import httpx

    r = httpx.post(f"{srv.url}/{client.id}/hello", headers={"x-api-key": srv.key}, json={"number": 1867})
    assert r.json() == "Hello, world! My favorite number is 1867"
    with httpx.stream("POST", f"{srv.url}/{client.id}/stream", headers={"x-api-key": srv.key}, json={}) as r:
        assert b"".join(r.iter_bytes()).startswith(b"Hello, world!\n")


def test_module_files_are_required(srv):
    svc = podium.service(name="inline")(lambda: {})
    svc.endpoint("/x")(lambda: 1)
    sys.modules.pop("__podium_inline__", None)
    svc.initializer.__module__ = "__podium_inline__"
    with pytest.raises(podium.ServiceDefinitionError, match="not defined in a .py file"):
        podium.deploy(svc, url=srv.url, api_key=srv.key)()


NEEDS_A_PACKAGE = """
import podium_not_installed_zz  # at the top: this machine does not have it

import podium


@podium.service(name="needs-pkg")
def init():
    return {"model": podium_not_installed_zz.load()}


@init.endpoint("/predict")
def predict(model, rows: list[list[float]]):
    return model.predict(rows)
"""


def test_a_path_deploys_as_the_cli_deploys_it(srv, tmp_path):
    """A .py file or a directory, as `podium deploy` takes them; a service with requirements is
    read from its syntax tree, so this machine need not have them."""
    d = podium.deploy(FN / "hello.py", name="fn-by-path", url=srv.url, api_key=srv.key)(number=5)
    assert podium.get_deployment(d, wait=True, timeout=60).hello() == "Hello, world! My favorite number is 5"
    app = tmp_path / "needs-pkg"
    app.mkdir()
    (app / "app.py").write_text(NEEDS_A_PACKAGE)
    (app / "requirements.txt").write_text("podium-not-installed-zz==1.0\n")
    d = podium.deploy(str(app), url=srv.url, api_key=srv.key)()
    try:
        assert d.name == "needs-pkg" and [r["path"] for r in d.info["routes"]] == ["/predict"]
        assert "podium_not_installed_zz" not in sys.modules
    finally:
        srv.http.delete(f"/api/v1/endpoints/{d.id}")  # its environment cannot be built


def test_deploy_takes_a_service_or_a_path():
    with pytest.raises(TypeError, match="@podium.service or a path"):
        podium.deploy(42)
    hello = load("hello")
    with pytest.raises(TypeError, match="go with a path"):
        podium.deploy(hello.hello_service, entry="hello.py")


def test_a_redeploy_that_fails_to_start_raises_and_the_old_version_serves(srv):
    picky = load("picky")
    first = podium.get_deployment(podium.deploy(picky.picky, url=srv.url, api_key=srv.key)(), wait=True, timeout=60)
    broken = podium.deploy(picky.picky, url=srv.url, api_key=srv.key)(ok=False)
    with pytest.raises(podium.DeploymentError, match="did not start") as failed:
        podium.get_deployment(broken, wait=True, timeout=60)
    assert "the picky initializer refuses to start" in str(failed.value)
    again = podium.get_deployment(first)
    assert again.status == "ACTIVE" and again.info["version"] == first.info["version"]
    assert again.ping() == "pong"
