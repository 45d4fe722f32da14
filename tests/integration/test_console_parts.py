"""The console's parts that need no browser: sessions, what the HTTP client renders, the header
lines it accepts, and the Use API samples."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import RowMapping

from podium.console.data import (
    CLIENT_RENDER_LIMIT,
    ConsoleError,
    EndpointDetail,
    Param,
    RouteInfo,
    _renderable,
)
from podium.console.pages import _headers
from podium.console.sessions import IDLE_SECONDS, MAX_AGE, TOUCH_SECONDS, SessionStore, same
from podium.console.snippets import snippets
from podium.store.engine import Store
from podium.store.tables import console_sessions

KEY = "pod_live_a_secret_key_for_the_session_tests"


async def _row(store: Store) -> RowMapping:
    """The one session row in the table."""
    async with store.read() as conn:
        (row,) = (await conn.execute(select(console_sessions))).mappings().all()
    return row


async def _age(store: Store, **seconds: float) -> None:
    """Move the stored times of every session back (created_at=..., seen_at=...)."""
    async with store.tx() as conn:
        await conn.execute(
            update(console_sessions).values(
                {name: getattr(console_sessions.c, name) - by for name, by in seconds.items()}
            )
        )


async def test_a_session_keeps_neither_its_token_nor_the_key_in_clear(store: Store) -> None:
    sessions = SessionStore(store)
    token = await sessions.create(KEY)
    row = await _row(store)
    assert token not in str(dict(row)) and token.encode() not in row["sealed_key"]
    assert KEY not in str(dict(row)) and KEY.encode() not in row["sealed_key"]
    found = await sessions.get(token)
    assert found is not None and found[1] == KEY and found[0].csrf == row["csrf"]
    assert await sessions.get(token + "x") is None and await sessions.get(None) is None


async def test_a_session_ends_on_sign_out_and_when_idle(store: Store) -> None:
    sessions = SessionStore(store)
    token = await sessions.create(KEY)
    await sessions.end(token)
    assert await sessions.get(token) is None
    idle = await sessions.create(KEY)
    assert await sessions.get(idle) is not None
    await _age(store, seen_at=IDLE_SECONDS + 1)
    assert await sessions.get(idle) is None
    async with store.read() as conn:
        assert (await conn.execute(select(console_sessions))).all() == []  # deleted when met


async def test_a_saved_session_keeps_its_pick_and_messages_but_not_after_sign_out(store: Store) -> None:
    sessions = SessionStore(store)
    token = await sessions.create(KEY)
    found = await sessions.get(token)
    assert found is not None and found[0].project is None and found[0].flash == []
    session = found[0]
    session.project, session.flash = "other", [("ok", "done")]
    await sessions.save(session)
    again = await sessions.get(token)
    assert again is not None and again[0].project == "other" and again[0].flash == [("ok", "done")]
    await sessions.end(token)
    await sessions.save(session)
    assert await sessions.get(token) is None


async def test_last_use_is_written_at_most_once_a_minute(store: Store) -> None:
    sessions = SessionStore(store)
    token = await sessions.create(KEY)
    await _age(store, seen_at=TOUCH_SECONDS / 2)
    before = (await _row(store))["seen_at"]
    assert await sessions.get(token) is not None
    assert (await _row(store))["seen_at"] == before
    await _age(store, seen_at=TOUCH_SECONDS)
    assert await sessions.get(token) is not None
    assert (await _row(store))["seen_at"] > before


async def test_a_sign_in_clears_sessions_past_their_age(store: Store) -> None:
    sessions = SessionStore(store)
    old = await sessions.create(KEY)
    await _age(store, created_at=MAX_AGE + 1)
    new = await SessionStore(store).create(KEY)  # another process: its first sign-in sweeps
    await _row(store)  # one row left
    assert await sessions.get(new) is not None and await sessions.get(old) is None


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
        name="hello",
        endpoint_id="ep123",
        state="ACTIVE",
        error=None,
        version="v1",
        service={},
        urls={},
        scaling={},
        workers=[],
        history=[],
        routes=[
            RouteInfo("/other", "POST", "route", False, [], False),
            RouteInfo(
                "/greet-me",
                "POST",
                "route",
                False,
                [Param("name", '"world"'), Param("model", None, "initializer")],
                True,
                sample={"name": "world"},
            ),
        ],
    )
    by_id = {s.id: s.code for s in snippets(ep, "http://127.0.0.1:8000")}
    assert set(by_id) == {"curl", "python", "runpod", "typescript", "laminar"}
    assert "http://127.0.0.1:8000/hello/greet-me" in by_id["curl"] and '{"name": "world"}' in by_id["curl"]
    assert "client.greet_me(name='world')" in by_id["python"]
    assert "runpod.Endpoint('ep123'" in by_id["runpod"]
    assert 'podium.call("hello", "/greet-me"' in by_id["typescript"]
    assert '"endpoint": "hello"' in by_id["laminar"]
    assert all("pod_live_" not in code for code in by_id.values())


def test_use_api_shows_the_openai_snippet_for_an_openai_route() -> None:
    """An endpoint with an OpenAI-compatible route gets the `openai` package's call, first; one
    without gets none."""
    chat = RouteInfo("/v1/chat/completions", "POST", "route", True, [], True, openai=True, model="tiny")
    ep = EndpointDetail(
        name="chat",
        endpoint_id="ep123",
        state="ACTIVE",
        error=None,
        version="v1",
        service={},
        urls={},
        scaling={},
        workers=[],
        history=[],
        routes=[chat],
    )
    found = snippets(ep, "http://127.0.0.1:8000")
    assert found[0].id == "openai"
    code = found[0].code
    assert 'OpenAI(base_url="http://127.0.0.1:8000/v2/ep123/openai/v1"' in code
    assert "model = 'tiny'\nprint(client.chat.completions.create(model=model, messages=[" in code
    assert 'os.environ["PODIUM_API_KEY"]' in code
    compile(code, "snippet", "exec")
    worker = RouteInfo("/handler", "POST", "handler", True, [], True, openai=True)  # reads openai_route
    code = snippets(dataclasses.replace(ep, routes=[worker]), "http://127.0.0.1:8000")[0].code
    assert "model = client.models.list().data[0].id\nprint(client.chat.completions.create(" in code
    plain = dataclasses.replace(ep, routes=[dataclasses.replace(chat, openai=False, model=None)])
    assert "openai" not in {s.id for s in snippets(plain, "http://127.0.0.1:8000")}
