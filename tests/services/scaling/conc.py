"""Concurrency: sync routes run in threads, async routes on one loop, several jobs at once."""

import asyncio
import os
import threading
import time

import podium


@podium.service(name="conc", max_workers=1, concurrency=4)
def init():
    return {}


@init.endpoint("/sync")
def sync_route(sleep=0.5):
    t0 = time.time()
    time.sleep(sleep)
    return {
        "start": t0,
        "end": time.time(),
        "pid": os.getpid(),
        "thread": threading.get_ident(),
        "job": podium.context.job_id,
    }


@init.endpoint("/aio")
async def async_route(sleep=0.5):
    t0 = time.time()
    await asyncio.sleep(sleep)
    return {"start": t0, "end": time.time(), "pid": os.getpid(), "job": podium.context.job_id}


@init.endpoint("/agen", streaming=True)
async def agen(n=3):
    for i in range(n):
        await asyncio.sleep(0.05)
        yield f"{podium.context.job_id}:{i}\n"
