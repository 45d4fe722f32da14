import time

import podium


@podium.service(name="hang", max_workers=1, startup_timeout=2)
def init():
    time.sleep(3600)


@init.endpoint("/x")
def x():
    return 1
