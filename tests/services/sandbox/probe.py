"""Tries, from inside a worker, what a tenant's code must not do; says what happened to each try.

The job's input names the server's home and pid and another endpoint's bundle directory (a worker
cannot know them otherwise); `hog_mb` allocates that many MB at once.
"""

import os
from pathlib import Path

import podium


def _try(fn):
    try:
        return {"ok": True, "value": repr(fn())[:200]}
    except Exception as exc:  # noqa: BLE001 - what failed, and how, is the answer
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _write(path):
    Path(path).write_text("written by a worker")
    return Path(path).read_text()


@podium.handler(name="probe", max_workers=1)
def handler(job):
    inp = job["input"]
    if inp.get("hog_mb"):
        return len(bytearray(inp["hog_mb"] * 2**20))
    home, pid = inp["home"], int(inp["server_pid"])
    here = Path(__file__).resolve().parent
    return {
        "env": {
            k: os.environ.get(k)
            for k in (
                "PODIUM_ADMIN_KEY",
                "PODIUM_SECRET_KEY",
                "PODIUM_WEBHOOK_SECRET",
                "PODIUM_DATABASE_URL",
                "PODIUM_API_KEY",
                "MY_SECRET",
            )
        },
        "server_env_names": sorted(k for k in os.environ if k.startswith("PROBE_SERVER_")),
        "podium.db": _try(lambda: open(os.path.join(home, "podium.db"), "rb").read(16)),
        "secret.key": _try(lambda: open(os.path.join(home, "secret.key"), "rb").read()),
        "credentials.json": _try(lambda: open(os.path.join(home, "credentials.json"), "rb").read()),
        "logs": _try(lambda: os.listdir(os.path.join(home, "logs"))),
        "other_bundle": _try(lambda: os.listdir(inp["other_bundle"])),
        "server_environ": _try(lambda: open(f"/proc/{pid}/environ", "rb").read()),
        "signal_server": _try(lambda: os.kill(pid, 0)),
        "own_bundle_read": _try(lambda: (here / "probe.py").read_text()[:20]),
        "own_bundle_write": _try(lambda: _write(here / "dropped.txt")),
        "tmp_write": _try(lambda: _write("/tmp/scratch.txt")),
        "pid": os.getpid(),
    }
