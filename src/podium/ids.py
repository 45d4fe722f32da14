"""Job ids that sort by creation time (UUIDv7, RFC 9562: 48 bits of Unix milliseconds, then 74
random bits).

Random ids (UUIDv4) land anywhere in the store's index of job ids, so every job stored dirtied
another of its pages: one more page written to the WAL per commit, and one more copied by each
checkpoint. Ids in time order are appended where the last one went."""

from __future__ import annotations

import os
import time

_RAND_A = (1 << 12) - 1
_RAND_B = (1 << 62) - 1


def uuid7() -> str:
    """A new UUIDv7, as text."""
    ms = time.time_ns() // 1_000_000
    r = int.from_bytes(os.urandom(10))
    value = (ms << 80) | (0x7 << 76) | (((r >> 64) & _RAND_A) << 64) | (0b10 << 62) | (r & _RAND_B)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
