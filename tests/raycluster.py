"""A throwaway Ray cluster for the tests: `ray start --head` in a temporary directory, loopback
only, on free ports, stopped by ending its own processes (never `ray stop`, which would stop every
Ray cluster of the machine). See shared/CLUSTER.md for why each setting is needed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Every process that talks to the cluster (ray start, drivers, the Podium server) needs these.
ENV = {
    # Without it Ray binds the machine's other interface too, whatever --node-ip-address says.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # A throwaway cluster: no token (Ray 2.60 turns token authentication on by default).
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def ray_bin() -> Path | None:
    """The `ray` command of this test venv (None when Ray is not installed)."""
    path = Path(sys.executable).parent / "ray"
    return path if path.exists() else None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _process_tree() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process (Linux /proc)."""
    out: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[int(entry)] = (int(fields[1]), int(fields[2]))
        except (OSError, IndexError, ValueError):
            continue
    return out


class RayCluster:
    """`node_env`: more of the node's environment (that of `ray start`, which its actors inherit),
    e.g. the package index it builds environments from."""

    def __init__(self, num_cpus: int = 2, node_env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        # Short: Ray's unix sockets live under it (sun_path is 108 bytes).
        self.root = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
        #: The node's own PODIUM_NODE_HOME (bundles, environments it builds): no server's home.
        self.node_home = self.root / "node-home"
        self.node_env = {**(node_env or {}), "PODIUM_NODE_HOME": str(self.node_home)}
        #: The GCS address (drivers on the cluster's machines) and the Ray Client one (from anywhere).
        self.address = ""
        self.client_address = ""
        self.env = {**os.environ, **ENV}
        self._pgid: int | None = None

    def start(self) -> None:
        for _ in range(2):  # a port picked free may be taken before Ray binds it: pick again
            if self._start():
                return
        raise AssertionError(f"ray start failed:\n{(self.root / 'ray-start.log').read_text()[-3000:]}")

    def _start(self) -> bool:
        exe = ray_bin()
        assert exe is not None, "Ray is not installed"
        gcs, client, dashboard, node_manager, object_manager, agent, agent_grpc, metrics, runtime_env = _free_ports(9)
        cmd = [
            str(exe),
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(gcs),
            "--ray-client-server-port",
            str(client),
            "--dashboard-port",
            str(dashboard),
            "--include-dashboard=false",
            "--node-manager-port",
            str(node_manager),
            "--object-manager-port",
            str(object_manager),
            "--dashboard-agent-listen-port",
            str(agent),
            "--dashboard-agent-grpc-port",
            str(agent_grpc),
            "--metrics-export-port",
            str(metrics),
            "--runtime-env-agent-port",
            str(runtime_env),
            "--num-cpus",
            str(self.num_cpus),
            "--num-gpus",
            "0",
            "--temp-dir",
            str(self.root / "t"),
            "--disable-usage-stats",
        ]
        # The actors' temporary directory and the node's home go when the cluster does.
        (self.root / "tmp").mkdir(exist_ok=True)
        env = {**self.env, "TMPDIR": str(self.root / "tmp"), **self.node_env}
        with (self.root / "ray-start.log").open("ab") as log:
            # Its own process group: every daemon it leaves running is in it, and is ours to end.
            proc = subprocess.Popen(
                cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
            self._pgid = proc.pid
            if proc.wait(90) != 0:
                self.stop(keep_root=True)
                return False
        self.address = f"127.0.0.1:{gcs}"
        self.client_address = f"ray://127.0.0.1:{client}"
        return True

    def driver(self, code: str) -> Any:
        """Run `code` in a Ray driver of its own (as an operator's script would), connected to
        the cluster in Podium's namespace; the JSON of what it leaves in `result`."""
        prelude = (
            "import json, ray\n"
            f"ray.init(address={self.address!r}, namespace='podium', log_to_driver=False, logging_level='ERROR')\n"
            "result = None\n"
        )
        res = subprocess.run(
            [sys.executable, "-c", prelude + code + "\nprint(json.dumps(result))"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert res.returncode == 0, f"the driver failed:\n{res.stderr[-3000:]}"
        return json.loads(res.stdout.splitlines()[-1])

    def _ours(self) -> list[int]:
        """The cluster's processes: its daemons and everything they started (actors' workers)."""
        tree = _process_tree()
        found = {pid for pid, (_, pgid) in tree.items() if pgid == self._pgid}
        grew = True
        while grew:
            more = {pid for pid, (ppid, _) in tree.items() if ppid in found} - found
            found |= more
            grew = bool(more)
        return sorted(found)

    def stop(self, keep_root: bool = False) -> None:
        """SIGTERM to every process of the cluster, SIGKILL to those left after a second (its daemons
        wait for each other on SIGTERM; a throwaway cluster has nothing to save). The set is
        kept from the start: a worker whose raylet died first is reparented out of the tree."""
        if self._pgid is None:
            return
        known: set[int] = set()
        for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
            known |= set(self._ours())
            for pid in known:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_alive(pid) for pid in known):
                time.sleep(0.1)
        self._pgid = None
        if not keep_root:
            shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by its parent, is not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
