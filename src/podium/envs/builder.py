"""Building and finding environments on disk: `$PODIUM_HOME/envs/<hash>/`.

An environment is complete once its `podium-env.json` exists; it is written last, so a build cut
short (a crash, a restart) leaves a directory without it, which the next build removes first. A
lock file per hash makes every process of the machine build a given environment once: the others
wait for the lock, then find it complete.

Podium's worker runtime reaches the environment as a link to the `podium` package alone (never
the server's site-packages), and the few libraries it imports are installed with the user's
requirements in one resolution: the user's pins win, and a pin the runtime cannot work with fails
the build with a message that says so.

A build runs packages' build scripts (an sdist's setup.py): the deployer's code. Where workers are
sandboxed, so is the build (`podium.sandbox.wrap`): it sees the system, the interpreter
the environment is made from, uv and its cache, the index's local directories, and writes only
the environment being built; nothing of PODIUM_HOME. Either way its environment is an allowlist
(`build_environ`), never the server's settings and keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import podium
from podium import _json, sandbox
from podium.envs.requirements import Requirements, runtime_requirements
from podium.errors import PodiumError
from podium.names import ENV_HASH, VERSION_ID
from podium.sandbox import Mount

MARKER = "podium-env.json"
#: Starts each build's part of the log (a log keeps every attempt at one environment).
BUILD_HEADER = "== building environment "
#: Lines of the installer's output an error message carries.
ERROR_LINES = 40
#: pip's index settings, passed on to uv (which reads only its own UV_* variables).
PIP_OPTIONS = (
    ("PIP_INDEX_URL", "--index-url"),
    ("PIP_EXTRA_INDEX_URL", "--extra-index-url"),
    ("PIP_FIND_LINKS", "--find-links"),
)
#: Variables of the server's environment that would let a worker see the server's packages.
LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")
#: What of the server's environment a build keeps: the locale and PATH, uv's and pip's settings,
#: proxies and certificates (the index may need them).
BUILD_PASSED = (
    *sandbox.PASSED,
    "XDG_CACHE_HOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


class EnvBuildError(PodiumError):
    """The environment could not be built."""


@dataclass(frozen=True)
class Interpreter:
    """The Python a worker runs on: the server's own, or an environment's (with the requirement
    set it was built from, for a machine that builds its own copy: a Ray node)."""

    python: str = sys.executable
    env: Path | None = None
    requirements: Requirements | None = None

    def environ(self, base: dict[str, str]) -> dict[str, str]:
        """A worker's process environment: an environment's tools first on PATH, and nothing that
        points Python at the server's packages."""
        if self.env is None:
            return dict(base)
        out = {k: v for k, v in base.items() if k not in LEAKY}
        out["VIRTUAL_ENV"] = str(self.env)
        out["PATH"] = os.pathsep.join(filter(None, [str(self.env / "bin"), base.get("PATH")]))
        return out


#: Workers of versions without requirements run on the server's own Python.
SERVER_PYTHON = Interpreter()


@dataclass
class EnvInfo:
    """One environment on disk, for `podium envs ls`."""

    hash: str
    python: str
    packages: list[str]
    size: int
    created_at: float
    last_used: float


def uv_bin() -> str:
    """The uv binary the `uv` wheel ships (a dependency of Podium)."""
    import uv

    return str(uv.find_uv_bin())


def build_environ() -> dict[str, str]:
    """The installer's environment (a package's build script runs in it): the allowlisted part
    of the server's, never Podium's own settings and keys."""
    return {k: v for k, v in os.environ.items() if k in BUILD_PASSED or k.startswith(("UV_", "PIP_"))}


def uv_cache() -> Path:
    """uv's cache (UV_CACHE_DIR, else its default), which a sandboxed build writes to."""
    if os.environ.get("UV_CACHE_DIR"):
        return Path(os.environ["UV_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv"


class Jail:
    """Where a sandboxed build runs: the environment being built writable, and what it reads."""

    def __init__(self, target: Path, interpreter: Path) -> None:
        cache = uv_cache()
        cache.mkdir(parents=True, exist_ok=True)
        self.environ = {**build_environ(), "UV_CACHE_DIR": str(cache), "UV_LINK_MODE": "copy"}
        links = [Path(p) for var in ("PIP_FIND_LINKS", "UV_FIND_LINKS") for p in self.environ.get(var, "").split()]
        read = {
            Path(uv_bin()),
            interpreter.resolve().parent.parent,
            sandbox.podium_path(),
            *(p.resolve() for p in links if p.exists()),
        }
        self.mounts = [*(Mount(p) for p in sorted(read)), Mount(target, writable=True), Mount(cache, writable=True)]

    def argv(self, cmd: list[str]) -> list[str]:
        return sandbox.wrap(cmd, self.mounts)


def index_options(environ: dict[str, str]) -> list[str]:
    """uv options for the index pip is configured with (PIP_INDEX_URL, PIP_FIND_LINKS, ...)."""
    out: list[str] = []
    for var, option in PIP_OPTIONS:
        for value in environ.get(var, "").split():
            out += [option, value]
    return out


class Steps:
    """The build steps running now, each in a process group of its own: a stopping server kills
    them, uv and whatever it started (a package's build script), instead of leaving them running."""

    def __init__(self) -> None:
        self.groups: set[int] = set()
        self.stopped = False

    def kill(self) -> None:
        """End every step underway, and any started from now on."""
        self.stopped = True
        for group in list(self.groups):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


class EnvStore:
    """The environments under one directory.

    Parameters:
        root: where environments live (`$PODIUM_HOME/envs`).
    """

    def __init__(self, root: Path, sandboxed: bool = False) -> None:
        self.root = root
        self.steps = Steps()
        #: Builds run in a bubblewrap box (what `sandboxed` asks, where bwrap works).
        self.sandboxed = sandboxed and sandbox.available() is None

    def path(self, key: str) -> Path:
        return self.root / ENV_HASH.check(key)

    def log_path(self, key: str) -> Path:
        return self.root / f"{ENV_HASH.check(key)}.log"

    def attempt(self, key: str, version: str) -> tuple[int, int] | None:
        """Where, in the environment's log, the latest build `version` started begins and ends;
        None when it started none. An environment is shared by every version with its
        requirements, in every project: each reads only the attempts it started."""
        try:
            data = self.log_path(key).read_bytes()
        except FileNotFoundError:
            return None
        named = data.rfind(f" for version {VERSION_ID.check(version)} ==\n".encode())
        if named < 0:
            return None
        begin = data.rfind(BUILD_HEADER.encode(), 0, named)
        end = data.find(BUILD_HEADER.encode(), named)
        return max(begin, 0), len(data) if end < 0 else end

    def ready(self, key: str) -> bool:
        return (self.path(key) / MARKER).exists()

    def interpreter(self, key: str) -> Interpreter | None:
        """The environment's Python (its last use noted), or None when it is not built."""
        marker = self.path(key) / MARKER
        try:
            os.utime(marker)
        except FileNotFoundError:
            return None
        return Interpreter(str(self.path(key) / "bin" / "python"), self.path(key))

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{ENV_HASH.check(key)}.lock").open("w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def build(self, key: str, reqs: Requirements, version: str, node: str | None = None) -> Interpreter:
        """Build the environment unless it exists, for `version` (blocking; the output goes to
        its build log, under a header naming the version, and the Ray `node` building it).

        Raises EnvBuildError with the installer's error when it cannot be built.
        """
        with self._locked(key):
            found = self.interpreter(key)
            if found is not None:
                return found
            target = self.path(key)
            shutil.rmtree(target, ignore_errors=True)
            with self.log_path(key).open("a", encoding="utf-8") as log:
                where = f" on node {node}" if node else ""
                log.write(f"{BUILD_HEADER}{key} (Python {reqs.resolved_python()}){where} for version {version} ==\n")
                log.flush()
                try:
                    self._build(target, reqs, log)
                except EnvBuildError as exc:
                    shutil.rmtree(target, ignore_errors=True)
                    log.write(f"== build failed: {exc.message.splitlines()[0]} ==\n")
                    raise
                log.write("== environment ready ==\n")
        found = self.interpreter(key)
        assert found is not None
        return found

    def _build(self, target: Path, reqs: Requirements, log: IO[str]) -> None:
        uv = uv_bin()
        python = reqs.resolved_python()
        jail = None
        if self.sandboxed:  # the interpreter found first: the box shows it alone
            found = subprocess.run(
                [uv, "python", "find", "--no-project", python],
                capture_output=True,
                text=True,
                check=False,
                env=build_environ(),
            )
            if found.returncode != 0:
                raise EnvBuildError(
                    f"cannot create a Python {python} environment (is Python {python} installed on the "
                    f"server? Podium does not download interpreters):\n{found.stderr}"
                )
            # The interpreter itself, not a link to it: uv finds the server's own virtualenv first
            # (a .venv in its directory), whose bin/ the box does not show.
            python = str(Path(found.stdout.strip()).resolve())
            target.mkdir(parents=True)
            jail = Jail(target, Path(python))
        venv = [
            uv,
            "venv",
            "--quiet",
            "--no-python-downloads",
            "--no-project",
            "--allow-existing",
            "--python",
            python,
            str(target),
        ]
        out = _run(venv, log, self.steps, jail)
        if out is not None:
            raise EnvBuildError(
                f"cannot create a Python {python} environment (is Python {python} installed on the "
                f"server? Podium does not download interpreters):\n{out}"
            )
        py = str(target / "bin" / "python")
        user = target / "podium-requirements.txt"
        user.write_text("".join(f"{line}\n" for line in reqs.packages), encoding="utf-8")
        runtime = target / "podium-runtime.txt"
        runtime.write_text("".join(f"{line}\n" for line in runtime_requirements()), encoding="utf-8")
        index = index_options(build_environ())
        install = [uv, "pip", "install", "--python", py, *index, "-r", str(user), "-r", str(runtime)]
        out = _run(install, log, self.steps, jail)
        if out is not None:
            alone = _run(
                [uv, "pip", "compile", "--python", py, "--quiet", "--no-header", *index, str(user)],
                subprocess.DEVNULL,
                self.steps,
                jail,
            )
            if alone is None:
                raise EnvBuildError(
                    "the requirements conflict with what Podium's worker runtime needs "
                    f"({', '.join(runtime_requirements())}):\n{out}"
                )
            raise EnvBuildError(f"installing the requirements failed:\n{out}")
        _link_podium(target)
        out = _run([py, "-c", "import podium.worker.__main__"], log, self.steps, jail)
        if out is not None:
            raise EnvBuildError(f"Podium's worker runtime does not load in this environment:\n{out}")
        info = {"hash": target.name, "python": python, "packages": list(reqs.packages), "created_at": time.time()}
        (target / MARKER).write_bytes(_json.dumpb(info))

    def list(self) -> list[EnvInfo]:
        """Every complete environment, oldest use first."""
        found = []
        if self.root.exists():
            for d in self.root.iterdir():
                marker = d / MARKER
                try:
                    meta = _json.loads(marker.read_bytes())
                    used = marker.stat().st_mtime
                except (OSError, ValueError):
                    continue
                found.append(
                    EnvInfo(d.name, meta["python"], meta["packages"], _size(d), float(meta["created_at"]), used)
                )
        return sorted(found, key=lambda e: e.last_used)

    def append_log(self, key: str, data: bytes) -> None:
        """Add a build that ran elsewhere (a Ray node's) to the environment's log, where the
        version's build log is read."""
        with self._locked(key), self.log_path(key).open("ab") as log:
            log.write(data)

    def remove(self, key: str) -> bool:
        """Delete an environment (waiting for a build of it to end); False when there was none."""
        with self._locked(key):
            existed = self.path(key).exists()
            shutil.rmtree(self.path(key), ignore_errors=True)
            self.log_path(key).unlink(missing_ok=True)
        # The lock file stays: a builder waiting on it must lock the same file as the next one.
        return existed


def _run(cmd: list[str], log: IO[str] | int, steps: Steps, jail: Jail | None = None) -> str | None:
    """Run a build step (in `jail`, when given) with its output appended to the log (or, quiet,
    kept apart); None when it succeeded, else the last lines it printed."""
    env = build_environ() if jail is None else jail.environ
    if jail is not None:
        cmd = jail.argv(cmd)
    logged = None if isinstance(log, int) else log
    if logged is not None:
        logged.flush()
    start = 0 if logged is None else os.path.getsize(logged.name)
    if steps.stopped:
        raise EnvBuildError("the server stopped during the build")
    with subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if logged is None else logged,
        stderr=subprocess.PIPE if logged is None else subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    ) as step:
        steps.groups.add(step.pid)
        try:
            if steps.stopped:  # stopped while this step started
                os.killpg(step.pid, signal.SIGKILL)
            _, err = step.communicate()
        finally:
            steps.groups.discard(step.pid)
    if step.returncode == 0:
        return None
    if logged is None:
        return str(err)
    with open(logged.name, "rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    return "\n".join(lines[-ERROR_LINES:])


def _link_podium(target: Path) -> None:
    """Make `import podium` find the server's podium package, and only it."""
    site = next(target.glob("lib/python*/site-packages"))
    (site / "podium").symlink_to(Path(podium.__file__).resolve().parent, target_is_directory=True)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
