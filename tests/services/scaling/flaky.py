"""Fails while a marker file exists, with a retryable error; other errors are not retried."""

import os
from pathlib import Path

import podium


class Flaky(Exception):
    pass


@podium.service(name="flaky", max_workers=1, retries=3, retry_on=(Flaky,))
def init():
    return {}


@init.endpoint("/go")
def go(fails_file=None, fatal=False):
    if fatal:
        raise ValueError("not worth retrying")
    if fails_file:
        p = Path(fails_file)
        left = int(p.read_text()) if p.exists() else 0
        if left > 0:
            p.write_text(str(left - 1))
            raise Flaky(f"{left} failures to go")
    return {"attempt": podium.context.attempt, "pid": os.getpid()}
