"""Wake-ups across replicas: PostgreSQL LISTEN/NOTIFY.

Every notification a replica makes (a job stored for an endpoint, a result or chunk for a job, a
scale request, an announced event) is also sent on one channel; every other replica hears it and
wakes its own waiters. Notifications made in one loop iteration travel in one NOTIFY, sent after
the transactions they announce committed (the queue notifies after its commits), so a replica that
wakes reads the change.

NOTIFY is not stored: one sent while a replica's LISTEN connection was down is lost to it. So on
every (re)connection, and on a slow sweep, all waiters here are woken to re-check the store: a
lost wake-up costs at most one sweep of latency, never a job.

A replica that knows it is alone (no other live replica in the store, and none has said hello
since) sends nothing: a NOTIFY per change would cost it a round trip for no one. A replica says
hello as soon as it listens, before it serves anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from podium.dispatch.notify import Notifier

log = logging.getLogger("podium.relay")

CHANNEL = "podium"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD = 7900
#: Seconds between safety sweeps (every waiter re-checks the store).
SWEEP_EVERY = 5.0
#: Seconds between attempts to re-establish a dropped LISTEN connection.
RECONNECT_EVERY = 1.0
#: What a replica announces when it starts listening.
HELLO = "!hello:"


def _batches(pending: dict[str, bool]) -> list[str]:
    """Lines `1key` (wake one) or `*key` (wake all), packed into payloads under the size limit."""
    out: list[str] = []
    lines: list[str] = []
    size = 0
    for key, one in pending.items():
        line = ("1" if one else "*") + key
        if lines and size + len(line) + 1 > MAX_PAYLOAD:
            out.append("\n".join(lines))
            lines, size = [], 0
        lines.append(line)
        size += len(line) + 1
    if lines:
        out.append("\n".join(lines))
    return out


class PgRelay:
    """Parameters:
    conninfo: a libpq URL of the shared database.
    notifier: this replica's waiters.
    """

    def __init__(self, conninfo: str, notifier: Notifier, *, sweep: float = SWEEP_EVERY) -> None:
        self.conninfo = conninfo
        self.notifier = notifier
        self.sweep = sweep
        self._pending: dict[str, bool] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._publisher: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        #: Whether the LISTEN connection is up (for readiness and status).
        self.listening = False
        #: Times the LISTEN connection was (re)established.
        self.connections = 0
        #: Other live replicas (kept up to date by the runtime's heartbeat; raised by a hello).
        self.others = 1
        #: Hellos heard from other replicas.
        self.hellos = 0

    async def start(self) -> None:
        self.notifier.relay = self
        self.notifier.on("hello", self._hello)
        self._tasks = [
            asyncio.create_task(self._listen(), name="podium-relay-listen"),
            asyncio.create_task(self._sweep(), name="podium-relay-sweep"),
        ]

    async def close(self) -> None:
        self.notifier.relay = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._flushing is not None:
            with contextlib.suppress(Exception):
                await self._flushing
        if self._publisher is not None:
            with contextlib.suppress(Exception):
                await self._publisher.close()

    # -- sending --------------------------------------------------------------------------------

    def publish(self, key: str, *, one: bool) -> None:
        if self.others == 0 and key != HELLO:
            return
        # A key already waiting to go as "wake all" stays so.
        self._pending[key] = self._pending.get(key, True) and one
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        try:
            while self._pending:
                pending, self._pending = self._pending, {}
                for payload in _batches(pending):
                    await self._send(payload)
        finally:
            self._flushing = None

    async def _send(self, payload: str) -> None:
        import psycopg

        for attempt in (1, 2):
            try:
                if self._publisher is None or self._publisher.closed:
                    self._publisher = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                await self._publisher.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
                return
            except psycopg.Error as exc:
                self._publisher = None
                if attempt == 2:  # the other replicas' sweeps will find the change
                    log.warning("could not notify the other replicas: %s", exc)

    # -- receiving ------------------------------------------------------------------------------

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self.connections += 1
                    self.publish(HELLO, one=False)
                    # Whatever was announced while we were not listening: look again.
                    self.notifier.notify_all()
                    async for note in conn.notifies():
                        self._deliver(note.pid, note.payload)
            except psycopg.Error as exc:
                if self.listening:
                    log.warning("lost the LISTEN connection (%s); reconnecting", exc)
            finally:
                self.listening = False
            await asyncio.sleep(RECONNECT_EVERY)

    def _deliver(self, pid: int, payload: str) -> None:
        publisher = self._publisher
        if publisher is not None and not publisher.closed and pid == publisher.info.backend_pid:
            return  # our own: delivered here when it was made
        for line in payload.split("\n"):
            if len(line) > 1:
                self.notifier.deliver(line[1:], one=line[0] == "1")

    def _hello(self, _: str) -> None:
        self.hellos += 1
        self.others = max(self.others, 1)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.sweep)
            self.notifier.notify_all()
