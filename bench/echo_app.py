"""The baseline: a bare Starlette app with one POST route that echoes its JSON body.

Run by bench/run.py in a subprocess, with the same uvicorn settings `podium up` uses
(loop auto, http auto, log level warning, no access log):

    python bench/echo_app.py --port 8123
"""

from __future__ import annotations

import argparse

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(await request.json())


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/echo", echo, methods=["POST"]), Route("/healthz", healthz)])


def main() -> None:
    import uvicorn

    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, loop="auto", http="auto")


if __name__ == "__main__":
    main()
