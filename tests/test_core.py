"""The core in process, no server: who may call, what a call checks, the errors it raises, and
how the wire surfaces answer them (SQLite and PostgreSQL stores)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet

from podium.core.access import WORKER, Access
from podium.core.calls import Calls, check_arguments, check_callable
from podium.core.errors import (
    Conflict,
    DomainError,
    EndpointUnavailable,
    Forbidden,
    InvalidArguments,
    InvalidRequest,
    NotFound,
    QueueFull,
    RateLimited,
    Unauthorized,
)
from podium.core.options import JobOptions, parse_job_request
from podium.dispatch import JobQueue, JobStatus
from podium.metrics import Metrics
from podium.server.errors import from_domain
from podium.server.laminar_api import _laminar
from podium.store.catalog import Catalog, EndpointState
from podium.store.secretbox import SecretBox

ROUTE: dict[str, Any] = {
    "path": "/hello", "name": "hello", "kind": "route", "default": True, "streaming": False,
    "params": [{"name": "number"}, {"name": "message"}],
}


def version(vid: str, **config: Any) -> dict[str, Any]:
    return {
        "id": vid, "sha256": "0" * 64, "service": "hello", "entry": "app.py", "routes": [ROUTE],
        "config": {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 1, **config},
        "size": 1,
    }


class World:
    """A project with an endpoint and keys of every role, over a real store."""

    def __init__(self, store: Any) -> None:
        self.catalog = Catalog(store)
        self.queue = JobQueue(store, box=SecretBox(Fernet.generate_key()))
        self.metrics = Metrics()
        self.access = Access(self.catalog)
        self.calls = Calls(self.queue, self.catalog, self.metrics, max_attempts=3)
        self.keys: dict[str, str] = {}

    async def build(self, queue_cap: int | None = None) -> World:
        self.project = await self.catalog.ensure_project("default")
        other = await self.catalog.ensure_project("other")
        extra = {"queue_cap": queue_cap} if queue_cap else {}
        row = await self.catalog.put_version(self.project, version("v1", **extra))
        self.ep, _ = await self.catalog.point_endpoint(self.project, "hello", row, key_id=None, message=None)
        await self.catalog.put_version(other, version("v2"))
        for role in ("read", "invoke", "deploy", "admin"):
            _, self.keys[role] = await self.catalog.create_key(self.project, role)
        _, self.keys["other"] = await self.catalog.create_key(other, "admin")
        _, self.keys[WORKER] = await self.catalog.create_key(self.project, WORKER, endpoint_id=self.ep["id"])
        return self


@pytest.fixture
async def world(store: Any) -> World:
    return await World(store).build()


async def test_a_missing_or_unknown_key_is_unauthorized(world: World) -> None:
    for key in (None, "", "pod_live_nope"):
        with pytest.raises(Unauthorized):
            await world.access.caller(key, "read")


async def test_roles_rank_and_worker_tokens_stand_apart(world: World) -> None:
    assert (await world.access.caller(world.keys["invoke"], "invoke")).role == "invoke"
    with pytest.raises(Forbidden, match="needs deploy"):
        await world.access.caller(world.keys["invoke"], "deploy")
    with pytest.raises(Forbidden, match="worker protocol"):
        await world.access.caller(world.keys[WORKER], "read")
    assert (await world.access.caller(world.keys[WORKER], WORKER)).endpoint_id == world.ep["id"]
    assert (await world.access.caller(world.keys["deploy"], WORKER)).role == "deploy"
    with pytest.raises(Forbidden):
        await world.access.caller(world.keys["invoke"], WORKER)


async def test_another_projects_endpoint_is_not_found_never_forbidden(world: World) -> None:
    outsider = await world.access.caller(world.keys["other"], "admin")
    with pytest.raises(NotFound) as exc:
        await world.access.endpoint(outsider, "hello")
    assert (exc.value.what, exc.value.ref) == ("endpoint", "hello")
    with pytest.raises(NotFound):
        await world.access.caller(world.keys["other"], "read", project="default")
    insider = await world.access.caller(world.keys["read"], "read")
    assert (await world.access.endpoint(insider, "hello"))["id"] == world.ep["id"]
    assert (await world.access.endpoint(insider, world.ep["id"]))["name"] == "hello"


async def test_rate_limit_says_when_to_come_back(store: Any) -> None:
    w = await World(store).build()
    w.access = Access(w.catalog, rate=1, burst=2)
    await w.access.caller(w.keys["read"], "read")
    await w.access.caller(w.keys["read"], "read")
    with pytest.raises(RateLimited) as exc:
        await w.access.caller(w.keys["read"], "read")
    assert exc.value.retry_after is not None and exc.value.retry_after >= 1


async def test_submit_stores_a_job_with_the_versions_settings(world: World) -> None:
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    job_id = await world.calls.submit(principal, world.ep, ROUTE, {"number": 7}, kind="run")
    row = await world.queue.get(job_id)
    assert row is not None and row["status"] == JobStatus.IN_QUEUE and row["route"] == "/hello"
    assert row["max_attempts"] == 3 and row["timeout_ms"] > 0


async def test_idempotency_key_returns_the_first_job_or_conflicts(world: World) -> None:
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    first = await world.calls.submit(principal, world.ep, ROUTE, {"number": 1}, kind="run", idempotency_key="k1")
    again = await world.calls.submit(principal, world.ep, ROUTE, {"number": 1}, kind="run", idempotency_key="k1")
    assert again == first
    with pytest.raises(Conflict) as exc:
        await world.calls.submit(principal, world.ep, ROUTE, {"number": 2}, kind="run", idempotency_key="k1")
    assert exc.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidRequest):
        await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run", idempotency_key="x" * 256)


async def test_a_full_queue_refuses_with_retry_after(store: Any) -> None:
    w = await World(store).build(queue_cap=2)
    principal = await w.access.caller(w.keys["invoke"], "invoke")
    for i in range(2):
        await w.calls.submit(principal, w.ep, ROUTE, {"number": i}, kind="run")
    with pytest.raises(QueueFull) as exc:
        await w.calls.submit(principal, w.ep, ROUTE, {"number": 3}, kind="run")
    assert exc.value.retry_after == 5


async def test_webhooks_to_private_addresses_are_refused(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PODIUM_WEBHOOK_ALLOW_PRIVATE", raising=False)
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    with pytest.raises(InvalidRequest) as exc:
        await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run",
                                 options=JobOptions(webhook="http://127.0.0.1:9/hook"))
    assert exc.value.code == "invalid_webhook"


async def test_stopped_or_broken_endpoints_are_unavailable(world: World) -> None:
    await world.catalog.set_state(world.ep["id"], EndpointState.INACTIVE)
    ep = await world.catalog.get_endpoint(world.project, "hello")
    assert ep is not None
    with pytest.raises(EndpointUnavailable) as exc:
        check_callable(ep)
    assert exc.value.code == "endpoint_inactive" and "podium start hello" in exc.value.detail
    await world.catalog.set_state(world.ep["id"], EndpointState.ERROR, error="ImportError: no torch\nmore")
    ep = await world.catalog.get_endpoint(world.project, "hello")
    assert ep is not None
    with pytest.raises(EndpointUnavailable) as exc:
        check_callable(ep)
    assert exc.value.code == "endpoint_error" and exc.value.detail.endswith("ImportError: no torch")


def test_arguments_a_route_cannot_take_are_named() -> None:
    with pytest.raises(InvalidArguments, match="takes no argument colour"):
        check_arguments(ROUTE, {"number": 1, "colour": "red"})
    check_arguments(ROUTE, {"number": 1})
    check_arguments({**ROUTE, "kind": "handler"}, {"anything": 1})


def test_each_domain_error_has_its_wire_status_and_shape() -> None:
    cases: list[tuple[DomainError, int]] = [
        (Unauthorized("no key"), 401), (Forbidden("weak"), 403), (NotFound("job", "j1"), 404),
        (InvalidArguments("bad"), 400), (Conflict("again"), 422), (QueueFull("full", retry_after=5), 429),
        (RateLimited("slow down", retry_after=2), 429), (EndpointUnavailable("off", code="endpoint_inactive"), 503),
    ]
    for exc, status in cases:
        wire = from_domain(exc)
        assert wire.status_code == status
        assert wire.body()["error"] == exc.code and wire.body()["detail"] == exc.detail
        if exc.retry_after is not None:
            assert wire.headers == {"Retry-After": str(exc.retry_after)}
    assert from_domain(Unauthorized("x")).headers == {"WWW-Authenticate": "Bearer"}


def test_laminar_maps_the_same_errors_to_its_codes() -> None:
    assert _laminar(NotFound("endpoint", "nope")).body() == {
        "error_code": "api.noTargetPipeline", "error_message": "no endpoint named 'nope'"}
    unavailable = _laminar(EndpointUnavailable("stopped", code="endpoint_inactive"))
    assert unavailable.status_code == 503 and unavailable.body()["error_code"] == "api.invalidRequest"
    assert _laminar(InvalidArguments("bad")).body()["error_code"] == "api.invalidRequest"
    assert _laminar(Unauthorized("who")).status_code == 401


def test_request_options_are_domain_errors() -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_job_request({"input": {}, "policy": {"executionTimeout": 1}})
    assert exc.value.code.startswith("invalid")
