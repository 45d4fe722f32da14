"""A Podium service with OpenAI routes: its generator yields text and Podium answers OpenAI's
objects. The "model" answers the last user message's words in reverse order."""

import time
from pathlib import Path

import podium


@podium.service(name="tiny-chat", max_workers=1)
def init():
    return {"dims": 3}


@init.endpoint("/v1/chat/completions", openai=True, model="tiny-reverse")
def chat(messages, max_tokens=None, gate=None):
    """One word a delta; with `gate` (a path), waits for `<gate>.release` after the first."""
    user = [m for m in messages if m.get("role") == "user"]
    words = (user[-1]["content"] if user else "").split()[::-1][:max_tokens]
    if "fail" in words:
        raise ValueError("the model cannot say fail")
    for i, word in enumerate(words):
        if word == "boom":  # after the words before it
            raise ValueError("the model blew up mid-sentence")
        yield word if i == 0 else " " + word
        if i == 0 and gate:
            while not Path(gate + ".release").exists():
                time.sleep(0.02)


@init.endpoint("/v1/completions", openai=True, model="tiny-reverse")
def complete(prompt):
    return " ".join(prompt.split()[::-1])


@init.endpoint("/v1/embeddings", openai=True, model="tiny-embed")
def embed(input, dims):
    texts = [input] if isinstance(input, str) else input
    return [[float(len(t)), float(len(t.split())), float(dims)] for t in texts]
