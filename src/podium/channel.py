"""Frames of the worker channel: the server's own local workers' job-take and job-done over a Unix
socket (the server's side: `server/worker_channel.py`; the worker's: `worker/link.py`).

    request: length (4 bytes, big-endian) | header length (2 bytes) | header (JSON) | body
    answer:  length (4 bytes)             | HTTP status (2 bytes)   | body

`length` counts what follows it. A request's body and an answer's are exactly those of the HTTP
call the frame stands for, so either side reads them as it reads HTTP's.
"""

from __future__ import annotations

import struct
from typing import Any

from podium import _json

LENGTH = struct.Struct(">I")
SHORT = struct.Struct(">H")
#: The environment variable that tells a worker where the channel is.
ENV = "PODIUM_WORKER_SOCKET"


def request(header: dict[str, Any], body: bytes = b"") -> bytes:
    head = _json.dumpb(header)
    return LENGTH.pack(SHORT.size + len(head) + len(body)) + SHORT.pack(len(head)) + head + body


def split_request(frame: bytes) -> tuple[dict[str, Any], bytes]:
    """A request frame's header and body (the frame without its length); ValueError when it is
    not one."""
    if len(frame) < SHORT.size:
        raise ValueError("a frame too short to hold its header's length")
    (size,) = SHORT.unpack_from(frame)
    header = _json.loads(frame[SHORT.size : SHORT.size + size])
    if not isinstance(header, dict):
        raise ValueError("a frame's header must be a JSON object")
    return header, frame[SHORT.size + size :]


def answer(status: int, body: bytes) -> bytes:
    return LENGTH.pack(SHORT.size + len(body)) + SHORT.pack(status) + body
