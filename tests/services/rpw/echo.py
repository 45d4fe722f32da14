"""A plain RunPod worker with a synchronous handler (no Podium imports).

Input switches: `progress` (n updates), `marker` (+ `block`: wait for `<marker>.release`),
`sleep` (seconds), `fail` (raise), `fail_if` (raise while that file exists), `late_progress`
(a progress update right before returning, and one
after; `<marker>.late` once that one is posted), `refresh` (ask for a fresh worker).
"""

import os
import threading
import time
from pathlib import Path

import runpod
from runpod.serverless.modules.rp_progress import _thread_target as post_progress_now


def _write(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    Path(tmp).write_text(text)
    os.replace(tmp, path)


def handler(job):
    inp = job["input"]
    for i in range(inp.get("progress", 0)):
        runpod.serverless.progress_update(job, {"step": i})
        time.sleep(inp.get("progress_gap", 0.2))
    marker = inp.get("marker")
    if marker:
        _write(marker + ".started", str(os.getpid()))
        while inp.get("block") and not Path(marker + ".release").exists():
            time.sleep(0.02)
    if inp.get("sleep"):
        time.sleep(inp["sleep"])
    if inp.get("fail"):
        raise RuntimeError(inp["fail"])
    if inp.get("fail_if") and Path(inp["fail_if"]).exists():
        raise RuntimeError(f"{inp['fail_if']} exists")
    out = {
        "echo": inp,
        "keys": sorted(job),
        "pid": os.getpid(),
        "s3": "s3Config" in job,
        "policy": job.get("policy"),
    }
    if inp.get("late_progress"):
        runpod.serverless.progress_update(job, "late progress")  # races the result

        def later():  # arrives after the result, for sure
            time.sleep(0.3)
            post_progress_now(job, "later progress")
            if marker:
                _write(marker + ".late", "sent")

        threading.Thread(target=later, daemon=True).start()
    if inp.get("refresh"):
        out["refresh_worker"] = True
    return out


runpod.serverless.start({"handler": handler})
