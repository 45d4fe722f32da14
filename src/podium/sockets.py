"""Where the server's unix sockets go (fork servers, the worker channel): `<PODIUM_HOME>/run`,
mode 700, or, where a socket's path there would pass the system's limit (104 to 108 bytes), a
directory of its own under the system's temporary directory, removed when its owner is done."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

#: Longest unix socket path (108 bytes on Linux, with room to spare for a temporary name).
MAX_SOCKET_PATH = 96


class SocketDir:
    """One owner's socket directory, chosen (and made) when its first socket is placed."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path: Path | None = None
        self._temporary = False

    def socket(self, name: str) -> Path:
        if self.path is None:
            run = self.home.resolve() / "run"
            if len(str(run / name).encode()) > MAX_SOCKET_PATH:
                run = Path(tempfile.mkdtemp(prefix="podium-run-"))
                self._temporary = True
            run.mkdir(mode=0o700, parents=True, exist_ok=True)
            run.chmod(0o700)
            self.path = run
        return self.path / name

    def remove(self) -> None:
        """Remove the directory if it is a temporary one (the home's stays, for the others)."""
        if self._temporary and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
