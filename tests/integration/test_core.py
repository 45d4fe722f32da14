"""The core in process, no server: who may call, what a call checks, the errors it raises, and
how the wire surfaces answer them (SQLite and PostgreSQL stores)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from cryptography.fernet import Fernet

from podium.clock import FakeClock
from podium.core.access import WORKER, Access
from podium.core.calls import Calls, Failure, Outcome, check_arguments, check_callable, error_of, failure_of
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
    WorkerGone,
)
from podium.core.options import JobOptions, parse_job_request
from podium.core.split import routed_to_canary
from podium.core.workers import Result, WorkerInfo, WorkerPool, WorkerState
from podium.dispatch import JobQueue, JobStatus
from podium.dispatch.jobs import Job
from podium.dispatch.keys import HOLD_KEY, ep_key
from podium.dispatch.states import WORKER_LOST
from podium.metrics import Metrics
from podium.server.admin.models import DeployIn, parse
from podium.server.errors import HTTPError, from_domain
from podium.server.laminar_api import _laminar
from podium.server.streams import node_input, outputs
from podium.server.worker_results import read_result
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.records import Rollout
from podium.store.secretbox import SecretBox

ROUTE: dict[str, Any] = {
    "path": "/hello",
    "name": "hello",
    "kind": "route",
    "default": True,
    "streaming": False,
    "params": [{"name": "number", "required": True}, {"name": "message", "required": False}],
}


def version(vid: str, **config: Any) -> dict[str, Any]:
    return {
        "id": vid,
        "sha256": "0" * 64,
        "service": "hello",
        "entry": "app.py",
        "routes": [ROUTE],
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
        self.calls = Calls(self.queue, self.catalog, self.access, self.metrics, max_attempts=3)
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
        _, self.keys[WORKER] = await self.catalog.create_key(self.project, WORKER, endpoint_id=self.ep.id)
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
    assert (await world.access.caller(world.keys[WORKER], WORKER, scoped=True)).endpoint_id == world.ep.id
    with pytest.raises(NotFound):  # bound to one endpoint: only routes that keep it there
        await world.access.caller(world.keys[WORKER], WORKER)
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
    assert (await world.access.endpoint(insider, "hello")).id == world.ep.id
    assert (await world.access.endpoint(insider, world.ep.id)).name == "hello"


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
    stored = await world.calls.submit(principal, world.ep, ROUTE, {"number": 7}, kind="run")
    row = await world.queue.get(stored.job_id)
    assert row is not None and row.status == JobStatus.IN_QUEUE and row.route == "/hello"
    assert stored.queued == row, "the job as stored, not read back, is the job as read"
    assert row.max_attempts == 3 and row.timeout_ms is not None and row.timeout_ms > 0


async def test_idempotency_key_returns_the_first_job_or_conflicts(world: World) -> None:
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    first = await world.calls.submit(principal, world.ep, ROUTE, {"number": 1}, kind="run", idempotency_key="k1")
    again = await world.calls.submit(principal, world.ep, ROUTE, {"number": 1}, kind="run", idempotency_key="k1")
    assert again.job_id == first.job_id and first.queued is not None
    assert again.queued is None, "the first job, not stored by this call"
    with pytest.raises(Conflict) as exc:
        await world.calls.submit(principal, world.ep, ROUTE, {"number": 2}, kind="run", idempotency_key="k1")
    assert exc.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidRequest):
        await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run", idempotency_key="x" * 256)


async def test_a_call_finds_its_route_checks_arguments_and_state_then_stores_its_job(world: World) -> None:
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    with pytest.raises(NotFound) as missing:
        await world.calls.target(principal, "hello", "nope")
    assert missing.value.detail == "endpoint hello has no route /nope (routes: /hello)"
    target = await world.calls.target(principal, "hello")
    assert target.route["path"] == "/hello" and target.endpoint.id == world.ep.id
    with pytest.raises(InvalidArguments):
        await world.calls.call(principal, target, {"colour": "red"})
    assert await world.queue.waiting(world.ep.id) == 0, "a refused call stores nothing"
    queued = await world.calls.call(principal, target, {"number": 1})
    assert queued.job is None and not queued.ended and queued.failure is None
    waited = await world.calls.call(principal, target, {"number": 2}, wait=0.05)
    assert waited.job is not None and waited.job.status == JobStatus.IN_QUEUE and not waited.ended
    await world.catalog.set_state(world.ep.id, EndpointState.INACTIVE)
    stopped = await world.calls.target(principal, "hello")
    with pytest.raises(EndpointUnavailable):
        await world.calls.call(principal, stopped, {"number": 3})


@pytest.mark.parametrize(
    ("status", "error", "info", "expected"),
    [
        ("FAILED", "ValueError: bad", {"type": "ValueError", "message": "bad"}, Failure.ROUTE_ERROR),
        (
            "FAILED",
            "InvalidArguments: missing x",
            {"type": "InvalidArguments", "message": "missing x"},
            Failure.INVALID_ARGUMENTS,
        ),
        ("FAILED", WORKER_LOST, None, Failure.WORKER_LOST),
        ("TIMED_OUT", "ran past 5 s", None, Failure.TIMED_OUT),
        ("CANCELLED", None, None, Failure.CANCELLED),
    ],
)
def test_every_surface_reads_a_failure_the_same_way(
    status: str, error: str | None, info: dict[str, str] | None, expected: Failure
) -> None:
    job = Job(
        **{f.name: None for f in dataclasses.fields(Job)}
        | {
            "id": "j",
            "status": status,
            "error": error,
            "error_info": info,
        }
    )
    outcome = Outcome("j", job)
    assert outcome.ended and not outcome.completed
    assert outcome.failure == failure_of(job) == expected
    assert error_of(job) == (info or {})


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
        await world.calls.submit(
            principal, world.ep, ROUTE, {}, kind="run", options=JobOptions(webhook="http://127.0.0.1:9/hook")
        )
    assert exc.value.code == "invalid_webhook"


async def test_stopped_or_broken_endpoints_are_unavailable(world: World) -> None:
    await world.catalog.set_state(world.ep.id, EndpointState.INACTIVE)
    ep = await world.catalog.get_endpoint(world.project, "hello")
    assert ep is not None
    with pytest.raises(EndpointUnavailable) as exc:
        check_callable(ep)
    assert exc.value.code == "endpoint_inactive" and "podium start hello" in exc.value.detail
    await world.catalog.set_state(world.ep.id, EndpointState.ERROR, error="ImportError: no torch\nmore")
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
        (Unauthorized("no key"), 401),
        (Forbidden("weak"), 403),
        (NotFound("job", "j1"), 404),
        (InvalidArguments("bad"), 400),
        (Conflict("again"), 422),
        (QueueFull("full", retry_after=5), 429),
        (RateLimited("slow down", retry_after=2), 429),
        (EndpointUnavailable("off", code="endpoint_inactive"), 503),
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
        "error_code": "api.noTargetPipeline",
        "error_message": "no endpoint named 'nope'",
    }
    unavailable = _laminar(EndpointUnavailable("stopped", code="endpoint_inactive"))
    assert unavailable.status_code == 503 and unavailable.body()["error_code"] == "api.invalidRequest"
    assert _laminar(InvalidArguments("bad")).body()["error_code"] == "api.invalidRequest"
    assert _laminar(Unauthorized("who")).status_code == 401


def test_request_options_are_domain_errors() -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse_job_request({"input": {}, "policy": {"executionTimeout": 1}})
    assert exc.value.code.startswith("invalid")


# -- the worker pool ------------------------------------------------------------------------------


class Pool:
    """A WorkerPool over the world's queue, on a fake clock, recording the scaler's callbacks."""

    def __init__(self, world: World) -> None:
        self.clock = FakeClock()
        world.queue.clock = self.clock
        self.pool = WorkerPool(world.queue, world.catalog, self.clock, lease=30, events=self)
        self.ready: list[str] = []
        self.failed: list[tuple[str, str]] = []

    async def worker_ready(self, info: WorkerInfo, ep: Any) -> None:
        self.ready.append(info.id)

    async def fail_endpoint(self, info: WorkerInfo, reason: str) -> None:
        self.failed.append((info.id, reason))


async def connected() -> bool:
    return True


async def test_a_worker_becomes_ready_takes_a_job_and_is_released_when_done(world: World) -> None:
    p = Pool(world)
    info = p.pool.new("w1", world.ep.id, world.ep.version_id, local=True)
    assert info.state is WorkerState.STARTING and (await p.pool.counts(world.ep.id))["initializing"] == 1
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    job_id = (
        await world.calls.submit(
            principal, world.ep, ROUTE, {"number": 1}, kind="run", options=JobOptions(env={"TOKEN": "t0ken"})
        )
    ).job_id
    p.clock.advance(2)
    jobs = await p.pool.take("w1", world.ep, limit=1, wait=0, alive=connected)
    assert p.ready == ["w1"] and info.ready_at == p.clock.now()
    assert [j["id"] for j in jobs] == [job_id] and jobs[0]["env"] == {"TOKEN": "t0ken"}
    assert jobs[0]["podium"] == {"route": "/hello", "attempt": 1, "kind": "run"}
    assert info.state is WorkerState.RUNNING and info.jobs == {job_id}
    p.clock.advance(1)
    await p.pool.done("w1", world.ep, job_id, Result(output={"ok": 1}))
    row = await world.queue.get(job_id)
    assert row is not None and row.status == JobStatus.COMPLETED
    assert info.state is WorkerState.IDLE and info.jobs_done == 1 and info.idle_since == p.clock.now()


async def test_draining_or_outdated_workers_take_nothing(world: World) -> None:
    p = Pool(world)
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run")
    old = p.pool.new("old", world.ep.id, "another-version", local=True)
    assert await p.pool.take("old", world.ep, limit=1, wait=0, alive=connected) == []
    draining = p.pool.new("d", world.ep.id, world.ep.version_id, local=True)
    p.pool.drain(draining)
    assert await p.pool.take("d", world.ep, limit=1, wait=0, alive=connected) == []
    assert old.jobs == set() and draining.state is WorkerState.DRAINING


async def test_the_held_poll_of_a_draining_worker_ends_when_the_server_closes(world: World) -> None:
    """A draining worker's poll is held like a real one (a RunPod worker must not spin on
    204s), but the server's shutdown must not wait out that hold: it kept `podium up` from
    stopping for its whole graceful-shutdown timeout, which then cut the poll off with an error."""
    p = Pool(world)
    draining = p.pool.new("d", world.ep.id, world.ep.version_id, local=True)
    p.pool.drain(draining)
    held = asyncio.create_task(p.pool.take("d", world.ep, limit=1, wait=3600, alive=connected))
    for _ in range(500):  # until the poll is held
        if world.queue.notifier.listeners(HOLD_KEY):
            break
        await asyncio.sleep(0.01)
    assert not held.done()
    world.queue.close()
    assert await asyncio.wait_for(held, 10) == []


async def test_a_hand_worker_is_given_only_its_versions_jobs_and_told_when_the_endpoint_moved(world: World) -> None:
    p = Pool(world)
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    job_id = (await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run")).job_id
    with pytest.raises(WorkerGone) as told:
        await p.pool.take("h-old", world.ep, limit=1, wait=0, alive=connected, version="v0")
    assert told.value.code == "version_retired" and "endpoint hello moved to version v1" in told.value.detail
    old = p.pool.get("h-old")
    assert old is not None and old.version_id == "v0" and old.state is WorkerState.DRAINING and not old.local
    await p.pool.ping("h-quiet", world.ep, [], version="v0")  # says its version on ping only (runpod)
    assert await p.pool.take("h-quiet", world.ep, limit=1, wait=0, alive=connected) == []
    jobs = await p.pool.take("h-now", world.ep, limit=1, wait=0, alive=connected, version="v1")
    assert [j["id"] for j in jobs] == [job_id]
    p.pool.forget("h-old")
    assert p.pool.get("h-old") is None and not p.pool.is_gone("h-old"), "it may call again"


async def test_a_worker_that_hung_up_while_waiting_gets_nothing_and_its_claim_goes_back(world: World) -> None:
    p = Pool(world)
    principal = await world.access.caller(world.keys["invoke"], "invoke")
    for answers in ([False], [True, False]):  # gone when woken; gone once the job was claimed
        seen = iter(answers)

        async def flaky(seen: Any = seen) -> bool:
            return next(seen)

        waiting = asyncio.create_task(p.pool.take("w1", world.ep, limit=1, wait=30, alive=flaky))
        for _ in range(500):  # until the poll waits (there is no job yet)
            if world.queue.notifier.listeners(ep_key(world.ep.id)):
                break
            await asyncio.sleep(0.01)
        job_id = (await world.calls.submit(principal, world.ep, ROUTE, {}, kind="run")).job_id
        assert await asyncio.wait_for(waiting, 10) == []
        row = await world.queue.get(job_id)
        assert row is not None and row.status == JobStatus.IN_QUEUE and row.attempt == 0
        await world.queue.purge(world.ep.id)


async def test_gone_and_foreign_workers_are_refused(world: World) -> None:
    p = Pool(world)
    p.pool.new("w1", world.ep.id, None, local=True)
    p.pool.gone("w1")
    with pytest.raises(WorkerGone):
        await p.pool.take("w1", world.ep, limit=1, wait=0, alive=connected)
    p.pool.new("w2", "another-endpoint", None, local=True)
    with pytest.raises(NotFound):
        p.pool.check("w2", world.ep)


async def test_a_stopped_job_reaches_its_worker_through_the_stop_channel(world: World) -> None:
    p = Pool(world)
    info = p.pool.new("w1", world.ep.id, world.ep.version_id, local=True)
    info.jobs.add("j1")
    assert p.pool.stop_job("w1", "j1") is info
    assert info.jobs == set() and info.jobs_done == 1
    assert await p.pool.stop_requests("w1", world.ep, 0) == ["j1"]
    assert await p.pool.stop_requests("w1", world.ep, 0) == []
    assert p.pool.stop_job("nobody", "j1") is None


async def test_a_hand_started_worker_that_cannot_load_fails_its_endpoint(world: World) -> None:
    p = Pool(world)
    await p.pool.ping("remote", world.ep, [], unhealthy="ImportError: no module named torch")
    info = p.pool.get("remote")
    assert info is not None and info.state is WorkerState.UNHEALTHY and not info.local
    assert p.failed == [("remote", "ImportError: no module named torch")]


def test_job_done_bodies_of_both_kinds_of_worker_are_read() -> None:
    assert read_result({"status": "IN_PROGRESS", "output": 50}) == Result(progress=True, output=50)
    assert read_result({"output": 1, "stopPod": True}) == Result(output=1, stop_pod=True)
    runpod = read_result({"error": '{"error_type": "ValueError", "error_message": "bad", "error_traceback": "tb"}'})
    assert runpod.error_info == {"type": "ValueError", "message": "bad", "traceback": "tb"}
    ours = read_result({"error": "ValueError: bad", "error_info": {"type": "ValueError"}, "retryable": True})
    assert ours.retryable and ours.error == "ValueError: bad"
    assert read_result({"error": {"odd": 1}}).error == '{"odd":1}'
    assert read_result([1, 2]) == Result(output=[1, 2])


# -- the admin API's request bodies ----------------------------------------------------------------


def test_deploy_bodies_are_checked_against_the_route_record() -> None:
    route = {k: v for k, v in ROUTE.items() if k != "name"}
    version = {
        "sha256": "a" * 64,
        "service": "s",
        "entry": "app.py",
        "config": {},
        "size": 1,
        "routes": [dict(route, method="hello", is_async=False, var_keyword=False)],
    }
    assert parse(DeployIn, {"name": "x", "version": version}, "deploy").version.routes[0]["path"] == "/hello"
    bad_kind = dict(version, routes=[dict(version["routes"][0], kind="rpc")])
    for body, words in [
        ({"name": "x", "version": dict(version, routes=[])}, "version.routes"),
        ({"name": "x", "version": bad_kind}, "kind"),
        ({"name": "x", "version": dict(version, sha256="nope")}, "version.sha256"),
        ({"name": "x"}, "version"),
    ]:
        with pytest.raises(HTTPError) as exc:
            parse(DeployIn, body, "deploy")
        assert exc.value.status_code == 400 and exc.value.error == "invalid_request"
        assert words in str(exc.value.detail)
    for body, field in [  # what the server derives or does not know is never taken from a request
        ({"name": "x", "version": dict(version, env_hash="0" * 24)}, "version.env_hash"),
        (
            {"name": "x", "version": dict(version, routes=[dict(version["routes"][0], name="hello")])},
            "version.routes.0.name",
        ),
        ({"name": "x", "version": version, "project": "other"}, "project"),
    ]:
        with pytest.raises(HTTPError) as exc:
            parse(DeployIn, body, "deploy")
        assert exc.value.status_code == 422 and exc.value.detail == f"deploy: unknown field {field}"


def test_laminar_outputs_are_values_lmnr_accepts() -> None:
    chat = [{"role": "user", "content": "hi"}]
    assert outputs({"a": "x", "d": chat}) == {"a": {"value": "x"}, "d": {"value": chat}}
    assert outputs(chat) == {"output": {"value": chat}}
    for odd, text in [
        (3, "3"),
        (2.5, "2.5"),
        (["p", "q"], '["p","q"]'),
        (None, "null"),
        ({"token": None}, '{"token":null}'),
        (True, "true"),
        ([1, "a"], '[1,"a"]'),
        ([{"role": "user", "content": 1}], '[{"role":"user","content":1}]'),
        ([{"role": "user", "content": "hi", "name": "n"}], '[{"role":"user","content":"hi","name":"n"}]'),
    ]:
        assert node_input(odd) == text


async def test_a_gated_deploy_is_refused_or_started_in_the_store(world: World) -> None:
    """1. v3 is staged on the serving endpoint and its start fails: the version keeps the error,
    the history the deploy (not current), and the endpoint its version.
    2. Staged again, it starts: the endpoint moves to it ACTIVE and the error is forgotten."""
    catalog = world.catalog
    await catalog.set_state(world.ep.id, EndpointState.ACTIVE)
    v3 = await catalog.put_version(world.project, version("v3"))
    await catalog.stage_endpoint(world.ep.id, v3.id, key_id=None, message="try v3")
    assert not await catalog.refuse_pending(world.ep.id, "v1", "not the pending one")
    assert await catalog.refuse_pending(world.ep.id, v3.id, "RuntimeError: no weights")
    ep = await catalog.get_endpoint(world.project, world.ep.id)
    assert ep is not None and (ep.version_id, ep.state, ep.pending) == ("v1", EndpointState.ACTIVE, None)
    assert (await catalog.get_version(world.project, v3.id)).start_error == "RuntimeError: no weights"
    history = await catalog.history(world.ep.id)
    assert [(h.version_id, h.message, h.error) for h in history] == [
        (v3.id, "try v3", "RuntimeError: no weights"),
        ("v1", None, None),
    ]
    await catalog.stage_endpoint(world.ep.id, v3.id, key_id=None, message="again")
    moved, changed = await catalog.point_endpoint(
        world.project, "hello", v3, key_id=None, message="again", started=True
    )
    assert changed and (moved.version_id, moved.state, moved.pending) == (v3.id, EndpointState.ACTIVE, None)
    assert (await catalog.get_version(world.project, v3.id)).start_error is None


async def test_a_rollout_splits_calls_by_job_id_and_workers_take_by_version(world: World) -> None:
    """On both stores: with a canary at 30 %, each call's job goes where the hash of its id says;
    a canary worker takes only the canary's jobs, a worker of the endpoint's version the rest,
    and each job records the version that ran it. Once the rollout ends (abort), the endpoint's
    workers take the jobs still routed to the canary; each version's figures count what it ran."""
    principal = await world.access.caller(world.keys["deploy"], "deploy")
    canary = await world.catalog.put_version(world.project, version("v1-canary"))
    rollout = Rollout(canary.id, 30, None, None, 0.0)
    assert await world.catalog.set_rollout(
        world.ep.id, rollout, version_id=canary.id, action="start", key_id=None, message="canary at 30 %"
    )
    ep = await world.catalog.get_endpoint(world.project, world.ep.id)
    assert ep is not None and ep.rollout == rollout
    target = await world.calls.target(principal, ep)
    ids = [(await world.calls.call(principal, target, {"number": 1})).job_id for _ in range(40)]
    routed = {i for i in ids if routed_to_canary(i, 30)}
    assert 0 < len(routed) < len(ids)  # fails with probability 0.7**40 + 0.3**40 < 1e-6

    own = await world.queue.take(ep.id, "w-own", lease=30, limit=100, version=ep.version_id)
    assert {j.id for j in own} == set(ids) - routed
    assert {j.version_id for j in own} == {ep.version_id}
    taken = await world.queue.take(ep.id, "w-canary", lease=30, limit=100, version=canary.id)
    assert {j.id for j in taken} == routed and {j.version_id for j in taken} == {canary.id}
    for j in [*own, *taken]:
        await world.queue.finish(j.id, j.worker_id or "", output=1)
    assert (await world.queue.figures(ep.id, canary.id, 0.0)).calls == len(routed)
    assert (await world.queue.figures(ep.id, ep.version_id, 0.0)).calls == len(ids) - len(routed)

    later = [(await world.calls.call(principal, target, {"number": 2})).job_id for _ in range(40)]
    assert await world.catalog.set_rollout(
        ep.id, None, version_id=canary.id, action="abort", key_id=None, message="aborted", only_version=canary.id
    )
    assert not await world.catalog.set_rollout(  # the guard does not end a rollout that is not there
        ep.id, None, version_id=canary.id, action="guard", key_id=None, message="x", only_version=canary.id
    )
    rest = await world.queue.take(ep.id, "w-own", lease=30, limit=100, version=ep.version_id)
    assert {j.id for j in rest} == set(later) and {j.version_id for j in rest} == {ep.version_id}
    assert any(routed_to_canary(i, 30) for i in later)  # fails with probability 0.7**40 < 1e-6
    steps = [(h.action, h.repointed) for h in await world.catalog.history(ep.id)]
    assert steps == [("abort", False), ("start", False), (None, True)]
