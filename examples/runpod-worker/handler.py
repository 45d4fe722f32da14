"""A plain RunPod worker, written for RunPod and run by Podium unchanged.

Input (all optional): {"progress": 3, "sleep": 0.5, "fail": "why"}; the answer is {"echo": input}.
"""

import time

import runpod


def handler(job):
    job_input = job["input"]

    steps = job_input.get("progress") or 0
    for i in range(1, int(steps) + 1):  # true counts as one step
        runpod.serverless.progress_update(job, f"step {i}")
        time.sleep(0.05)  # updates are sent from threads: a gap keeps them in order

    if job_input.get("sleep"):
        time.sleep(float(job_input["sleep"]))

    if job_input.get("fail"):
        raise RuntimeError(str(job_input["fail"]))

    return {"echo": job_input}


runpod.serverless.start({"handler": handler})
