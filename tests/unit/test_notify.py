"""Wake-ups within one replica: who of several waiters a job wakes."""

from __future__ import annotations

import asyncio

from podium.dispatch.notify import Notifier, wait_event


async def test_one_wake_up_goes_to_a_parked_waiter_not_one_busy_looking() -> None:
    """A worker busy taking (listening, not parked) may have read the store before the job was
    stored: the wake-up goes to the parked one, which looks at once. With none parked, the busy
    one is told to look again."""
    notifier = Notifier()
    with notifier.listen("ep") as busy:
        with notifier.listen("ep") as parked:
            woken = asyncio.create_task(wait_event(parked, 30))
            while not parked.parked():
                await asyncio.sleep(0)
            assert not busy.parked()
            notifier.wake_one("ep")
            assert await woken and not busy.is_set()
        notifier.wake_one("ep")
        assert busy.is_set(), "nobody parked: the busy waiter looks again"
