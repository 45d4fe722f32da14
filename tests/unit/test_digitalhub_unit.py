"""The DigitalHub pieces that need no server: a function's bundle and the Nuclio answer rules."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest
from starlette.responses import StreamingResponse

from podium.core.errors import InvalidRequest
from podium.digitalhub.build import build, source_code
from podium.digitalhub.nuclio import Response, _answer
from podium.server.body import MB
from podium.server.digitalhub_api import PROXY_LIMIT, DigitalHubError, _read_capped

CODE = b"def init(context, n=1):\n    context.n = n\n\ndef serve(context, event):\n    return context.n\n"


def spec(code: bytes = CODE, **source: str) -> dict:
    return {
        "source": {"handler": "serve", "init_function": "init", "base64": base64.b64encode(code).decode(), **source}
    }


def test_the_same_function_and_parameters_make_the_same_bundle():
    one, two = build("echo", spec(), {"n": 2}, 1), build("echo", spec(), {"n": 2}, 1)
    assert one.data == two.data and one.version == two.version
    assert build("echo", spec(), {"n": 3}, 1).version["sha256"] != one.version["sha256"]
    names = zipfile.ZipFile(io.BytesIO(one.data)).namelist()
    assert sorted(names) == ["app.py", "digitalhub.json", "function.py"]
    assert one.version["config"]["min_workers"] == 1 and one.version["routes"][0]["kind"] == "http"


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (spec(b"def serve(context, event:\n"), "syntax error at line 1"),
        ({"source": {"handler": "serve", "source": "s3://bucket/src.zip"}}, "must be inline"),
        ({"source": {"base64": "eA=="}}, "missing spec"),
        ({"source": {"handler": "serve", "base64": "not base64!"}}, "not valid base64"),
    ],
)
def test_sources_podium_cannot_serve_are_refused_clearly(given, says):
    with pytest.raises(InvalidRequest, match=says):
        source_code(given)


@pytest.mark.parametrize(
    ("value", "status", "content_type", "body"),
    [
        ({"a": 1}, 200, "application/json", b'{"a": 1}'),
        ("hi", 200, "text/plain", b"hi"),
        (b"\x00", 200, "application/octet-stream", b"\x00"),
        (None, 200, "text/plain", b""),
        ((201, "made"), 201, "text/plain", b"made"),
        (Response(body="no", status_code=418, content_type="text/x-tea"), 418, "text/x-tea", b"no"),
    ],
)
def test_return_values_become_answers_as_in_nuclio(value, status, content_type, body):
    got_status, headers, data = _answer(value)
    assert (got_status, dict(headers)["Content-Type"], data) == (status, content_type, body)


async def test_the_proxy_stops_reading_an_answer_at_its_limit():
    """Issue 22, finding 7: the gateway proxy joined the whole answer before anything else. It
    reads up to its limit, stops there (the answer's generator is closed) and says why."""
    pulled = []

    async def answer():
        for n in range(1000):
            pulled.append(n)
            yield b"x" * MB

    with pytest.raises(DigitalHubError, match="over the proxy's 4 MB limit"):
        await _read_capped(StreamingResponse(answer(), media_type="text/plain"), PROXY_LIMIT)
    assert len(pulled) == 5
    small = StreamingResponse(iter([b"a", "b"]), media_type="text/plain")
    assert await _read_capped(small, PROXY_LIMIT) == b"ab"
