"""Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, so a receiver can check that a call
came from this Podium and is recent (the timestamp defeats replays of an old delivery).

Headers: `X-Podium-Timestamp: <unix seconds>` and `X-Podium-Signature: v1=<hex digest>`. Each
project signs with its own secret. For a while after a rotation a delivery carries one signature
per valid secret, newest first and comma-separated (`v1=<new>, v1=<old>`): a receiver accepts it
when any of them is made with the secret it holds, so it keeps verifying while it moves over.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence

TIMESTAMP_HEADER = "X-Podium-Timestamp"
SIGNATURE_HEADER = "X-Podium-Signature"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signed_headers(secrets: str | Sequence[str], body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers of one delivery, signed with each of `secrets` (a project's valid secrets)."""
    ts = int(time.time() if now is None else now)
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    return {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: ", ".join(sign(k, ts, body) for k in keys)}


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance: float = 300.0,
    now: float | None = None,
) -> bool:
    """True if `body` was signed with `secret` less than `tolerance` seconds ago (by any of the
    signatures the header lists).

    `headers` may be any mapping; names are matched case-insensitively.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    raw_ts = lower.get(TIMESTAMP_HEADER.lower(), "")
    given = re.split(r"[,\s]+", lower.get(SIGNATURE_HEADER.lower(), "").strip())
    if not raw_ts.isdigit():
        return False
    ts = int(raw_ts)
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    # Every listed signature is compared (constant time each), not only up to the first match.
    return sum(hmac.compare_digest(expected, g) for g in given) > 0
