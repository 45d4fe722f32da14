"""A service whose initializer refuses to start when told to (a redeploy that fails to start)."""

import podium


@podium.service(name="fn-picky", max_workers=1)
def picky(ok=True):
    if not ok:
        raise RuntimeError("the picky initializer refuses to start")
    return {}


@picky.endpoint("/ping")
def ping():
    return "pong"
