"""How transactions reach the disk (SQLite's shared commit per loop turn; results made durable
before they are shown rather than before the worker is answered), and how the call path finds
live jobs."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from podium.dispatch import JobQueue, JobStatus, NewJob
from podium.store import Store, migrate, open_store
from podium.store import wal as store_wal
from podium.store.tables import jobs, projects


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    migrate(url)
    s = open_store(url)
    yield s
    await s.close()


def on_disk(store: Store, table: str = "projects") -> set[str]:
    """Ids another connection sees: what was committed."""
    path = store.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute(f"SELECT id FROM {table}")}


async def add_project(store: Store, pid: str, *, fail: bool = False, durable: bool = False) -> None:
    async with store.tx(durable=durable) as conn:
        await conn.execute(insert(projects).values(id=pid, name=pid, created_at=0.0))
        if fail:
            raise RuntimeError("the body failed after its insert")


async def test_one_turns_transactions_share_a_commit_and_a_failing_one_undoes_only_itself(lite: Store) -> None:
    results = await asyncio.gather(
        add_project(lite, "a"),
        add_project(lite, "b", fail=True),
        add_project(lite, "c"),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError) and results[0] is None and results[2] is None
    await lite.sync()
    assert on_disk(lite) == {"a", "c"}
    async with lite.read() as conn:
        assert {r[0] for r in (await conn.execute(select(projects.c.id))).all()} == {"a", "c"}


async def test_a_durable_transaction_returns_once_committed_and_synced(
    lite: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fsyncs: list[str] = []
    real = store_wal._fsync

    def counted(path: str) -> None:
        fsyncs.append(path)
        real(path)

    monkeypatch.setattr(store_wal, "_fsync", counted)
    await asyncio.gather(add_project(lite, "d", durable=True), add_project(lite, "e", durable=True))
    assert on_disk(lite) == {"d", "e"}
    assert len(fsyncs) == 1, "two promises of one turn share one fsync"


async def test_a_result_is_on_disk_before_it_is_shown_not_before_the_worker_is_answered(
    lite: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    q = JobQueue(lite)
    jid = await q.enqueue(NewJob(project_id="p", endpoint_id="ep", route="/", input={}))
    await q.take("ep", "w1", lease=30)
    fsyncs: list[str] = []
    monkeypatch.setattr(store_wal, "_fsync", fsyncs.append)
    assert await q.finish(jid, "w1", output={"ok": True})
    assert fsyncs == [], "the worker's answer does not wait for the disk"
    row = await q.get(jid)
    assert row is not None and row.status == JobStatus.COMPLETED
    assert len(fsyncs) == 1, "shown only once durable"
    assert (await q.get(jid)) is not None and len(fsyncs) == 1, "once durable, shown at once"


def test_the_call_path_finds_live_jobs_through_the_indexes_of_live_jobs(lite: Store) -> None:
    """Ended jobs kept for reading must not be walked by a take or a lease check: the statuses
    are spelled out in the SQL, so SQLite can use the partial indexes (a bound status could not)."""
    from podium.dispatch.statements import RUNNING, TAKE

    path = lite.url.removeprefix("sqlite:///")
    running = str(
        select(jobs.c.id)
        .where(RUNNING, jobs.c.lease_until < 0)
        .compile(dialect=sqlite_dialect(), compile_kwargs={"literal_binds": True})
    )
    with sqlite3.connect(path) as other:
        take = " ".join(r[3] for r in other.execute(f"EXPLAIN QUERY PLAN {TAKE.sql}", [0] * len(TAKE.names)))
        lease = " ".join(r[3] for r in other.execute(f"EXPLAIN QUERY PLAN {running}"))
    assert "USING INDEX ix_jobs_queued" in take, take
    assert "USING INDEX ix_jobs_running" in lease, lease


async def test_the_wal_is_started_over_under_sustained_writes(lite: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit every loop turn with checkpoints running beside it: without a rewind the WAL
    never starts over (each commit adds frames for ever); with one it stays small."""
    monkeypatch.setattr(store_wal, "REWIND_FRAMES", 64)
    async with lite.tx():
        pass
    assert lite._checkpoints is not None
    lite._checkpoints.every = 20
    for i in range(2000):
        await add_project(lite, f"p{i}")
        await asyncio.sleep(0)  # the turn ends: its commit
    await lite.sync()
    with contextlib.closing(sqlite3.connect(lite.url.removeprefix("sqlite:///"))) as conn:
        _, frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames < 1000, f"the WAL holds {frames} frames after 2,000 commits: never started over"
    assert len(on_disk(lite)) == 2000
