"""Throwaway PostgreSQL clusters for the test suite.

The Postgres-backed tests need a real server, but must not depend on (or
disturb) whatever server the host happens to run.  So each test session gets
its own cluster: ``initdb`` into a temp dir, ``pg_ctl start`` on a free
loopback port, and ``pg_ctl stop`` afterwards.  Stdlib only, so it can be
imported before anything else is installed.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from types import TracebackType
from typing import Self
from urllib.parse import quote

__all__ = ["PgCluster", "find_pg_bin"]

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_SUPERUSER = "podium"
_DB_NAME = "podium"
_SERVICE_USER = "podiumtest"
# sockaddr_un.sun_path is 108 bytes on Linux; postgres appends "/.s.PGSQL.NNNNN".
_MAX_SOCKDIR_LEN = 80


def _is_script(path: pathlib.Path) -> bool:
    """True for ``#!`` wrappers (e.g. Debian's pg_wrapper), which we must not pick."""
    try:
        with path.open("rb") as fh:
            return fh.read(2) == b"#!"
    except OSError:
        return True


def _complete_bin_dir(directory: pathlib.Path) -> bool:
    """pg_ctl locates ``postgres`` next to itself, so all three must share a dir."""
    return all((directory / name).is_file() and os.access(directory / name, os.X_OK) for name in _REQUIRED)


def _debian_bin_dirs() -> list[pathlib.Path]:
    """``/usr/lib/postgresql/<ver>/bin`` dirs, newest major version first."""
    root = pathlib.Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []

    def version(p: pathlib.Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    dirs = [p / "bin" for p in root.iterdir() if _complete_bin_dir(p / "bin")]
    return sorted(dirs, key=version, reverse=True)


def find_pg_bin() -> pathlib.Path | None:
    """Directory holding real initdb/pg_ctl/postgres binaries, or None.

    PATH wins if its ``initdb`` resolves (through symlinks) to a real binary
    with pg_ctl and postgres beside it; a wrapper script on PATH is skipped in
    favour of the newest /usr/lib/postgresql/*/bin, and used only as a last
    resort.
    """
    fallback: pathlib.Path | None = None
    on_path = shutil.which("initdb")
    if on_path:
        real = pathlib.Path(on_path).resolve()
        if _complete_bin_dir(real.parent):
            if not _is_script(real):
                return real.parent
            fallback = real.parent
    debian = _debian_bin_dirs()
    if debian:
        return debian[0]
    return fallback


def _free_port() -> int:
    """Ask the kernel for a free loopback port (racy, hence the retry in start())."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env() -> dict[str, str]:
    """Drop PG* variables so a developer's PGHOST/PGDATA can't redirect us."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _service_user() -> str:
    """Unprivileged account to run the server as (initdb refuses to run as root)."""
    for name in ("postgres", _SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    proc = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
        capture_output=True,
        text=True,
    )
    try:  # a parallel worker may have created it first; that's fine
        pwd.getpwnam(_SERVICE_USER)
    except KeyError:
        raise RuntimeError(f"could not create user {_SERVICE_USER!r}: {proc.stderr.strip()}") from None
    return _SERVICE_USER


class PgCluster:
    """A throwaway PostgreSQL cluster in a temp dir (initdb + pg_ctl), on a free loopback port.

    `host` and `prefix` put it elsewhere: listening on that address only, its commands run under
    the prefix (`ip netns exec NAME`, tests/netns.py), trusting clients on the host's own subnets.
    `fsync`: off by default (the data is thrown away); on for tests and benches of durability.
    `settings`: more server settings (`-c name=value`)."""

    def __init__(
        self,
        base_dir: pathlib.Path,
        host: str = "127.0.0.1",
        prefix: tuple[str, ...] = (),
        *,
        fsync: bool = False,
        settings: dict[str, str] | None = None,
    ) -> None:
        """Only records settings; nothing touches the disk until start()."""
        self.base_dir = pathlib.Path(base_dir)
        self.host = host
        self.prefix = prefix
        self.fsync = fsync
        self.settings = dict(settings or {})
        self._bin: pathlib.Path | None = None
        self._user: str | None = None  # None: run as ourselves
        self._root: pathlib.Path | None = None  # where data/, sock/, postgres.log live
        self._owned_root = False  # True when we made _root ourselves and must delete it
        self._port: int | None = None
        self._running = False

    # -- paths ---------------------------------------------------------------

    @property
    def data_dir(self) -> pathlib.Path:
        return self._require_root() / "data"

    @property
    def log_file(self) -> pathlib.Path:
        return self._require_root() / "postgres.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PgCluster not started")
        return self._port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``podium`` database."""
        return self._url_for(_DB_NAME)

    def _require_root(self) -> pathlib.Path:
        if self._root is None:
            raise RuntimeError("PgCluster not started")
        return self._root

    def _url_for(self, name: str) -> str:
        return f"postgresql+psycopg://{_SUPERUSER}@{self.host}:{self.port}/{quote(name, safe='')}"

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """initdb, start the server (waiting until it accepts connections), create ``podium``.

        On failure everything is torn down again before the error propagates,
        so a fixture that never got a cluster has nothing to clean up.
        """
        if self._running:
            return
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._bin = find_pg_bin()
        if self._bin is None:
            raise RuntimeError(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; run scripts/ensure-postgres.sh"
            )
        self._user = _service_user() if os.geteuid() == 0 else None
        self._root = self._prepare_root()
        sock_dir = self._root / "sock"
        sock_dir.mkdir(exist_ok=True)
        self._give_away(sock_dir)

        self._run_checked(
            [
                str(self._bin / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                _SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        if self.host != "127.0.0.1":  # initdb trusts loopback only; `samenet`: the host's subnets
            with (self.data_dir / "pg_hba.conf").open("a") as hba:
                hba.write("host all all samenet trust\n")

        # The port is picked before postgres binds it, so another process can
        # grab it in between; retry with a fresh port in that (rare) case.
        for attempt in range(3):
            self._port = _free_port()
            log_offset = self._log_size()
            proc = self._pg_ctl_start(timeout=30)
            if proc.returncode == 0:
                break
            log = self._log_tail()
            self._stop_server()  # in case it half-started
            if attempt < 2 and b"could not bind" in self._log_bytes(log_offset):
                continue
            self._port = None
            raise RuntimeError(
                f"pg_ctl start failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}\n"
                f"--- tail of {self.log_file} ---\n{log}"
            )
        self._running = True
        self.create_database(_DB_NAME)

    def _options(self, sock_dir: pathlib.Path) -> str:
        options = f"-k {sock_dir} -p {self._port} -c listen_addresses={self.host} -c max_connections=200"
        options += " -c fsync=on" if self.fsync else " -F -c fsync=off"
        return options + "".join(f" -c {name}={value}" for name, value in self.settings.items())

    def kill(self) -> None:
        """Crash the server as a power cut would its processes: every one of them stopped at once
        (SIGSTOP), then killed (SIGKILL), so none writes out what it held in memory."""
        pids = self._server_pids()
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        # Gone, not only dead: a restart refuses to start while the old postmaster's pid exists
        # (a zombie until its parent, whoever adopted it, reaps it).
        deadline = time.monotonic() + 30
        while any(pathlib.Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._running = False

    def restart(self) -> None:
        """Start the server again on its data and port (after `kill`: it recovers from its WAL)."""
        assert self._bin is not None and self._root is not None
        proc = self._pg_ctl_start(timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {proc.stdout}{proc.stderr}\n{self._log_tail()}")
        self._running = True

    def _pg_ctl_start(self, timeout: int) -> subprocess.CompletedProcess[str]:
        """`pg_ctl start` on our data dir, port and socket dir; waits up to `timeout` s for connections."""
        assert self._bin is not None
        return self._run(
            [
                str(self._bin / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(timeout),
                "-o",
                self._options(self._require_root() / "sock"),
            ]
        )

    def _server_pids(self) -> list[int]:
        """The postmaster (first line of postmaster.pid) and its children."""
        postmaster = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        kids: list[int] = []
        for task in os.listdir(f"/proc/{postmaster}/task"):
            with open(f"/proc/{postmaster}/task/{task}/children") as f:
                kids += [int(c) for c in f.read().split()]
        return [postmaster, *kids]

    def stop(self) -> None:
        """Stop the server and drop any temp dir we created; safe to call repeatedly."""
        self._running = False
        if self._root is None:
            return
        self._stop_server()
        if self._owned_root:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
            self._owned_root = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its SQLAlchemy URL."""
        if not self._running:
            raise RuntimeError("PgCluster not started")
        quoted = '"' + name.replace('"', '""') + '"'
        proc = subprocess.run(
            [
                *self.prefix,
                self._psql(),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                _SUPERUSER,
                "-d",
                "postgres",
                "-c",
                f"CREATE DATABASE {quoted}",
            ],
            capture_output=True,
            text=True,
            env=_clean_env(),
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE {quoted} failed: {proc.stderr.strip()}")
        return self._url_for(name)

    # -- helpers -------------------------------------------------------------

    def _prepare_root(self) -> pathlib.Path:
        """Pick the cluster directory: base_dir if the server user can use it, else a short /tmp dir.

        As root, base_dir usually sits under a 0700 root-owned tree (pytest's
        /tmp/pytest-of-root), which the unprivileged server user can't
        traverse; and a long path would overflow the unix-socket path limit.
        """
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._give_away(self.base_dir)
        if len(str(self.base_dir / "sock")) <= _MAX_SOCKDIR_LEN and self._user_can_write(self.base_dir):
            self._owned_root = False
            return self.base_dir
        root = pathlib.Path(tempfile.mkdtemp(prefix="podium-pg-", dir="/tmp"))
        self._give_away(root)
        self._owned_root = True
        return root

    def _user_can_write(self, path: pathlib.Path) -> bool:
        if self._user is None:
            return os.access(path, os.W_OK | os.X_OK)
        return self._run(["test", "-w", str(path), "-a", "-x", str(path)]).returncode == 0

    def _give_away(self, path: pathlib.Path) -> None:
        """chown to the server user when running as root (postgres insists on owning its dirs)."""
        if self._user is not None:
            info = pwd.getpwnam(self._user)
            os.chown(path, info.pw_uid, info.pw_gid)

    def _wrap(self, argv: list[str]) -> list[str]:
        if self._user is None:
            return [*self.prefix, *argv]
        runuser = shutil.which("runuser") or "/usr/sbin/runuser"
        return [*self.prefix, runuser, "-u", self._user, "--", *argv]

    def _run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        # cwd: the server user may not be able to read root's cwd, which makes postgres warn.
        cwd = self._root if self._root is not None and self._root.is_dir() else "/"
        return subprocess.run(
            self._wrap(argv),
            capture_output=True,
            text=True,
            env=_clean_env(),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def _run_checked(self, argv: list[str], what: str) -> None:
        proc = self._run(argv)
        if proc.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")

    def _stop_server(self) -> None:
        """Immediate shutdown: no checkpoint, the data is thrown away anyway."""
        if self._bin is None or not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([str(self._bin / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30"])

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_bytes(self, offset: int) -> bytes:
        """Log written since ``offset``, so an earlier attempt's errors don't count."""
        try:
            with self.log_file.open("rb") as fh:
                fh.seek(offset)
                return fh.read()
        except OSError:
            return b""

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _psql(self) -> str:
        """Prefer the psql matching the server; Debian's /usr/bin/psql wrapper also works."""
        for candidate in (self._bin / "psql" if self._bin else None, pathlib.Path("/usr/bin/psql")):
            if candidate is not None and candidate.is_file():
                return str(candidate)
        found = shutil.which("psql")
        if found is None:
            raise RuntimeError("psql not found")
        return found
