"""Side venvs for client packages that must not share Podium's environment (they pin their own
stack, or two versions of one package are tested): tests/.venv-<name>, built from the package
index and reused after.

`make test` builds them all before pytest starts (`python tests/sidevenv.py`), so no test spends
its time-out installing a client; a test run without that step builds a missing one on first use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

#: Each side venv's pins, by name.
VENVS: dict[str, tuple[str, ...]] = {
    # Its `covalent` dependency pins SQLAlchemy < 2; 1.4.4 imports packaging without declaring it.
    "covalent": ("covalent-cloud==1.4.4", "packaging==26.4"),
    # The DigitalHub SDK and its Python runtime pin their own stack.
    "digitalhub": ("digitalhub==0.15.11", "digitalhub-runtime-python==0.15.2"),
    # Two versions of the lmnr client, which parse answers differently.
    "lmnr-0.1.1": ("lmnr==0.1.1",),
    "lmnr-0.3.7": ("lmnr==0.3.7",),
}


def side_python(name: str) -> Path:
    """tests/.venv-<name>'s python with its pins installed; a stamp names the pins, so changing
    them rebuilds the venv."""
    pins = VENVS[name]
    venv = HERE / f".venv-{name}"
    python = venv / "bin" / "python"
    stamp = venv / ".pins"
    if stamp.exists() and stamp.read_text() == "\n".join(pins) and python.exists():
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True, timeout=1200)
    stamp.write_text("\n".join(pins))
    return python


if __name__ == "__main__":
    for name in VENVS:
        print(f"side venv {name}: {side_python(name)}")
