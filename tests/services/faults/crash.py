"""Crash-test service: a job that blocks on a marker file, a job that kills its own worker, and an
initializer that can be held shut (so a worker can be kept from ever taking a job).

Markers: `<marker>.started.<attempt>` holds the pid of the worker running that attempt; the job then
waits (with `block`) until `<marker>.release` exists, and writes `<marker>.finished.<attempt>` just
before returning. `die` SIGKILLs the worker after writing the started marker (a simulated OOM
kill). With $FAULTS_GATE set, the initializer waits until that file exists.
"""

import os
import signal
import time
from pathlib import Path

import podium


@podium.service(name="crash", max_workers=2)
def init():
    gate = os.environ.get("FAULTS_GATE")
    deadline = time.monotonic() + 120
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return {}


@init.endpoint("/work", default=True)
def work(marker="", block=False, die=False, value=None):
    if marker:
        Path(f"{marker}.started.{podium.context.attempt}").write_text(str(os.getpid()))
    if die:
        os.kill(os.getpid(), signal.SIGKILL)
    deadline = time.monotonic() + 120
    while block and not Path(f"{marker}.release").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    if marker:
        Path(f"{marker}.finished.{podium.context.attempt}").write_text(str(os.getpid()))
    return {"value": value, "pid": os.getpid(), "attempt": podium.context.attempt, "job": podium.context.job_id}
