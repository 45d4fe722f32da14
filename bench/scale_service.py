"""The service the scaling bench deploys: echoes its input after `sleep` seconds (default none)."""

import time

import podium


@podium.handler(name="scale", min_workers=0, max_workers=4, idle_timeout=2)
def handler(job):
    time.sleep(float(job["input"].get("sleep", 0)))
    return job["input"]
