"""A Podium handler whose imports are slow (`slow_import`, outside the bundle)."""

import os

import slow_import


def handler(job):
    return {"pid": os.getpid(), "loaded_by": slow_import.LOADED_BY, "input": job["input"]}
