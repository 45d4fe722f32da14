"""The one bounded cache type: size, age order, expiry, and None as a cached value."""

from __future__ import annotations

from podium.bounded import MISSING, Bounded


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_it_keeps_at_most_size_entries_and_drops_the_oldest() -> None:
    cache: Bounded[str, int] = Bounded(size=3)
    for i, key in enumerate("abcd"):
        cache.put(key, i)
    assert len(cache) == 3
    assert "a" not in cache
    assert [cache.get(k) for k in "bcd"] == [1, 2, 3]


def test_putting_a_key_again_makes_it_the_newest() -> None:
    cache: Bounded[str, int] = Bounded(size=2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)
    cache.put("c", 4)
    assert "b" not in cache
    assert cache.get("a") == 3


def test_entries_expire_after_ttl() -> None:
    clock = Clock()
    cache: Bounded[str, int] = Bounded(ttl=5.0, clock=clock)
    cache.put("a", 1)
    clock.t = 4.9
    assert cache.get("a") == 1
    clock.t = 5.0
    assert cache.get("a") is None
    assert len(cache) == 0
    cache.put("b", 2)
    clock.t = 11.0
    assert cache.pop("b") is None


def test_a_cached_none_is_told_apart_from_a_miss() -> None:
    cache: Bounded[str, None] = Bounded()
    assert cache.get("k", MISSING) is MISSING
    cache.put("k", None)
    assert cache.get("k", MISSING) is None
    assert "k" in cache
    assert cache.pop("k") is None
    assert "k" not in cache
