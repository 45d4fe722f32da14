"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, so a receiver can check that a call
came from this Podium and is recent (the timestamp defeats replays of an old delivery).

Headers: `X-Podium-Timestamp: <unix seconds>` and `X-Podium-Signature: v1=<hex digest>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Podium-Timestamp"
SIGNATURE_HEADER = "X-Podium-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signed_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    ts = int(time.time() if now is None else now)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(secret, ts, body)}


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True if `body` was signed with `secret` less than `tolerance` seconds ago.

    `headers` may be any mapping; names are matched case-insensitively.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ts = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = lower.get(SIGNATURE_HEADER.lower(), "")
    if not raw_ts.isdigit():
        return False
    ts = int(raw_ts)
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), given)
