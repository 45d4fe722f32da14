"""The server's environment builds: at most one per environment at a time, however many versions,
endpoints or workers wait for it, run off the event loop while calls keep being served."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from podium.envs.builder import SERVER_PYTHON, EnvBuildError, EnvStore, Interpreter
from podium.envs.requirements import Requirements
from podium.store.catalog import Catalog
from podium.store.records import Version
from podium.store.versions import BuildState

log = logging.getLogger("podium.envs")


@dataclass(frozen=True)
class EnvStatus:
    """Whether a version's workers may start: `interpreter` once its environment is ready."""

    state: str
    interpreter: Interpreter | None = None
    error: str | None = None


READY_ON_SERVER = EnvStatus(BuildState.READY, SERVER_PYTHON)


class Builds:
    """Parameters:
    store: the environments on disk.
    catalog: where versions record their build state.
    on_done: called (on the event loop) when a build ends, to start the waiting workers.
    """

    def __init__(self, store: EnvStore, catalog: Catalog, on_done: Callable[[], None]) -> None:
        self.store = store
        self.catalog = catalog
        self.on_done = on_done
        self._running: dict[str, asyncio.Future[Interpreter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def close(self) -> None:
        """The server stops: kill the builds underway (their process groups), which the next start
        builds again; their versions are not marked failed."""
        self._closed = True
        self.store.steps.kill()

    def building(self, key: str) -> bool:
        return key in self._running

    async def deployed(self, version: Version) -> bool:
        """A version was deployed: True when its environment must be built first (the build is
        started, or restarted after an earlier failure)."""
        key = version.env_hash
        if key is None:
            return False
        if self.store.ready(key):
            await self.catalog.finish_build(key, BuildState.READY)
            return False
        await self.catalog.start_build(version.id)
        self._start(key, Requirements.from_dict(version.requirements), version.id)
        return True

    async def status(self, project_id: str, version_id: str) -> EnvStatus:
        """Ready (with the interpreter), building (started here if nobody builds it), or failed."""
        info = await self.catalog.cached_version(project_id, version_id)
        key = info.env_hash
        if key is None:
            return READY_ON_SERVER
        found = self.store.interpreter(key)
        if found is not None:
            return EnvStatus(BuildState.READY, replace(found, requirements=Requirements.from_dict(info.requirements)))
        if key not in self._running:
            version = await self.catalog.get_version(project_id, version_id)
            if version is not None and version.build_state == BuildState.FAILED:
                return EnvStatus(BuildState.FAILED, error=version.build_error)
            # Never built here, removed by `envs gc`, or cut short by a restart: build it now.
            await self.catalog.start_build(version_id)
            self._start(key, Requirements.from_dict(info.requirements), version_id)
        return EnvStatus(BuildState.BUILDING)

    def _start(self, key: str, reqs: Requirements, version_id: str) -> None:
        """Build `key` for this version (its log names it), unless a build of it is underway."""
        if key in self._running:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Interpreter] = loop.create_future()
        self._running[key] = done

        def report(settle: Callable[[], None]) -> None:
            with contextlib.suppress(RuntimeError):  # the server closed its loop meanwhile
                loop.call_soon_threadsafe(settle)

        def work() -> None:
            try:
                found = self.store.build(key, reqs, version_id)
            except BaseException as exc:  # noqa: BLE001 - whatever it was, the loop hears of it
                failure = exc
                report(lambda: done.set_exception(failure))
            else:
                report(lambda: done.set_result(found))

        # A daemon thread: a server that stops mid-build does not wait for the installer.
        threading.Thread(target=work, daemon=True, name=f"podium-env-{key[:8]}").start()
        log.info("building environment %s (%s)", key, ", ".join(reqs.packages) or "no packages")
        task = asyncio.create_task(self._finish(key, done))
        # The loop keeps only weak references to tasks: hold this one until it is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self, key: str, done: asyncio.Future[Interpreter]) -> None:
        try:
            await done
        except EnvBuildError as exc:
            if self._closed:
                return
            log.error("environment %s failed to build: %s", key, exc.message.splitlines()[0])
            await self.catalog.finish_build(key, BuildState.FAILED, exc.message)
        except Exception as exc:
            log.exception("environment %s failed to build", key)
            await self.catalog.finish_build(key, BuildState.FAILED, f"{type(exc).__name__}: {exc}")
        else:
            log.info("environment %s is ready", key)
            await self.catalog.finish_build(key, BuildState.READY)
        finally:
            self._running.pop(key, None)
            self.on_done()
