"""Says where it runs: its process, its parent (the Ray actor), the PODIUM_HOME of its node."""

import os
import time
import uuid
from pathlib import Path

import podium

#: This process, whatever PID namespace it is in (a sandboxed worker is pid 1 in its own).
PROCESS = uuid.uuid4().hex


@podium.service(name="where", max_workers=1, idle_timeout=60)
def init():
    return {}


@init.endpoint("/where")
def where(until=None):
    """`until`: a file to wait for (at most a minute), so a test decides when the job ends."""
    print(f"running job {podium.context.job_id} (attempt {podium.context.attempt}) in pid {os.getpid()}")
    deadline = time.monotonic() + 60
    while until and not Path(until).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "home": os.environ.get("PODIUM_HOME"),
        "attempt": podium.context.attempt,
        "process": PROCESS,
        "cwd": os.getcwd(),
        "bundle_dir": str(podium.context.bundle_dir),
        "threads": os.environ.get("OMP_NUM_THREADS"),
    }
