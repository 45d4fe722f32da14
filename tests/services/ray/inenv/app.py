"""A version with requirements of its own: its worker on Ray runs in the version's environment."""

import sys

import podium_raypkg  # not in the server's Python: only the version's environment has it

import podium


@podium.service(name="inenv", max_workers=1)
def init():
    return {}


@init.endpoint("/which")
def which():
    return {"pkg": podium_raypkg.VERSION, "prefix": sys.prefix}
