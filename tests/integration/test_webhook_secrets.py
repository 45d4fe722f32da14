"""Each project's webhook signing secret in the store, on SQLite and PostgreSQL: one per project,
sealed at rest, rotated with a window, the same for every replica; and migration 0010."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select

from podium.clock import FakeClock
from podium.signing import signed_headers, verify
from podium.store import migrate, open_store
from podium.store.catalog import Catalog
from podium.store.engine import sync_url
from podium.store.secretbox import SecretBox, new_key
from podium.store.tables import jobs, projects, webhook_deliveries, webhook_secrets
from podium.store.webhook_secrets import WebhookSecrets

DAY = 86400.0
BODY = b'{"id": "job-1", "status": "COMPLETED"}'


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(new_key().encode())


def signed_by(secrets: tuple[str, ...], clock: FakeClock) -> dict[str, str]:
    return signed_headers(secrets, BODY, now=clock.now())


def stored_bytes(db_url: str) -> bytes:
    """Everything SQLite keeps on disk for the store (the file and its write-ahead log)."""
    path = Path(db_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def test_each_project_has_its_own_secret_sealed_at_rest(store, db_url, box):
    clock = FakeClock()
    catalog = Catalog(store, clock)
    a, b = await catalog.create_project("alpha"), await catalog.create_project("beta")
    assert a is not None and b is not None
    hooks = WebhookSecrets(store, box, clock, window=DAY)
    sa, sb = await hooks.get(a), await hooks.get(b)
    assert sa.secret.startswith("whsec_") and sa.secret != sb.secret
    assert (await hooks.get(a)).secret == sa.secret, "made once, then kept"
    headers = signed_by(sa.signing, clock)
    assert verify(sa.secret, headers, BODY, now=clock.now())
    assert not verify(sb.secret, headers, BODY, now=clock.now())
    assert sa.secret not in repr(sa), "a log line of the record cannot carry it"
    async with store.tx() as conn:
        rows = (await conn.execute(select(webhook_secrets))).mappings().all()
    assert len(rows) == 2
    for row in rows:
        assert all(s.secret not in str(v) for v in row.values() for s in (sa, sb))
        assert box.open(row["secret"]) in (sa.secret, sb.secret)
    if db_url.startswith("sqlite"):
        await store.close()  # everything written out
        on_disk = stored_bytes(db_url)
        assert sa.secret.encode() not in on_disk and sb.secret.encode() not in on_disk


async def test_a_rotated_secret_still_signs_until_its_window_closes(store, box):
    clock = FakeClock()
    pid = await Catalog(store, clock).create_project("alpha")
    assert pid is not None
    hooks = WebhookSecrets(store, box, clock, window=DAY)
    old = (await hooks.get(pid)).secret
    rotated = await hooks.rotate(pid)
    new = rotated.secret
    assert new != old and rotated.signing == (new, old) and rotated.previous_until == clock.now() + DAY
    headers = signed_by((await hooks.get(pid)).signing, clock)
    assert verify(new, headers, BODY, now=clock.now()) and verify(old, headers, BODY, now=clock.now())

    clock.advance(DAY + 1)
    after = await hooks.get(pid)
    assert after.signing == (new,) and after.previous_until is None
    headers = signed_by(after.signing, clock)
    assert verify(new, headers, BODY, now=clock.now()) and not verify(old, headers, BODY, now=clock.now())

    # A rotation with no window (a secret that leaked): the one replaced is no longer valid at all.
    leaked = await hooks.rotate(pid, window=0)
    assert leaked.signing == (leaked.secret,) and (await hooks.get(pid)).signing == (leaked.secret,)
    # Two rotations within a window: only the one just replaced stays valid.
    first = await hooks.rotate(pid, window=60)
    second = await hooks.rotate(pid, window=60)
    assert second.signing == (second.secret, first.secret)


async def test_every_replica_signs_with_the_same_secret(db_url, box):
    """1. Two stores on one database, as two replicas hold. 2. Both ask for a project's secret
    at once: one is made, both get it. 3. One rotates: the other signs with the new one next."""
    migrate(db_url)
    one, two = open_store(db_url), open_store(db_url)
    try:
        clock = FakeClock()
        pid = await Catalog(one, clock).create_project("alpha")
        default = await Catalog(one, clock).ensure_project("default")
        assert pid is not None
        seeds = {default: "whsec_from_the_environment"}
        h1 = WebhookSecrets(one, box, clock, window=DAY, seeds=seeds)
        h2 = WebhookSecrets(two, box, clock, window=DAY, seeds=seeds)
        s1, s2 = await asyncio.gather(h1.get(pid), h2.get(pid))
        assert s1.secret == s2.secret
        assert (await h2.get(default)).secret == "whsec_from_the_environment"
        rotated = await h1.rotate(pid)
        assert (await h2.get(pid)).signing == (rotated.secret, s1.secret)
    finally:
        await one.close()
        await two.close()


def test_migration_0010_gives_sealed_deliveries_their_project(db_url):
    """Deliveries sealed before 0010 are signed by their job's project; one whose job is gone
    has no project to sign it, and fails rather than being signed by another."""
    from alembic import command
    from alembic.config import Config

    from podium.store.engine import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(db_url).replace("%", "%%"))
    command.upgrade(cfg, "0009")
    engine = create_engine(sync_url(db_url))
    delivery = {
        "url": "https://example.com/hook",
        "state": "pending",
        "tries": 0,
        "next_at": 1.0,
        "body": "{}",
        "created_at": 1.0,
    }
    with engine.begin() as conn:
        conn.execute(insert(projects).values(id="p1", name="alpha", created_at=1.0))
        conn.execute(
            insert(jobs).values(
                id="j1",
                project_id="p1",
                endpoint_id="e1",
                route="/",
                kind="run",
                input="{}",
                status="COMPLETED",
                attempt=1,
                max_attempts=3,
                created_at=1.0,
                stream_closed=False,
            )
        )
        conn.execute(insert(webhook_deliveries).values(id="d1", job_id="j1", **delivery))
        conn.execute(insert(webhook_deliveries).values(id="d2", job_id="gone", **delivery))
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        rows = {r["id"]: r for r in conn.execute(select(webhook_deliveries)).mappings()}
    engine.dispose()
    assert (rows["d1"]["project_id"], rows["d1"]["state"]) == ("p1", "pending")
    assert (rows["d2"]["project_id"], rows["d2"]["state"]) == (None, "failed")
