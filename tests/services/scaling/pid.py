import os
import time

import podium


@podium.service(name="pid", max_workers=2)
def init():
    return {}


@init.endpoint("/pid")
def pid(sleep=0.0):
    time.sleep(sleep)
    return os.getpid()


HELD = []


@init.endpoint("/hog")
def hog(mb=100):
    HELD.append(bytearray(mb * 1024 * 1024))
    return os.getpid()
