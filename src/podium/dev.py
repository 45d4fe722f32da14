"""`podium dev PATH`: a private Podium for one service, redeployed whenever one of its files changes.

The same HTTP surface as a real server (routes, RunPod API, console), state in a temporary
directory that is removed on exit, one warm worker. Each change is an ordinary deploy of a new
version, so what works here works on `podium up`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

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


def _deploy(path: Path, url: str, key: str, name: str | None, changed: list[str] | None = None) -> None:
    """The first deploy prints `podium deploy`'s whole answer (URLs, a curl line); a redeploy
    after `changed` files prints one line (or the deploy's error)."""
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
    if changed is None:
        subprocess.run(cmd, check=False)
        return
    began = time.monotonic()
    res = subprocess.run([*cmd, "--json"], check=False, capture_output=True, text=True)
    what = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
    try:
        ep = json.loads(res.stdout)
    except ValueError:
        ep = None
    if res.returncode == 0 and ep is not None:
        took = time.monotonic() - began
        print(
            f"podium dev: {what} changed, redeployed: version {ep['version']} {ep['state']} ({took:.1f} s)", flush=True
        )
        return
    error = (ep or {}).get("error") or res.stderr.strip() or res.stdout.strip()
    print(f"podium dev: {what} changed, redeploy failed:\n{error}", flush=True)


def _watch(path: Path, url: str, key: str, name: str | None, stop: threading.Event) -> None:
    last: dict[Path, tuple[float, int]] | None = None
    while not stop.is_set():
        snap = _snapshot(path)
        if snap != last:
            changed = None
            if last is not None:
                base = path if path.is_dir() else path.parent
                changed = sorted(
                    str(f.relative_to(base)) for f in snap.keys() | last.keys() if snap.get(f) != last.get(f)
                )
            last = snap
            _deploy(path, url, key, name, changed)
        stop.wait(POLL)


def _terminated(signum: int, _: FrameType | None) -> None:
    """SIGTERM ends `podium dev` as Ctrl-C does, through its cleanup (uvicorn raises the signal
    again once it has shut down; left to the default action, that would skip the cleanup)."""
    raise SystemExit(128 + signum)


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

    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        run(settings, started)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop.set()
        shutil.rmtree(home, ignore_errors=True)
