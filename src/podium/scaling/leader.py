"""Leadership: which replica runs the installation's duties (autoscaler and its workers, lease
reaper, timeouts, retention, the webhook outbox).

On PostgreSQL the leader is the replica holding a session advisory lock on a connection of its
own. The lock lives exactly as long as that connection: when the leader dies (even `kill -9`) the
database drops its session and another replica's next try takes the lock. A leader whose
connection fails or stops answering steps down at once, before another can have taken over for
longer than one check. One whose duties fail to start steps down too (closing its connection frees
the lock) and, like every other replica, tries again a second later. On SQLite there is one server,
and it leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("podium.leader")

#: The advisory lock's key ("podium" in ASCII): one per database.
LOCK_KEY = 0x706F6469756D
#: Seconds between tries for the lock, and between checks that it is still held.
CHECK_EVERY = 1.0
#: A check that takes longer than this counts as a lost connection.
CHECK_TIMEOUT = 3.0


class Leadership:
    """Parameters:
    conninfo: libpq URL of the shared database; None when the store is SQLite (always lead).
    on_gain, on_lose: start and stop the leader's duties.
    eligible: False for a replica that must never lead (`podium up --no-workers`).
    """

    def __init__(
        self,
        conninfo: str | None,
        on_gain: Callable[[], Awaitable[None]],
        on_lose: Callable[[], Awaitable[None]],
        *,
        eligible: bool = True,
    ) -> None:
        self.conninfo = conninfo
        self.on_gain = on_gain
        self.on_lose = on_lose
        self.eligible = eligible
        self.leading = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.eligible:
            return
        if self.conninfo is None:
            await self._gain()
            return
        self._task = asyncio.create_task(self._run(), name="podium-leadership")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._lose()

    async def _gain(self) -> None:
        self.leading = True
        log.info("this replica leads")
        await self.on_gain()

    async def _lose(self) -> None:
        """Never raises: a step-down that fails partway must not end the loop that would take
        the lead again (the replica would then never lead, whoever else dies)."""
        if self.leading:
            self.leading = False
            log.warning("this replica no longer leads")
            try:
                await self.on_lose()
            except Exception:
                log.exception("stopping the leader's duties failed")

    async def _run(self) -> None:
        import psycopg

        assert self.conninfo is not None
        while True:
            conn: Any = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=int(CHECK_TIMEOUT)
                )
                while True:
                    if self.leading:
                        await asyncio.wait_for(conn.execute("SELECT 1"), CHECK_TIMEOUT)
                    else:
                        cur = await asyncio.wait_for(
                            conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)), CHECK_TIMEOUT
                        )
                        row = await cur.fetchone()
                        if row is not None and row[0]:
                            await self._gain()
                    await asyncio.sleep(CHECK_EVERY)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("leadership connection failed: %s", exc)
                await self._lose()
            except Exception:  # the duties could not start (the store is unreachable, say)
                log.exception("taking the lead failed; stepping down to try again")
                await self._lose()
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            await asyncio.sleep(CHECK_EVERY)
