"""Test service: routes that run by themselves (a period, a cron expression in a zone), and
routes an operator schedules (one that blocks until the test releases it)."""

import time
from pathlib import Path

import podium


@podium.service(name="ticker", min_workers=0, max_workers=2, idle_timeout=60)
def init():
    return {}


@init.endpoint("/tick", schedule=podium.every(seconds=1), schedule_input={"tag": "every"})
def tick(tag="default"):
    return tag


@init.endpoint("/nightly", schedule="0 3 * * *", timezone="Europe/Rome")
def nightly(n=7):
    return n


@init.endpoint("/slow")
def slow(marker=""):
    """Waits for `<marker>.release`."""
    while marker and not Path(f"{marker}.release").exists():
        time.sleep(0.02)
    return "released"


@init.endpoint("/echo")
def echo(value=None):
    return {"value": value, "at": time.time()}
