"""Shared pieces of the `podium` command: the Typer apps, consoles, options and the server link."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Column

from podium.errors import PodiumError

app = typer.Typer(
    help="Podium: deploy a Python service, get an HTTP endpoint.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="Jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
versions_app = typer.Typer(help="Versions (immutable).", no_args_is_help=True)
app.add_typer(versions_app, name="versions")
endpoints_app = typer.Typer(help="Endpoints.", no_args_is_help=True)
app.add_typer(endpoints_app, name="endpoints")
# No markup: names, messages and errors are user text and may hold [brackets]; style with style=.
# Not a terminal (a pipe, a file): lines as long as they need, so that no id is cut at 80 columns.
out = Console(markup=False, width=None if sys.stdout.isatty() else 100_000)
err = Console(stderr=True, markup=False)

URL = typer.Option(None, "--url", help="Server URL (else PODIUM_URL, else the credentials file).")
KEY = typer.Option(None, "--key", help="API key (else PODIUM_API_KEY, else the credentials file).")
JSON = typer.Option(False, "--json", help="Print JSON.")
PROJECT = typer.Option(None, "--project", help="Project to act in (else PODIUM_PROJECT, else the key's own).")


def id_column(header: str, ids: list[str]) -> Column:
    """A table column of ids, never cut or wrapped (a narrow terminal squeezes the others)."""
    return Column(header, no_wrap=True, min_width=max((len(i) for i in ids), default=0))


def setting(value: Any) -> str:
    """A setting's value as the CLI prints it (60.0 as 60)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def fail(message: str) -> NoReturn:
    err.print(f"error: {message}", style="red", soft_wrap=True)
    raise typer.Exit(1)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def connect(url: str | None, key: str | None, project: str | None = None) -> Any:
    from podium.client import Connection

    return Connection(url, key, project=project)


def when(at: float | None) -> str:
    import datetime

    if at is None:
        return "-"
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def main() -> None:
    try:
        app()
    except PodiumError as exc:
        err.print(f"error: {exc}", style="red", soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
