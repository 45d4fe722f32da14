"""Machines of their own for tests that stand for several: Linux network namespaces made by the
test itself, joined by veth pairs to a bridge in a hub namespace, on a private /24.

Each `Machine` is a namespace with one interface (`eth0`, 10.X.Y.N/24) and a loopback device
without addresses (up, since the kernel delivers a machine's traffic to its own address through
it): there is no 127.0.0.1 or ::1 in it, so a process that binds or calls them fails loudly
instead of reaching a neighbour by accident. Processes start in a machine with `ip netns exec`;
the test process itself joins one (`Machine.entered`) to act as a client from there.

Names are unique per run (`podns-<pid>-<random>-<role>`), so parallel runs never collide, and
`Hub.close` always ends every process left in its namespaces and deletes them (the veths go
with them). A run killed before its clean-up leaves namespaces named after its pid: the next
run deletes those whose pid is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["Hub", "Machine", "NetnsUnavailable"]

PREFIX = "podns-"
CLONE_NEWNET = 0x40000000
RUN_NETNS = Path("/run/netns")


class NetnsUnavailable(Exception):
    """This machine cannot make network namespaces; the message says why."""


def _ip(*args: str) -> str:
    """`ip ARGS`; an error raises with ip's own message."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    return proc.stdout


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), f"setns: {os.strerror(ctypes.get_errno())}")


class Machine:
    """One namespace on the hub: `address` on `eth0`, no loopback address."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name
        self.address = address
        self.prefix = ("ip", "netns", "exec", name)

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """A process in this machine (in a session of its own, so it and its children end together)."""
        return subprocess.Popen([*self.prefix, *argv], start_new_session=True, **kw)

    def run(self, *argv: str) -> str:
        proc = subprocess.run([*self.prefix, *argv], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name}: {proc.stderr.strip()}")
        return proc.stdout

    def listening(self) -> set[str]:
        """`address:port` of each TCP socket listening in this machine."""
        return {line.split()[3] for line in self.run("ss", "-Hltn").splitlines() if line.strip()}

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread in this machine's network (sockets it opens live here; processes it
        starts too), back where it was after. Other threads stay where they are."""
        with open("/proc/thread-self/ns/net") as home, open(RUN_NETNS / self.name) as there:
            _setns(there.fileno())
            try:
                yield
            finally:
                _setns(home.fileno())

    def pids(self) -> list[int]:
        proc = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=30)
        return [int(p) for p in proc.stdout.split()]


class Hub:
    """A bridge in a namespace of its own, and the machines plugged into it."""

    def __init__(self) -> None:
        self.tag = f"{PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(256)}"
        self.name = f"{self.tag}-hub"
        self.machines: list[Machine] = []
        self._made: list[str] = []

    def start(self) -> None:
        """Make the hub, or raise NetnsUnavailable saying what this machine lacks."""
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed: run scripts/ensure-netns.sh")
        if os.geteuid() != 0:
            raise NetnsUnavailable("making network namespaces needs root (CAP_NET_ADMIN)")
        _forget_dead_runs()
        try:
            self._netns(self.name)
            _ip("-n", self.name, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.name, "link", "set", "br0", "up")
        except RuntimeError as exc:
            self.close()
            raise NetnsUnavailable(f"cannot make a network namespace with a bridge here: {exc}") from None

    def machine(self, role: str) -> Machine:
        """A new machine on the hub, at the subnet's next address."""
        m = Machine(f"{self.tag}-{role}", f"{self.subnet}.{len(self.machines) + 2}")
        self._netns(m.name)
        self.machines.append(m)
        port = f"v{len(self.machines)}"
        _ip("-n", self.name, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", m.name)
        _ip("-n", self.name, "link", "set", port, "master", "br0", "up")
        _ip("-n", m.name, "addr", "add", f"{m.address}/24", "dev", "eth0")
        _ip("-n", m.name, "link", "set", "eth0", "up")
        _ip("-n", m.name, "link", "set", "lo", "up")
        _ip("-n", m.name, "addr", "flush", "dev", "lo")
        return m

    def _netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)

    def close(self) -> None:
        """End every process left in the machines, then delete every namespace this hub made."""
        for m in self.machines:
            _kill(m.pids())
        for name in reversed(self._made):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", name)
        self._made.clear()

    def __enter__(self) -> Hub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:  # reap those that are our children; the others the kernel does
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _forget_dead_runs() -> None:
    """Delete namespaces a killed run left behind (their pid is gone), with their processes."""
    if not RUN_NETNS.is_dir():
        return
    for path in RUN_NETNS.glob(f"{PREFIX}*"):
        pid = path.name[len(PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            stale = Machine(path.name, "")
            _kill(stale.pids())
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", path.name)
