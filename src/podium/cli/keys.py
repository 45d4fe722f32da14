"""Access: API keys (`keys create|ls|revoke`), projects (`projects create|ls`) and the project's
webhook signing secret (`webhook-secret [rotate]`)."""

from __future__ import annotations

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, err, keys_app, out, print_json, when

projects_app = typer.Typer(help="Projects (the operator key manages them).", no_args_is_help=True)
app.add_typer(projects_app, name="projects")
webhook_app = typer.Typer(invoke_without_command=True)
app.add_typer(webhook_app, name="webhook-secret")


@keys_app.command("create")
def keys_create(
    role: str = typer.Option("invoke", help="admin, deploy, invoke, read, or metrics (reads /metrics only; operator)."),
    name: str = typer.Option(None, help="A label for the key."),
    expires: str = typer.Option(None, help="Lifetime, like 30d, 12h or 90m (default: none)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Create an API key (printed once, never again)."""
    with connect(url, key, project) as conn:
        res = conn.request("POST", "/api/v1/keys", json={"role": role, "name": name, "expires": expires})
    if as_json:
        print_json({k: res[k] for k in ("id", "key", "prefix", "role", "project")})
        return
    out.print(f"key {res['id']} ({res['role']} in project {res['project']}), shown once:")
    out.print(res["key"])


@keys_app.command("ls")
def keys_ls(as_json: bool = JSON, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """The project's keys: prefix, name, role, created, last used (never the keys themselves)."""
    with connect(url, key, project) as conn:
        keys = conn.request("GET", "/api/v1/keys")["keys"]
    if as_json:
        print_json(keys)
        return
    table = Table("ID", "PREFIX", "NAME", "ROLE", "CREATED", "LAST USED", "STATE")
    for k in keys:
        state = "revoked" if k["revoked_at"] else ("expires " + when(k["expires_at"]) if k["expires_at"] else "active")
        table.add_row(
            k["id"],
            k["prefix"],
            k["name"] or "",
            k["role"] + (" (operator)" if k["operator"] else ""),
            when(k["created_at"]),
            when(k["last_used_at"]),
            state,
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str, url: str = URL, key: str = KEY, project: str = PROJECT) -> None:
    """Revoke a key: it is refused from the next request on."""
    with connect(url, key, project) as conn:
        conn.request("DELETE", f"/api/v1/keys/{key_id}")
    out.print(f"revoked {key_id}")


@projects_app.command("create")
def projects_create(name: str, as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Create a project and its first admin key (printed once)."""
    with connect(url, key) as conn:
        res = conn.request("POST", "/api/v1/projects", json={"name": name})
    if as_json:
        print_json(res)
        return
    out.print(f"project {res['name']} ({res['id']}); its admin key, shown once:")
    out.print(res["admin_key"]["key"])


@projects_app.command("ls")
def projects_ls(as_json: bool = JSON, url: str = URL, key: str = KEY) -> None:
    """Projects (all of them for the operator key; yours otherwise)."""
    with connect(url, key) as conn:
        projects = conn.request("GET", "/api/v1/projects")["projects"]
    if as_json:
        print_json(projects)
        return
    table = Table("NAME", "ID", "CREATED")
    for p in projects:
        table.add_row(p["name"], p["id"], when(p["created_at"]))
    out.print(table)


@webhook_app.callback()
def webhook_secret(
    ctx: typer.Context,
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Print the project's webhook signing secret (admins; verify with podium.signing.verify);
    `rotate` makes a new one."""
    if ctx.invoked_subcommand is not None:
        return
    with connect(url, key, project) as conn:
        _print_secret(conn.request("GET", "/api/v1/webhook-secret"), as_json)


@webhook_app.command("rotate")
def webhook_secret_rotate(
    window: str = typer.Option(
        None, help="How long the old secret stays valid, like 24h, or 0 (default: the server's setting)."
    ),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Make a new signing secret and print it. Until WINDOW passes, deliveries are signed with
    the new and the old one, so receivers keep verifying while you give them the new one."""
    with connect(url, key, project) as conn:
        _print_secret(conn.request("POST", "/api/v1/webhook-secret/rotate", json={"window": window}), as_json)


def _print_secret(res: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(res)
        return
    out.print(res["secret"])
    if isinstance(res["previous_valid_until"], float | int):
        err.print(f"the previous secret of {res['project']} stays valid until {when(res['previous_valid_until'])}")
