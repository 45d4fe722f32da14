"""OpenAI-compatible routes (`/v2/{endpoint}/openai/v1/...`) driven by the real `openai` package,
sync and async, against one real Podium server with two endpoints: `rp`, a RunPod worker file
written the way worker-vllm handles OpenAI routes (tests/services/openai/rp_worker.py), and
`svc`, a Podium service whose `openai=True` routes yield text (tests/services/openai/service.py).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import runpod  # noqa: F401  (the rp endpoint is a RunPod worker file: its workers import it)

from conftest import SERVICES
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

HERE = SERVICES / "openai"
ENDPOINTS = {"rp": HERE / "rp_worker.py", "svc": HERE / "service.py", "plain": SERVICES / "basic" / "app.py"}
HELLO = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two three"}]


@dataclass
class Ctx:
    srv: PodiumServer
    ids: dict[str, str]

    def base(self, name: str) -> str:
        return f"{self.srv.url}/v2/{self.ids.get(name, name)}/openai/v1"

    def client(self, name: str, key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base(name), api_key=key or self.srv.key, max_retries=0, timeout=60)

    def aclient(self, name: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.base(name), api_key=self.srv.key, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ctx]:
    with PodiumServer(tmp_path_factory.mktemp("openai-home")) as srv:

        def deploy(name: str) -> str:
            res = srv.cli("deploy", str(ENDPOINTS[name]), "--name", name, "--json")
            return json.loads(res.stdout)["endpoint_id"]  # type: ignore[no-any-return]

        with ThreadPoolExecutor(len(ENDPOINTS)) as pool:
            ids = dict(zip(ENDPOINTS, pool.map(deploy, ENDPOINTS), strict=True))
        yield Ctx(srv, ids)


@pytest.mark.parametrize("name", ["rp", "svc"])
def test_chat_completion(ctx: Ctx, name: str) -> None:
    """A non-streamed call answers the worker's chat.completion object as the body."""
    answer = ctx.client(name).chat.completions.create(model="tiny-reverse", messages=HELLO)  # type: ignore[arg-type]
    assert answer.object == "chat.completion"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "three two one"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.model == "tiny-reverse"


@pytest.mark.parametrize(("name", "model"), [("rp", "tiny-reverse"), ("rp", "tiny-batched"), ("svc", "tiny-reverse")])
def test_chat_stream(ctx: Ctx, name: str, model: str) -> None:
    """`stream=True`: chat.completion.chunk objects whose deltas make the answer, the last one
    with finish_reason, whichever way the worker yields them (raw SSE text, or batches)."""
    with ctx.client(name).chat.completions.create(model=model, messages=HELLO, stream=True) as stream:  # type: ignore[arg-type]
        chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "three two one"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_sse_wire(ctx: Ctx) -> None:
    """The stream on the wire: text/event-stream, `data: {...}` events, `data: [DONE]` last."""
    body = {"model": "tiny-batched", "messages": HELLO, "stream": True}
    with ctx.srv.http.stream("POST", f"/v2/{ctx.ids['rp']}/openai/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-1])
    assert len(events) == 5  # three words, the finishing chunk, [DONE]


@pytest.mark.parametrize("name", ["rp", "svc"])
def test_completions(ctx: Ctx, name: str) -> None:
    client = ctx.client(name)
    answer = client.completions.create(model="tiny-reverse", prompt="a b c")
    assert answer.choices[0].text == "c b a"
    with client.completions.create(model="tiny-reverse", prompt="a b c", stream=True) as stream:
        assert "".join(c.choices[0].text for c in stream) == "c b a"


def test_embeddings(ctx: Ctx) -> None:
    """A service's embeddings route returns its vectors; the client's base64 (its default) and
    float encodings both read back the same numbers."""
    client = ctx.client("svc")
    packed = client.embeddings.create(model="tiny-embed", input=["ab c", "d"])
    plain = client.embeddings.create(model="tiny-embed", input="ab c", encoding_format="float")
    assert [e.embedding for e in packed.data] == [[4.0, 2.0, 3.0], [1.0, 1.0, 3.0]]
    assert plain.data[0].embedding == [4.0, 2.0, 3.0]


def test_models(ctx: Ctx) -> None:
    """A RunPod worker is asked for its models; a service lists its OpenAI routes' model names."""
    assert [m.id for m in ctx.client("rp").models.list()] == ["tiny-reverse"]
    assert [m.id for m in ctx.client("svc").models.list()] == ["tiny-reverse", "tiny-embed"]


def test_async_client(ctx: Ctx) -> None:
    async def main() -> tuple[str | None, str]:
        client = ctx.aclient("svc")
        whole = await client.chat.completions.create(model="tiny-reverse", messages=HELLO)  # type: ignore[arg-type]
        stream = await ctx.aclient("rp").chat.completions.create(model="x", messages=HELLO, stream=True)  # type: ignore[arg-type]
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        models = [m.id async for m in ctx.aclient("rp").models.list()]
        assert models == ["tiny-reverse"]
        return whole.choices[0].message.content, text

    assert asyncio.run(main()) == ("three two one", "three two one")


def test_errors_are_the_clients_typed_errors(ctx: Ctx) -> None:
    """Each error in OpenAI's shape, with the status its client maps to its own exception."""
    with pytest.raises(openai.AuthenticationError) as bad_key:
        ctx.client("rp", key="pk-not-a-key").models.list()
    assert bad_key.value.status_code == 401
    with pytest.raises(openai.NotFoundError):
        ctx.client("no-such-endpoint").models.list()
    with pytest.raises(openai.NotFoundError, match="serves no OpenAI route"):  # a service without OpenAI routes
        ctx.client("plain").chat.completions.create(model="m", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError, match="/v1/completions"):
        ctx.client("plain").completions.create(model="m", prompt="x")
    with pytest.raises(openai.NotFoundError, match="serves no OpenAI route POST /v1/responses"):
        ctx.client("rp").post("/responses", body={"model": "m", "input": "x"}, cast_to=object)
    with pytest.raises(openai.NotFoundError, match="serves no OpenAI route GET /v1/chat/completions"):
        ctx.client("rp").get("/chat/completions", cast_to=object)
    with pytest.raises(openai.BadRequestError, match="messages is required"):
        ctx.client("rp").post("/chat/completions", body={"model": "m"}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="temperature must be at most 2") as worker_said:
        ctx.client("rp").chat.completions.create(model="m", messages=HELLO, temperature=3)  # type: ignore[arg-type]
    assert worker_said.value.body["type"] == "BadRequestError"  # type: ignore[index]
    with pytest.raises(openai.InternalServerError, match="the model crashed"):
        ctx.client("rp").chat.completions.create(model="crash", messages=HELLO)  # type: ignore[arg-type]
    fail = [{"role": "user", "content": "fail now"}]
    with pytest.raises(openai.InternalServerError, match="ValueError: the model cannot say fail"):
        ctx.client("svc").chat.completions.create(model="m", messages=fail)  # type: ignore[arg-type]
    with pytest.raises(openai.InternalServerError, match="the model cannot say fail"):  # before the first chunk
        ctx.client("svc").chat.completions.create(model="m", messages=fail, stream=True)  # type: ignore[arg-type]


def test_a_failure_mid_stream_is_an_error_event(ctx: Ctx) -> None:
    """A route that fails after its first delta: the client gets the deltas, then raises the
    error event (no [DONE]: a partial answer never reads as a whole one)."""
    messages = [{"role": "user", "content": "boom one two"}]
    stream = ctx.client("svc").chat.completions.create(model="m", messages=messages, stream=True)  # type: ignore[arg-type]
    got = []
    with pytest.raises(openai.APIError, match="the model blew up mid-sentence"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["two", " one"]
    body = {"model": "m", "messages": messages, "stream": True}
    raw = ctx.srv.http.post(f"/v2/{ctx.ids['svc']}/openai/v1/chat/completions", json=body).text
    last = raw.strip().split("\n\n")[-1]
    assert json.loads(last.removeprefix("data: "))["error"]["code"] == "route_error"
    assert "[DONE]" not in raw


def test_error_shape(ctx: Ctx) -> None:
    r = httpx.get(f"{ctx.base('rp')}/models", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["type"] == "authentication_error" and error["message"] and "code" in error
    r = ctx.srv.http.post(f"/v2/{ctx.ids['rp']}/openai/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_first_chunk_before_the_end(ctx: Ctx, tmp_path: Path) -> None:
    """The first delta reaches the client while the route still runs (it waits for the test)."""
    gate = str(tmp_path / "gate")
    messages = [{"role": "user", "content": "one two"}]
    try:
        stream = ctx.client("svc").chat.completions.create(
            model="m",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            extra_body={"gate": gate},
        )
        first = next(iter(stream))
        assert first.choices[0].delta.content == "two"
    finally:
        Path(gate + ".release").touch()
    assert "".join(c.choices[0].delta.content or "" for c in stream) == " one"


def test_disconnect_cancels_the_job(ctx: Ctx, tmp_path: Path) -> None:
    """1. A stream of 200 slow tokens starts. 2. The client reads one event and hangs up.
    Result: the job ends CANCELLED, long before its tokens would have run out."""
    marker = str(tmp_path / "slow")
    words = " ".join(f"w{i}" for i in range(200))
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": words}],
        "stream": True,
        "gap": 0.2,
        "marker": marker,
    }
    with ctx.srv.http.stream("POST", f"/v2/{ctx.ids['rp']}/openai/v1/chat/completions", json=body) as r:
        job_id = r.headers["x-podium-job-id"]
        next(r.iter_raw())
    status = wait_until(
        lambda: (s := ctx.srv.job(job_id)["status"]) in ("CANCELLED", "COMPLETED", "FAILED") and s, 20, 0.1, "job end"
    )
    assert status == "CANCELLED"
    assert Path(marker + ".started").exists()
