"""A plain RunPod worker with an async handler and two jobs at once (no Podium imports).

Input: `marker` (+ `block`: wait for `<marker>.release`), `sleep` (seconds). When the stop channel
cancels the job, `<marker>.cancelled` is written before the CancelledError goes on.
"""

import asyncio
import os
from pathlib import Path

import runpod


def _write(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


async def handler(job):
    inp = job["input"]
    marker = inp.get("marker")
    try:
        if marker:
            _write(marker + ".started", str(os.getpid()))
            while inp.get("block") and not Path(marker + ".release").exists():
                await asyncio.sleep(0.02)
        await asyncio.sleep(inp.get("sleep", 0))
    except asyncio.CancelledError:
        if marker:
            _write(marker + ".cancelled", str(os.getpid()))
        raise
    return {"echo": inp, "pid": os.getpid()}


def concurrency_modifier(current):
    return 2


runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency_modifier})
