"""The hello service: an initializer whose dict gives every route its defaults, two routes, a stream."""

import time

import podium


@podium.service(name="hello", max_workers=2, idle_timeout=60)
def hello_service(number=42):
    # Runs once per worker: load a model here. Its keys are default arguments of every route.
    return {"number": number}


@hello_service.endpoint("/hello")
def hello(number, message="Hello, world!"):
    return f"{message} My favorite number is {number}"


@hello_service.endpoint("/echo", default=True)
def echo(prompt="", number=0):
    # The default route: `/run` and `/runsync` call it with `input` as its keyword arguments.
    return {"prompt": prompt, "number": number, "job": podium.context.job_id}


@hello_service.endpoint("/stream")
def stream(message="Hello, world!", items=(1, 5, "foo"), delay=0.0):
    yield message + "\n"
    for item in items:
        time.sleep(delay)
        yield f"item {item}\n"
    yield "Done streaming\n"
