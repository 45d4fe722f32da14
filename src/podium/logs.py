"""Logging as JSON lines (one object per record), for the server and the workers.

Every line a worker writes carries its endpoint and worker id, and while a job runs its job id and
attempt too, so `podium logs NAME --job ID` can pick a job's lines out of a worker's log. That holds
for what user code prints as well: a worker's stdout and stderr are wrapped into such lines.

A worker's log is `<logs>/<endpoint id>/<worker id>.log`: by id, since names are unique only
within a project (two projects' endpoints of one name shared a folder, and read each other's lines).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TextIO

from podium.names import ENDPOINT_ID

#: Fields of the job running in this thread or task (job_id, attempt).
_job_fields: ContextVar[dict[str, Any] | None] = ContextVar("podium_log_job", default=None)

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def stamp(t: float) -> str:
    """UTC time with milliseconds, ISO 8601 (the `Z` means it: never local time)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class JSONFormatter(logging.Formatter):
    def __init__(self, **static: Any) -> None:
        super().__init__()
        self.static = static

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.static,
            **(_job_fields.get() or {}),
        }
        # Private fields are libraries' own (Ray stamps `_ray_timestamp_ns` on every record).
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


@contextlib.contextmanager
def job_fields(**fields: Any) -> Iterator[None]:
    """Add these fields (job_id, attempt) to every line logged or printed inside the block."""
    token = _job_fields.set(fields)
    try:
        yield
    finally:
        _job_fields.reset(token)


class LineWriter(io.TextIOBase):
    """A text stream that turns each line written to it (user prints) into a JSON log line."""

    def __init__(self, out: TextIO, stream: str, static: dict[str, Any]) -> None:
        self.out = out
        self.stream = stream
        self.static = static
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def _emit(self, line: str) -> None:
        entry = {
            "time": stamp(time.time()),
            "level": "info" if self.stream == "stdout" else "warning",
            "logger": self.stream,
            "msg": line,
            **self.static,
            **(_job_fields.get() or {}),
        }
        self.out.write(json.dumps(entry, default=str) + "\n")
        self.out.flush()


def capture_output(**static: Any) -> None:
    """Wrap this process's stdout and stderr into JSON lines (worker processes)."""
    out = sys.__stdout__
    assert out is not None
    sys.stdout = LineWriter(out, "stdout", static)
    sys.stderr = LineWriter(out, "stderr", static)


def setup(level: int = logging.INFO, **static: Any) -> None:
    """JSON lines to stdout for Podium's loggers; warnings and up from libraries."""
    handler = logging.StreamHandler(sys.__stdout__)
    handler.setFormatter(JSONFormatter(**static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("podium").setLevel(level)


def _entry(line: str) -> dict[str, Any] | None:
    """A log line as the JSON object it is, or None (a plain line, e.g. a RunPod worker's print)."""
    if not line.startswith("{"):
        return None
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def job_of(line: str) -> str | None:
    """The job a log line belongs to: our `job_id`, or RunPod workers' `requestId`."""
    entry = _entry(line)
    return None if entry is None else entry.get("job_id") or entry.get("requestId")


def render(line: str) -> str:
    """A JSON log line made readable for `podium logs`; other lines (user prints) as they are."""
    entry = _entry(line)
    if entry is None or "msg" not in entry:
        return line
    text = f"{entry.get('time', '')} {entry.get('level', '').upper():7} {entry['msg']}"
    return text + ("\n" + entry["exc"] if entry.get("exc") else "")


def plain(line: str) -> str:
    """A log line as what was written: a JSON record's message (and exception), other lines as
    they are. For text read by people (an endpoint's error), not for `podium logs`."""
    entry = _entry(line)
    if entry is None or "msg" not in entry:
        return line
    return str(entry["msg"]) + ("\n" + entry["exc"] if entry.get("exc") else "")


def tail(path: Path | None, lines: int = 40) -> str:
    """The last lines of a log file ('' when there is none)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64 * 1024))
        data = f.read().decode(errors="replace")
    return "\n".join(data.splitlines()[-lines:])


def written_tail(path: Path | None, lines: int = 40) -> str:
    """The last lines of a worker's log as it wrote them (its JSON records' messages), for people
    to read in its endpoint's error."""
    return "\n".join(plain(line) for line in tail(path, lines).splitlines())


def endpoint_dir(root: Path, endpoint_id: str) -> Path:
    """The folder of an endpoint's worker logs (InvalidRequest for a value that is no endpoint id)."""
    return root / ENDPOINT_ID.check(endpoint_id)


def worker_logs(root: Path, endpoint_id: str) -> list[Path]:
    """An endpoint's worker logs, oldest first."""
    folder = endpoint_dir(root, endpoint_id)
    return sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime) if folder.exists() else []


#: Written once the logs are in folders named by endpoint id (a name starting with "." is no id).
BY_ID = ".by-endpoint-id"


def sort_by_endpoint_id(root: Path) -> None:
    """Once per home: move the logs of folders named by endpoint name (older servers) into folders
    named by the endpoint id their own lines carry. A log that names no endpoint (plain lines only)
    goes to `.unsorted/<old folder>/`, which no endpoint reads: it cannot be told whose it is."""
    marker = root / BY_ID
    if marker.exists() or not root.is_dir():
        return
    for folder in [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]:
        for log in [*folder.glob("*.log"), *folder.glob("forkserver/*.log")]:
            owner = _endpoint_in(log)
            sub = log.parent.relative_to(folder)
            dest = root / owner / sub if owner is not None else root / ".unsorted" / folder.name / sub
            if dest != log.parent:
                dest.mkdir(parents=True, exist_ok=True)
                log.replace(dest / log.name)
        for empty in (folder / "forkserver", folder):
            with contextlib.suppress(OSError):
                empty.rmdir()
    marker.touch()


def _endpoint_in(log: Path, lines: int = 50) -> str | None:
    """The endpoint id a log's first lines carry, if any."""
    with log.open(encoding="utf-8", errors="replace") as f:
        for _, line in zip(range(lines), f, strict=False):
            entry = _entry(line)
            if entry is not None and ENDPOINT_ID.match(entry.get("endpoint")):
                return str(entry["endpoint"])
    return None
