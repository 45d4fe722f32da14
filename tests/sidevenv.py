"""Side venvs for client packages that must not share Podium's environment (they pin their own
stack, or two versions of one package are tested): tests/.venv-<name>, built from the package
index on first use and reused after."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).parent


def side_python(name: str, pins: Sequence[str]) -> Path:
    """tests/.venv-<name>'s python with `pins` installed; a stamp names the pins, so changing
    them rebuilds the venv."""
    venv = HERE / f".venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".pins"
    if stamp.exists() and stamp.read_text() == "\n".join(pins) and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True, timeout=900)
    stamp.write_text("\n".join(pins))
    return python
