"""The one kind of in-memory cache Podium keeps: at most `size` entries, the oldest dropped first,
each entry optionally valid for `ttl` seconds. A server runs for months; a cache that grows with
every job or key it ever saw is a leak, and one cleared wholesale when it passes a size empties
just when it is busiest."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

#: What a default-sized cache holds at most.
DEFAULT_SIZE = 10_000


class _Missing(enum.Enum):
    MISSING = enum.auto()


#: `get`'s default where None is a value that may be cached (an unknown key, a missing endpoint).
MISSING = _Missing.MISSING


class Bounded(Generic[K, V]):
    """Parameters:
    size: entries kept at most; putting one more drops the oldest.
    ttl: seconds an entry is valid for (None: until dropped).
    clock: the time `ttl` is measured on.
    """

    def __init__(
        self, size: int = DEFAULT_SIZE, ttl: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl = ttl
        self.clock = clock
        #: key -> (valid until, value); insertion order is age order.
        self._entries: dict[K, tuple[float, V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return self._live(key) is not None

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: Any = None) -> Any:
        """The value, or `default` when it is missing or expired (a cached None is a value)."""
        entry = self._live(key)
        return default if entry is None else entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries.pop(key, None)
        if len(self._entries) >= self.size:
            del self._entries[next(iter(self._entries))]
        until = float("inf") if self.ttl is None else self.clock() + self.ttl
        self._entries[key] = (until, value)

    def pop(self, key: K) -> V | None:
        """Remove and return the value (None when it is missing or expired)."""
        entry = self._entries.pop(key, None)
        return None if entry is None or entry[0] <= self.clock() else entry[1]

    def clear(self) -> None:
        self._entries.clear()

    def _live(self, key: K) -> tuple[float, V] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self.clock():
            del self._entries[key]
            return None
        return entry
