"""Answers with the GPUs its worker was given; a job with `gate` holds its worker until that file exists."""

import os
import time
from pathlib import Path

import podium


@podium.handler(gpus=1, max_workers=3, idle_timeout=300)
def handler(job):
    gate = job["input"].get("gate")
    while gate and not Path(gate).exists():
        time.sleep(0.05)
    return {"devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid()}
