"""A small FastAPI app served by Podium as it is."""

import asyncio
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Header, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

STATE = {}


@asynccontextmanager
async def lifespan(app):
    STATE["model"] = "loaded once per worker"
    STATE["pid"] = os.getpid()
    yield


app = FastAPI(lifespan=lifespan)
ITEMS = {}


@app.get("/")
def root():
    return {"hello": "world", "model": STATE.get("model")}


@app.get("/items/{item_id}")
def get_item(item_id: str, q: str | None = None, x_trace: str | None = Header(default=None)):
    if item_id not in ITEMS:
        return PlainTextResponse("missing", status_code=404, headers={"X-Why": "not stored"})
    return {"id": item_id, "value": ITEMS[item_id], "q": q, "trace": x_trace, "pid": os.getpid()}


@app.put("/items/{item_id}")
async def put_item(item_id: str, request: Request):
    ITEMS[item_id] = (await request.json())["value"]
    return {"stored": item_id}


@app.patch("/items/{item_id}")
async def patch_item(item_id: str, request: Request):
    ITEMS[item_id] += (await request.json())["add"]
    return {"id": item_id, "value": ITEMS[item_id]}


@app.delete("/items/{item_id}", status_code=204)
def delete_item(item_id: str):
    ITEMS.pop(item_id, None)


@app.post("/echo")
async def echo(request: Request):
    body = await request.body()
    return {
        "len": len(body),
        "type": request.headers.get("content-type"),
        "auth": request.headers.get("authorization"),
        "key": request.headers.get("x-api-key"),
        "url": str(request.url),
    }


@app.get("/stream")
async def stream(n: int = 3, gate: str | None = None):
    """With `gate` (a file path), holds the rest of the body until the caller, having read the
    first line, creates that file: a buffered response never lets it, and says so."""

    async def gen():
        for i in range(n):
            yield f"line {i}\n"
            if gate and i == 0:
                for _ in range(600):
                    if os.path.exists(gate):
                        break
                    await asyncio.sleep(0.05)
                else:
                    yield "the gate never opened: the first line was not delivered on its own\n"
            else:
                await asyncio.sleep(0.2)

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/boom")
def boom():
    raise RuntimeError("the app failed")


@app.get("/huge")
async def huge(mib: int = 160):
    """`mib` MiB of text, in pieces small enough for a stream chunk each."""
    piece = b"x" * (256 * 1024)

    async def gen():
        for _ in range(mib * 4):
            yield piece

    return StreamingResponse(gen(), media_type="text/plain")


@app.get("/onepiece")
def onepiece(mib: int = 2):
    """A body sent as one piece: one stream chunk over the chunk limit."""
    return PlainTextResponse("x" * (mib * 1024 * 1024))
