"""A RunPod worker that serves OpenAI routes the way runpod-workers/worker-vllm does, with a tiny
deterministic "model" in place of vLLM (no Podium imports).

Its handler is an async generator started with `return_aggregate_stream`; `JobInput` reads
`openai_route` and `openai_input`. The model answers a chat with the last user message's words in
reverse order, one word a token. Streaming yields raw SSE text (`data: {...}\\n\\n`, then `data:
[DONE]`) as worker-vllm does with RAW_OPENAI_OUTPUT; model "tiny-batched" yields lists of parsed
chunks instead (worker-vllm's batches). An invalid request yields OpenAI's error object, as
worker-vllm's `create_error_response` does. Extra body fields: `gap` (seconds between tokens),
`marker` (a path: `<marker>.started` is written at the first token).
"""

import asyncio
import json
import time
from pathlib import Path

import runpod

MODEL = "tiny-reverse"


class JobInput:
    def __init__(self, job):
        self.openai_route = job.get("openai_route")
        self.openai_input = job.get("openai_input")


def create_error_response(message, err_type="BadRequestError", code=400):
    return {"error": {"message": message, "type": err_type, "code": code}}


def tokens(body):
    if "messages" in body:
        user = [m for m in body["messages"] if m.get("role") == "user"]
        text = user[-1]["content"] if user else ""
    else:
        text = body.get("prompt", "")
    words = text.split()[::-1]
    limit = body.get("max_tokens")
    return words[:limit] if limit else words


def chunk(body, cid, created, text, finish=None, first=False):
    if "messages" in body:
        delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text else {})
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        kind = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish}
        kind = "text_completion"
    return {"id": cid, "object": kind, "created": created, "model": body.get("model") or MODEL, "choices": [choice]}


def whole(body, cid, created, words):
    text = " ".join(words)
    if "messages" in body:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        kind = "text_completion"
    usage = {"prompt_tokens": 1, "completion_tokens": len(words), "total_tokens": 1 + len(words)}
    return {
        "id": cid,
        "object": kind,
        "created": created,
        "model": body.get("model") or MODEL,
        "choices": [choice],
        "usage": usage,
    }


async def generate(job_input):
    route, body = job_input.openai_route, job_input.openai_input
    if route == "/v1/models":
        yield {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "tests"}]}
        return
    if route not in ("/v1/chat/completions", "/v1/completions"):
        yield create_error_response("Invalid route")
        return
    if body.get("temperature", 0) > 2:
        yield create_error_response("temperature must be at most 2")
        return
    if body.get("model") == "crash":
        raise RuntimeError("the model crashed")
    cid, created = f"cmpl-{time.time_ns()}", int(time.time())
    words = tokens(body)
    if not body.get("stream"):
        yield whole(body, cid, created, words)
        return
    batched = body.get("model") == "tiny-batched"
    for i, word in enumerate(words):
        if i == 0 and body.get("marker"):
            Path(body["marker"] + ".started").write_text("1")
        piece = chunk(body, cid, created, word if i == 0 else " " + word, first=i == 0)
        yield [piece] if batched else f"data: {json.dumps(piece)}\n\n"
        await asyncio.sleep(body.get("gap", 0))
    last = chunk(body, cid, created, "", finish="stop")
    yield [last] if batched else f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n"


async def handler(job):
    async for batch in generate(JobInput(job["input"])):
        yield batch


runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
