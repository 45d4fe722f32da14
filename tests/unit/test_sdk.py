"""The authoring SDK: services, routes, handlers, defaults, context."""

from __future__ import annotations

import os
import types

import pytest

import podium
from podium.records import Batching
from podium.sdk.context import JobContext, reset_context, set_context
from podium.sdk.discovery import find_service
from podium.sdk.service import HANDLER_ATTR, handler_service
from podium.source import read_service


def make():
    @podium.service(name="svc", min_workers=1, max_workers=3, idle_timeout=5, concurrency=2)
    def init(scale=2):
        return {"scale": scale}

    @init.endpoint("/double")
    def double(x, scale):
        return x * scale

    @init.endpoint("/custom-endpoint", default=True)
    async def custom(x=1):
        return x

    @init.endpoint("/gen")
    def gen(n=2):
        yield from range(n)

    return init


def test_routes_defaults_and_table():
    svc = make()
    assert svc.default_route.path == "/custom-endpoint"
    assert svc.initialize() == {"scale": 2} and svc.initialize(scale=5) == {"scale": 5}
    table = {r["path"]: r for r in svc.route_table()}
    assert table["/gen"]["streaming"] and not table["/double"]["streaming"]
    assert table["/custom-endpoint"]["method"] == "custom_endpoint" and table["/custom-endpoint"]["is_async"]
    assert table["/custom-endpoint"]["default"] and not table["/double"]["default"]
    assert table["/double"]["params"] == [
        {"name": "x", "required": True},
        {"name": "scale", "required": True, "source": "initializer"},  # the initializer returns it
    ]
    config = svc.config.as_dict()
    assert {k: config[k] for k in ("min_workers", "max_workers", "idle_timeout", "concurrency")} == {
        "min_workers": 1,
        "max_workers": 3,
        "idle_timeout": 5,
        "concurrency": 2,
    }
    assert config["execution_timeout"] == 86400.0 and config["scaler"] == "request-count"


def test_settings_are_checked_where_they_are_declared():
    with pytest.raises(podium.ServiceDefinitionError, match="unknown setting max_workerz"):
        podium.service(name="x", max_workerz=3)
    with pytest.raises(podium.ServiceDefinitionError, match="at most 256"):
        podium.service(name="x", max_workers=10_000)
    with pytest.raises(podium.ServiceDefinitionError, match="scaler must be one of"):
        podium.service(name="x", scaler="vibes")
    with pytest.raises(podium.ServiceDefinitionError, match="retry_on"):
        podium.service(name="x", retries=2, retry_on=("ValueError",))
    cfg = podium.ServiceConfig(retries=2, retry_on=(KeyError,))
    assert cfg.retryable(KeyError("k")) and not cfg.retryable(ValueError("v"))
    assert not podium.ServiceConfig().retryable(KeyError("k")), "no retries unless asked"
    assert cfg.as_dict()["retry_on"] == ["builtins.KeyError"]


def test_first_route_is_default_when_none_is_marked():
    @podium.service
    def my_init():
        return None

    @my_init.endpoint("/a")
    def a():
        return 1

    @my_init.endpoint("/b")
    def b():
        return 2

    assert my_init.name == "my-init" and my_init.default_route.path == "/a"
    assert my_init.initialize() == {}


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda s: s.endpoint("no-slash")(lambda: 1), "must start with '/'"),
        (lambda s: s.endpoint("/x", streaming=True)(lambda: 1), "not a generator"),
        (lambda s: [s.endpoint("/x")(lambda: 1), s.endpoint("/x")(lambda: 2)], "declared twice"),
        (
            lambda s: [s.endpoint("/x", default=True)(lambda: 1), s.endpoint("/y", default=True)(lambda: 2)],
            "both marked",
        ),
        (lambda s: s.endpoint("/v1/chat", openai=True)(lambda: 1), "OpenAI route's path is one of"),
        (lambda s: s.endpoint("/v1/completions", model="m")(lambda: 1), "not an OpenAI route"),
        (lambda s: s.endpoint("/v1/embeddings", openai=True)(lambda: (yield [1.0])), "cannot be a generator"),
        (lambda s: s.endpoint("/x", batch_size=4)(lambda x: (yield x)), "a streaming route cannot be batched"),
        (lambda s: s.endpoint("/x", batch_size=4)(lambda **kw: kw), "no \\*args or \\*\\*kwargs"),
        (lambda s: s.endpoint("/x", batch_wait_ms=5)(lambda x: x), "batch_wait_ms needs batch_size"),
        (lambda s: s.endpoint("/x", batch_size=0)(lambda x: x), "batch_size must be a whole number"),
        (lambda s: s.endpoint("/x", batch_size=4, batch_wait_ms=-1)(lambda x: x), "batch_wait_ms must be"),
    ],
)
def test_declaration_errors_are_clear(build, message):
    svc = podium.Service(None, name="s")
    with pytest.raises(podium.ServiceDefinitionError, match=message):
        build(svc)


def test_a_batched_handler_reads_from_source_as_imported():
    """`@podium.handler(batch_size=...)` is not a scaling setting, in an import or read from source."""
    source = "import podium\n\n@podium.handler(batch_size=8, batch_wait_ms=2, max_workers=2)\ndef embed(jobs):\n    return jobs\n"
    read = read_service(source)
    assert [r["kind"] for r in read.routes] == ["handler"] and read.config["max_workers"] == 2
    streaming = source.replace("return jobs", "yield jobs")
    with pytest.raises(podium.ServiceDefinitionError, match="a streaming route cannot be batched"):
        read_service(streaming)

    @podium.handler(batch_size=8)
    def embed(jobs):
        return jobs

    assert getattr(embed, HANDLER_ATTR).default_route.batching == Batching(8, 0.0)


def test_bad_names_and_config_are_refused():
    with pytest.raises(podium.ServiceDefinitionError, match="must match"):
        podium.service(name="Bad Name")(lambda: None)
    with pytest.raises(podium.ServiceDefinitionError, match="max_workers"):
        podium.service(name="ok", min_workers=3, max_workers=2)(lambda: None)


def test_initializer_must_return_a_dict():
    svc = podium.service(name="s")(lambda: [1])
    with pytest.raises(podium.ServiceDefinitionError, match="must return a dict"):
        svc.initialize()


def test_handler_is_a_one_route_service_and_stays_callable():
    @podium.handler(name="echo")
    def handler(job):
        return job["input"]

    assert handler({"id": "1", "input": 5}) == 5
    svc = find_service({"handler": handler})
    assert svc.name == "echo" and svc.default_route.kind == "handler"
    plain = find_service({"handler": lambda job: job})
    assert plain.default_route.kind == "handler"
    with pytest.raises(podium.ServiceDefinitionError, match="exactly one argument"):
        handler_service(lambda a, b: None)


def test_find_service_reports_none_or_several():
    with pytest.raises(podium.ServiceDefinitionError, match="no service found"):
        find_service({"x": 1})
    a, b = podium.Service(None, name="a"), podium.Service(None, name="b")
    with pytest.raises(podium.ServiceDefinitionError, match="several services"):
        find_service({"a": a, "b": b})
    assert find_service({"a": a, "b": b}, "b") is b


def test_context_inside_and_outside_a_job():
    with pytest.raises(podium.PodiumError, match="only available while a route is running"):
        _ = podium.context.job_id
    seen = []
    token = set_context(JobContext("j1", 2, "/x", report=seen.append))
    try:
        assert (podium.context.job_id, podium.context.attempt, podium.context.route) == ("j1", 2, "/x")
        podium.context.progress(50)
    finally:
        reset_context(token)
    assert seen == [50]


def test_public_names_are_exported_and_sorted():
    # Submodules appear as attributes once imported anywhere; only `aio` is part of the surface.
    public = sorted(
        n
        for n in dir(podium)
        if not n.startswith("_") and (n == "aio" or not isinstance(getattr(podium, n), types.ModuleType))
    )
    assert podium.__all__ == sorted(podium.__all__)
    assert set(public) <= set(podium.__all__)


def test_yielded_bytes_and_text_over_one_stream_chunk_go_in_pieces_that_read_back_whole() -> None:
    import base64

    from podium.worker.runtime import BYTES_PER_CHUNK, CHARS_PER_CHUNK, _pieces

    data = bytes(range(256)) * (3 * BYTES_PER_CHUNK // 256 + 1)
    pieces = _pieces(data)
    assert len(pieces) == 4
    assert all(len(base64.b64decode(p["$bytes"])) <= BYTES_PER_CHUNK for p in pieces)
    assert b"".join(base64.b64decode(p["$bytes"]) for p in pieces) == data
    text = "é" * (2 * CHARS_PER_CHUNK + 1)
    assert "".join(_pieces(text)) == text and len(_pieces(text)) == 3
    assert _pieces(b"") == [{"$bytes": ""}], "an empty body is still one chunk"
    assert _pieces("short") == ["short"] and _pieces({"a": 1}) == [{"a": 1}]


def test_route_table_marks_what_the_initializer_provides_and_samples_pass() -> None:
    """Arguments the initializer's returned dict holds are optional, marked with their source;
    a sample call sends each default and a placeholder of its type for each required argument."""
    from podium.records import required_argument, sample_arguments

    @podium.service(name="provides")
    def init():
        if os.environ.get("NEVER_SET_HERE"):
            return dict(model="other", extra=1)
        return {"model": "m", "threshold": 0.5}

    @init.endpoint("/predict")
    def predict(model, xs: list[float], k: int, label: str | None, threshold=0.1, scale: float = 2.0):
        return model

    params = {p["name"]: p for p in init.route_table()[0]["params"]}
    assert params["model"]["source"] == params["threshold"]["source"] == "initializer"
    assert "source" not in params["xs"] and "source" not in params["scale"]
    assert [n for n, p in params.items() if required_argument(p)] == ["xs", "k", "label"]
    assert sample_arguments(init.route_table()[0]) == {"xs": [], "k": 0, "label": "", "scale": 2.0}


def test_openai_routes_are_marked_with_their_model_and_frame_their_text() -> None:
    """An `openai=True` route's table entry names its model (the service's name by default); the
    worker frames its text as OpenAI's chunks and whole object, and passes it only the request's
    fields it names."""
    from podium.worker.openai_route import Completion

    svc = podium.Service(None, name="tiny")

    @svc.endpoint("/v1/chat/completions", openai=True)
    def chat(messages, max_tokens=3):
        yield "a"

    @svc.endpoint("/v1/completions", openai=True, model="named")
    def complete(prompt):
        return prompt

    table = {r["path"]: r for r in svc.route_table()}
    assert table["/v1/chat/completions"]["openai"] is True and table["/v1/chat/completions"]["model"] == "tiny"
    assert table["/v1/completions"]["model"] == "named"
    body = {"model": "asked", "messages": [], "stream": True, "temperature": 0.5}
    call = Completion(
        svc.routes["/v1/chat/completions"], {"openai_route": "/v1/chat/completions", "openai_input": body}
    )
    assert call.arguments == {"messages": []}
    first, second, last = call.delta("Hel"), call.delta("lo"), call.last()
    assert first is not None and second is not None and last is not None
    assert first["object"] == "chat.completion.chunk" and first["model"] == "asked"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert second["choices"][0]["delta"] == {"content": "lo"}
    assert last["choices"][0]["finish_reason"] == "stop" and first["id"] == last["id"]
    whole = call.whole()
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["content"] == "Hello"
    quiet = Completion(svc.routes["/v1/completions"], {"prompt": "x"})  # a plain route call's body
    assert quiet.delta("x") is None and quiet.last() is None and quiet.whole()["model"] == "named"
