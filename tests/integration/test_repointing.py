"""What a redeploy or a rollback promises the calls sent once it has returned, in process on SQLite
and PostgreSQL: every reader sees the endpoint's new version, and only the workers of that version
take their jobs (a job an old worker already holds finishes there)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.fernet import Fernet

from podium.clock import FakeClock
from podium.core.workers import Result, WorkerInfo, WorkerPool
from podium.dispatch import JobQueue, JobStatus, NewJob
from podium.store.catalog import Catalog
from podium.store.records import Endpoint, Version
from podium.store.secretbox import SecretBox


def version(vid: str) -> dict[str, Any]:
    route = {"path": "/work", "name": "work", "kind": "route", "default": True, "streaming": False, "params": []}
    config = {"min_workers": 0, "max_workers": 2, "idle_timeout": 60, "concurrency": 1}
    return {
        "id": vid,
        "sha256": "0" * 64,
        "service": "calls",
        "entry": "app.py",
        "routes": [route],
        "config": config,
        "size": 1,
    }


class Endpoints:
    """The endpoint `calls` at version `two`, `one` stored: a rollback's two sides."""

    def __init__(self, store: Any) -> None:
        self.catalog = Catalog(store)
        self.queue = JobQueue(store, box=SecretBox(Fernet.generate_key()))

    async def build(self) -> Endpoints:
        self.project = await self.catalog.ensure_project("default")
        self.one: Version = await self.catalog.put_version(self.project, version("one"))
        self.two: Version = await self.catalog.put_version(self.project, version("two"))
        self.ep: Endpoint = (
            await self.catalog.point_endpoint(self.project, "calls", self.two, key_id=None, message=None)
        )[0]
        return self

    async def rollback(self) -> None:
        await self.catalog.point_endpoint(self.project, "calls", self.one, key_id=None, message="rollback")

    async def call(self) -> str:
        return await self.queue.enqueue(
            NewJob(project_id=self.project, endpoint_id=self.ep.id, route="/work", input={})
        )


class Ready:
    async def worker_ready(self, info: WorkerInfo, ep: Any) -> None:
        pass

    async def fail_endpoint(self, info: WorkerInfo, reason: str) -> None:
        pass


async def connected() -> bool:
    return True


@pytest.fixture
async def eps(store: Any) -> Endpoints:
    return await Endpoints(store).build()


async def test_a_read_under_way_while_the_endpoint_moves_does_not_cache_what_it_read(
    eps: Endpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call resolving `calls` by name loads the row just before a rollback stores its change, and
    caches it just after: every read once the rollback returned must see version one (the cache
    was cleared before the change was stored, so the row read meanwhile stayed for its TTL)."""
    catalog = eps.catalog
    load = catalog._load_endpoint
    loaded, resume = asyncio.Event(), asyncio.Event()

    async def slow_first_read(project_id: str | None, ref: str) -> Endpoint | None:
        row = await load(project_id, ref)
        if not loaded.is_set():
            loaded.set()
            await resume.wait()
        return row

    monkeypatch.setattr(catalog, "_load_endpoint", slow_first_read)
    reader = asyncio.create_task(catalog.get_endpoint(eps.project, "calls"))
    await loaded.wait()
    await eps.rollback()
    resume.set()
    assert (await reader) is not None  # read before the rollback: either version is right
    for ref in ("calls", eps.ep.id):
        now = await catalog.get_endpoint(eps.project, ref)
        assert now is not None and now.version_id == "one", ref


async def test_a_worker_of_the_version_rolled_away_from_takes_no_new_job(eps: Endpoints) -> None:
    """Its take request saw the endpoint before the rollback (the scaler has not drained it yet):
    the job it holds finishes there, a call sent after the rollback goes to a worker of version
    one only."""
    pool = WorkerPool(eps.queue, eps.catalog, FakeClock(), lease=30, events=Ready())
    pool.new("w-two", eps.ep.id, "two", local=True)
    pool.new("w-one", eps.ep.id, "one", local=True)
    held = await eps.call()
    assert [j["id"] for j in await pool.take("w-two", eps.ep, limit=1, wait=0, alive=connected)] == [held]
    seen = eps.ep  # as the old worker's next request saw it
    await eps.rollback()
    after = await eps.call()
    assert await pool.take("w-two", seen, limit=1, wait=0, alive=connected) == []
    await pool.done("w-two", seen, held, Result(output={"version": "two"}))
    done = await eps.queue.get(held)
    assert done is not None and done.status == JobStatus.COMPLETED and done.version_id == "two"
    now = await eps.catalog.get_endpoint(eps.project, eps.ep.id)
    assert now is not None and now.version_id == "one"
    assert [j["id"] for j in await pool.take("w-one", now, limit=1, wait=0, alive=connected)] == [after]
    taken = await eps.queue.get(after)
    assert taken is not None and taken.version_id == "one"
