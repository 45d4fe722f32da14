"""Job-queue semantics against the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from podium.clock import FakeClock
from podium.dispatch import JobQueue, JobStatus, NewJob, maintenance
from podium.dispatch.keys import ep_key
from podium.dispatch.states import WORKER_LOST
from podium.errors import ConfigError
from podium.store import migrate, open_store
from podium.store.secretbox import SecretBox
from podium.store.tables import jobs


def job(**kw):
    return NewJob(project_id="p", endpoint_id="ep1", route="/hello", input={"x": 1}, **kw)


async def test_enqueue_take_finish(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    row = await q.get(jid)
    assert row.status == JobStatus.IN_QUEUE and row.attempt == 0
    taken = await q.take("ep1", "w1", lease=30)
    assert [t.id for t in taken] == [jid]
    assert taken[0].status == JobStatus.IN_PROGRESS and taken[0].attempt == 1
    assert await q.take("ep1", "w2", lease=30) == []
    assert await q.finish(jid, "w1", output={"ok": True})
    row = await q.get(jid)
    assert row.status == JobStatus.COMPLETED and row.output_json == '{"ok":true}'
    assert row.delay_ms >= 0 and row.execution_ms >= 0


async def test_late_and_foreign_posts_change_nothing(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    await q.take("ep1", "w1", lease=30)
    assert not await q.finish(jid, "w2", output=1), "another worker's post must be ignored"
    assert await q.finish(jid, "w1", error="boom")
    assert not await q.finish(jid, "w1", output=2), "a late post must be ignored"
    assert not await q.progress(jid, "w1", 50)
    row = await q.get(jid)
    assert row.status == JobStatus.FAILED and row.error == "boom" and row.progress is None


async def test_take_is_fifo_and_batched(store):
    q = JobQueue(store)
    ids = [await q.enqueue(job()) for _ in range(5)]
    first = await q.take("ep1", "w1", lease=30, limit=3)
    assert sorted(t.id for t in first) == sorted(ids[:3])
    rest = await q.take("ep1", "w2", lease=30, limit=10)
    assert sorted(t.id for t in rest) == sorted(ids[3:])


async def test_concurrent_takers_never_share_a_job(store):
    q = JobQueue(store)
    ids = {await q.enqueue(job()) for _ in range(40)}
    seen: list[str] = []

    async def taker(w: str) -> None:
        while True:
            got = await q.take("ep1", w, lease=30, limit=2)
            if not got:
                return
            seen.extend(t.id for t in got)

    await asyncio.gather(*(taker(f"w{i}") for i in range(6)))
    assert sorted(seen) == sorted(ids)


async def test_long_poll_is_woken_by_enqueue(store):
    q = JobQueue(store)
    waiter = asyncio.create_task(q.take_wait("ep1", "w1", lease=30, timeout=30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    jid = await q.enqueue(job())
    taken = await asyncio.wait_for(waiter, 5)
    assert [t.id for t in taken] == [jid]


async def test_a_waiting_worker_takes_an_awaited_job_in_the_round_trip_that_stores_it(store):
    """PostgreSQL: a worker waiting here takes a runsync's job in its insert's round trip, and
    the other waiting worker is not woken for it. SQLite: the job is taken as any other."""
    q = JobQueue(store)
    takers = [asyncio.create_task(q.take_wait("ep1", f"w{i}", lease=30, timeout=30)) for i in (1, 2)]
    while q.notifier.listeners(ep_key("ep1")) < 2:
        await asyncio.sleep(0.01)
    before = store.round_trips
    jid = await q.enqueue(job(awaited=True))
    done, waiting = await asyncio.wait(takers, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    assert [t.id for t in done.pop().result()] == [jid]
    await asyncio.sleep(0.1)  # room for a take the other worker should not make
    if store.pipelines:
        assert store.round_trips - before == 1, "stored and taken in one round trip, nobody else woken"
    assert len(waiting) == 1 and not waiting.pop().done()
    for taker in takers:
        taker.cancel()


async def test_long_poll_times_out_empty(store):
    q = JobQueue(store)
    assert await q.take_wait("ep1", "w1", lease=30, timeout=0.1) == []


async def test_wait_final_is_woken_by_finish(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    waiter = asyncio.create_task(q.wait_final(jid, timeout=30))
    await q.take("ep1", "w1", lease=30)
    await q.finish(jid, "w1", output=7)
    row = await asyncio.wait_for(waiter, 5)
    assert row.status == JobStatus.COMPLETED


async def test_wait_final_for_another_endpoint_does_not_wait(store):
    """A /status for a job of another endpoint is answered 404 at once, not after a hold."""
    q = JobQueue(store)
    jid = await q.enqueue(job())
    row = await asyncio.wait_for(q.wait_final(jid, timeout=30, promise=False, endpoint_id="ep2"), 5)
    assert row.id == jid and row.endpoint_id == "ep1" and row.status == JobStatus.IN_QUEUE
    waiter = asyncio.create_task(q.wait_final(jid, timeout=30, promise=False, endpoint_id="ep1"))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "its own endpoint's caller waits for the job to end"
    await q.take("ep1", "w1", lease=30)
    await q.finish(jid, "w1", output=7)
    assert (await asyncio.wait_for(waiter, 5)).status == JobStatus.COMPLETED


async def test_lost_lease_requeues_then_fails(store):
    clock = FakeClock()
    q = JobQueue(store, clock=clock)
    jid = await q.enqueue(job(max_attempts=2))
    await q.take("ep1", "w1", lease=2)
    clock.advance(1)
    assert await q.recover() == [], "a live lease is left alone"
    assert await q.heartbeat("w1", [jid], lease=2) == 1
    clock.advance(2.5)
    assert await q.recover() == [jid]
    row = await q.get(jid)
    assert row.status == JobStatus.IN_QUEUE and row.worker_id is None
    taken = await q.take("ep1", "w2", lease=2)
    assert taken[0].attempt == 2
    clock.advance(3)
    assert await q.recover() == [jid]
    row = await q.get(jid)
    assert row.status == JobStatus.FAILED and row.error == WORKER_LOST
    assert len(row.attempt_errors) == 2


async def test_recover_dead_worker_at_once(store):
    q = JobQueue(store)
    a = await q.enqueue(job())
    b = await q.enqueue(job())
    await q.take("ep1", "w1", lease=300)
    await q.take("ep1", "w2", lease=300)
    assert await q.recover(worker_id="w1") == [a]
    assert (await q.get(b)).status == JobStatus.IN_PROGRESS


async def test_stream_chunks_in_order(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    await q.take("ep1", "w1", lease=30)
    for i in range(3):
        assert await q.append_chunk(jid, "w1", f"c{i}")
    assert not await q.append_chunk(jid, "w2", "intruder")
    assert [c.seq for c in await q.chunks(jid)] == [0, 1, 2]
    assert [c.value for c in await q.chunks(jid, after_seq=0)] == ["c1", "c2"]


async def test_secret_fields_dropped_when_job_ends(store):
    q = JobQueue(store, box=SecretBox(Fernet.generate_key()))
    jid = await q.enqueue(job(secret={"s3Config": {"accessSecret": "shh"}}))
    taken = await q.take("ep1", "w1", lease=30)
    assert "shh" not in taken[0].secret, "sealed before it reaches the store"
    assert q.worker_fields(taken[0].secret) == {"s3Config": {"accessSecret": "shh"}}
    assert (await q.get(jid)).secret is None, "a caller never reads it"
    await q.finish(jid, "w1", output=None)
    assert await q.secret_fields(jid) == {}


async def test_no_store_file_ever_holds_worker_fields_in_clear(tmp_path):
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    migrate(url)
    store = open_store(url)
    q = JobQueue(store, box=SecretBox(Fernet.generate_key()))
    marker = "wK9-very-secret-access-key"
    for i in range(3):
        jid = await q.enqueue(job(secret={"s3Config": {"accessSecret": marker}, "env": {"TOKEN": marker}}))
        await q.take("ep1", "w1", lease=30)
        await q.finish(jid, "w1", output=i)
    await store.sync()
    files = [p for p in tmp_path.iterdir() if p.name.startswith("podium.db")]
    assert any(p.name.endswith("-wal") for p in files)
    for path in files:
        assert marker.encode() not in path.read_bytes(), path.name
    await store.close()


async def test_a_queue_without_a_key_refuses_worker_fields(store):
    q = JobQueue(store)
    with pytest.raises(ConfigError):
        await q.enqueue(job(secret={"env": {"A": "1"}}))


async def test_each_new_job_wakes_one_worker_and_none_is_lost(store):
    """Many long-polls, many jobs stored at once: every job is taken promptly, none twice."""
    q = JobQueue(store)
    takers = [asyncio.create_task(q.take_wait("ep1", f"w{i}", lease=30, timeout=30)) for i in range(5)]
    await asyncio.sleep(0.05)
    ids = {await q.enqueue(job()) for _ in range(5)}
    got = await asyncio.wait_for(asyncio.gather(*takers), 10)
    assert sorted(t.id for batch in got for t in batch) == sorted(ids)


async def test_cancel_queued_and_running_jobs(store):
    q = JobQueue(store)
    queued = await q.enqueue(job())
    running = await q.enqueue(job())
    await q.take("ep1", "w1", lease=30)  # takes `queued` (oldest)
    row = await q.cancel(running)
    assert row.status == JobStatus.CANCELLED and row.worker_id is None
    row = await q.cancel(queued)
    assert row.status == JobStatus.CANCELLED and row.worker_id == "w1"
    assert not await q.finish(queued, "w1", output=1), "a cancelled job's late result is ignored"
    assert (await q.cancel(queued)).status == JobStatus.CANCELLED
    assert await q.take("ep1", "w2", lease=30) == []


async def test_purge_only_touches_queued_jobs(store):
    q = JobQueue(store)
    ids = [await q.enqueue(job()) for _ in range(4)]
    await q.take("ep1", "w1", lease=30)
    assert await q.purge("ep1") == 3
    assert (await q.get(ids[0])).status == JobStatus.IN_PROGRESS
    assert [(await q.get(i)).status for i in ids[1:]] == [JobStatus.CANCELLED] * 3


async def test_retry_only_failed_jobs_same_id_cleared(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    await q.take("ep1", "w1", lease=30)
    await q.append_chunk(jid, "w1", "old")
    assert not await q.retry(jid), "a running job cannot be retried"
    await q.finish(jid, "w1", error="boom")
    assert await q.retry(jid)
    row = await q.get(jid)
    assert row.status == JobStatus.IN_QUEUE and row.error is None and row.attempt == 0
    assert await q.chunks(jid) == []
    await q.take("ep1", "w1", lease=30)
    await q.finish(jid, "w1", output=1)
    assert not await q.retry(jid), "a completed job cannot be retried"


async def test_drain_hands_out_each_chunk_once(store):
    q = JobQueue(store)
    jid = await q.enqueue(job())
    await q.take("ep1", "w1", lease=30)
    await q.append_chunk(jid, "w1", 1)
    await q.append_chunk(jid, "w1", {"b": 2})
    assert await q.drain_chunks(jid) == [1, {"b": 2}]
    assert await q.drain_chunks(jid) == []
    await q.append_chunk(jid, "w1", 3)
    assert await q.drain_chunks(jid) == [3]


async def test_execution_deadline_times_a_running_job_out(store):
    clock = FakeClock()
    q = JobQueue(store, clock=clock)
    jid = await q.enqueue(job(timeout_ms=5000))
    other = await q.enqueue(job())
    await q.take("ep1", "w1", lease=60, limit=2)
    assert await q.next_deadline() == clock.now() + 5
    clock.advance(4.9)
    assert await q.time_out() == []
    clock.advance(0.2)
    [row] = await q.time_out()
    assert (row.id, row.worker_id) == (jid, "w1")
    final = await q.get(jid)
    assert final.status == JobStatus.TIMED_OUT and "5000 ms" in final.error
    assert not await q.finish(jid, "w1", output=1), "a result after the deadline changes nothing"
    assert (await q.get(other)).status == JobStatus.IN_PROGRESS


async def test_ttl_and_retention_make_jobs_disappear(store):
    clock = FakeClock()
    q = JobQueue(store, clock=clock, retention={"run": 100, "runsync": 10})
    short = await q.enqueue(job(ttl_ms=20_000))
    sync = await q.enqueue(job(kind="runsync"))
    run = await q.enqueue(job(kind="run"))
    taken = await q.take("ep1", "w1", lease=60, limit=3)
    assert len(taken) == 3
    await q.finish(sync, "w1", output=1)
    await q.finish(run, "w1", output=1)
    clock.advance(11)
    assert await q.get(sync) is None, "runsync results are kept for its retention only"
    assert await q.get(run) is not None and await q.get(short) is not None
    clock.advance(10)
    assert await q.get(short) is None, "past its ttl a job is gone, even mid-run"
    running = await q.reap()
    assert [(r.id, r.worker_id) for r in running] == [(short, "w1")]
    clock.advance(100)
    await q.reap()
    assert await q.get(run) is None


async def test_reap_deletes_in_batches_until_none_is_left(store, monkeypatch):
    monkeypatch.setattr(maintenance, "REAP_BATCH", 3)
    clock = FakeClock()
    q = JobQueue(store, clock=clock, retention={"run": 100, "runsync": 10})
    ended = [await q.enqueue(job(kind="runsync")) for _ in range(7)]
    held = [await q.enqueue(job(ttl_ms=5_000)) for _ in range(4)]
    kept = await q.enqueue(job(kind="run"))
    await q.take("ep1", "w1", lease=60, limit=11)
    for jid in ended:
        await q.finish(jid, "w1", output=1)
    await q.finish(kept, "w1", output=1)
    clock.advance(11)
    running = await q.reap()
    assert sorted(r.id for r in running) == sorted(held)
    assert all([await q.get(j) is None for j in ended + held]) and await q.get(kept) is not None
    async with store.read() as conn:
        assert await conn.scalar(select(func.count()).select_from(jobs)) == 1


async def test_expired_jobs_are_never_taken_and_low_priority_does_not_scale(store):
    clock = FakeClock()
    q = JobQueue(store, clock=clock)
    await q.enqueue(job(ttl_ms=10_000))
    low = await q.enqueue(job(low_priority=True))
    assert await q.queued_by_endpoint() == {"ep1": (1, 0.0)}
    clock.advance(11)
    assert [t.id for t in await q.take("ep1", "w1", lease=5, limit=5)] == [low]


async def test_retryable_errors_come_back_after_a_backoff(store):
    clock = FakeClock()
    q = JobQueue(store, clock=clock, retry_base=1.0)
    jid = await q.enqueue(job(retries=2, max_attempts=3))
    await q.take("ep1", "w1", lease=30)
    assert await q.finish(jid, "w1", error="flaky", retryable=True)
    row = await q.get(jid)
    assert row.status == JobStatus.IN_QUEUE and 0.5 <= row.run_after - clock.now() <= 1.0
    assert await q.take("ep1", "w1", lease=30) == [], "not before its backoff"
    assert await q.queued_by_endpoint() == {}, "a job in backoff does not ask for a worker"
    clock.advance(1.0)
    [again] = await q.take("ep1", "w2", lease=30)
    assert again.attempt == 2
    await q.finish(jid, "w2", error="flaky", retryable=True)
    clock.advance(2.0)
    await q.take("ep1", "w3", lease=30)
    await q.finish(jid, "w3", error="still flaky", retryable=True)
    row = await q.get(jid)
    assert row.status == JobStatus.FAILED and row.error == "still flaky", "retries used up"
    errors = row.attempt_errors
    assert [e["attempt"] for e in errors] == [1, 2]


async def test_errors_not_marked_retryable_fail_at_once(store):
    q = JobQueue(store)
    jid = await q.enqueue(job(retries=5))
    await q.take("ep1", "w1", lease=30)
    await q.finish(jid, "w1", error="bad input")
    assert (await q.get(jid)).status == JobStatus.FAILED
