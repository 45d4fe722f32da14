"""The trivial Podium service with a named route the benchmark calls as `POST /bench-routes/echo`.

Two workers, always up, like bench/echo_service.py, so a route call and a runsync are measured
through the same pool size.
"""

import podium


@podium.service(name="bench-routes", min_workers=2, max_workers=2)
def echo_routes():
    return {}


@echo_routes.endpoint("/echo")
def echo(n=0):
    return {"n": n}
