"""An OpenAI-compatible chat service: any `openai` client talks to it by its base_url.

The "model" is a tiny deterministic one (no weights to download): it answers with the user's last
message, word by word, in reverse, and counts the words. Replace `load_model` and `generate` with a
real model; the routes stay as they are.
"""

import podium


@podium.service(name="openai-chat", max_workers=1, idle_timeout=120)
def init():
    # Runs once per worker: load the model here. Its keys are default arguments of every route.
    return {"model_state": load_model()}


def load_model():
    return {"greeting": "You said:"}


def generate(model_state, prompt, max_tokens):
    words = [model_state["greeting"], *reversed(prompt.split()), f"({len(prompt.split())} words)"]
    for i, word in enumerate(words[:max_tokens]):
        yield word if i == 0 else " " + word


@init.endpoint("/v1/chat/completions", openai=True, model="reverse-1")
def chat(messages, model_state, max_tokens=256):
    """Yields text deltas; Podium answers chat.completion (or, streamed, its chunks)."""
    user = [m["content"] for m in messages if m.get("role") == "user"]
    yield from generate(model_state, user[-1] if user else "", max_tokens)


@init.endpoint("/v1/completions", openai=True, model="reverse-1")
def complete(prompt, model_state, max_tokens=256):
    yield from generate(model_state, prompt, max_tokens)
