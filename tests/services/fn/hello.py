"""The issue's example service, plus a few routes the Python-client tests need."""

import time
from pathlib import Path

import podium


@podium.service(name="fn-hello", max_workers=2)
def hello_service(number=42):
    return {"number": number}


@hello_service.endpoint("/hello")
def hello(number, message="Hello, world!"):
    return f"{message} My favorite number is {number}"


@hello_service.endpoint("/stream", streaming=True)
def stream(message="Hello, world!", items=(1, 5, "foo")):
    yield message + "\n"
    yield "Items: " + " ".join(map(str, items)) + "\n"
    yield "Done streaming\n"


@hello_service.endpoint("/custom-endpoint")
def custom_endpoint(number):
    return {"doubled": number * 2}


@hello_service.endpoint("/slow-stream", streaming=True)
def slow_stream(marker):
    """Yields once, then waits for `marker` to exist: proves chunks arrive before the route ends."""
    yield "first\n"
    deadline = time.monotonic() + 30
    while not Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield "second\n"


@hello_service.endpoint("/fail")
def fail(reason="bad input"):
    raise ValueError(reason)
