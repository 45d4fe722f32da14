"""MkDocs hooks (mkdocs.yml `hooks:`): parts of the documentation made from the code at build time.

- `reference/cli.md`: below its marker line, every `podium` command with its arguments and options
  as the Typer app describes them. The page is kept in git (readable without building) and the
  build stops when it differs from the CLI; `python scripts/docs_hooks.py` writes it anew.
- `reference/configuration.md`: the `PODIUM_*` names on the page must be exactly those the code
  reads; a name missing or stale stops the build (`make docs`, `make test`), so a setting cannot
  be added undocumented or removed and still documented.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

CLI_MARKER = "<!-- Made from the podium command by scripts/docs_hooks.py: do not edit below. -->\n"
ROOT = Path(__file__).resolve().parent.parent
CLI_PAGE = ROOT / "docs" / "reference" / "cli.md"
SRC = ROOT / "src" / "podium"
SETTING = re.compile(r"\bPODIUM_[A-Z][A-Z0-9_]*[A-Z0-9]\b")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == "reference/cli.md" and markdown != cli_page(markdown):
        raise PluginError("reference/cli.md differs from the podium command: run `python scripts/docs_hooks.py`")
    if page.file.src_uri == "reference/configuration.md":
        read, documented = code_settings(), set(SETTING.findall(markdown))
        if read - documented:
            raise PluginError(
                f"reference/configuration.md does not document {', '.join(sorted(read - documented))}"
                " (read in src/podium)"
            )
        if documented - read:
            raise PluginError(
                f"reference/configuration.md documents {', '.join(sorted(documented - read))},"
                " which nothing in src/podium reads"
            )
    return markdown


def code_settings() -> set[str]:
    """Every PODIUM_* name in the package's source."""
    return {name for path in SRC.rglob("*.py") for name in SETTING.findall(path.read_text())}


def cli_page(current: str) -> str:
    """The CLI page as it should be: its hand-written head, the marker, then the reference."""
    head = current.split(CLI_MARKER)[0]
    return f"{head}{CLI_MARKER}\n{cli_reference()}"


def cli_reference() -> str:
    import typer.main

    from podium.cli import app

    root = typer.main.get_command(app)
    return "\n".join(_command(root, ["podium"], level=1))


def _command(cmd: Any, path: list[str], level: int) -> list[str]:
    """One command's section, then its subcommands' (Typer ships its own copy of Click's types)."""
    ctx = cmd.context_class(cmd, info_name=" ".join(path))
    lines = [f"{'#' * level} `{' '.join(path)}`", ""] if level > 1 else []
    if cmd.help:
        lines += [_text(cmd.help), ""]
    usage = [re.sub(r"\{(\w+)\}", lambda m: m.group(1).upper(), piece) for piece in cmd.collect_usage_pieces(ctx)]
    lines += ["```", " ".join([*path, *usage]), "```", ""]
    rows = [p.get_help_record(ctx) for p in cmd.get_params(ctx) if not p.hidden and p.name != "help"]
    if rows:
        lines += ["| argument or option | what it does |", "| --- | --- |"]
        lines += [f"| `{names}` | {_cell(help_text)} |" for names, help_text in filter(None, rows)]
        lines.append("")
    for name, sub in getattr(cmd, "commands", {}).items():
        if not sub.hidden:
            lines += _command(sub, [*path, name], level + 1)
    return lines


def _text(text: str) -> str:
    """Click's help text, unwrapped: paragraphs stay apart, lines within one are joined."""
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in re.split(r"\n\s*\n", text.strip()))


def _cell(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("|", "\\|").replace("<", "&lt;")


if __name__ == "__main__":
    CLI_PAGE.write_text(cli_page(CLI_PAGE.read_text()))
    print(f"wrote {CLI_PAGE.relative_to(ROOT)}")
