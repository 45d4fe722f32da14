"""`python -m podium.worker`: what the server spawns (and `podium worker` runs by hand)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import uuid
from pathlib import Path

from podium import logs
from podium.worker import covalent_service, runpod_file
from podium.worker.link import ServerLink
from podium.worker.runtime import Worker, install_signals


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="podium worker")
    p.add_argument("--endpoint", required=True, help="endpoint id or name")
    p.add_argument("--version", help="version to run (default: the endpoint's current one)")
    p.add_argument("--worker-id", default=f"w-{uuid.uuid4().hex[:12]}")
    p.add_argument("--url", default=os.environ.get("PODIUM_URL", "http://127.0.0.1:8000"))
    p.add_argument("--parent-pid", type=int)
    p.add_argument("--concurrency", type=int, default=1, help="jobs at once")
    args = p.parse_args(argv)
    logs.setup(endpoint=args.endpoint, worker=args.worker_id)
    logs.capture_output(endpoint=args.endpoint, worker=args.worker_id)
    key = os.environ.get("PODIUM_API_KEY")
    if not key:
        print("podium worker: set PODIUM_API_KEY to a key allowed to run this endpoint", file=sys.stderr)
        return 2
    link = ServerLink(args.url, key, args.endpoint, args.worker_id)
    home = Path(os.environ.get("PODIUM_HOME") or ".podium")
    worker = Worker(
        link,
        home / "cache" / "bundles",
        ping_interval=float(os.environ.get("PODIUM_PING_INTERVAL", "5")),
        parent_pid=args.parent_pid,
        concurrency=args.concurrency,
    )
    install_signals(worker)
    try:
        version = args.version or link.get_json(f"/api/v1/endpoints/{args.endpoint}")["version"]
        root, meta = worker.fetch(version)
        if meta.get("runtime") == "runpod":
            link.close()
            env = runpod_file.environment(
                url=args.url, endpoint_id=args.endpoint, worker_id=args.worker_id, token=key,
                ping_interval=worker.ping_interval,
            )
            return runpod_file.supervise(root, meta["entry"], env, args.parent_pid)
        if meta.get("runtime") == "covalent":
            worker.start(covalent_service.load(root, meta), meta)
        else:
            worker.load(root, meta)
    except Exception as exc:
        traceback.print_exc()
        reason = f"{type(exc).__name__}: {exc}"
        try:
            link.unhealthy(reason)
        finally:
            link.close()
        return 1
    try:
        worker.serve()
    finally:
        link.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
