"""Running things here: the server (`up`), a dev server (`dev`), a worker by hand (`worker`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from podium.cli.common import KEY, URL, app, err, out


@app.command()
def up(
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
    backend: str = typer.Option(None, help="Where workers run: local or ray (default $PODIUM_BACKEND, else local)."),
    ray_address: str = typer.Option(None, help="The Ray cluster for --backend ray (default $RAY_ADDRESS)."),
    no_workers: bool = typer.Option(
        False, "--no-workers", help="Serve the API only: start no workers, never lead (a replica on PostgreSQL)."
    ),
) -> None:
    """Start the server and its workers: local processes, or actors on a Ray cluster with
    --backend ray (state under $PODIUM_HOME, default ./.podium).

    Several servers sharing PODIUM_DATABASE_URL=postgresql://… are replicas of one installation:
    put any HTTP load balancer in front of them (see docs/cluster.md)."""
    from podium import logs
    from podium.config import Settings
    from podium.serve import run

    logs.setup()
    settings = Settings.from_env(
        host=host, port=port, backend=backend, ray_address=ray_address, workers=False if no_workers else None
    )
    if not settings.workers and not settings.database_url.startswith("postgres"):
        err.print(
            "podium up: --no-workers needs a store shared with a replica that runs workers "
            "(PODIUM_DATABASE_URL=postgresql://…); on SQLite this server is the only one"
        )
        raise typer.Exit(2)
    _check_backend(settings)

    def announce(runtime: Any) -> None:
        out.print(f"Podium {settings.url}  (home {settings.home.resolve()}, store {_store_name(settings)})")
        if settings.backend == "ray":
            out.print(
                f"Workers on the Ray cluster at {settings.ray_address or 'auto'}, "
                f"reaching this server at {settings.worker_url}",
                soft_wrap=True,
            )
        sandboxing = runtime.scaler.backend.sandbox
        out.print(
            sandboxing.status[0].upper() + sandboxing.status[1:],
            style=None if sandboxing.on else "bold red",
            soft_wrap=True,
        )
        if runtime.new_admin_key:
            out.print(f"Admin API key (shown once; saved for the CLI in {settings.credentials}):", style="bold")
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


def _check_backend(settings: Any) -> None:
    """The ray backend without Ray installed: one line saying how to get it, exit code 2."""
    from podium.errors import ConfigError
    from podium.scaling.ray import import_ray

    if settings.backend == "ray":
        try:
            import_ray()
        except ConfigError as exc:
            err.print(f"error: {exc}", style="red", soft_wrap=True)
            raise typer.Exit(2) from None


def _store_name(settings: Any) -> str:
    return "SQLite" if settings.db_url.startswith("sqlite") else "PostgreSQL"


@app.command()
def worker(
    endpoint: str = typer.Argument(..., help="Endpoint name or id."),
    url: str = URL,
    key: str = KEY,
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
