"""Soak-test service: squares a number after a short sleep (so several workers share the load)."""

import os
import time

import podium


@podium.service(name="square", max_workers=4)
def init():
    return {}


@init.endpoint("/square", default=True)
def square(x, sleep=0.05):
    time.sleep(sleep)
    return {"x": x, "y": x * x, "pid": os.getpid(), "attempt": podium.context.attempt}
