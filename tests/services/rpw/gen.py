"""A plain RunPod worker with a generator handler (no Podium imports).

Yields `{"i": i}` for i < n, `gap` seconds apart; with `big_at`, one 2 MB chunk before that index
(over RunPod's 1 MB chunk limit, so the server refuses it).
"""

import time

import runpod


def handler(job):
    inp = job["input"]
    for i in range(inp.get("n", 3)):
        if inp.get("big_at") == i:
            yield {"big": "x" * 2_000_000}
        yield {"i": i}
        time.sleep(inp.get("gap", 0))


runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
