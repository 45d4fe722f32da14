"""The physical limit of one process for the model phase: the MLP (mlp.py) in a bare Starlette app
on uvicorn (uvloop, httptools), one process, one model copy. `--batch 32 --window-ms 5`: a
hand-written asyncio micro-batcher, one matmul for up to 32 waiting calls, flushed when 32 are in
or `window` after the first (0: at the next turn of the loop, never waiting); `--batch 1`: one
matmul per call. Run from bench/.venv-ray (numpy, starlette, uvicorn with uvloop and httptools):

    python starlette_mlp.py --port 8126 --batch 32 --window-ms 5

`POST /predict` with `{"x": [1024 floats]}` answers the 4 values.
"""

import argparse
import asyncio
import json

import uvicorn
from mlp import MLP
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class Batcher:
    """Calls wait in `pending`; a flush runs the model once for up to `size` of them (on the
    loop: while it computes, new requests queue in the sockets and make the next batch)."""

    def __init__(self, model: MLP, size: int, window: float) -> None:
        self.model = model
        self.size = size
        self.window = window
        self.pending: list[tuple[list[float], asyncio.Future[list[float]]]] = []
        self.timer: asyncio.Handle | None = None

    async def __call__(self, x: list[float]) -> list[float]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[float]] = loop.create_future()
        self.pending.append((x, done))
        if len(self.pending) >= self.size:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.window, self.flush) if self.window else loop.call_soon(self.flush)
        return await done

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending[: self.size], self.pending[self.size :]
        if batch:
            for (_, done), answer in zip(batch, self.model([x for x, _ in batch]), strict=True):
                done.set_result(answer)
        if self.pending:
            self.timer = asyncio.get_running_loop().call_soon(self.flush)


def app(batch: int, window_ms: float) -> Starlette:
    model = MLP()
    batcher = Batcher(model, batch, window_ms / 1000) if batch > 1 else None

    async def predict(request: Request) -> Response:
        x = (await request.json())["x"]
        answer = await batcher(x) if batcher is not None else model([x])[0]
        return Response(json.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--window-ms", type=float, default=5.0)
    args = p.parse_args()
    uvicorn.run(app(args.batch, args.window_ms), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
