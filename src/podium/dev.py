"""`podium dev PATH`: a private Podium for one service, redeployed whenever one of its files changes.

The same HTTP surface as a real server (routes, RunPod API, console), state in a temporary
directory that is removed on exit, one warm worker. Each change is an ordinary deploy of a new
version, so what works here works on `podium up`.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from podium.bundle import bundle_files
from podium.config import Settings
from podium.serve import run
from podium.server.runtime import Runtime
from podium.store.projects import new_key

#: Seconds between two looks at the files.
POLL = 0.5


def _snapshot(path: Path) -> dict[Path, tuple[float, int]]:
    files = bundle_files(path) if path.is_dir() else [path]
    out = {}
    for f in files:
        try:
            st = f.stat()
        except FileNotFoundError:
            continue
        out[f] = (st.st_mtime, st.st_size)
    return out


def _deploy(path: Path, url: str, key: str, name: str | None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "podium",
        "deploy",
        str(path),
        "--url",
        url,
        "--key",
        key,
        "--min-workers",
        "1",
        "--idle-timeout",
        "86400",
        "--timeout",
        "120",
    ]
    if name:
        cmd += ["--name", name]
    subprocess.run(cmd, check=False)


def _watch(path: Path, url: str, key: str, name: str | None, stop: threading.Event) -> None:
    last: dict[Path, tuple[float, int]] | None = None
    while not stop.is_set():
        snap = _snapshot(path)
        if snap != last:
            if last is not None:
                print(f"podium dev: {path} changed, redeploying", flush=True)
            last = snap
            _deploy(path, url, key, name)
        stop.wait(POLL)


def serve(path: Path, port: int, name: str | None = None) -> None:
    if not path.exists():
        raise SystemExit(f"podium dev: {path}: no such file or directory")
    home = Path(tempfile.mkdtemp(prefix="podium-dev-"))
    base = Settings.from_env(port=port)
    key = base.admin_key or new_key()
    settings = dataclasses.replace(base, home=home, database_url="", admin_key=key)
    stop = threading.Event()

    def started(_: Runtime) -> None:
        print(
            f"podium dev: serving {path} on {settings.url}, state in {home}\n"
            f"  export PODIUM_URL={settings.url} PODIUM_API_KEY={key}",
            flush=True,
        )
        threading.Thread(
            target=_watch, args=(path.resolve(), settings.url, key, name, stop), daemon=True, name="podium-dev-watch"
        ).start()

    try:
        run(settings, started)
    finally:
        stop.set()
        shutil.rmtree(home, ignore_errors=True)
