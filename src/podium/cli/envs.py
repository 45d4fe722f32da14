"""Environments: `podium envs ls` and `podium envs gc` (the server's operator key)."""

from __future__ import annotations

import typer
from rich.table import Column, Table

from podium.cli.common import JSON, KEY, URL, app, connect, out, print_json, when

envs_app = typer.Typer(help="Per-version Python environments (built from requirements).", no_args_is_help=True)
app.add_typer(envs_app, name="envs")


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@envs_app.command("ls")
def list_envs(as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """List environments: Python, size, versions and endpoints using them, Ray nodes holding them, last use."""
    with connect(url, key) as conn:
        envs = conn.request("GET", "/api/v1/envs")["envs"]
    if as_json:
        print_json(envs)
        return
    table = Table(
        Column("ENV", no_wrap=True, min_width=12),
        "PYTHON",
        "SIZE",
        "VERSIONS",
        "ENDPOINTS",
        "NODES",
        "LAST USED",
        "PACKAGES",
    )
    for e in envs:  # short hashes, like git's (--json has them whole)
        table.add_row(
            e["hash"][:12],
            e["python"],
            _size(e["size"]),
            " ".join(v[:8] for v in e["versions"]) or "-",
            " ".join(e["endpoints"]) or "-",
            " ".join(n["address"] for n in e["nodes"]) or "-",
            when(e["last_used"]),
            " ".join(e["packages"]),
        )
    out.print(table)


@envs_app.command("gc")
def collect(as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Remove environments no endpoint runs (a rollback to their versions builds them again)."""
    with connect(url, key) as conn:
        res = conn.request("POST", "/api/v1/envs/gc")
    if as_json:
        print_json(res)
        return
    for e in res["removed"]:
        out.print(f"removed {e['hash']} ({_size(e['size'])}): {' '.join(e['packages'])}")
    out.print(f"{len(res['removed'])} environments removed, {_size(res['freed'])} freed")
