"""Running things here: the server (`up`), a dev server (`dev`), a worker by hand (`worker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from podium.cli.common import KEY, PROJECT, URL, app, connect, err, out


@app.command()
def up(
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
) -> None:
    """Start the server and its local workers (state under $PODIUM_HOME, default ./.podium)."""
    from podium import logs
    from podium.config import Settings
    from podium.server.serve import run

    logs.setup()
    settings = Settings.from_env(host=host, port=port)

    def announce(runtime: Any) -> None:
        out.print(f"Podium {settings.url}  (home {settings.home.resolve()}, store {_store_name(settings)})")
        if runtime.new_admin_key:
            out.print(f"Admin API key (shown once; saved for the CLI in {settings.credentials}):",
                      style="bold")
            out.print(runtime.new_admin_key)

    run(settings, announce)


@app.command()
def dev(
    path: Path = typer.Argument(..., help="The service: a .py file or a directory."),
    port: int = typer.Option(8000, help="Port to listen on."),
    name: str = typer.Option(None, "--name", "-n", help="Endpoint name (default: the service's)."),
) -> None:
    """Serve PATH on a private local Podium and redeploy it whenever a file changes."""
    from podium.dev import serve

    serve(path, port, name)


def _store_name(settings: Any) -> str:
    return "SQLite" if settings.db_url.startswith("sqlite") else "PostgreSQL"


@app.command()
def worker(
    endpoint: str = typer.Argument(..., help="Endpoint name or id."),
    url: str = URL, key: str = KEY,
    concurrency: int = typer.Option(1, min=1, help="Jobs at once."),
    worker_id: str = typer.Option(None, help="This worker's id (default: h-<host>-<random>)."),
) -> None:
    """Join ENDPOINT's workers from this machine with a deploy (or admin) key: it runs the
    endpoint's current version and takes only its jobs; after a redeploy it finishes the jobs in
    hand and exits. Start it again to run the new version."""
    from podium.client.http import resolve
    from podium.errors import PodiumError
    from podium.worker.__main__ import by_hand

    try:
        url, key = resolve(url, key)
    except PodiumError as exc:
        err.print(f"error: {exc}", style="red", soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(by_hand(url, key, endpoint, concurrency=concurrency, worker_id=worker_id))


@app.command("webhook-secret")
def webhook_secret(url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Print the key webhook requests are signed with (verify with podium.signing.verify)."""
    with connect(url, key, project) as conn:
        out.print(conn.request("GET", "/api/v1/webhook-secret")["secret"])
