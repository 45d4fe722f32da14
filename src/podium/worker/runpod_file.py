"""Unmodified RunPod workers, run as they are (`podium.runpod_source` recognises one at deploy).

A worker process runs the file itself, with the `RUNPOD_*` environment the runpod package reads at
import (RUNPOD.md 3.1) pointed at this server, under a small supervisor that stops the whole
process group when the server goes away.

A worker forked from its version's pre-imported parent (`podium.worker.zygote`) runs the file in a
fork of itself instead of a new interpreter, so the runpod package and the file's libraries are
already imported; `unbind` drops what of the runpod package reads the worker's identity at import.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import runpy
import select
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

#: RunPod's fitness checks want 4 GB free memory, a GPU and a route to 8.8.8.8: not ours to impose.
#: prctl(2): the signal a process gets when its parent dies.
PR_SET_PDEATHSIG = 1
SKIP_CHECKS = {"RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}
#: Modules of the runpod package a forked worker keeps: they read no environment at import, and
#: rp_debugger's import asks cpuinfo about the CPU in a subprocess (a second of a cold start).
KEEP_LOADED = frozenset({"runpod.serverless.utils.rp_debugger"})

#: Set in a worker forked from a pre-imported parent: run the file in a fork of this process.
run_in_fork = False


def environment(*, url: str, endpoint_id: str, worker_id: str, token: str, ping_interval: float) -> dict[str, str]:
    """The `RUNPOD_*` variables that make the runpod package talk to this server as this worker.

    Templates carry `?gpu=cpu` because the SDK appends `&name=value` to them.
    """
    base = f"{url}/v2/{endpoint_id}"
    return {
        "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=cpu",
        "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID",
        # In ms, and read as whole seconds: under 1000 it would ping in a busy loop.
        "RUNPOD_PING_INTERVAL": str(max(1000, int(ping_interval * 1000))),
        "RUNPOD_AI_API_KEY": token,
        "RUNPOD_POD_ID": worker_id,
        "RUNPOD_ENDPOINT_ID": endpoint_id,
        "RUNPOD_POD_HOSTNAME": f"{worker_id}-podium",
        **SKIP_CHECKS,
    }


def supervise(root: Path, entry: str, env: dict[str, str], parent_pid: int | None) -> int:
    """Run `python <entry>` in `root` and wait for it.

    SIGTERM is passed on (the runpod worker finishes the job it holds, then exits). When the server
    that spawned us is gone, or when we leave, the whole process group is killed: the runpod
    package pings from a child process that would otherwise outlive its worker.
    """
    child: subprocess.Popen[bytes] | Forked
    if run_in_fork:
        child = Forked(root, entry, env)
    else:
        child = subprocess.Popen(
            [sys.executable, entry],
            cwd=root,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while True:
            try:
                return child.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if parent_pid is not None and not _alive(parent_pid):
                    return 1
    finally:
        _kill_group()


def die_with_parent(parent: int) -> None:
    """In a child about to run the worker file: the kernel kills it when its supervisor (`parent`)
    dies, however it dies (even SIGKILL, when `finally` does not run); the runpod package would
    otherwise poll a server for ever. Linux only."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before the request was in place
            os._exit(1)


def _alive(parent_pid: int) -> bool:
    """An orphan is adopted by another process, so our parent's pid changes when it dies."""
    return os.getppid() == parent_pid


def _kill_group() -> None:
    """Stop every other process of our group (the worker's ping process, stray children)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(os.getpgid(0), signal.SIGTERM)


def unbind() -> None:
    """Forget the runpod package's modules (but KEEP_LOADED), in a parent that forks workers.

    Its modules read the worker's id and URLs from the environment when imported (worker_state,
    rp_job, rp_http): each forked worker imports them again, with its own environment, in a few
    milliseconds, since the libraries they use (aiohttp, paramiko, ...) stay loaded.
    """
    for name in [n for n in sys.modules if n == "runpod" or n.startswith("runpod.")]:
        if name not in KEEP_LOADED:
            del sys.modules[name]


class Forked:
    """The worker file run by a fork of this process, with the part of Popen's face supervise uses."""

    def __init__(self, root: Path, entry: str, env: dict[str, str]) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            die_with_parent(parent)
            _run_file(root, entry, env)
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = os.pidfd_open(pid)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            ready, _, _ = select.select([self._pidfd], [], [], timeout)
            if not ready:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            os.close(self._pidfd)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # exited, not yet waited for
                signal.pidfd_send_signal(self._pidfd, sig)


def _run_file(root: Path, entry: str, env: dict[str, str]) -> NoReturn:
    """In the fork: what `python <entry>` in `root` does, then exit without unwinding into the
    supervisor's frames."""

    def run() -> None:
        # As in a new interpreter: default signal handling (the supervisor's forwards), plain output
        # and no logging set up (the supervisor's is JSON lines).
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        logging.root.handlers.clear()
        os.chdir(root)
        os.environ.update(env)
        sys.path[0] = str(root)
        sys.argv = [entry]
        runpy.run_path(entry, run_name="__main__")

    exit_after(run)


def exit_after(body: Callable[[], int | None]) -> NoReturn:
    """In a forked child: run `body`, then exit with the status an interpreter would give (its
    return value, a SystemExit's code, 1 after an uncaught exception, printed), never returning
    into the frames the parent process was in."""
    code = 1
    try:
        code = body() or 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like an uncaught exception, then exit 1
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
