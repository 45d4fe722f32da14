"""Test service for the console: a greeting, a large answer, a failure whose message is markup,
a stream, and a job that waits for the test (to be cancelled)."""

import time
from pathlib import Path

import podium

VERSION = "one"


@podium.service(name="console-demo", min_workers=0, max_workers=1, idle_timeout=120)
def init():
    return {"greeting": "Hello"}


@init.endpoint("/hello", default=True)
def hello(greeting, name="world"):
    return {"message": f"{greeting}, {name}!", "version": VERSION}


@init.endpoint("/big")
def big(n=1_200_000):
    return "x" * n


@init.endpoint("/fail")
def fail(message="boom"):
    raise ValueError(message)


@init.endpoint("/count")
def count(n=3):
    for i in range(n):
        yield f"item {i}\n"


@init.endpoint("/wait")
def wait(marker):
    """Returns once `<marker>.release` exists (at most 60 s)."""
    deadline = time.monotonic() + 60
    while not Path(f"{marker}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return "released"
