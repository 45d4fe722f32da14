"""The console's Content-Security-Policy, on every page it has: the routes are read from the app
itself, so a page added later is checked without anyone listing it here. Each is fetched signed
in (and the sign-in page signed out), and must carry the policy and the other security headers,
and hold no inline script (a `<script>` without `src`, or an `on...=` handler attribute)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from conftest import SERVICES
from podium.console.pages import router
from podium.console.web import PREFIX
from server import PodiumServer

pytestmark = pytest.mark.slow

#: What every console answer must carry (docs/security.md, "The console").
WANTED = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
#: The policy's directives that keep script out: only the console's own files, nothing inline.
POLICY = {"default-src": "'self'", "script-src": "'self'", "object-src": "'none'", "frame-ancestors": "'none'"}
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>", re.IGNORECASE)
HANDLER_ATTRIBUTE = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
#: A value for each path parameter of a console page.
PARAMS = {"name": "basic", "job_id": ""}


def pages() -> list[str]:
    """The console's HTML pages: its GET routes, but for its JSON API and its static files."""
    found = []
    for route in router.routes:
        assert isinstance(route, APIRoute)
        if "GET" in route.methods and not route.path.startswith((f"{PREFIX}/api/", f"{PREFIX}/static/")):
            found.append(route.path)
    return found


@pytest.fixture(scope="module")
def signed_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, httpx.Client]]:
    with PodiumServer(tmp_path_factory.mktemp("csp-home")) as srv:
        srv.deploy(SERVICES / "basic", "basic")
        PARAMS["job_id"] = srv.http.post("/v2/basic/runsync", json={"input": {"value": 1}}).json()["id"]
        with httpx.Client(base_url=srv.url, timeout=60) as browser:
            form = browser.get(f"{PREFIX}/login")
            check(form, f"{PREFIX}/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf, form.text
            signed = browser.post(f"{PREFIX}/login", data={"csrf": csrf.group(1), "api_key": srv.key})
            assert signed.status_code == 303 and signed.headers["location"] == PREFIX, signed.text
            yield srv, browser


def headers(answer: httpx.Response, path: str) -> None:
    for name, value in WANTED.items():
        assert answer.headers.get(name) == value, (path, name, answer.headers.get(name))
    policy = answer.headers.get("content-security-policy", "")
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";") if d.strip())
    assert {k: directives.get(k) for k in POLICY} == POLICY, (path, policy)
    assert "unsafe-" not in policy, (path, policy)


def check(answer: httpx.Response, path: str, status: int = 200) -> None:
    assert answer.status_code == status, (path, answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith("text/html"), path
    headers(answer, path)
    inline: list[Any] = INLINE_SCRIPT.findall(answer.text) + HANDLER_ATTRIBUTE.findall(answer.text)
    assert not inline, (path, inline)


def test_the_console_has_the_pages_this_test_fills_in() -> None:
    """A new page with a path parameter needs a value in PARAMS; the list is the app's own."""
    found = pages()
    assert f"{PREFIX}/jobs/{{job_id}}" in found and f"{PREFIX}/login" in found and len(found) >= 8
    for path in found:
        assert set(re.findall(r"{(\w+)}", path)) <= set(PARAMS), path


def test_every_console_page_carries_the_policy_and_no_inline_script(
    signed_in: tuple[PodiumServer, httpx.Client],
) -> None:
    _, browser = signed_in
    for path in pages():
        url = path.format(**PARAMS)
        if path == f"{PREFIX}/login":  # signed in, it sends the browser on to the console
            answer = browser.get(url)
            assert answer.status_code == 303, url
            headers(answer, url)
            continue
        check(browser.get(url), url)


def test_error_pages_carry_the_policy_too(signed_in: tuple[PodiumServer, httpx.Client]) -> None:
    _, browser = signed_in
    check(browser.get(f"{PREFIX}/jobs/no-such-job"), f"{PREFIX}/jobs/no-such-job", 404)
