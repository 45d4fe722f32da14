"""Volumes: `podium volumes create|ls|rm|put|get`, a project's directories its workers share."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from podium.cli.common import JSON, KEY, PROJECT, URL, app, connect, err, fail, out, print_json, when

volumes_app = typer.Typer(
    help="Volumes: directories a project's workers share (weights, caches).", no_args_is_help=True
)
app.add_typer(volumes_app, name="volumes")


def size(n: int | None) -> str:
    if n is None:
        return "no limit"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:g} {unit}"
        n = round(n / 1024, 1)  # type: ignore[assignment]
    return f"{n:g} TiB"


@volumes_app.command("create")
def create(
    name: str = typer.Argument(..., help="The volume's name (unique in the project)."),
    max_size: str = typer.Option(None, "--max-size", help="Size limit, like 500M or 50G (default: none)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Create a volume; a service names it to have its workers see it
    (`@podium.service(volumes={"weights": "/models"})`)."""
    with connect(url, key, project) as conn:
        vol = conn.request("POST", "/api/v1/volumes", json={"name": name, "max_size": max_size})
    if as_json:
        print_json(vol)
        return
    out.print(f"volume {vol['name']} created ({size(vol['max_size'])})")


@volumes_app.command("ls")
def ls(
    name: str = typer.Argument(None, help="A volume: list its files (default: list the volumes)."),
    path: str = typer.Argument("", help="A directory of the volume (default: its root)."),
    as_json: bool = JSON,
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """The project's volumes, or the files in one of them."""
    from podium.client.volumes import files_url

    with connect(url, key, project) as conn:
        if name is None:
            vols = conn.request("GET", "/api/v1/volumes")["volumes"]
            if as_json:
                print_json(vols)
                return
            table = Table("NAME", "USED", "LIMIT", "CREATED")
            for v in vols:
                table.add_row(v["name"], size(v["used"]), size(v["max_size"]), when(v["created_at"]))
            out.print(table)
            return
        listing = conn.request("GET", files_url(name, path))
    if as_json:
        print_json(listing)
        return
    if "entries" not in listing:
        fail(f"{path} is a file of volume {name}, not a directory")
    table = Table("NAME", "TYPE", "SIZE", "MODIFIED")
    for e in listing["entries"]:
        table.add_row(e["name"], e["type"], "" if e["size"] is None else size(e["size"]), when(e["modified"]))
    out.print(table)


@volumes_app.command("rm")
def rm(
    name: str = typer.Argument(..., help="The volume."),
    path: str = typer.Argument(None, help="A file or directory in it (default: the whole volume)."),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Delete a file or directory of a volume, or the volume with all its files (refused while
    an endpoint's version names it)."""
    from podium.client.volumes import files_url

    with connect(url, key, project) as conn:
        if path is None:
            conn.request("DELETE", f"/api/v1/volumes/{name}")
            out.print(f"volume {name} removed")
        else:
            conn.request("DELETE", files_url(name, path))
            out.print(f"{name}:{path} removed")


@volumes_app.command("put")
def put(
    name: str = typer.Argument(..., help="The volume."),
    local: Path = typer.Argument(..., help="A file or directory here."),
    path: str = typer.Argument(
        None, help="Where in the volume (default: the file's or directory's own name at its root)."
    ),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Upload a file or a directory, streamed and checksummed; a dropped connection resumes
    where it stopped."""
    from podium.client import volumes

    if not local.exists():
        fail(f"{local}: no such file or directory")
    with connect(url, key, project) as conn, err.status(f"putting {local} in volume {name}…"):
        count = volumes.put(conn, name, local, path, done=lambda p, n: out.print(f"  {p}  {size(n)}"))
    out.print(f"{count} file{'s' if count != 1 else ''} put in volume {name}")


@volumes_app.command("get")
def get(
    name: str = typer.Argument(..., help="The volume."),
    path: str = typer.Argument(..., help="A file in it."),
    local: Path = typer.Argument(..., help="Where to write it (a directory: under the file's name)."),
    url: str = URL,
    key: str = KEY,
    project: str = PROJECT,
) -> None:
    """Download a file of a volume."""
    from podium.client import volumes

    with connect(url, key, project) as conn:
        try:
            written = volumes.get(conn, name, path, local)
        except IsADirectoryError as exc:
            fail(str(exc))
    out.print(f"{name}:{path} -> {written}")
