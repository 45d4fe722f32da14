"""The whole app in process on a real store, with workers off: router tests without a server.

`podium.asgi.create_app` is served through `httpx.ASGITransport`, its lifespan run by hand (the
transport does not run it). `workers=False` is `podium up --no-workers`: the runtime never leads,
so it starts no worker, builds no environment and runs no background duty; what a test sees is
what the routers, the core and the store answer.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from podium.asgi import create_app
from podium.bundle import describe, make_bundle
from podium.config import Settings
from server import ADMIN_KEY

#: The origin the in-process client calls (never resolved: the transport calls the app directly).
BASE_URL = "http://podium.test"


class InProcessApp:
    """The app and its runtime, an admin client, and a client for any other key."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.runtime = app.state.runtime
        self.settings = settings
        self.key = ADMIN_KEY
        self.http = self.client(ADMIN_KEY)
        self._clients = [self.http]

    def client(self, key: str | None = None, **headers: str) -> httpx.AsyncClient:
        """A client for the app, sending `key` as its bearer token (none: no Authorization)."""
        auth = {"Authorization": f"Bearer {key}"} if key is not None else {}
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE_URL, headers={**auth, **headers}
        )
        if hasattr(self, "_clients"):
            self._clients.append(c)
        return c

    async def deploy(self, path: Path, name: str, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """What `podium deploy --no-wait` does: bundle, upload unless present, deploy the version
        (with `client`, default the operator's)."""
        http = client or self.http
        bundle = make_bundle(path)
        version = describe(bundle)
        if (await http.get(f"/api/v1/blobs/{bundle.sha256}")).status_code == 404:
            r = await http.put(f"/api/v1/blobs/{bundle.sha256}", content=bundle.data)
            assert r.status_code == 200, r.text
        r = await http.post("/api/v1/deploy", json={"name": name, "version": version})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def new_key(self, role: str, **extra: Any) -> dict[str, Any]:
        """A new API key of `role` in the operator's project."""
        r = await self.http.post("/api/v1/keys", json={"role": role, **extra})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        for c in self._clients:
            await c.aclose()


@contextlib.asynccontextmanager
async def in_process(
    home: Path, db_url: str = "", template: Path | None = None, **settings: Any
) -> AsyncIterator[InProcessApp]:
    """The app on the store at `db_url` (default: SQLite under `home`, copied from `template`, an
    already migrated database, when given: migrating takes a second, a copy a millisecond),
    started, then closed. `settings`: other `Settings` fields."""
    if template is not None and not db_url:
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, home / "podium.db")
    s = Settings(home=home, database_url=db_url, admin_key=ADMIN_KEY, workers=False, sandbox=False, **settings)
    app = create_app(s)
    async with app.router.lifespan_context(app):
        inproc = InProcessApp(app, s)
        try:
            yield inproc
        finally:
            await inproc.aclose()
