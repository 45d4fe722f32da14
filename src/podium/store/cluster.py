"""What the replicas of one installation share about themselves and their workers.

Each replica writes its own heartbeat row and the rows of the workers it has heard from; any
replica reads them all, so status and health answer the same on every replica.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, select, update

from podium.store.engine import Store
from podium.store.records import RecordedWorker
from podium.store.tables import replicas, workers

#: A replica not heard from for this long is no longer listed.
REPLICA_SILENT = 10.0
#: Rows of replicas and workers silent for this long are deleted (by the leader).
FORGET_AFTER = 3600.0


def upsert(store: Store, table: Table, rows: Sequence[dict[str, Any]]) -> Any:
    """INSERT … ON CONFLICT (primary key) DO UPDATE, in the store's dialect (PostgreSQL's module,
    some 2 MiB, loaded only by a server that uses it)."""
    dialect = importlib.import_module("sqlalchemy.dialects." + ("sqlite" if store.sqlite else "postgresql"))
    stmt = dialect.insert(table).values(list(rows))
    keys = [c.name for c in table.primary_key.columns]
    changed = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    return stmt.on_conflict_do_update(index_elements=keys, set_=changed)


@dataclass(frozen=True)
class Replica:
    id: str
    url: str
    started_at: float
    seen_at: float
    leader: bool
    runs_workers: bool


class Cluster:
    """Parameters:
    store: the shared store.
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- replicas -------------------------------------------------------------------------------

    async def beat(self, replica: Replica) -> None:
        """This replica is alive (and leads, or not)."""
        async with self.store.tx(durable=False) as conn:
            await conn.execute(upsert(self.store, replicas, [replica.__dict__]))
            if replica.leader:  # one leader at a time: a stale row of a dead one is not
                await conn.execute(
                    update(replicas).where(replicas.c.id != replica.id, replicas.c.leader).values(leader=False)
                )

    async def leave(self, replica_id: str) -> None:
        async with self.store.tx(durable=False) as conn:
            await conn.execute(delete(replicas).where(replicas.c.id == replica_id))

    async def live(self, now: float) -> list[Replica]:
        """Replicas heard from lately, the leader first."""
        async with self.store.read() as conn:
            res = await conn.execute(
                select(replicas)
                .where(replicas.c.seen_at > now - REPLICA_SILENT)
                .order_by(replicas.c.leader.desc(), replicas.c.started_at)
            )
            return [Replica(**r) for r in res.mappings().all()]

    # -- workers --------------------------------------------------------------------------------

    async def save_workers(self, rows: Sequence[dict[str, Any]], gone: Sequence[str]) -> None:
        """Write what changed about workers since the last save; forget those that exited."""
        async with self.store.tx(durable=False) as conn:
            if rows:
                await conn.execute(upsert(self.store, workers, rows))
            if gone:
                await conn.execute(delete(workers).where(workers.c.id.in_(list(gone))))

    async def workers(self, endpoint_id: str | None, *, seen_after: float) -> list[RecordedWorker]:
        """Workers heard from since `seen_after` (of one endpoint, or all)."""
        q = select(workers).where(workers.c.seen_at > seen_after)
        if endpoint_id is not None:
            q = q.where(workers.c.endpoint_id == endpoint_id)
        async with self.store.read() as conn:
            rows = (await conn.execute(q.order_by(workers.c.started_at))).mappings().all()
        return [RecordedWorker.from_row(r) for r in rows]

    async def prune(self, before: float) -> None:
        """Rows of replicas and workers nobody has heard from since `before` (a replica that
        died, and the workers that died with it)."""
        async with self.store.tx(durable=False) as conn:
            await conn.execute(delete(workers).where(workers.c.seen_at < before))
            await conn.execute(delete(replicas).where(replicas.c.seen_at < before))
