"""Per-key request budgets kept in the store, so every replica draws on the same one."""

from __future__ import annotations

from sqlalchemy import Float, bindparam, func, select, update

from podium.store.cluster import upsert
from podium.store.engine import Prepared, Store
from podium.store.tables import rate_buckets

_NOW = bindparam("b_now", type_=Float)
#: A bucket's tokens now (binds b_now, b_rate, b_burst).
_REFILLED = func.least(
    bindparam("b_burst", type_=Float),
    rate_buckets.c.tokens + func.greatest(0.0, _NOW - rate_buckets.c.at) * bindparam("b_rate", type_=Float),
)
#: Take a token from a key's bucket (binds b_key too) if it holds one: a row back if it did.
#: PostgreSQL only (least, greatest).
_TAKE_ONE = Prepared(
    update(rate_buckets)
    .where(rate_buckets.c.key_id == bindparam("b_key"), _REFILLED >= 1)
    .values(tokens=_REFILLED - 1, at=func.greatest(_NOW, rate_buckets.c.at))
    .returning(rate_buckets.c.key_id)
)


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
        # Most requests find a token: one statement. A new key, or an empty bucket, is read first.
        params = {"b_key": key_id, "b_now": now, "b_rate": self.rate, "b_burst": self.burst}
        if await self.store.run(_TAKE_ONE, params, durable=False):
            return 0.0
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
