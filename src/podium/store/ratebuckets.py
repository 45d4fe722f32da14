"""Per-key request budgets kept in the store, so every replica draws on the same one."""

from __future__ import annotations

import asyncio
import math

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
#: Draw `b_n` tokens from a key's bucket (binds b_key too) if it holds them: a row back if it did.
#: PostgreSQL only (least, greatest).
_DRAW = Prepared(
    update(rate_buckets)
    .where(rate_buckets.c.key_id == bindparam("b_key"), _REFILLED >= bindparam("b_n", type_=Float))
    .values(tokens=_REFILLED - bindparam("b_n", type_=Float), at=func.greatest(_NOW, rate_buckets.c.at))
    .returning(rate_buckets.c.key_id)
)
#: A replica draws this share of a key's rate or burst (the smaller, at least one token) from the
#: stored bucket at once, and spends it on the key's next requests: one UPDATE per draw, not per
#: request (it was a quarter of PostgreSQL's statements per runsync, and one of its round trips).
DRAW_SHARE = 0.01
#: Seconds a draw may be spent in; what is left then is lost to the key, never given back, so a
#: key never gets more than the stored bucket gave. A burst may pass the bucket's by one draw per
#: replica (tokens held here while the bucket refilled to its top); a budget under 100 requests
#: per second is drawn a token at a time, exactly as before.
DRAW_SECONDS = 1.0


class StoredBuckets:
    """A token bucket per key, in the `rate_buckets` table, drawn from a few tokens at a time (see
    DRAW_SHARE): one row lock per draw serialises that key's draws across replicas (other keys do
    not wait)."""

    def __init__(self, store: Store, rate: float, burst: float) -> None:
        self.store = store
        self.rate = rate
        self.burst = burst
        self.draw = max(1, math.floor(min(rate, burst) * DRAW_SHARE))
        #: Per key, tokens drawn and not spent, and until when they may be.
        self._drawn: dict[str, tuple[int, float]] = {}
        #: Per key, held while a draw is out (the requests meanwhile wait for it, not draw too).
        self._drawing: dict[str, asyncio.Lock] = {}

    async def take(self, key_id: str, now: float) -> float:
        """0 if a request may go now, else the seconds until one may."""
        if self._spend(key_id, now):
            return 0.0
        async with self._drawing.setdefault(key_id, asyncio.Lock()):
            if self._spend(key_id, now):  # drawn by a request that held the lock before
                return 0.0
            drawn, wait = await self._draw(key_id, now)
            if drawn:
                self._drawn[key_id] = (drawn - 1, now + DRAW_SECONDS)
            return wait

    def _spend(self, key_id: str, now: float) -> bool:
        tokens, until = self._drawn.get(key_id, (0, 0.0))
        if tokens < 1 or now > until:
            return False
        self._drawn[key_id] = (tokens - 1, until)
        return True

    async def _draw(self, key_id: str, now: float) -> tuple[int, float]:
        """Tokens drawn (up to `draw`), and, when none could be, the seconds until one may."""
        b = rate_buckets
        # Most draws find the bucket full enough: one statement. A new key, or a bucket nearly
        # empty, is read first.
        params = {"b_key": key_id, "b_now": now, "b_rate": self.rate, "b_burst": self.burst, "b_n": self.draw}
        if await self.store.run(_DRAW, params, durable=False):
            return self.draw, 0.0
        async with self.store.tx(durable=False) as conn:
            row = (await conn.execute(select(b).where(b.c.key_id == key_id).with_for_update())).mappings().first()
            if row is None:
                drawn = min(self.draw, math.floor(self.burst))
                await conn.execute(upsert(self.store, b, [{"key_id": key_id, "tokens": self.burst - drawn, "at": now}]))
                return drawn, 0.0
            tokens = min(self.burst, row["tokens"] + max(0.0, now - row["at"]) * self.rate)
            drawn = min(self.draw, math.floor(tokens))
            wait = 0.0 if drawn else (1 - tokens) / self.rate
            await conn.execute(
                update(b).where(b.c.key_id == key_id).values(tokens=tokens - drawn, at=max(now, row["at"]))
            )
            return drawn, wait
