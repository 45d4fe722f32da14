"""Console sessions across server replicas: two real servers on one throwaway PostgreSQL, as behind a
load balancer. Plain HTTP with the session cookie (the browser's part is tested in test_console.py)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from podium.console.sessions import COOKIE, LOGIN_COOKIE
from podium.store import open_store
from podium.store.tables import console_sessions
from server import ADMIN_KEY, PodiumServer

pytestmark = pytest.mark.slow

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(scope="module")
def replicas(pg_cluster: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, ...]]:
    """Two servers on one database with the same secret key (one after the other: the first migrates)."""
    url = pg_cluster.create_database("console_replicas")  # type: ignore[attr-defined]
    env = {"PODIUM_SECRET_KEY": Fernet.generate_key().decode()}
    with contextlib.ExitStack() as stack:
        yield tuple(
            stack.enter_context(PodiumServer(tmp_path_factory.mktemp(f"replica-{name}"), db_url=url, env=env))
            for name in ("a", "b")
        )


def sign_in(srv: PodiumServer) -> str:
    """Sign in with the operator key as the login form does; returns the session cookie's token."""
    nonce = "a-login-form-nonce"
    r = httpx.post(
        f"{srv.url}/console/login", data={"csrf": nonce, "api_key": ADMIN_KEY}, cookies={LOGIN_COOKIE: nonce}
    )
    assert r.status_code == 303 and r.headers["location"] == "/console", r.text
    return r.cookies[COOKIE]


def console(srv: PodiumServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, cookies={COOKIE: token}, timeout=60)


def test_a_sign_in_on_one_replica_holds_on_the_other_until_signed_out_there(replicas: tuple[PodiumServer, ...]) -> None:
    a, b = replicas
    token = sign_in(a)
    with console(a, token) as on_a, console(b, token) as on_b:
        page = on_b.get("/console")
        assert page.status_code == 200 and "Sign out" in page.text
        assert on_b.get("/console/api/services").status_code == 200

        # An action on A: its message (and the project pick) is on the next page, served by B.
        csrf = CSRF.search(page.text)
        assert csrf is not None
        r = on_a.post("/console/project", data={"csrf": csrf.group(1), "project": "default"})
        assert r.status_code == 303, r.text
        assert "Now in project default." in on_b.get("/console").text
        assert "Now in project default." not in on_a.get("/console").text  # shown once, on any replica

        r = on_b.post("/console/logout", data={"csrf": csrf.group(1)})
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        r = on_a.get("/console")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        assert on_a.get("/console/api/services").status_code == 401


async def _rows(url: str) -> list[dict[str, object]]:
    store = open_store(url)
    try:
        async with store.read() as conn:
            return [dict(row) for row in (await conn.execute(select(console_sessions))).mappings()]
    finally:
        await store.close()


def test_the_sessions_table_holds_neither_the_key_nor_the_cookie(replicas: tuple[PodiumServer, ...]) -> None:
    a, b = replicas
    tokens = [sign_in(a), sign_in(b)]
    rows = asyncio.run(_rows(a.env["PODIUM_DATABASE_URL"]))
    assert len(rows) >= 2
    for row in rows:
        for value in row.values():
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            assert not any(secret in text for secret in (ADMIN_KEY, *tokens)), row
