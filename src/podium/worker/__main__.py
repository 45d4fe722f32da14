"""`python -m podium.worker`: what the server spawns; `podium worker` runs `by_hand` on any machine."""

from __future__ import annotations

import argparse
import gc
import os
import re
import socket
import sys
import uuid
from pathlib import Path

from podium import channel, logs
from podium.worker import covalent_service, runpod_file
from podium.worker.link import Refused, ServerLink, Unreachable
from podium.worker.runtime import Worker, enter_bundle, install_signals, pin_cores, user_traceback


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podium.worker")
    p.add_argument("--endpoint", required=True, help="endpoint id or name")
    p.add_argument("--version", help="version to run (default: the endpoint's current one)")
    p.add_argument("--worker-id", default=f"w-{uuid.uuid4().hex[:12]}")
    p.add_argument("--url", default=os.environ.get("PODIUM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--parent-pid", type=int)
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once")
    args = p.parse_args(argv)
    key = os.environ.get("PODIUM_API_KEY")
    if not key:
        print("podium worker: set PODIUM_API_KEY to a key allowed to run this endpoint", file=sys.stderr)
        return 2
    return run(
        args.url,
        key,
        args.endpoint,
        args.worker_id,
        version=args.version,
        parent_pid=args.parent_pid,
        concurrency=args.concurrency,
    )


def hand_worker_id() -> str:
    """`h-<host>-<random>`: where a worker started by hand runs shows in `podium status`."""
    host = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")[:24] or "host"
    return f"h-{host}-{uuid.uuid4().hex[:8]}"


def _say(message: str) -> None:
    """One plain line on the terminal's stderr (this process's own stderr becomes JSON log lines)."""
    out = sys.__stderr__ or sys.stderr
    out.write(f"podium worker: {message}\n")
    out.flush()


def by_hand(url: str, key: str, endpoint: str, *, concurrency: int = 1, worker_id: str | None = None) -> int:
    """Join an endpoint's workers from this machine, running the endpoint's current version
    (told to the server, so this worker is given only that version's jobs). A key or endpoint
    the server refuses is one line and exit code 2; the key is never printed. After a redeploy
    the server tells it to stop: it finishes the jobs in hand, says so, and exits 0."""
    worker_id = worker_id or hand_worker_id()
    probe = ServerLink(url, key, endpoint, worker_id)
    try:
        ep = probe.get_json(f"/api/v1/endpoints/{endpoint}")
        link = ServerLink(url, key, ep["endpoint_id"], worker_id, version=ep["version"])
        try:
            ping_interval = link.hello()  # a key that may read the endpoint but not run it is refused now
        finally:
            link.close()
    except Refused as exc:
        _say(f"the server refused this worker ({exc.status}): {exc.detail}")
        return 2
    except Unreachable as exc:
        _say(f"cannot reach the server at {url} ({exc})")
        return 2
    finally:
        probe.close()
    _say(f"{worker_id} joins {ep['name']} ({ep['endpoint_id']}) at version {ep['version']}")
    return run(
        url,
        key,
        ep["endpoint_id"],
        worker_id,
        version=ep["version"],
        parent_pid=None,
        concurrency=concurrency,
        ping_interval=ping_interval,
    )


def run(
    url: str,
    key: str,
    endpoint: str,
    worker_id: str,
    *,
    version: str | None,
    parent_pid: int | None,
    concurrency: int,
    ping_interval: float | None = None,
) -> int:
    """Load the version (the endpoint's current one when None), then take jobs until stopped,
    pinging every `ping_interval` seconds (default: PODIUM_PING_INTERVAL, else 5)."""
    logs.setup(endpoint=endpoint, worker=worker_id)
    logs.capture_output(endpoint=endpoint, worker=worker_id)
    pin_cores()  # before the worker's threads start: they inherit it
    link = ServerLink(url, key, endpoint, worker_id, version=version, socket_path=os.environ.get(channel.ENV))
    home = Path(os.environ.get("PODIUM_HOME") or ".podium").resolve()  # the worker moves into its bundle
    worker = Worker(
        link,
        home / "cache" / "bundles",
        ping_interval=ping_interval or float(os.environ.get("PODIUM_PING_INTERVAL", "5")),
        parent_pid=parent_pid,
        concurrency=concurrency,
    )
    install_signals(worker)
    try:
        version = version or link.get_json(f"/api/v1/endpoints/{endpoint}")["version"]
        root, meta = worker.fetch(version)
        enter_bundle(root)
        if meta.get("runtime") == "runpod":
            link.close()
            env = runpod_file.environment(
                url=url,
                endpoint_id=endpoint,
                worker_id=worker_id,
                token=key,
                ping_interval=worker.ping_interval,
            )
            return runpod_file.supervise(root, meta["entry"], env, parent_pid)
        if meta.get("runtime") == "covalent":
            worker.start(covalent_service.load(root, meta), meta)
        else:
            worker.load(root, meta)
    except Exception as exc:
        sys.stderr.write(user_traceback(exc))
        reason = f"{type(exc).__name__}: {exc}"
        _say(f"cannot load version {version}: {reason}")
        try:
            link.unhealthy(reason)
        finally:
            link.close()
        return 1
    # The service and what its initializer loaded live as long as the worker: out of the
    # collector's full passes, which would otherwise walk them all (a model's objects too).
    gc.collect()
    gc.freeze()
    try:
        worker.serve()
        if worker.dismissed is not None:
            _say(worker.dismissed)
        worker.exit()  # pinging still, so the server knows it is alive while its hook runs
    except Refused as exc:  # its key revoked (a new leader replaced the workers), its endpoint gone
        _say(f"the server refused this worker ({exc.status}): {exc.detail}")
        return 2
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
