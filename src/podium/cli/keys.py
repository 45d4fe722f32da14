"""API keys: `keys create`."""

from __future__ import annotations

import typer

from podium.cli.common import JSON, KEY, URL, connect, keys_app, out, print_json


@keys_app.command("create")
def keys_create(
    role: str = typer.Option("invoke", help="admin, deploy, invoke or read."),
    name: str = typer.Option(None, help="A label for the key."),
    as_json: bool = JSON, url: str = URL, key: str = KEY,
) -> None:
    """Create an API key (printed once, never again)."""
    with connect(url, key) as conn:
        res = conn.request("POST", "/api/v1/keys", json={"role": role, "name": name})
    if as_json:
        print_json(res)
        return
    out.print(f"key {res['id']} ({res['role']}), shown once:")
    out.print(res["key"])
