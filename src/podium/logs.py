"""Logging as JSON lines (one object per record), for the server and the workers."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JSONFormatter(logging.Formatter):
    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup(level: int = logging.INFO, **static: Any) -> None:
    """JSON lines to stdout for Podium's loggers; warnings and up from libraries."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter(**static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("podium").setLevel(level)


def render(line: str) -> str:
    """A JSON log line made readable for `podium logs`; other lines (user prints) as they are."""
    if not line.startswith("{"):
        return line
    try:
        entry = json.loads(line)
    except ValueError:
        return line
    if not isinstance(entry, dict) or "msg" not in entry:
        return line
    text = f"{entry.get('time', '')} {entry.get('level', '').upper():7} {entry['msg']}"
    return text + ("\n" + entry["exc"] if entry.get("exc") else "")
