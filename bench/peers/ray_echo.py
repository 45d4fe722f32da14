"""Ray Serve's side of `make bench-peers`: the trivial echo as a Serve deployment with two replicas
like Podium's two workers, on a local Ray started here (2 CPUs, no dashboard, 127.0.0.1) and
stopped when this driver gets SIGTERM. Run by bench/peers.py from its own venv (bench/.venv-ray):

    python ray_echo.py --port 8124 --temp-dir /tmp/x/ray

`POST /echo` with a JSON body answers the same JSON. Prints "ready" once Serve answers.
"""

import argparse
import signal
import sys
import time

import ray
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=2)
class Echo:
    async def __call__(self, request: Request) -> dict:
        return await request.json()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--temp-dir", required=True)
    args = p.parse_args()
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=args.temp_dir,
        _node_ip_address="127.0.0.1",
        object_store_memory=100 * 1024 * 1024,
        log_to_driver=False,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # after ray.init, which sets its own
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(Echo.bind(), name="echo", route_prefix="/echo")
        print("ready", flush=True)
        while True:
            time.sleep(1)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
