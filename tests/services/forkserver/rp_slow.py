"""An unmodified RunPod worker whose imports are slow (runpod itself, and `slow_import`)."""

import os

import runpod
import slow_import


def handler(job):
    return {"pid": os.getpid(), "loaded_by": slow_import.LOADED_BY, "input": job["input"]}


runpod.serverless.start({"handler": handler})
