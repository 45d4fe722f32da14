import time

import podium


@podium.service(name="tokens", max_workers=1)
def init():
    return {}


@init.endpoint("/tokens", streaming=True)
def tokens(n=3, pause=0.0, fail_at=-1):
    for i in range(n):
        if i == fail_at:
            raise ValueError(f"failed at token {i}")
        yield f"t{i} "
        time.sleep(pause)
