"""Finding the server and key, and one HTTP connection that turns error answers into APIError."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from podium.errors import APIError, ConfigError, RouteError

DEFAULT_URL = "http://127.0.0.1:8000"


def credentials_file() -> Path:
    return Path(os.environ.get("PODIUM_HOME") or ".podium") / "credentials.json"


def resolve(url: str | None = None, key: str | None = None) -> tuple[str, str]:
    """Server URL and API key: arguments, else PODIUM_URL / PODIUM_API_KEY, else the credentials
    file `podium up` wrote under $PODIUM_HOME."""
    url = url or os.environ.get("PODIUM_URL")
    key = key or os.environ.get("PODIUM_API_KEY")
    if not (url and key):
        path = credentials_file()
        if path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from None
            url = url or saved.get("url")
            key = key or saved.get("api_key")
    if not key:
        raise ConfigError(
            f"no API key: pass --key, set PODIUM_API_KEY, or run `podium up` here (it writes {credentials_file()})"
        )
    return (url or DEFAULT_URL).rstrip("/"), key


def auth_headers(key: str, project: str | None = None) -> dict[str, str]:
    """The headers every request carries: the key, and the project to act in (argument, else
    PODIUM_PROJECT; only the operator key may name a project other than its own)."""
    headers = {"Authorization": f"Bearer {key}"}
    project = project or os.environ.get("PODIUM_PROJECT")
    if project:
        headers["X-Podium-Project"] = project
    return headers


def raise_for(r: httpx.Response) -> None:
    """Raise APIError (RouteError when the route itself raised) for an error answer."""
    if r.status_code < 400:
        return
    try:
        body = r.json()
    except ValueError:
        body = {"error": r.reason_phrase, "detail": r.text[:500]}
    if not isinstance(body, dict):
        body = {"error": r.reason_phrase, "detail": body}
    if body.get("error") == "route_error":
        raise RouteError(
            r.status_code, body.get("type") or "Exception", body.get("message") or "", body.get("traceback")
        )
    raise APIError(r.status_code, str(body.get("error")), body.get("detail"))


class Connection:
    """A keep-alive connection to one server with one key.

    Parameters:
        url, key: see :func:`resolve`; missing ones are resolved from the environment.
        timeout: per-request timeout in seconds (route calls may need more).
        project: the project to act in (see :func:`auth_headers`).
    """

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        timeout: float = 330.0,
        project: str | None = None,
    ) -> None:
        self.url, self.key = resolve(url, key)
        self.http = httpx.Client(base_url=self.url, headers=auth_headers(self.key, project), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self.http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ConfigError(f"cannot reach Podium at {self.url}: is `podium up` running?") from None
        raise_for(r)
        return r.json() if r.content else None

    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[bytes]:
        try:
            with self.http.stream(method, path, **kwargs) as r:
                if r.status_code >= 400:
                    r.read()
                    raise_for(r)
                yield from r.iter_bytes()
        except httpx.ConnectError:
            raise ConfigError(f"cannot reach Podium at {self.url}: is `podium up` running?") from None
