"""An unmodified RunPod worker (no Podium import): the scaling bench's slow-importing service."""

import runpod


def handler(job):
    return job["input"]


runpod.serverless.start({"handler": handler})
