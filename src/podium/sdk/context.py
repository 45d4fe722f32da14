"""`podium.context`: what a running route may know about its job.

The worker sets a :class:`JobContext` in a context variable around each call, so the same module-level
``podium.context`` object answers correctly in threads and in asyncio tasks running different jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podium.errors import PodiumError


@dataclass(frozen=True)
class JobContext:
    """The job a route is running: its id, which attempt this is, and how to report progress."""

    job_id: str
    attempt: int
    route: str
    report: Callable[[Any], None] = field(repr=False)
    #: The request's `env` (never stored once the job ends; kept out of repr, it may hold secrets).
    env: dict[str, str] = field(default_factory=dict, repr=False)


_current: ContextVar[JobContext | None] = ContextVar("podium_job", default=None)
#: The unpacked bundle this worker runs (its current directory too), set once it is loaded.
_bundle_dir: Path | None = None


class _ContextProxy:
    """Module-level accessor; raises a clear error when used outside a running route."""

    def _get(self) -> JobContext:
        ctx = _current.get()
        if ctx is None:
            raise PodiumError("podium.context is only available while a route is running on a worker")
        return ctx

    @property
    def bundle_dir(self) -> Path:
        """The directory the service's files were shipped to (the worker's current directory):
        known from the import of the service on, the initializer included."""
        if _bundle_dir is None:
            raise PodiumError("podium.context.bundle_dir is only known in a worker running a bundle")
        return _bundle_dir

    @property
    def job_id(self) -> str:
        return self._get().job_id

    @property
    def attempt(self) -> int:
        return self._get().attempt

    @property
    def route(self) -> str:
        return self._get().route

    @property
    def env(self) -> dict[str, str]:
        """The `env` the caller sent with this job ({} when none)."""
        return self._get().env

    def progress(self, value: Any) -> None:
        """Publish a progress update; callers see it as `output` while the job is IN_PROGRESS."""
        self._get().report(value)


context = _ContextProxy()


_async_runner: Callable[[Coroutine[Any, Any, Any]], Any] | None = None


def set_async_runner(runner: Callable[[Coroutine[Any, Any, Any]], Any] | None) -> None:
    """The worker's way to run a coroutine on its event loop (see :func:`run_async`)."""
    global _async_runner
    _async_runner = runner


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion from synchronous code: on the worker's loop inside a worker
    (so what it starts, like an ASGI app's lifespan, lives on), else on a fresh loop."""
    if _async_runner is not None:
        return _async_runner(coro)
    return asyncio.run(coro)


def set_bundle_dir(path: Path) -> None:
    global _bundle_dir
    _bundle_dir = path


def set_context(ctx: JobContext | None) -> Token[JobContext | None]:
    return _current.set(ctx)


def reset_context(token: Token[JobContext | None]) -> None:
    _current.reset(token)
