"""The parts replicas share, in process on a real throwaway PostgreSQL: rate budgets counted in
the store, wake-ups carried by LISTEN/NOTIFY, and one leader at a time."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from podium.clock import FakeClock
from podium.core.access import Access
from podium.core.errors import RateLimited
from podium.core.workers import WorkerPool
from podium.dispatch.notify import Notifier, wait_event
from podium.dispatch.relay import MAX_PAYLOAD, PgRelay, _batches
from podium.scaling.leader import Leadership
from podium.store import Store, migrate, open_store
from podium.store.catalog import Catalog
from podium.store.cluster import Cluster, Replica
from podium.store.ratebuckets import StoredBuckets
from test_core import World


@pytest.fixture
async def pg(pg_cluster: Any) -> AsyncIterator[Store]:
    url = pg_cluster.create_database(f"cluster{uuid.uuid4().hex[:8]}")
    migrate(url)
    store = open_store(url)
    yield store
    await store.close()


async def test_a_keys_budget_is_shared_by_every_replica(pg: Store) -> None:
    """Two replicas' Access over one store: a burst of 4 is 4 in all, not 4 each."""
    catalog = Catalog(pg)
    project = await catalog.ensure_project()
    _, key = await catalog.create_key(project, "invoke", name="shared")
    a = Access(catalog, rate=0.001, burst=4, shared=True)
    b = Access(Catalog(pg), rate=0.001, burst=4, shared=True)
    for replica in (a, b, a, b):
        await replica.caller(key, "invoke")
    for replica in (a, b):
        with pytest.raises(RateLimited) as exc:
            await replica.caller(key, "invoke")
        assert exc.value.retry_after >= 1


async def test_replicas_draw_a_keys_tokens_a_few_at_a_time_and_never_more_than_its_bucket(pg: Store) -> None:
    """Two replicas' budgets for one key (1000/s, bursts of 2000), at one instant (no refill):
    each draws 10 tokens per UPDATE, and together they grant exactly the burst, then refuse."""
    a, b = StoredBuckets(pg, 1000, 2000), StoredBuckets(pg, 1000, 2000)
    assert a.draw == 10
    now = 1_000_000.0
    before = pg.round_trips
    granted = [await a.take("k", now) for _ in range(100)]
    assert granted == [0.0] * 100
    # A round trip per draw; the first finds no row and stores it (four more: BEGIN to COMMIT).
    assert pg.round_trips - before == 100 // a.draw + 4, "one statement per draw, not per request"
    granted += [await replica.take("k", now) for _ in range(950) for replica in (a, b)]
    assert granted.count(0.0) == 2000 and all(wait > 0 for wait in granted[2000:]), "the burst, not more"
    waits = [await replica.take("k", now) for replica in (a, b)]
    assert all(wait > 0 for wait in waits)
    # Once refilled, a draw left unspent past DRAW_SECONDS is not spent: the replica draws anew.
    assert await a.take("k", now + 5) == 0.0


def test_notifications_are_packed_under_postgresqls_payload_limit() -> None:
    pending = {f"job:{i:040d}": i % 2 == 0 for i in range(800)}
    payloads = _batches(pending)
    assert len(payloads) > 1 and all(len(p.encode()) < MAX_PAYLOAD + 100 for p in payloads)
    lines = [line for p in payloads for line in p.split("\n")]
    assert {line[1:]: line[0] == "1" for line in lines} == pending


async def test_a_wake_up_and_an_announced_event_reach_the_other_replica(pg: Store) -> None:
    assert pg.conninfo is not None
    here, there = Notifier(), Notifier()
    relays = [PgRelay(pg.conninfo, here, sweep=600), PgRelay(pg.conninfo, there, sweep=600)]
    for relay in relays:
        await relay.start()
    try:
        await wait_for(lambda: all(r.listening for r in relays))
        heard: list[str] = []
        there.on("stop", heard.append)
        with there.listen("job:1") as ev, here.listen("job:1") as mine:
            here.notify("job:1")
            here.announce("stop", "w-1 job-1 1")
            assert await wait_event(ev, 10)
            await wait_for(lambda: heard == ["w-1 job-1 1"])
            assert mine.is_set()  # woken here at once, not a second time by its own NOTIFY
    finally:
        for relay in relays:
            await relay.close()


async def test_one_leader_at_a_time_and_the_next_takes_over(pg: Store) -> None:
    events: list[str] = []

    def duties(name: str) -> Leadership:
        async def gain() -> None:
            events.append(f"{name} leads")

        async def lose() -> None:
            events.append(f"{name} steps down")

        return Leadership(pg.conninfo, gain, lose)

    first, second, never = duties("first"), duties("second"), duties("never")
    never.eligible = False
    await first.start()
    await wait_for(lambda: first.leading)
    await second.start()
    await never.start()
    await refused_tries(pg, 3)
    assert events == ["first leads"] and not second.leading
    await first.close()  # its connection closes: the lock is free
    await wait_for(lambda: second.leading)
    assert events == ["first leads", "first steps down", "second leads"] and not never.leading
    await second.close()
    await never.close()


async def test_a_replica_whose_duties_fail_to_start_or_stop_keeps_trying_to_lead(pg: Store) -> None:
    """Starting the duties fails once (the store unreachable a moment), and so does stopping
    them: the replica steps down, frees the lock, and leads at its next try."""
    events: list[str] = []
    failures = {"gain": 1, "lose": 1}

    async def step(name: str) -> None:
        events.append(name)
        if failures[name]:
            failures[name] -= 1
            raise RuntimeError(f"{name}: the store is unreachable")

    async def gain() -> None:
        await step("gain")

    async def lose() -> None:
        await step("lose")

    replica = Leadership(pg.conninfo, gain, lose)
    await replica.start()
    await wait_for(lambda: replica.leading and events == ["gain", "lose", "gain"])
    await replica.close()
    assert events == ["gain", "lose", "gain", "lose"] and not replica.leading


async def refused_tries(pg: Store, n: int) -> None:
    """Wait until one connection has asked for the leader's lock `n` times, as PostgreSQL saw it
    (each try changes its backend's state_change); the lock is held elsewhere, so all refused."""
    import psycopg

    seen: set[tuple[int, Any]] = set()
    async with await psycopg.AsyncConnection.connect(pg.conninfo, autocommit=True) as look:

        async def most() -> int:
            cur = await look.execute(
                "SELECT pid, state_change FROM pg_stat_activity WHERE datname = current_database()"
                " AND query LIKE 'SELECT pg_try_advisory_lock(%' AND state = 'idle'"
            )
            seen.update(await cur.fetchall())
            per_pid = [pid for pid, _ in seen]
            return max((per_pid.count(pid) for pid in per_pid), default=0)

        deadline = asyncio.get_running_loop().time() + 30
        while await most() < n:
            assert asyncio.get_running_loop().time() < deadline, f"fewer than {n} tries for the lock"
            await asyncio.sleep(0.05)


async def wait_for(predicate: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.05)


async def test_every_replica_counts_the_workers_another_one_heard_from(pg: Store) -> None:

    world = await World(pg).build()
    clock = FakeClock()
    a = WorkerPool(world.queue, world.catalog, clock, lease=30, replica_id="a")
    b = WorkerPool(world.queue, world.catalog, clock, lease=30, replica_id="b")
    a.new("w-1", world.ep.id, "v1", local=True)
    assert (await b.counts(world.ep.id))["initializing"] == 0
    await a.flush()
    seen = await b.view(world.ep.id)
    assert [(w["id"], w["replica"], w["state"]) for w in seen] == [("w-1", "a", "STARTING")]
    assert (await b.counts(world.ep.id))["initializing"] == 1
    a.gone("w-1")
    await a.flush()
    assert await b.view(world.ep.id) == []


async def test_the_scaler_counts_hand_workers_that_only_another_replica_hears_from(pg: Store) -> None:
    """`WorkerPool.elsewhere`, what the leader's autoscaler adds to its own workers: a worker
    started by hand that replica a hears from, as b reads it; not a's own workers (a starts and
    stops them), not one b hears from itself, not one silent for two leases."""
    world = await World(pg).build()
    clock = FakeClock()
    a = WorkerPool(world.queue, world.catalog, clock, lease=30, replica_id="a")
    b = WorkerPool(world.queue, world.catalog, clock, lease=30, replica_id="b")
    a.new("w-owned", world.ep.id, "v1", local=True)
    a.new("h-far", world.ep.id, "v1", local=False)
    b.new("h-near", world.ep.id, "v1", local=False)
    await a.flush()
    await b.flush()
    found = await b.elsewhere()
    assert [(w.id, w.replica_id, w.local, w.version_id) for w in found[world.ep.id]] == [("h-far", "a", False, "v1")]
    clock.advance(61)
    assert await b.elsewhere() == {}


async def test_silent_replicas_and_their_workers_are_forgotten(pg: Store) -> None:
    cluster = Cluster(pg)
    await cluster.beat(Replica("old", "http://a", 0.0, 100.0, leader=True, runs_workers=True))
    await cluster.beat(Replica("new", "http://b", 0.0, 5000.0, leader=True, runs_workers=True))
    assert [(r.id, r.leader) for r in await cluster.live(5001.0)] == [("new", True)]
    await cluster.prune(before=1000.0)
    assert [r.id for r in await cluster.live(0.0)] == ["new"]
