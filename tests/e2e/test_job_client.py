"""podium.client.jobs and podium.aio against a real Podium server, plus a scripted loopback server
for what a real one will not do on demand (503s, hanging answers)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SERVICES
from podium import aio
from podium.client.jobs import POLL_FIRST, Call, Endpoint, Job, JobFailed, JobTimeout, Sleep, Steps, wait_ms
from podium.errors import APIError, ConfigError, PodiumError
from server import PodiumServer, free_port, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PodiumServer, str]]:
    """One server: rp.py as `jc` (one worker, so jobs can be made to queue), rpstream.py as `jcstream`."""
    with PodiumServer(tmp_path_factory.mktemp("jobclient-home")) as server:
        eid = server.deploy(SERVICES / "rp.py", "jc")["endpoint_id"]
        server.deploy(SERVICES / "rpstream.py", "jcstream")
        yield server, eid


@pytest.fixture
def ep(srv: tuple[PodiumServer, str]) -> Iterator[Endpoint]:
    with Endpoint("jc", url=srv[0].url, api_key=srv[0].key) as endpoint:
        yield endpoint


@pytest.fixture
def stream_ep(srv: tuple[PodiumServer, str]) -> Iterator[Endpoint]:
    with Endpoint("jcstream", url=srv[0].url, api_key=srv[0].key) as endpoint:
        yield endpoint


@contextmanager
def blocked(ep: Endpoint, tmp_path: Path) -> Iterator[Job]:
    """Occupy the endpoint's only worker with a job until the block ends (then it completes)."""
    marker = str(tmp_path / "blocker")
    job = ep.run({"marker": marker, "block": True})
    try:
        wait_until(lambda: Path(marker + ".started").exists(), 30, what="the blocking job to start")
        yield job
    finally:
        Path(marker + ".release").touch()
        job.output(timeout=30)


# -- against the real server -------------------------------------------------------------------


def test_run_then_status_and_output(ep: Endpoint) -> None:
    job = ep.run({"value": 2})
    assert job.output(timeout=30)["value"] == 2
    assert job.status() == "COMPLETED"
    assert job == Job(ep, job.id)


def test_run_sync_returns_the_output(ep: Endpoint) -> None:
    assert ep.run_sync({"value": "hi"}, timeout=30)["value"] == "hi"


def test_run_sync_of_a_failing_job_raises_job_failed_with_the_remote_error(ep: Endpoint) -> None:
    with pytest.raises(JobFailed) as info:
        ep.run_sync({"fail": "the remote says boom"}, timeout=30)
    exc = info.value
    assert exc.status == "FAILED" and exc.job_id.startswith("sync-")
    assert "the remote says boom" in str(exc.error) and exc.job_id in str(exc)


def test_a_failed_job_retried_fails_again_under_the_same_id(ep: Endpoint) -> None:
    job = ep.run({"fail": "nope"})
    with pytest.raises(JobFailed, match="nope"):
        job.output(timeout=30)
    assert job.retry() == "IN_QUEUE"
    with pytest.raises(JobFailed) as info:
        job.output(timeout=30)
    assert info.value.job_id == job.id


def test_stream_yields_each_chunk_in_order(stream_ep: Endpoint) -> None:
    job = stream_ep.run({"n": 5})
    assert list(job.stream(timeout=30)) == [{"i": i} for i in range(5)]
    assert job.status() == "COMPLETED"


def test_stream_of_a_failing_job_raises_job_failed(ep: Endpoint) -> None:
    job = ep.run({"fail": "no chunks for you"})
    with pytest.raises(JobFailed, match="no chunks for you"):
        list(job.stream(timeout=30))


def test_cancel_a_queued_job(ep: Endpoint, tmp_path: Path) -> None:
    with blocked(ep, tmp_path):
        queued = ep.run({"value": "never"})
        assert queued.status() == "IN_QUEUE"
        assert queued.cancel() == "CANCELLED"
    with pytest.raises(JobFailed) as info:
        queued.output(timeout=10)
    assert info.value.status == "CANCELLED"


def test_waits_end_with_job_timeout_naming_the_job(ep: Endpoint, tmp_path: Path) -> None:
    with blocked(ep, tmp_path) as busy:
        started = time.monotonic()
        with pytest.raises(JobTimeout, match=busy.id) as info:
            busy.output(timeout=0.5)
        assert time.monotonic() - started >= 0.5, "the wait lasted its time-out"
        assert info.value.job_id == busy.id and isinstance(info.value, TimeoutError)
        # run_sync's wait is clamped up to 1 s; the job is queued behind `busy` all that time.
        with pytest.raises(JobTimeout, match=r"job sync-\S+ is still IN_QUEUE after 0.2 s") as late:
            ep.run_sync({"value": "late"}, timeout=0.2)
        assert Job(ep, str(late.value.job_id)).cancel() == "CANCELLED"  # not left to run later


def test_health_counts_jobs(ep: Endpoint) -> None:
    before = ep.health()
    ep.run_sync({"value": 1}, timeout=30)
    after = ep.health()
    assert after["jobs"]["completed"] == before["jobs"]["completed"] + 1
    assert {"inQueue", "inProgress", "failed", "retried"} <= set(after["jobs"])
    assert {"idle", "running"} <= set(after["workers"])


def test_purge_queue_counts_the_removed_jobs(ep: Endpoint, tmp_path: Path) -> None:
    with blocked(ep, tmp_path):
        queued = [ep.run({"value": i}) for i in range(3)]
        assert ep.purge_queue() == 3
        assert [j.status() for j in queued] == ["CANCELLED"] * 3
        assert ep.purge_queue() == 0


def test_an_endpoint_by_name_or_by_id(srv: tuple[PodiumServer, str]) -> None:
    server, eid = srv
    for ref in ("jc", eid):
        with Endpoint(ref, url=server.url, api_key=server.key) as endpoint:
            assert endpoint.run_sync({"value": ref}, timeout=30)["value"] == ref


def test_a_wrong_key_is_a_clear_401(srv: tuple[PodiumServer, str]) -> None:
    with Endpoint("jc", url=srv[0].url, api_key="wrong") as endpoint:
        with pytest.raises(APIError, match="invalid API key") as info:
            endpoint.run({"value": 1})
    assert info.value.status_code == 401


def test_an_unknown_endpoint_is_a_404(srv: tuple[PodiumServer, str]) -> None:
    with Endpoint("no-such-endpoint", url=srv[0].url, api_key=srv[0].key) as endpoint:
        with pytest.raises(APIError) as info:
            endpoint.health()
    assert info.value.status_code == 404


# -- without a server ---------------------------------------------------------------------------


def test_an_unreachable_server_is_a_config_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Endpoint("x", url=url, api_key="k", retries=1) as endpoint:
        with pytest.raises(ConfigError, match=f"cannot reach Podium at {url}"):
            endpoint.health()
        with pytest.raises(ConfigError, match="cannot reach Podium"):
            endpoint.run({})


def test_no_key_anywhere_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PODIUM_API_KEY", raising=False)
    monkeypatch.setenv("PODIUM_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="no API key"):
        Endpoint("x", url="http://127.0.0.1:1")


def test_wait_is_clamped_to_what_runsync_accepts() -> None:
    assert [wait_ms(t) for t in (0.2, 1, 90, 300, 10_000)] == [1000, 1000, 90_000, 300_000, 300_000]


def test_a_job_waiting_for_a_worker_is_polled_again_after_its_retry_after() -> None:
    """The poll plan, stepped by hand: a status answered with Retry-After (a job waiting for a
    worker to start) is asked again after that long, not after the quick first pauses."""
    ep = Endpoint("e", url="http://127.0.0.1:1", api_key="k")
    steps = Steps(ep._output_plan("j", None))
    waiting = {
        "id": "j",
        "status": "IN_QUEUE",
        "waiting": {"reason": "starting", "detail": "a worker of e is starting", "since": 1.0},
    }
    answers = [
        httpx.Response(200, json=waiting, headers={"Retry-After": "1"}),
        httpx.Response(200, json={"id": "j", "status": "IN_PROGRESS"}),
        httpx.Response(200, json={"id": "j", "status": "COMPLETED", "output": 7}),
    ]
    pauses = []
    for step in steps:
        if isinstance(step, Call):
            steps.reply(answers.pop(0))
        elif isinstance(step, Sleep):
            pauses.append(step.seconds)
        else:
            assert step.value == 7
            break
    assert pauses == [1.0, POLL_FIRST * 2]
    ep.close()


Respond = Callable[[str, str], tuple[int, Any, dict[str, str]]]


class Stub:
    """A loopback HTTP server that answers from `respond(method, path_with_query)` and keeps a log."""

    def __init__(self, respond: Respond) -> None:
        self.log: list[str] = []
        self.release = threading.Event()  # ends any answer `respond` is holding back
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stub.log.append(f"{self.command} {self.path}")
                status, body, headers = respond(self.command, self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = answer

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def stub() -> Iterator[Callable[[Respond], Stub]]:
    made: list[Stub] = []

    def make(respond: Respond) -> Stub:
        made.append(Stub(respond))
        return made[-1]

    yield make
    for s in made:
        s.close()


HEALTHY = {"jobs": {"completed": 7}, "workers": {"idle": 1}}


def unavailable_twice() -> Respond:
    """503 (the first asking to wait 1 s) for the first two requests, then 200 HEALTHY."""
    count = iter(range(1_000))

    def respond(method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        n = next(count)
        if n < 2:
            return 503, {"error": "unavailable", "detail": "try later"}, {"Retry-After": "1"} if n == 0 else {}
        return 200, HEALTHY, {}

    return respond


def test_idempotent_calls_are_retried_on_503_and_run_is_not(stub: Callable[[Respond], Stub]) -> None:
    s = stub(unavailable_twice())
    with Endpoint("x", url=s.url, api_key="k") as endpoint:
        started = time.monotonic()
        assert endpoint.health() == HEALTHY
        assert s.log == ["GET /v2/x/health"] * 3
        assert time.monotonic() - started >= 1.0  # Retry-After was honoured
    s = stub(unavailable_twice())
    with Endpoint("x", url=s.url, api_key="k") as endpoint:
        with pytest.raises(APIError) as info:
            endpoint.run({"value": 1})
    assert info.value.status_code == 503 and s.log == ["POST /v2/x/run"]


def test_a_request_timeout_names_the_call(stub: Callable[[Respond], Stub]) -> None:
    holder: list[Stub] = []

    def slow(method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        holder[0].release.wait(5)
        return 200, {"id": "j", "status": "IN_QUEUE"}, {}

    holder.append(stub(slow))
    with Endpoint("x", url=holder[0].url, api_key="k", timeout=0.3) as endpoint:
        with pytest.raises(JobTimeout, match=r"^POST /v2/x/run timed out after 0.3 s$"):
            endpoint.run({"value": 1})
    assert holder[0].log == ["POST /v2/x/run"]  # a read timeout is not retried


def test_run_sync_goes_on_polling_status_after_the_wait(stub: Callable[[Respond], Stub]) -> None:
    polls = iter(["IN_QUEUE", "IN_PROGRESS", "COMPLETED"])

    def respond(method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        if path.startswith("/v2/x/runsync"):
            return 200, {"id": "j1", "status": "IN_QUEUE"}, {}
        status = next(polls)
        return 200, {"id": "j1", "status": status, **({"output": [1]} if status == "COMPLETED" else {})}, {}

    s = stub(respond)
    with Endpoint("x", url=s.url, api_key="k") as endpoint:
        assert endpoint.run_sync({"value": 1}, timeout=1000) == [1]
    assert s.log == ["POST /v2/x/runsync?wait=300000"] + ["GET /v2/x/status/j1"] * 3


def test_only_calls_that_never_reached_the_server_are_retried_for_run() -> None:
    log: list[str] = []
    failures = iter([httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.ReadError("reset")])

    def handler(request: httpx.Request) -> httpx.Response:
        log.append(f"{request.method} {request.url.path}")
        exc = next(failures, None)
        if exc is not None:
            raise exc
        return httpx.Response(200, json={"id": "j1", "status": "COMPLETED", "output": 5})

    with Endpoint("x", url="http://podium.test", api_key="k", transport=httpx.MockTransport(handler)) as endpoint:
        with pytest.raises(PodiumError, match="POST /v2/x/run failed: ReadError"):
            endpoint.run({})  # connect error: sent again; read error: the job may exist, so not
        assert Job(endpoint, "j1").output(timeout=5) == 5  # status is safe to ask again after a read error
    assert log == ["POST /v2/x/run", "POST /v2/x/run", "GET /v2/x/status/j1", "GET /v2/x/status/j1"]


# -- podium.aio ---------------------------------------------------------------------------------


@pytest.fixture
async def aep(srv: tuple[PodiumServer, str]) -> Any:
    async with aio.Endpoint("jc", url=srv[0].url, api_key=srv[0].key) as endpoint:
        yield endpoint


async def test_aio_run_status_output_and_run_sync(aep: aio.Endpoint) -> None:
    job = await aep.run({"value": "async"})
    assert (await job.output(timeout=30))["value"] == "async"
    assert await job.status() == "COMPLETED"
    assert (await aep.run_sync({"value": 3}, timeout=30))["value"] == 3
    with pytest.raises(JobFailed, match="async boom"):
        await aep.run_sync({"fail": "async boom"}, timeout=30)


async def test_aio_stream(srv: tuple[PodiumServer, str]) -> None:
    async with aio.Endpoint("jcstream", url=srv[0].url, api_key=srv[0].key) as endpoint:
        job = await endpoint.run({"n": 4})
        assert [chunk async for chunk in job.stream(timeout=30)] == [{"i": i} for i in range(4)]


async def test_aio_cancel_timeout_health_and_purge(aep: aio.Endpoint, ep: Endpoint, tmp_path: Path) -> None:
    before = await aep.health()
    with blocked(ep, tmp_path) as busy:
        with pytest.raises(JobTimeout, match=busy.id):
            await aio.Job(aep, busy.id).output(timeout=0.3)
        queued = await aep.run({"value": "never"})
        assert await queued.cancel() == "CANCELLED"
        await aep.run({"value": "purged"})
        assert await aep.purge_queue() == 1
    after = await aep.health()
    assert after["jobs"]["completed"] == before["jobs"]["completed"] + 1


async def test_aio_wrong_key_and_unreachable(srv: tuple[PodiumServer, str]) -> None:
    async with aio.Endpoint("jc", url=srv[0].url, api_key="wrong") as endpoint:
        with pytest.raises(APIError, match="invalid API key"):
            await endpoint.health()
    url = f"http://127.0.0.1:{free_port()}"
    async with aio.Endpoint("x", url=url, api_key="k", retries=1) as endpoint:
        with pytest.raises(ConfigError, match=f"cannot reach Podium at {url}"):
            await endpoint.run({})


async def test_aio_retries_health_on_503_and_not_run(stub: Callable[[Respond], Stub]) -> None:
    s = stub(unavailable_twice())
    async with aio.Endpoint("x", url=s.url, api_key="k") as endpoint:
        assert await endpoint.health() == HEALTHY
    assert s.log == ["GET /v2/x/health"] * 3
    s = stub(unavailable_twice())
    async with aio.Endpoint("x", url=s.url, api_key="k") as endpoint:
        with pytest.raises(APIError, match="HTTP 503"):
            await endpoint.run({})
    assert s.log == ["POST /v2/x/run"]
