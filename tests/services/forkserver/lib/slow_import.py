"""Stands in for torch: a library that takes a while to import (a real import, outside the bundle)."""

import time

time.sleep(1.5)
LOADED_BY = __import__("os").getpid()
