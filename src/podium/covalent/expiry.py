"""Covalent deployments stop at their executor's time limit, as on Covalent: checked every second."""

from __future__ import annotations

import asyncio
import logging

from podium.covalent.functions import Functions

log = logging.getLogger("podium.covalent")
EVERY = 1.0


async def run(functions: Functions) -> None:
    """Until cancelled (the server's close)."""
    while True:
        try:
            stopped = await functions.expire()
            if stopped:
                log.info("%d covalent deployment(s) reached their time limit", stopped)
        except Exception:  # a store hiccup must not end the loop
            log.exception("checking covalent time limits failed")
        await asyncio.sleep(EVERY)
