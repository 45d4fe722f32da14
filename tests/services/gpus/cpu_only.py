"""A service asking no GPU: answers with what its worker sees of the machine's GPUs."""

import os

import podium


@podium.handler(cpus=0.5, memory_mb=256)
def handler(job):
    return {"devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
