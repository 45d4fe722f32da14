"""A RunPod-style handler for the runpod-client tests: one worker, so jobs can be made to queue."""

import os
import time
from pathlib import Path

import podium


@podium.handler(name="rp", max_workers=1)
def handler(job):
    inp = job["input"]
    if inp.get("marker"):
        Path(inp["marker"] + ".started").write_text(str(os.getpid()))
        while inp.get("block") and not Path(inp["marker"] + ".release").exists():
            time.sleep(0.02)
    if inp.get("fail"):
        raise ValueError(inp["fail"])
    return {"value": inp.get("value"), "pid": os.getpid()}
