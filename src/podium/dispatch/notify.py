"""Wake-ups: a waiter is woken the moment the thing it waits for is stored.

Listen *before* checking the store, then wait: a notification that lands between the check and the
wait is kept in the waiter's event, so no wake-up is lost and nobody polls. With several replicas
a `Relay` (dispatch/relay.py) carries each notification to the others, and brings theirs here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol


class Signal:
    """What one waiter waits on: an asyncio.Event for a single waiter whose timed wait costs a
    timer, not the task and futures of `asyncio.wait_for(event.wait())` (two per job)."""

    __slots__ = ("_set", "_waiter")

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        if not self._set:
            self._set = True
            if self._waiter is not None and not self._waiter.done():
                self._waiter.set_result(None)

    def is_set(self) -> bool:
        return self._set

    def parked(self) -> bool:
        """Whether its waiter is waiting now (not off checking the store, which it may have
        read before the change it would be woken for)."""
        return self._waiter is not None and not self._waiter.done()

    async def wait(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds; True if set (and cleared for the next round)."""
        if timeout <= 0:
            return False
        if not self._set:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
            if not self._set:
                return False
        self._set = False
        return True


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Relay(Protocol):
    #: Other live replicas (0: this one is alone, and nothing it counts can be stale).
    others: int

    def publish(self, key: str, *, one: bool) -> None:
        """Send a notification to the other replicas (after the change it announces committed)."""


class Notifier:
    def __init__(self) -> None:
        self._waiters: dict[str, set[Signal]] = {}
        #: Carries notifications to other replicas (None: this server is the only one).
        self.relay: Relay | None = None
        #: What this replica does when another announces an event (see `announce`), by kind.
        self._handlers: dict[str, Callable[[str], object]] = {}

    @contextmanager
    def listen(self, key: str, also: str | None = None) -> Iterator[Signal]:
        """One signal, woken by `key` (and by `also`, when given)."""
        ev = Signal()
        keys = (key,) if also is None else (key, also)
        for one in keys:
            self._waiters.setdefault(one, set()).add(ev)
        try:
            yield ev
        finally:
            for one in keys:
                waiters = self._waiters.get(one)
                if waiters is not None:
                    waiters.discard(ev)
                    if not waiters:
                        del self._waiters[one]
            if ev.is_set():
                # A wake-up meant for one waiter reached one that is leaving: pass it on.
                self.wake_one(key)

    def notify(self, key: str) -> None:
        """Wake every waiter for `key`, here and on the other replicas."""
        self.wake(key)
        if self.relay is not None:
            self.relay.publish(key, one=False)

    def notify_one(self, key: str) -> None:
        """Wake one waiter (one new job needs one worker, not all of them); each other replica
        wakes one of its own too, and the ones that find nothing wait again."""
        self.wake_one(key)
        if self.relay is not None:
            self.relay.publish(key, one=True)

    def wake(self, key: str) -> None:
        """Wake this replica's waiters for `key` (a relay delivering another's notification)."""
        for ev in self._waiters.get(key, ()):
            ev.set()

    def wake_one(self, key: str) -> None:
        """Wake one waiter, one that is parked if any: a waiter busy taking may have looked
        before the change and would look again, while a parked one looks at once."""
        busy = None
        for ev in self._waiters.get(key, ()):
            if ev.is_set():
                continue
            if ev.parked():
                ev.set()
                return
            busy = busy or ev
        if busy is not None:
            busy.set()

    def on(self, kind: str, handler: Callable[[str], object]) -> None:
        """Run `handler(detail)` when another replica announces an event of this kind."""
        self._handlers[kind] = handler

    def announce(self, kind: str, detail: str) -> None:
        """Tell the other replicas of an event this one cannot act on alone (a job to stop on a
        worker it does not know, a key revoked): each runs its handler for `kind`."""
        if self.relay is not None:
            self.relay.publish(f"!{kind}:{detail}", one=False)

    def deliver(self, key: str, *, one: bool) -> None:
        """A notification from another replica: a wake-up, or an announced event."""
        if key.startswith("!"):
            kind, _, detail = key[1:].partition(":")
            handler = self._handlers.get(kind)
            if handler is not None:
                handler(detail)
        elif one:
            self.wake_one(key)
        else:
            self.wake(key)

    def notify_all(self) -> None:
        """Wake every waiter of this replica, to look at the store again (closing, or a wake-up
        from another replica may have been missed)."""
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()

    def listeners(self, key: str) -> int:
        return len(self._waiters.get(key, ()))


async def wait_event(ev: Signal, timeout: float) -> bool:
    """Wait for `ev` at most `timeout` seconds; True if it was set. Clears it for the next round."""
    return await ev.wait(timeout)
