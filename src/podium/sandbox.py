"""Workers in a box: what a worker process may see of the machine, built with bubblewrap (`bwrap`).

Deployed code is a tenant's: it must not read the server's keys, its store or another endpoint's
files, nor see or signal the server. Each worker (a zygote too: the workers it forks stay in its
box) runs under `bwrap` in a mount namespace of its own, where it sees read-only

- the system (`/usr`, `/lib*`, `/bin`, a few files of `/etc`), the Python it runs (the server's, or
  its version's environment, with the interpreter that environment was made from) and Podium's
  own package;
- its version's unpacked bundle, and no other;

and writable only its own `/tmp` and home (both in memory, gone with it), the worker channel's
socket, and the volumes its service names (each at the path the service gives). Its own PID
namespace (its own `/proc`: no other process in it), its capabilities dropped, its own session
(no terminal to inject into), killed with its parent. The network is the host's:
workers reach the server over 127.0.0.1. GPU devices are bound in only for workers given a GPU.
Nothing else of PODIUM_HOME exists in the box.

Whatever the sandbox, a worker's environment is built from an allowlist (`worker_environ`): its
endpoint's secrets, the settings it needs to reach the server, the locale and PATH. Never a server
variable it was not meant to have (`PODIUM_ADMIN_KEY`, `PODIUM_SECRET_KEY`, the database URL...).

Limits: open files (RLIMIT_NOFILE); memory through cgroup v2 where the server may write it, else
RLIMIT_AS; processes through a `pids` cgroup (v2 or v1) where writable. RLIMIT_NPROC is no limit
here: it counts per user, and the kernel never applies it to root, which the server often is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import podium
from podium import _json
from podium.names import volume_env

log = logging.getLogger("podium.scaling")

#: Variables of the server's environment a worker keeps (locale, time zone, CUDA's device order).
PASSED = ("PATH", "HOME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "CUDA_DEVICE_ORDER")
#: Where, in the box, the worker's home is; its bundles' cache is under it.
BOX_HOME = "/home/worker"
#: Where, in the box, the worker channel's socket and a zygote's listening directory are.
BOX_RUN = "/run/podium"
#: Files of /etc a worker needs (name resolution, certificates, users, time zone, the loader).
ETC = (
    "hosts",
    "resolv.conf",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "passwd",
    "group",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "mime.types",
    "os-release",
    "protocols",
    "services",
)
#: Open files per worker (or the server's own hard limit, if lower).
NOFILE = 65536
#: Processes (threads count) per worker, where a pids cgroup can hold them.
PIDS = 4096
#: RLIMIT_AS counts address space, not memory: Python's threads and allocator reserve far more
#: than they use (a worker idles at ~400 MB of it for ~35 MB resident). This much comes on top.
ADDRESS_SLACK_MB = 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")


def worker_environ(
    secrets: Mapping[str, str], settings: Mapping[str, str], *, server_env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """A worker's environment: the allowlisted part of the server's (PASSED), the endpoint's
    `secrets`, then the job-facing `settings` (its token, the server's URL...), which a secret of
    the same name does not override."""
    env = {k: v for k, v in server_env.items() if k in PASSED}
    env.setdefault("PATH", os.defpath)
    env.update(secrets)
    env.update(settings)
    return env


def podium_path() -> Path:
    """The directory Podium is imported from (its package's parent): an editable install's
    source tree or the site-packages holding it. Workers import Podium from there."""
    return Path(podium.__file__).resolve().parent.parent


def server_pythonpath(server_env: Mapping[str, str] = os.environ) -> list[Path]:
    """Where a worker on the server's own Python imports from besides its prefixes: Podium's
    directory, then the directories of the server's PYTHONPATH (the operator's set-up of that
    Python). The box shows them read-only."""
    extra = [Path(p) for p in server_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [podium_path(), *(p.resolve() for p in extra if p.is_dir())]


@functools.cache
def available() -> str | None:
    """None when bwrap can build a box here, else why not (checked once, by running it)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap (bubblewrap) is not installed"
    try:
        out = subprocess.run(wrap(["/bin/true"], []), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap does not run: {exc}"
    if out.returncode != 0:
        return f"bwrap does not work here: {out.stderr.strip() or f'exit code {out.returncode}'}"
    return None


@dataclass(frozen=True)
class Sandboxing:
    """Whether this server's workers run sandboxed, and the sentence that says so."""

    on: bool
    status: str


def sandboxing(wanted: bool) -> Sandboxing:
    """Workers are sandboxed when `wanted` (PODIUM_SANDBOX is not `off`) and bwrap works."""
    if not wanted:
        return Sandboxing(
            False,
            "workers are NOT sandboxed (PODIUM_SANDBOX=off): deployed code can read "
            "the server's files and see its processes",
        )
    why = available()
    if why is not None:
        return Sandboxing(
            False,
            f"workers are NOT sandboxed: {why}; deployed code can read the server's "
            "files and see its processes (install bubblewrap)",
        )
    return Sandboxing(True, "workers are sandboxed (bubblewrap)")


@dataclass(frozen=True)
class Mount:
    """A host path shown in the box (at the same path unless `at` is given)."""

    path: Path
    at: str | None = None
    writable: bool = False

    def args(self) -> list[str]:
        return ["--bind" if self.writable else "--ro-bind", str(self.path), self.at or str(self.path)]


@dataclass(frozen=True)
class Box:
    """What one worker's (or zygote's) box holds.

    Parameters:
        python: the interpreter it runs; `env` its environment's directory (None: the server's).
        bundle: the version's unpacked bundle (shown at `BOX_HOME/cache/bundles/<its name>`).
        channel: the worker channel's socket on the host (shown at `BOX_RUN/worker.sock`).
        listen: a directory the box listens in (a zygote's socket), shown at `BOX_RUN/listen`.
        gpus: whether it was given GPUs (then /dev/nvidia* are bound in).
        volumes: the volumes its service names, each bound read-write where the service asks.
    """

    python: str
    env: Path | None = None
    bundle: Path | None = None
    channel: str | None = None
    listen: Path | None = None
    gpus: bool = False
    volumes: Sequence[Mount] = field(default_factory=tuple)

    def argv(self, cmd: Sequence[str], info_fd: int) -> list[str]:
        """`bwrap ... -- cmd`: `cmd` is the box's pid 1 (its exit ends every process of the box);
        bwrap writes its pid, as the host sees it, to `info_fd`."""
        args = [*_bwrap(), "--info-fd", str(info_fd), "--as-pid-1"]
        for mount in self.mounts():
            args += mount.args()
        if self.gpus:
            for dev in sorted(Path("/dev").glob("nvidia*")):
                args += ["--dev-bind", str(dev), str(dev)]
        return [*args, "--", *cmd]

    def mounts(self) -> list[Mount]:
        out = [Mount(p) for p in _python_dirs(self.python, self.env)]
        if self.bundle is not None:
            out.append(Mount(self.bundle, at=self.bundle_path()))
        if self.channel is not None:
            out.append(Mount(Path(self.channel), at=f"{BOX_RUN}/worker.sock", writable=True))
        if self.listen is not None:
            out.append(Mount(self.listen, at=f"{BOX_RUN}/listen", writable=True))
        return [*out, *self.volumes]

    def bundle_path(self) -> str:
        assert self.bundle is not None
        return f"{BOX_HOME}/cache/bundles/{self.bundle.name}"

    def environ(self, env: Mapping[str, str]) -> dict[str, str]:
        """The worker's environment with the box's paths in place of the host's."""
        out = {**env, "HOME": BOX_HOME, "PODIUM_HOME": BOX_HOME, "TMPDIR": "/tmp"}
        if self.channel is not None and "PODIUM_WORKER_SOCKET" in out:
            out["PODIUM_WORKER_SOCKET"] = f"{BOX_RUN}/worker.sock"
        return out


def volume_settings(volumes: Sequence[tuple[str, Path, str]], *, boxed: bool) -> tuple[list[Mount], dict[str, str]]:
    """What a worker is given of its volumes (name, directory on the host, path the service
    asks): in a box, each bound at its path; and in any case `$PODIUM_VOLUME_<NAME>` saying where
    it is (that path in a box, the host's directory without one)."""
    mounts = [Mount(path, at=at, writable=True) for _, path, at in volumes] if boxed else []
    env = {volume_env(name): at if boxed else str(path) for name, path, at in volumes}
    return mounts, env


def wrap(cmd: Sequence[str], mounts: Sequence[Mount]) -> list[str]:
    """`bwrap ... -- cmd` for a task of the server's that runs code it did not write (an
    environment's build runs packages' build scripts): the system and `mounts` only."""
    args = _bwrap()
    for mount in mounts:
        args += mount.args()
    return [*args, "--", *cmd]


def _bwrap() -> list[str]:
    """bwrap and what every box has: the system, its own /proc, /dev, /tmp, /run and home, its
    own PID, IPC and UTS namespaces and session, no capabilities; it dies with its parent."""
    bwrap = shutil.which("bwrap")
    assert bwrap is not None, "a box without bwrap (check available() first)"
    return [
        bwrap,
        *_system(),
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/home",
        "--dir",
        BOX_HOME,
        "--chdir",
        BOX_HOME,
        "--setenv",
        "HOME",
        BOX_HOME,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
    ]


def _system() -> list[str]:
    """The system, read-only: /usr, the top-level links or directories into it, some of /etc."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_dirs(python: str, env: Path | None) -> list[Path]:
    """What running `python` needs: the prefix it runs in and the one it was made from, and the
    directory Podium is imported from (an environment links to it)."""
    if env is not None:
        dirs = [env, *_base_prefix(env), podium_path()]
    else:
        dirs = [Path(sys.prefix), Path(sys.base_prefix), Path(python).resolve().parent.parent, *server_pythonpath()]
    under_usr = [d for d in dirs if d == Path("/usr") or Path("/usr") in d.parents]
    return sorted({d.resolve() for d in dirs if d not in under_usr and d.exists()})


def _base_prefix(env: Path) -> list[Path]:
    """The prefix of the interpreter a venv was made from (its pyvenv.cfg's `home` is its bin)."""
    with contextlib.suppress(OSError):
        for line in (env / "pyvenv.cfg").read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return [Path(value.strip()).resolve().parent]
    return []


class BoxedProcess:
    """A process in its box, with the face of an asyncio process (pid, returncode, wait,
    send_signal, kill). bwrap forwards no signal, so signals go to the boxed process itself,
    through a pidfd (a reused pid is never hit); its exit status is bwrap's (128 + n when signal
    n killed it)."""

    started_by = "spawn"

    def __init__(self, bwrap: asyncio.subprocess.Process, pid: int) -> None:
        self._bwrap = bwrap
        self.pid = pid
        try:
            self._pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # gone already: bwrap's exit follows
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return self._bwrap.returncode

    @property
    def stdout(self) -> asyncio.StreamReader | None:
        """Its output, when spawned with `out=asyncio.subprocess.PIPE`."""
        return self._bwrap.stdout

    async def wait(self) -> int:
        rc = await self._bwrap.wait()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return rc

    def send_signal(self, sig: int) -> None:
        if self.returncode is None and self._pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


async def spawn(
    box: Box, cmd: Sequence[str], *, env: Mapping[str, str], out: IO[bytes] | int, limits: Limits
) -> BoxedProcess:
    """Run `cmd` in `box` with its output to `out`, a file the server opened (the box never sees
    the log's directory) or asyncio.subprocess.PIPE."""
    err = asyncio.subprocess.STDOUT if out == asyncio.subprocess.PIPE else out
    r, w = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *box.argv(cmd, w),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=box.environ(env),
            start_new_session=True,
            pass_fds=(w,),
            preexec_fn=limits.preexec(),
        )
    finally:
        os.close(w)
    try:
        info = await asyncio.to_thread(_read_all, r)
    finally:
        os.close(r)
    try:
        pid = int(_json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        rc = await proc.wait()
        raise OSError(f"bwrap could not start the worker (exit code {rc}; see its log)") from None
    return BoxedProcess(proc, pid)


def _read_all(fd: int) -> bytes:
    """bwrap's info: one JSON object, written once the box's process exists (EOF: bwrap failed)."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
        if data.rstrip().endswith(b"}"):
            break
    return data


# -- limits ---------------------------------------------------------------------------------------


@dataclass
class Limits:
    """One worker's limits, applied in its process before bwrap runs (children inherit them).

    Parameters:
        name: the worker's (or zygote's) id, naming its cgroups.
        memory_mb: its memory (0: none).
        gpus: a GPU worker gets no RLIMIT_AS (CUDA reserves terabytes of address space).
    """

    name: str
    memory_mb: int = 0
    gpus: int = 0
    #: The cgroup directories it is placed in (made by `prepare`, removed by `release`).
    cgroups: list[Path] = field(default_factory=list)
    address_limit: bool = False

    def prepare(self) -> None:
        """Make its cgroups where writable (cgroup v2: memory and pids; v1: pids)."""
        v2 = CGROUP_ROOT / "cgroup.controllers"
        if v2.exists():
            group = _v2_group(self.name)
            if group is not None:
                controllers = (group.parent / "cgroup.subtree_control").read_text().split()
                if self.memory_mb and "memory" in controllers:
                    (group / "memory.max").write_text(f"{self.memory_mb * 2**20}\n")
                    with contextlib.suppress(OSError):
                        (group / "memory.swap.max").write_text("0\n")
                if "pids" in controllers:
                    (group / "pids.max").write_text(f"{PIDS}\n")
                self.cgroups.append(group)
                self.address_limit = bool(self.memory_mb) and "memory" not in controllers and not self.gpus
                return
        pids = CGROUP_ROOT / "pids"
        if os.access(pids, os.W_OK) and (pids / "cgroup.procs").exists():
            group = pids / "podium" / self.name
            with contextlib.suppress(OSError):
                group.mkdir(parents=True, exist_ok=True)
                (group / "pids.max").write_text(f"{PIDS}\n")
                self.cgroups.append(group)
        self.address_limit = bool(self.memory_mb) and not self.gpus

    def preexec(self) -> Callable[[], None]:
        """What runs in the child between fork and exec: join the cgroups, set the rlimits."""
        procs = [str(g / "cgroup.procs") for g in self.cgroups]
        address = (self.memory_mb + ADDRESS_SLACK_MB) * 2**20 if self.address_limit else None
        files = _open_files()

        def apply() -> None:
            for path in procs:
                with open(path, "w") as f:
                    f.write(str(os.getpid()))
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))
            if address is not None:
                resource.setrlimit(resource.RLIMIT_AS, (address, address))

        return apply

    def release(self) -> None:
        """Remove its cgroups (its processes are gone)."""
        for group in self.cgroups:
            with contextlib.suppress(OSError):
                group.rmdir()
        self.cgroups.clear()

    def describe(self) -> str:
        memory = (
            "no memory limit"
            if not self.memory_mb
            else f"memory {self.memory_mb} MB ({'RLIMIT_AS' if self.address_limit else 'cgroup'})"
        )
        pids = f"{PIDS} processes (pids cgroup)" if self.cgroups else "no process limit (no writable pids cgroup)"
        return f"{memory}, {pids}, {_open_files()} open files"


def _open_files() -> int:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)


def _v2_group(name: str) -> Path | None:
    """A cgroup v2 group for one worker under `podium/`, its controllers enabled; None when the
    hierarchy is not ours to write."""
    parent = CGROUP_ROOT / "podium"
    try:
        parent.mkdir(exist_ok=True)
        wanted = set((CGROUP_ROOT / "cgroup.controllers").read_text().split()) & {"memory", "pids"}
        with contextlib.suppress(OSError):
            (CGROUP_ROOT / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        enabled = set((parent / "cgroup.controllers").read_text().split()) & wanted
        if enabled:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in enabled))
        group = parent / name
        group.mkdir(exist_ok=True)
        return group
    except OSError:
        return None
