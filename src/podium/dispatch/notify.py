"""In-process wake-ups: a waiter is woken the moment the thing it waits for is stored.

Listen *before* checking the store, then wait: a notification that lands between the check and the
wait is kept in the waiter's event, so no wake-up is lost and nobody polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def listen(self, key: str) -> Iterator[asyncio.Event]:
        ev = asyncio.Event()
        self._waiters.setdefault(key, set()).add(ev)
        try:
            yield ev
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._waiters[key]
            if ev.is_set():
                # A wake-up meant for one waiter reached one that is leaving: pass it on.
                self.notify_one(key)

    def notify(self, key: str) -> None:
        for ev in self._waiters.get(key, ()):
            ev.set()

    def notify_one(self, key: str) -> None:
        """Wake one waiter not already woken (one new job needs one worker, not all of them)."""
        for ev in self._waiters.get(key, ()):
            if not ev.is_set():
                ev.set()
                return

    def notify_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()

    def listeners(self, key: str) -> int:
        return len(self._waiters.get(key, ()))


async def wait_event(ev: asyncio.Event, timeout: float) -> bool:
    """Wait for `ev` at most `timeout` seconds; True if it was set. Clears it for the next round."""
    if timeout <= 0:
        return False
    try:
        await asyncio.wait_for(ev.wait(), timeout)
    except TimeoutError:
        return False
    ev.clear()
    return True
