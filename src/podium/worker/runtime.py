"""The worker runtime: load a version's bundle, run the initializer once, then take and run jobs.

Up to `concurrency` jobs at once: the main thread long-polls for a job whenever a slot is free and
hands it to a thread; synchronous routes run in those threads, async routes on one event loop
running in its own thread. A heartbeat thread keeps the jobs' leases alive while routes run (even
one that never yields the GIL for long) and ends the process if the server that spawned it dies.
SIGTERM: finish the jobs in hand, take no more, exit. A second SIGTERM (or SIGINT): exit at once;
the jobs come back to the queue through their leases.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import inspect
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from podium import _json, logs
from podium.bundle import extract, load_service
from podium.errors import HTTPError, PodiumError
from podium.records import Batching
from podium.sdk.context import JobContext, reset_context, set_async_runner, set_bundle_dir, set_context
from podium.sdk.service import Route, Service
from podium.source import route_shape
from podium.worker.link import LinkError, Refused, ServerLink
from podium.worker.openai_route import Completion

log = logging.getLogger("podium.worker")

#: The worker's memory limit in MB, when its sandbox sets one (podium.sandbox).
MEMORY_ENV = "PODIUM_MEMORY_MB"
#: The cores a local worker pins itself to, comma-separated (absent: not pinned; podium.scaling.cpus).
CORES_ENV = "PODIUM_CPU_CORES"


class InvalidArguments(Exception):
    """The call's arguments do not fit the route's signature."""


class BatchMismatch(Exception):
    """A batched route's result is not a list with one result per call."""


class _Stop(BaseException):
    """Raised from the signal handler to abandon a job-take that is only waiting."""


class Worker:
    """Parameters:
    link: the connection to the server.
    cache: where bundles are unpacked, one directory per version.
    ping_interval: seconds between heartbeats.
    parent_pid: exit when this process (the spawning server) is gone.
    """

    def __init__(
        self,
        link: ServerLink,
        cache: Path,
        *,
        ping_interval: float,
        parent_pid: int | None = None,
        concurrency: int = 1,
    ) -> None:
        self.link = link
        self.cache = cache
        self.ping_interval = ping_interval
        self.parent_pid = parent_pid
        self.concurrency = max(1, concurrency)
        self.service: Service | None = None
        self.defaults: dict[str, Any] = {}
        #: The service's batched routes, told to the server with each take.
        self.batches: dict[str, Batching] = {}
        self.current: set[str] = set()
        self.taking = False
        self.stopping = False
        #: Why the server told this worker to stop (its endpoint moved to another version).
        self.dismissed: str | None = None
        self.slots = threading.BoundedSemaphore(self.concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="podium-job")
        # Async routes of every job share one loop (the initializer may use it too: an ASGI app's
        # lifespan runs there), in a thread of its own so it keeps running between calls.
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True, name="podium-loop").start()
        set_async_runner(self.on_loop)

    def on_loop(self, coro: Any) -> Any:
        """Run a coroutine on the worker's loop and wait for it, in the caller's context (so
        `podium.context` and log fields follow it)."""
        ctx = contextvars.copy_context()

        async def within() -> Any:
            for var, value in ctx.items():
                var.set(value)
            return await coro

        return asyncio.run_coroutine_threadsafe(within(), self.loop).result()

    # -- start-up -------------------------------------------------------------------------------

    def fetch(self, version_id: str) -> tuple[Path, dict[str, Any]]:
        meta = self.link.get_json(f"/api/v1/versions/{version_id}")
        return unpack(self.link, self.cache, version_id), meta

    def load(self, root: Path, meta: dict[str, Any]) -> None:
        """Import a fetched bundle, check its routes against the version's, run the initializer."""
        svc = load_service(root, meta["entry"], meta["service"])
        # Their shape: what the server routes and checks by. The rest (schemas, defaults, what the
        # initializer provides) documents them, and may be read differently by another Podium or
        # from source (a service with requirements, an initializer defined in a notebook).
        if route_shape(svc.route_table()) != route_shape(meta["routes"]):
            raise RuntimeError("the bundle's routes differ from those recorded at deploy time; redeploy it")
        self.start(svc, meta)

    def start(self, svc: Service, meta: dict[str, Any]) -> None:
        """Run the initializer of a loaded service; its jobs may come from now on."""
        t0 = time.monotonic()
        self.defaults = svc.initialize(**meta["config"].get("init_kwargs", {}))
        log.info("initializer done in %.3fs; routes: %s", time.monotonic() - t0, ", ".join(svc.routes))
        self.batches = {path: r.batching for path, r in svc.routes.items() if r.batching is not None}
        self.service = svc

    # -- the loop -------------------------------------------------------------------------------

    def serve(self) -> None:
        threading.Thread(target=self._heartbeat, daemon=True, name="podium-ping").start()
        backoff = 0.1
        while not self.stopping:
            if not self.slots.acquire(timeout=0.5):  # all slots busy
                continue
            try:
                jobs = self._take()
            except _Stop:
                self.slots.release()
                break
            except LinkError as exc:
                self.slots.release()
                if isinstance(exc, Refused) and exc.status == 410:
                    self.dismissed = exc.detail
                    self.stopping = True
                    log.info("the server told this worker to stop: %s", exc.detail)
                    break
                if not exc.transient:
                    raise
                log.warning("no job from the server (%s); retrying", exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if not jobs:
                self.slots.release()
                continue
            self.current.update(job["id"] for job in jobs)
            self.pool.submit(self._run_in_slot, jobs)
        log.info("worker stopping; finishing %d jobs in hand", len(self.current))
        self.pool.shutdown(wait=True)

    def _run_in_slot(self, jobs: list[dict[str, Any]]) -> None:
        """Run jobs (one, or one batch) in this slot for as long as each result's post brings
        back more."""
        try:
            while jobs:
                ids = [job.get("id") for job in jobs]
                try:
                    jobs = self._run_some(jobs)
                except Exception:  # posting the results failed for good: the leases give them back
                    log.exception("jobs %s could not be reported", ", ".join(map(str, ids)))
                    jobs = []
        finally:
            self.slots.release()

    def _run_some(self, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            if self._route(jobs[0]).batching is None:
                bodies = {job["id"]: self.run(job) for job in jobs}
            else:
                bodies = self.run_batch(jobs)
            nxt = self.link.done(bodies, take=not self.stopping, batch=self.batches)
        finally:
            self.current.difference_update(job["id"] for job in jobs)
        self.current.update(job["id"] for job in nxt)
        return nxt

    def _take(self) -> list[dict[str, Any]]:
        """One long-poll; a stop signal during it abandons it (the server gives the jobs back)."""
        self.taking = True
        try:
            if self.stopping:
                raise _Stop()
            return self.link.take(in_progress=bool(self.current), batch=self.batches)
        finally:
            self.taking = False

    def _heartbeat(self) -> None:
        while True:
            time.sleep(self.ping_interval)
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.error("the server that started this worker is gone; exiting")
                os._exit(3)
            try:
                self.link.ping(sorted(self.current))
            except LinkError as exc:
                log.warning("ping failed: %s", exc)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            os._exit(128 + signum)
        self.stopping = True
        log.info("signal %s: finishing the current job, then exiting", signum)
        if self.taking:
            raise _Stop()

    def exit(self) -> None:
        """The worker stops (not a crash): run the service's on_exit hook once, with the
        initializer's values, for at most its exit_timeout. Its failure is logged, not retried."""
        svc = self.service
        if svc is None or svc.exit_hook is None:
            return
        hook, kwargs = svc.exit_hook, svc.exit_arguments(self.defaults)
        done = threading.Event()

        def call() -> None:
            try:
                result = hook(**kwargs)
                if inspect.isawaitable(result):
                    self.on_loop(_await(result))
                log.info("on_exit hook done")
            except Exception:
                log.exception("the on_exit hook failed (it is not retried)")
            finally:
                done.set()

        threading.Thread(target=call, daemon=True, name="podium-exit").start()
        if not done.wait(svc.config.exit_timeout):
            log.error("the on_exit hook did not finish within %gs (exit_timeout); exiting", svc.config.exit_timeout)

    # -- one job --------------------------------------------------------------------------------

    def _route(self, job: dict[str, Any]) -> Route:
        assert self.service is not None
        meta = job.get("podium") or {}
        return self.service.routes.get(meta.get("route", "")) or self.service.default_route

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job; returns the body its job-done post carries."""
        route = self._route(job)
        meta = job.pop("podium", {}) or {}
        job_id = job["id"]
        ctx = JobContext(
            job_id=job_id,
            attempt=int(meta.get("attempt", 1)),
            route=route.path,
            report=lambda value: self.link.progress(job_id, value),
            env=job.get("env") or {},
        )
        token = set_context(ctx)
        try:
            with logs.job_fields(job_id=job_id, attempt=ctx.attempt):
                body = self._call(route, job)
        finally:
            reset_context(token)
        return _sendable(body)

    def run_batch(self, jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Run the jobs of one batched route at once; returns each job's job-done body.

        Each call's arguments are checked alone (one that does not fit fails alone); the route
        is called once with the others. The batch's context is its first job's, its progress
        goes to every job, its per-request `env` is theirs when they all agree.
        """
        route = self._route(jobs[0])
        bodies: dict[str, dict[str, Any]] = {}
        calls: list[tuple[dict[str, Any], Any]] = []
        for job in jobs:
            job.pop("podium", None)
            if route.kind == "handler":
                calls.append((job, job))
                continue
            try:
                calls.append((job, self._all_arguments(route, job.get("input") or {})))
            except InvalidArguments as exc:
                bodies[job["id"]] = self._error(exc)
        if calls:
            ids = [job["id"] for job, _ in calls]
            envs = [job.get("env") or {} for job, _ in calls]
            ctx = JobContext(
                job_id=ids[0],
                attempt=1,
                route=route.path,
                report=lambda value: self._progress(ids, value),
                env=envs[0] if all(env == envs[0] for env in envs) else {},
            )
            token = set_context(ctx)
            try:
                with logs.job_fields(job_id=",".join(ids), attempt=1):
                    results = self._call_batch(route, [args for _, args in calls])
            finally:
                reset_context(token)
            for job_id, body in zip(ids, results, strict=True):
                bodies[job_id] = _sendable(body)
        return bodies

    def _progress(self, job_ids: list[str], value: Any) -> None:
        for job_id in job_ids:
            self.link.progress(job_id, value)

    def _call_batch(self, route: Route, calls: list[Any]) -> list[dict[str, Any]]:
        """The route called once for `calls` (jobs, or each call's arguments by name): each
        call's body, or the same error for all."""
        try:
            if route.kind == "handler":
                result = route.func(calls)
            else:
                result = route.func(**{name: [args[name] for args in calls] for name in calls[0]})
            if inspect.isawaitable(result):
                result = self.on_loop(_await(result))
            if not isinstance(result, list | tuple) or len(result) != len(calls):
                got = f"{len(result)} results" if isinstance(result, list | tuple) else f"a {type(result).__name__}"
                raise BatchMismatch(
                    f"batched route {route.path} returned {got} for a batch of {len(calls)} calls; "
                    "it must return a list with one result per call, in order"
                )
            return [{"output": output} for output in result]
        except MemoryError as exc:
            return [self._out_of_memory(exc)] * len(calls)
        except Exception as exc:  # the route's failure is every call's result
            body = self._error(exc)
            assert self.service is not None
            if not isinstance(exc, BatchMismatch) and self.service.config.retryable(exc):
                body["retryable"] = True
            return [dict(body) for _ in calls]

    def _call(self, route: Route, job: dict[str, Any]) -> dict[str, Any]:
        try:
            kwargs: dict[str, Any] = {}
            openai = Completion(route, job.get("input")) if route.openai else None
            if route.kind == "handler":
                args: tuple[Any, ...] = (job,)
            elif route.kind == "http":
                args = (job.get("input") or {},)
            else:
                given = openai.arguments if openai is not None else job.get("input") or {}
                args, kwargs = (), self._arguments(route, given)
            result = route.func(*args, **kwargs)
            if inspect.isgenerator(result):
                for item in result:
                    self._post(job["id"], item, openai)
                result = None
            elif inspect.isasyncgen(result):
                self.on_loop(self._drain_async(job["id"], result, openai))
                result = None
            elif inspect.isawaitable(result):
                result = self.on_loop(_await(result))
            if openai is not None:
                return {"output": self._openai_output(job["id"], openai, route, result)}
            return {"output": result}
        except MemoryError as exc:
            return self._out_of_memory(exc)
        except HTTPError as exc:  # the route's answer: its status and message, not a bug's traceback
            log.info("route answered %d: %s", exc.status_code, exc.detail)
            info = {"type": type(exc).__name__, "message": exc.detail, "status": exc.status_code}
            return {"error": exc.detail, "error_info": info}
        except Exception as exc:  # the route's failure is the job's result
            body = self._error(exc)
            assert self.service is not None
            if not isinstance(exc, InvalidArguments) and self.service.config.retryable(exc):
                body["retryable"] = True
            return body

    async def _drain_async(self, job_id: str, gen: Any, openai: Completion | None) -> None:
        async for item in gen:
            # Posting blocks: off the loop, so other jobs' async routes keep running meanwhile.
            await asyncio.to_thread(self._post, job_id, item, openai)

    def _post(self, job_id: str, item: Any, openai: Completion | None) -> None:
        """A yielded value as stream chunks; an OpenAI route's text as its OpenAI chunk."""
        if openai is None:
            for piece in _pieces(item):
                self.link.chunk(job_id, piece)
        elif (chunk := openai.delta(item)) is not None:
            self.link.chunk(job_id, chunk)

    def _openai_output(self, job_id: str, openai: Completion, route: Route, result: Any) -> dict[str, Any]:
        """An OpenAI route's output: its embeddings, or (its stream ended) its whole completion."""
        if route.path == "/v1/embeddings":
            return openai.embeddings(result)
        if result is not None:  # a route that returned its whole text
            self._post(job_id, result, openai)
        if (last := openai.last()) is not None:
            self.link.chunk(job_id, last)
        return openai.whole()

    def _arguments(self, route: Route, given: dict[str, Any]) -> dict[str, Any]:
        kwargs = {k: v for k, v in self.defaults.items() if route.accepts(k)}
        kwargs.update(given)
        try:
            inspect.signature(route.func).bind(**kwargs)
            return route.coerce(kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidArguments(f"{route.path}: {exc}") from None

    def _all_arguments(self, route: Route, given: dict[str, Any]) -> dict[str, Any]:
        """One call's value of every parameter (its defaults filled in): its column of a batch."""
        bound = inspect.signature(route.func).bind(**self._arguments(route, given))
        bound.apply_defaults()
        return dict(bound.arguments)

    def _out_of_memory(self, exc: MemoryError) -> dict[str, Any]:
        """A job over the worker's memory limit fails with an error that says so, and the worker
        leaves after reporting it (what the failed allocation left behind is not to be trusted):
        the autoscaler starts another."""
        body = self._error(exc)
        limit = os.environ.get(MEMORY_ENV)
        if limit:
            body["error"] = f"the worker exceeded its memory limit of {limit} MB"
            body["error_info"]["message"] = body["error"]
        self.stopping = True
        return body

    @staticmethod
    def _error(exc: BaseException) -> dict[str, Any]:
        tb = "".join(traceback.format_exception(exc))
        log.error("route failed: %s", tb)
        name = type(exc).__name__
        return {
            "error": f"{name}: {exc}",
            "error_info": {"type": name, "message": str(exc), "traceback": tb},
        }


def unpack(link: ServerLink, cache: Path, version_id: str) -> Path:
    """The version's bundle, unpacked under `cache` unless it already is (by another worker, or
    by the server before it started this one in a sandbox that shows it read-only)."""
    target = cache / version_id
    if not target.exists():
        data = link.get_bytes(f"/api/v1/versions/{version_id}/bundle")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".unpack-"))
        extract(data, tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another worker unpacked it first
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _sendable(body: dict[str, Any]) -> dict[str, Any]:
    """A job-done body that JSON can carry; a result it cannot fails the job, saying so."""
    try:
        if "output" in body:
            body["output"] = to_jsonable_python(body["output"])
        _json.dumps(body)
    except (TypeError, PydanticSerializationError) as exc:
        body = Worker._error(TypeError(f"the route's result is not JSON-serializable: {exc}"))
    return body


async def _await(awaitable: Any) -> Any:
    return await awaitable


#: The most of a yielded bytes or text value one stream chunk carries: under the server's 1 MB per
#: chunk once base64 (bytes, 4/3) or JSON-escaped (text, up to 6 bytes a character) encoded.
BYTES_PER_CHUNK = 512 * 1024
CHARS_PER_CHUNK = 128 * 1024


def _pieces(item: Any) -> list[Any]:
    """A yielded value as the stream chunks that carry it. Bytes and text larger than one chunk
    go in several, which read back as the same bytes or text (a whole answer of an HTTP app, a
    long string); any other value is one chunk (past the limit, its job fails saying so)."""
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        return [
            {"$bytes": base64.b64encode(data[i : i + BYTES_PER_CHUNK]).decode()}
            for i in range(0, max(len(data), 1), BYTES_PER_CHUNK)
        ]
    if isinstance(item, str) and len(item) > CHARS_PER_CHUNK:
        return [item[i : i + CHARS_PER_CHUNK] for i in range(0, len(item), CHARS_PER_CHUNK)]
    return [item]


def user_traceback(exc: BaseException) -> str:
    """The traceback of a service's failure as its author needs it: the service's frames and its
    libraries', without Podium's own or the import machinery's; a Podium error that wraps the
    service's (BundleError: importing app.py failed) shows the one it wraps."""
    if isinstance(exc, PodiumError) and exc.__cause__ is not None:
        exc = exc.__cause__
    shown = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo = [shown]
    while todo:
        te = todo.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list([f for f in te.stack if _users(f.filename)])
        todo += [t for t in (te.__cause__, te.__context__) if t is not None]
    return "".join(shown.format())


_PODIUM_DIR = str(Path(__file__).resolve().parent.parent) + os.sep


def _users(filename: str) -> bool:
    return not (filename.startswith(_PODIUM_DIR) or filename.startswith("<frozen "))


def pin_cores() -> None:
    """Pin this process to the cores its backend chose (CORES_ENV), while it has one thread:
    threads started later inherit it. Without that setting, or where the kernel refuses, not."""
    value = os.environ.get(CORES_ENV)
    if not value or not hasattr(os, "sched_setaffinity"):
        return
    try:
        os.sched_setaffinity(0, {int(c) for c in value.split(",")})
    except (ValueError, OSError) as exc:
        log.warning("cannot pin this worker to cores %s: %s", value, exc)


def enter_bundle(root: Path) -> None:
    """Run in the bundle's directory, so a file shipped beside the service opens by its name;
    `podium.context.bundle_dir` names it too."""
    os.chdir(root)
    set_bundle_dir(root.resolve())


def install_signals(worker: Worker) -> None:
    signal.signal(signal.SIGTERM, worker.on_signal)
    signal.signal(signal.SIGINT, worker.on_signal)
