"""Test service: initializer defaults, plain routes, a stream that waits for the test, a blocking job."""

import os
import time
from pathlib import Path

import podium

INIT_CALLS = []


@podium.service(name="basic", min_workers=0, max_workers=2, idle_timeout=60)
def init(number=42):
    INIT_CALLS.append(1)
    return {"number": number, "greeting": "Hello"}


@init.endpoint("/work", default=True)
def work(marker="", block=False, value=None):
    """Writes `<marker>.started.<attempt>` (holding the pid), then waits for `<marker>.release`."""
    if marker:
        Path(f"{marker}.started.{podium.context.attempt}").write_text(str(os.getpid()))
        while block and not Path(f"{marker}.release").exists():
            time.sleep(0.02)
    return {
        "value": value,
        "pid": os.getpid(),
        "attempt": podium.context.attempt,
        "job": podium.context.job_id,
        "inits": len(INIT_CALLS),
    }


@init.endpoint("/hello")
def hello(number, greeting, name="world"):
    return f"{greeting}, {name}! My favorite number is {number}"


@init.endpoint("/fail")
def fail(message="boom", status=None):
    if isinstance(status, int) and 400 <= status <= 499:  # the route answers that status
        raise podium.HTTPError(status, message)
    raise ValueError(message)


@init.endpoint("/item")
def item(id):
    if id != 1:
        raise podium.NotFound(f"no item {id}")
    return {"id": 1}


@init.endpoint("/stream")
def stream(marker, items=3):
    yield "first\n"
    while not Path(f"{marker}.release").exists():
        time.sleep(0.02)
    for i in range(items):
        yield f"item {i}\n"


@init.endpoint("/progress")
def progress(marker):
    podium.context.progress({"step": 1})
    while not Path(f"{marker}.release").exists():
        time.sleep(0.02)
    return "done"
