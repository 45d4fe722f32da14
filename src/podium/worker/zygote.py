"""`python -m podium.worker.zygote`: a version's pre-imported parent, forking its workers.

A worker process pays for its imports on every cold start: the runpod package alone takes over a
second, torch several. For a version whose workers are slow to start, the server runs one zygote
on the version's interpreter (`podium.scaling.forkserver`): it imports Podium's worker runtime and
the installed modules the bundle imports (`podium.worker.preimport`; never the bundle's own code),
then forks one worker per request, each starting with those imports done.

Protocol, one connection per worker on a unix socket only the server's user can open: the server
writes one JSON line `{"argv": [...], "env": {...}}` and passes the worker's log file with it
(SCM_RIGHTS); the zygote forks, the worker itself answers `{"pid": n}` (the kernel attaches its
credentials, which tell the server its pid whatever PID namespace this is), and once that worker
has exited the zygote writes `{"exit": code}` (negative: killed by that signal), then closes the
connection. The worker runs `python -m podium.worker <argv>` as a spawned one would, in a session
of its own, its output appended to the log, its environment exactly `env`.

In a sandbox (`podium.sandbox`) the zygote is its box's first process: when it exits the
kernel ends every worker it forked, and it does not watch the server (the box dies with it).

Fork safety: the zygote starts no thread and opens no connection; if importing the bundle's
libraries started a Python thread it refuses to serve (exit code UNFIT) and the server spawns
workers as before. It exits when the server that started it is gone (its workers follow: they
watch their parent), and on SIGTERM it stops taking requests and exits once its workers have.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from podium import _json
from podium.worker import preimport, runpod_file

#: Exit code of a zygote that will not fork (its imports started threads): do not start another.
UNFIT = 78
#: Largest request line (a worker's environment).
MAX_REQUEST = 1 << 20


def say(msg: str) -> None:
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} zygote {os.getpid()}: {msg}", file=sys.stderr, flush=True)


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    #: The worker's log, open for appending (passed by the server).
    log: int

    @classmethod
    def parse(cls, line: bytes, log: int) -> Request:
        data = _json.loads(line)
        argv, env = data["argv"], data["env"]
        if not (isinstance(argv, list) and isinstance(env, dict)):
            raise ValueError("a fork request has argv (list) and env (object)")
        return cls([str(a) for a in argv], {str(k): str(v) for k, v in env.items()}, log)


@dataclass
class Child:
    pid: int
    pidfd: int
    conn: socket.socket | None


class Zygote:
    """Forks workers on request and reports their exits.

    Parameters:
        path: the socket to listen on (bound under a temporary name, then renamed: its existence
            means the zygote is ready).
        server_pid: the server that started it; the zygote exits when it is gone (None: in a
            sandbox, which dies with the server).
    """

    def __init__(self, path: Path, server_pid: int | None) -> None:
        self.path = path
        self.server_pid = server_pid
        self.sel = selectors.DefaultSelector()
        self.children: dict[int, Child] = {}
        self.listener: socket.socket | None = None
        self._inode = 0
        self.wake_r, self.wake_w = socket.socketpair()

    def serve(self) -> int:
        for sock in (self.wake_r, self.wake_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.wake_w.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda _s, _f: None)  # handled through the wake-up socket
        self.sel.register(self.wake_r, selectors.EVENT_READ, self._on_signal)
        self._listen()
        say("listening for fork requests")
        while self.listener is not None or self.children:
            if self.server_pid is not None and os.getppid() != self.server_pid:
                say("the server is gone; exiting")
                self._stop_listening()
                return 0
            for key, _ in self.sel.select(timeout=1.0):
                key.data(key.fileobj)
            if os.getpid() == 1:
                self._reap_orphans()
        say("retired, and its workers have exited")
        return 0

    def _reap_orphans(self) -> None:
        """As its sandbox's first process, the zygote inherits the orphans of its workers (a runpod
        worker's ping process): reap those that have exited, leaving its workers to `_on_exit`."""
        mine = {c.pid for c in self.children.values()}
        try:
            with open("/proc/self/task/1/children") as f:
                pids = [int(p) for p in f.read().split()]
        except OSError:
            return
        for pid in pids:
            if pid not in mine:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)

    def _listen(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            listener.bind(str(tmp))
        finally:
            os.umask(old)
        listener.listen(64)
        os.replace(tmp, self.path)
        self._inode = self.path.stat().st_ino
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, self._on_accept)

    def _stop_listening(self) -> None:
        if self.listener is None:
            return
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            if self.path.stat().st_ino == self._inode:  # not a successor's socket
                self.path.unlink()
        except FileNotFoundError:
            pass

    # -- events ---------------------------------------------------------------------------------

    def _on_signal(self, sock: Any) -> None:
        received = sock.recv(64)
        if signal.SIGTERM in received or signal.SIGINT in received:
            say(f"retiring: no more forks; {len(self.children)} worker(s) still running")
            self._stop_listening()

    def _on_accept(self, listener: Any) -> None:
        conn, _ = listener.accept()
        log = None
        try:
            conn.settimeout(10)
            line, log = _read_request(conn)
            pid = self._fork(Request.parse(line, log), conn)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            say(f"fork request failed: {type(exc).__name__}: {exc}")
            conn.close()
            return
        finally:
            if log is not None:
                os.close(log)
        child = Child(pid, os.pidfd_open(pid), conn)
        self.children[child.pidfd] = child
        self.sel.register(child.pidfd, selectors.EVENT_READ, functools.partial(self._on_exit, child))
        try:
            conn.setblocking(False)
            self.sel.register(conn, selectors.EVENT_READ, functools.partial(self._on_hangup, child))
        except OSError:  # the server gave up waiting; the worker runs on, unreported
            self._forget_conn(child)

    def _on_exit(self, child: Child, _fd: Any) -> None:
        self.sel.unregister(child.pidfd)
        os.close(child.pidfd)
        del self.children[child.pidfd]
        _, status = os.waitpid(child.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if child.conn is not None:
            try:
                child.conn.setblocking(True)
                child.conn.sendall(_json.dumpb({"exit": code}) + b"\n")
            except OSError:
                pass
            self._forget_conn(child)

    def _on_hangup(self, child: Child, conn: Any) -> None:
        try:
            if conn.recv(1):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._forget_conn(child)

    def _forget_conn(self, child: Child) -> None:
        if child.conn is None:
            return
        try:
            self.sel.unregister(child.conn)
        except KeyError:
            pass
        child.conn.close()
        child.conn = None

    # -- the fork -------------------------------------------------------------------------------

    def _fork(self, req: Request, conn: socket.socket) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            with contextlib.suppress(OSError):  # the server gave up waiting: it runs on, unreported
                conn.sendall(_json.dumpb({"pid": os.getpid()}) + b"\n")
            conn.close()
            self._become_worker(req)
        say(f"forked worker {_option(req.argv, '--worker-id')} as pid {pid}")
        return pid

    def _become_worker(self, req: Request) -> NoReturn:
        """In the child: leave the zygote behind, then run the worker's main and exit with its code."""
        runpod_file.exit_after(lambda: self._worker_main(req))

    def _worker_main(self, req: Request) -> int:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in [c.pidfd for c in self.children.values()]:
            os.close(fd)
        for sock in [self.listener, self.wake_r, self.wake_w, *(c.conn for c in self.children.values())]:
            if sock is not None:
                sock.close()
        self.sel.close()
        os.setsid()
        _redirect(req.log)
        os.environ.clear()
        os.environ.update(req.env)
        argv = _with_option(req.argv, "--parent-pid", str(os.getppid()))
        _name_process(_option(argv, "--worker-id") or "podium-worker")
        runpod_file.run_in_fork = True
        from podium.worker.__main__ import main

        sys.argv = ["podium.worker", *argv]
        return main(argv)


def _read_request(conn: socket.socket) -> tuple[bytes, int]:
    """The request line and the log file passed with it."""
    buf, fds = b"", []
    try:
        while not buf.endswith(b"\n"):
            part, got, _flags, _addr = socket.recv_fds(conn, 65536, 1)
            fds += got
            if not part:
                raise ValueError("the connection closed before a whole request arrived")
            buf += part
            if len(buf) > MAX_REQUEST:
                raise ValueError("request too large")
        if len(fds) != 1:
            raise ValueError("a fork request passes the worker's log file")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return buf, fds[0]


def _redirect(log: int) -> None:
    """stdout and stderr appended to the worker's log, stdin from /dev/null (as a spawn has it)."""
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _name_process(name: str) -> None:
    """Show the worker id as the process name (`ps -o comm`): its command line is the zygote's."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name[:15])
    except OSError:
        pass


def _option(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def _with_option(argv: list[str], name: str, value: str) -> list[str]:
    """The worker's parent is the zygote, not the server: it watches the zygote instead."""
    if name in argv[:-1]:
        i = argv.index(name)
        return [*argv[: i + 1], value, *argv[i + 2 :]]
    return argv


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m podium.worker.zygote")
    p.add_argument("--socket", required=True, type=Path)
    p.add_argument("--bundle", required=True, type=Path, help="the version's unpacked bundle")
    p.add_argument("--server-pid", type=int, help="exit when this process is gone (unboxed)")
    # Not used here: they say in `ps` whose workers this process forks.
    p.add_argument("--endpoint", required=True)
    p.add_argument("--version", required=True)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    import podium.worker.__main__  # noqa: F401 - the runtime every worker runs

    imported, failed = preimport.load(args.bundle) if args.bundle.is_dir() else ([], [])
    runpod_file.unbind()
    for reason in failed:
        say(f"not preloaded: {reason}")
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    if threads:
        say(
            f"will not fork: importing the bundle's libraries started threads ({', '.join(threads)}); "
            "its workers will be spawned"
        )
        return UNFIT
    native = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
    say(
        f"preloaded {', '.join(imported) or 'the worker runtime only'} in {time.monotonic() - t0:.2f} s"
        + (f" ({native} native threads: forks keep only this one)" if native > 1 else "")
    )
    gc.freeze()  # the children's collections leave the shared pages alone
    return Zygote(args.socket, args.server_pid).serve()


if __name__ == "__main__":
    sys.exit(main())
