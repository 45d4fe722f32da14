"""Per-key request budgets kept in the store, so every replica draws on the same one."""

from __future__ import annotations

from sqlalchemy import select, update

from podium.store.cluster import upsert
from podium.store.engine import Store
from podium.store.tables import rate_buckets


class StoredBuckets:
    """A token bucket per key, in the `rate_buckets` table: one row lock per request of a key
    serialises that key's requests across replicas (other keys do not wait)."""

    def __init__(self, store: Store, rate: float, burst: float) -> None:
        self.store = store
        self.rate = rate
        self.burst = burst

    async def take(self, key_id: str, now: float) -> float:
        """0 if a request may go now, else the seconds until one may."""
        b = rate_buckets
        async with self.store.tx(durable=False) as conn:
            row = (await conn.execute(select(b).where(b.c.key_id == key_id).with_for_update())).mappings().first()
            if row is None:
                await conn.execute(upsert(self.store, b, [{"key_id": key_id, "tokens": self.burst - 1, "at": now}]))
                return 0.0
            tokens = min(self.burst, row["tokens"] + max(0.0, now - row["at"]) * self.rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / self.rate
            await conn.execute(update(b).where(b.c.key_id == key_id).values(tokens=tokens, at=max(now, row["at"])))
            return wait
