"""Gives up quickly when its worker cannot start (here: no room on the cluster for its actor)."""

import podium


@podium.service(name="starved", max_workers=1, startup_timeout=3)
def init():
    return {}


@init.endpoint("/x")
def x():
    return 1
