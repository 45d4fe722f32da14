"""An OpenAI route of a Podium service (`@svc.endpoint("/v1/chat/completions", openai=True)`): its
text deltas framed as OpenAI's objects, on the worker, so that the server treats its jobs as it
treats a RunPod worker's OpenAI jobs (each stream chunk one OpenAI chunk, the output the whole
OpenAI object).

A job's input is RunPod's `{"openai_route", "openai_input"}`, or the request body itself when the
route is called as a plain route. With `"stream": true` each delta is posted as a chunk at once;
otherwise only the whole object is, at the end.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import Any

from podium.ids import uuid7
from podium.sdk.service import Route

#: What each route's objects are called.
OBJECTS = {
    "/v1/chat/completions": ("chat.completion", "chat.completion.chunk", "chatcmpl-"),
    "/v1/completions": ("text_completion", "text_completion", "cmpl-"),
}


def request_of(job_input: Any) -> dict[str, Any]:
    """OpenAI's request body out of a job's input."""
    if isinstance(job_input, dict) and isinstance(job_input.get("openai_input"), dict):
        return job_input["openai_input"]  # type: ignore[no-any-return]
    return job_input if isinstance(job_input, dict) else {}


class Completion:
    """One call of an OpenAI route: the request's fields the function takes, its deltas as chunks,
    and the whole object they make.

    Parameters:
        route: the route called (its path says which OpenAI objects it answers).
        job_input: the job's input (see `request_of`).
    """

    def __init__(self, route: Route, job_input: Any) -> None:
        self.route = route
        self.request = request_of(job_input)
        self.stream = self.request.get("stream") is True
        model = self.request.get("model")
        self.model = model if isinstance(model, str) and model else route.model or ""
        self.created = int(time.time())
        self.id = OBJECTS.get(route.path, ("", "", ""))[2] + uuid7().replace("-", "")
        self.parts: list[str] = []

    @property
    def arguments(self) -> dict[str, Any]:
        """The request's fields the function names (OpenAI's clients send many it may not)."""
        return {k: v for k, v in self.request.items() if self.route.accepts(k)}

    def delta(self, text: Any) -> dict[str, Any] | None:
        """A yielded text as the chunk to post now (None: the call is not streamed)."""
        text = str(text)
        first = not self.parts
        self.parts.append(text)
        if not self.stream:
            return None
        if self.route.path == "/v1/completions":
            return self._chunk({"index": 0, "text": text, "finish_reason": None, "logprobs": None})
        delta = {"role": "assistant", "content": text} if first else {"content": text}
        return self._chunk({"index": 0, "delta": delta, "finish_reason": None, "logprobs": None})

    def last(self) -> dict[str, Any] | None:
        """The chunk that ends a stream (finish_reason "stop"), None when not streamed."""
        if not self.stream:
            return None
        if self.route.path == "/v1/completions":
            return self._chunk({"index": 0, "text": "", "finish_reason": "stop", "logprobs": None})
        return self._chunk({"index": 0, "delta": {}, "finish_reason": "stop", "logprobs": None})

    def whole(self) -> dict[str, Any]:
        """The non-streamed answer: every delta joined in one object."""
        text = "".join(self.parts)
        if self.route.path == "/v1/completions":
            choice: dict[str, Any] = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
        else:
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        return {
            "id": self.id,
            "object": OBJECTS[self.route.path][0],
            "created": self.created,
            "model": self.model,
            "choices": [choice],
        }

    def embeddings(self, vectors: Any) -> dict[str, Any]:
        """An embeddings route's result (one vector, or one per input) as OpenAI's list."""
        if isinstance(vectors, list) and vectors and not isinstance(vectors[0], list):
            vectors = [vectors]
        packed = self.request.get("encoding_format") == "base64"  # what the openai package asks for
        data = [
            {"object": "embedding", "index": i, "embedding": _base64(v) if packed else v}
            for i, v in enumerate(vectors or [])
        ]
        return {"object": "list", "data": data, "model": self.model, "usage": {"prompt_tokens": 0, "total_tokens": 0}}

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        kind = OBJECTS[self.route.path][1]
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": [choice]}


def _base64(vector: list[float]) -> str:
    """A vector as OpenAI's base64 encoding: little-endian float32s."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
