"""Ray Serve's side of the model phase: the MLP (mlp.py) with `@serve.batch(max_batch_size=32)`
(5 ms wait), one replica (one model copy), on a local Ray started here (2 CPUs, no dashboard),
from bench/.venv-ray:

    python ray_mlp.py --port 8125 --temp-dir /tmp/x/ray

`POST /predict` with `{"x": [1024 floats]}` answers the 4 values. Prints "ready" once Serve answers.
"""

import argparse
import signal
import sys
import time

import ray
from mlp import MLP
from ray import serve
from starlette.requests import Request


@serve.deployment(num_replicas=1, max_ongoing_requests=64)
class Mlp:
    def __init__(self) -> None:
        self.model = MLP()

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def predict(self, xs: list[list[float]]) -> list[list[float]]:
        return self.model(xs)

    async def __call__(self, request: Request) -> list[float]:
        return await self.predict((await request.json())["x"])


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
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}},
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # after ray.init, which sets its own
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(Mlp.bind(), name="mlp", route_prefix="/predict")
        print("ready", flush=True)
        while True:
            time.sleep(1)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
