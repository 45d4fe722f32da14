"""Imports fine until the file named by $BREAK_IMPORT exists (then every new worker fails)."""

import os
from pathlib import Path

import podium

if os.environ.get("BREAK_IMPORT") and Path(os.environ["BREAK_IMPORT"]).exists():
    raise ImportError("no module named 'weights_loader' (the import is broken on purpose)")


@podium.service(name="noimport", max_workers=1)
def init():
    return {}


@init.endpoint("/x")
def x():
    return 1
