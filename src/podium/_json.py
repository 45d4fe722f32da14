"""JSON in one place: orjson for speed, text for the store, clear errors for bad bodies."""

from __future__ import annotations

from typing import Any

import orjson

JSONDecodeError = orjson.JSONDecodeError


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def dumpb(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def raw(text: str) -> Any:
    """JSON text that `dumps` and `dumpb` embed as it is, not decoded to be encoded again (a
    job's stored input, handed to its worker)."""
    return orjson.Fragment(text)


def loads(data: str | bytes | None) -> Any:
    return None if data is None else orjson.loads(data)
