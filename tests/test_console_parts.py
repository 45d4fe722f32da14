"""The console's parts that need no browser: sessions, what the HTTP client renders, the header
lines it accepts, and the Use API samples."""

from __future__ import annotations

import pytest

from podium.console.data import (
    CLIENT_RENDER_LIMIT,
    ConsoleError,
    EndpointDetail,
    Param,
    RouteInfo,
    _renderable,
)
from podium.console.pages import _headers
from podium.console.sessions import IDLE_SECONDS, SessionStore, same
from podium.console.snippets import snippets

KEY = "pod_live_a_secret_key_for_the_session_tests"


def test_a_session_keeps_neither_its_token_nor_the_key_in_clear() -> None:
    store = SessionStore()
    token = store.create(KEY)
    ((sid, session),) = store._sessions.items()
    assert token not in sid and token not in repr(session)
    assert KEY.encode() not in session.sealed_key and KEY not in repr(session)
    found = store.get(token)
    assert found is not None and found[1] == KEY
    assert store.get(token + "x") is None and store.get(None) is None


def test_a_session_ends_on_sign_out_and_when_idle() -> None:
    store = SessionStore()
    token = store.create(KEY)
    store.end(token)
    assert store.get(token) is None
    idle = store.create(KEY)
    found = store.get(idle)
    assert found is not None
    found[0].seen -= IDLE_SECONDS + 1
    assert store.get(idle) is None


def test_csrf_tokens_compare_only_when_both_are_there() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd") and not same(None, None) and not same("", "")


def test_the_client_renders_text_and_explains_what_it_does_not() -> None:
    assert _renderable(b'{"a": 1}', "application/json") == ('{"a": 1}', None)
    assert _renderable(b"", "") == ("", None)
    text, notice = _renderable(b"x" * (CLIENT_RENDER_LIMIT + 1), "text/plain")
    assert text is None and notice is not None and "over the console's limit" in notice
    text, notice = _renderable(b"\x89PNG\r\n\x1a\n\x00", "image/png")
    assert text is None and notice is not None and "not text (image/png" in notice


def test_header_lines_are_name_colon_value() -> None:
    assert _headers("X-Trace: abc\n\nAccept:  text/plain \n") == [("X-Trace", "abc"), ("Accept", "text/plain")]
    with pytest.raises(ConsoleError, match="header line 2"):
        _headers("X-Ok: 1\nnot a header")


def test_use_api_samples_call_the_default_route_and_hold_no_key() -> None:
    ep = EndpointDetail(
        name="hello", endpoint_id="ep123", state="ACTIVE", error=None, version="v1", service={}, urls={},
        scaling={}, workers=[], history=[],
        routes=[RouteInfo("/other", "POST", "route", False, [], False),
                RouteInfo("/greet-me", "POST", "route", False, [Param("name", '"world"'), Param("model", None)], True)],
    )
    by_id = {s.id: s.code for s in snippets(ep, "http://127.0.0.1:8000")}
    assert set(by_id) == {"curl", "python", "runpod", "typescript", "laminar"}
    assert "http://127.0.0.1:8000/hello/greet-me" in by_id["curl"] and '{"name": "world"}' in by_id["curl"]
    assert "client.greet_me(name='world')" in by_id["python"]
    assert "runpod.Endpoint('ep123'" in by_id["runpod"]
    assert 'podium.call("hello", "/greet-me"' in by_id["typescript"]
    assert '"endpoint": "hello"' in by_id["laminar"]
    assert all("pod_live_" not in code for code in by_id.values())
