"""Says where it runs: its process, its parent (the Ray actor), the PODIUM_HOME of its node."""

import os
import time

import podium


@podium.service(name="where", max_workers=1, idle_timeout=60)
def init():
    return {}


@init.endpoint("/where")
def where(sleep=0.0):
    print(f"running job {podium.context.job_id} (attempt {podium.context.attempt}) in pid {os.getpid()}")
    time.sleep(sleep)
    return {"pid": os.getpid(), "ppid": os.getppid(), "home": os.environ.get("PODIUM_HOME"),
            "attempt": podium.context.attempt}
