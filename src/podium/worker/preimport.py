"""What a version's pre-imported parent imports: the installed modules its bundle's files import.

Read from the files' syntax trees, never by running them: only the imports at module level (and
in module-level `try:` blocks, the usual shape of an optional dependency) of modules installed in
the environment. The bundle's own modules are left alone: a RunPod worker loads its model when its
file is imported, on a GPU the parent must not touch before forking, and a Podium service's module
is cheap once its libraries are loaded. `if` blocks are skipped (`if TYPE_CHECKING:` imports are
for the type checker).
"""

from __future__ import annotations

import ast
import importlib
import os
from collections.abc import Iterator
from pathlib import Path

from podium.bundle import SKIP_DIRS

#: Files read at most (a bundle is a handful of modules; this bounds a pathological one).
MAX_FILES = 200


def module_imports(tree: ast.Module) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names imported from it) for each absolute import at module level."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop(0)
        if isinstance(node, ast.Try):
            stack[:0] = node.body
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, tuple(a.name for a in node.names if a.name != "*")


def local_names(root: Path) -> set[str]:
    """Top-level module names the bundle itself provides (its files and packages)."""
    names = set()
    for entry in root.iterdir():
        if entry.suffix == ".py":
            names.add(entry.stem)
        elif entry.is_dir():
            names.add(entry.name)
    return names


def python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        found += [Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py")]
        if len(found) >= MAX_FILES:
            return found[:MAX_FILES]
    return found


def wanted(root: Path) -> dict[str, tuple[str, ...]]:
    """Installed modules the bundle imports, with the names taken from each, in first-seen order."""
    local = local_names(root)
    out: dict[str, tuple[str, ...]] = {}
    for file in python_files(root):
        try:
            tree = ast.parse(file.read_bytes(), str(file))
        except (SyntaxError, ValueError, OSError):
            continue
        for module, names in module_imports(tree):
            top = module.partition(".")[0]
            if top in local or top == "__future__":
                continue
            out[module] = tuple(dict.fromkeys(out.get(module, ()) + names))
    return out


def load(root: Path) -> tuple[list[str], list[str]]:
    """Import what the bundle at `root` imports; returns (imported, failed: with the reason).

    `from m import name` also reads `name` from `m`, as the statement would: a library that loads
    its parts lazily (transformers) does the work then. A failing import is reported and skipped:
    the worker will meet it (or not) as it always did.
    """
    imported: list[str] = []
    failed: list[str] = []
    for module, names in wanted(root).items():
        for target in (module, *(f"{module}.{name}" for name in names)):
            try:
                if target == module:
                    mod = importlib.import_module(module)
                    imported.append(module)
                elif not hasattr(mod, target.rpartition(".")[2]):
                    importlib.import_module(target)
            except (Exception, SystemExit) as exc:  # any failure is the worker's to meet, as before
                failed.append(f"{target}: {type(exc).__name__}: {exc}")
                if target == module:
                    break
    return imported, failed
