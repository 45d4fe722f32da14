import logging
import sys

import podium

log = logging.getLogger("userland")


@podium.service(name="chatty", max_workers=1)
def init():
    print("initializer says hello")
    return {}


@init.endpoint("/say")
def say(text):
    print(f"printed {text}")
    print(f"to stderr {text}", file=sys.stderr)
    log.warning("logged %s", text)
    return text
