"""A real Podium server in a subprocess on a free loopback port, for process-level tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN_KEY = "pod_live_test_admin_key_0123456789abcdefghijklmnop"

#: Short leases and ticks so recovery paths run in seconds, not minutes.
FAST = {
    "PODIUM_LEASE_SECONDS": "2",
    "PODIUM_PING_INTERVAL": "0.4",
    "PODIUM_TAKE_TIMEOUT": "5",
    "PODIUM_TICK": "0.2",
    "PODIUM_DRAIN_GRACE": "5",
    "PODIUM_RETRY_BASE": "0.2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy (bounded; for observing other processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class PortTaken(Exception):
    """The port picked for a server was taken by another process before the server bound it."""


class PodiumServer:
    """A `podium up` process. Every test starts its servers one way, as a context manager:
    `with PodiumServer(home) as srv:` (a module's shared server, in its fixture), or through
    the `server_factory` fixture, which enters each one for the test and leaves it at its end.
    Inside, `stop()` then `start()` restarts the same server on the same home. `host` and
    `prefix` put it elsewhere: listening on that address only, started under the prefix (`ip
    netns exec NAME`, tests/netns.py; its `http` and `cli` must then run where the host is reached)."""

    started_once = False

    def __init__(
        self,
        home: Path,
        db_url: str | None = None,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.home = home
        #: Extra `podium up` options (e.g. `--backend ray`).
        self.args = args
        self.host = host
        self.prefix = prefix
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.key = ADMIN_KEY
        self.env = {
            **os.environ,
            **FAST,
            **(env or {}),
            "PODIUM_HOME": str(home),
            "PODIUM_ADMIN_KEY": ADMIN_KEY,
            "PODIUM_URL": self.url,
            "PODIUM_API_KEY": ADMIN_KEY,
        }
        self.env.pop("PODIUM_DATABASE_URL", None)
        if db_url:
            self.env["PODIUM_DATABASE_URL"] = db_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    def start(self) -> None:
        for attempt in range(3):
            try:
                return self._start()
            except PortTaken:
                if self.started_once or attempt == 2:
                    raise
                self._move_to(free_port())  # another process took the port we picked

    def _move_to(self, port: int) -> None:
        old = self.url
        self.port, self.url = port, f"http://{self.host}:{port}"
        self.env.update({k: self.url for k, v in self.env.items() if v == old})
        self.http.close()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)

    def _start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        log = (self.home / "server.log").open("ab")
        up = ["podium", "up", "--host", self.host, "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", *up],
            env=self.env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                tail = (self.home / "server.log").read_text()[-3000:]
                if "address already in use" in tail.splitlines()[-1]:
                    raise PortTaken(self.port)
                raise AssertionError(f"server exited:\n{tail}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 30, what="server /healthz")
        self.started_once = True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def close(self) -> None:
        self.stop()
        self.http.close()

    def __enter__(self) -> PodiumServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            [sys.executable, "-m", "podium", *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and res.returncode != 0:
            raise AssertionError(f"podium {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def deploy(self, path: Path | str, name: str) -> dict[str, Any]:
        return json.loads(self.cli("deploy", str(path), "--name", name, "--json").stdout)

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.http.get(f"/api/v1/jobs/{job_id}")
        r.raise_for_status()
        return r.json()

    def wait_job(self, job_id: str, timeout: float = 30.0) -> dict[str, Any]:
        final = {"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"}
        return wait_until(lambda: (j := self.job(job_id))["status"] in final and j, timeout, 0.05, f"job {job_id}")


def _processes() -> list[tuple[int, int, str, list[str]]]:
    """(pid, parent pid, process name, argv) of every process."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,ppid,comm,args"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines()[1:]:
        pid, ppid, comm, *args = line.split(None, 3)
        rows.append((int(pid), int(ppid), comm, args[0].split() if args else []))
    return rows


def _started_by(server_pid: int, rows: list[tuple[int, int, str, list[str]]]) -> set[int]:
    """The processes a server started: its children, and, sandboxed, the process each of its
    `bwrap` children runs in its box."""
    boxes = {pid for pid, ppid, comm, _argv in rows if ppid == server_pid and comm == "bwrap"}
    return {pid for pid, ppid, _comm, _argv in rows if (ppid == server_pid and pid not in boxes) or ppid in boxes}


def worker_pids(server_pid: int, endpoint_id: str) -> dict[str, int]:
    """worker id -> pid of the workers this server started for an endpoint: the `python -m
    podium.worker` processes it spawned (in their boxes, when sandboxed), and those its fork
    servers forked (their command line is their zygote's, their process name their worker id)."""
    found: dict[str, int] = {}
    rows = _processes()
    started = _started_by(server_pid, rows)
    for pid, _ppid, _comm, argv in rows:
        opts = dict(zip(argv, argv[1:]))
        if "podium.worker" in argv and pid in started and opts.get("--endpoint") == endpoint_id:
            found[opts["--worker-id"]] = pid
    forks = {pid for pid, opts in zygotes(server_pid, rows).items() if opts.get("--endpoint") == endpoint_id}
    for pid, ppid, comm, _argv in rows:
        if ppid in forks:
            found[comm] = pid
    return found


def zygotes(server_pid: int, rows: list[tuple[int, int, str, list[str]]] | None = None) -> dict[int, dict[str, str]]:
    """pid -> options (--endpoint, --version, ...) of this server's fork servers (the processes
    it started running `podium.worker.zygote`; the workers they fork share that command line)."""
    rows = rows if rows is not None else _processes()
    started = _started_by(server_pid, rows)
    return {
        pid: dict(zip(argv, argv[1:]))
        for pid, _ppid, _comm, argv in rows
        if pid in started and "podium.worker.zygote" in argv
    }
