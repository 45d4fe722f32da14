"""Batched routes against a real server and real workers: the worker takes the calls queued for a
batched route in one exchange and calls the route once with a list per parameter; each caller
gets its own element. Batches are made deterministic without timing: one worker (max_workers=1)
is kept busy on a route that waits for a gate file while the calls under test queue up behind
it; opening the gate lets it take them all at once. The routes record the batch sizes they saw."""

from __future__ import annotations

import json
import re
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import podium
from podium.console.sessions import COOKIE, LOGIN_COOKIE
from server import ADMIN_KEY, PodiumServer, wait_until

pytestmark = pytest.mark.slow

SERVICE = """\
import json
import os
import time
from pathlib import Path

import podium

MARKS = Path({marks!r})


def seen(route, n):
    with open(MARKS / (route + ".sizes"), "a") as f:
        f.write(json.dumps(n) + "\\n")


@podium.service(max_workers=1, idle_timeout=300)
def init():
    return {{"scale": 2}}


@init.endpoint("/hold")
def hold(gate: str):
    while not os.path.exists(gate):
        time.sleep(0.01)
    return "open"


@init.endpoint("/double", batch_size=32, batch_wait_ms=5, default=True)
def double(x: int, scale: int, offset: int = 0):
    seen("double", len(x))
    assert len(scale) == len(x) and len(offset) == len(x)
    return [{{"x": a, "out": a * s + o}} for a, s, o in zip(x, scale, offset)]


@init.endpoint("/adouble", batch_size=8)
async def adouble(x: int):
    seen("adouble", len(x))
    return [a * 2 for a in x]


@init.endpoint("/boom", batch_size=8)
def boom(x: int):
    seen("boom", len(x))
    raise ValueError("boom on " + ",".join(map(str, x)))


@init.endpoint("/short", batch_size=8)
def short(x: int):
    seen("short", len(x))
    return x[:-1]


@init.endpoint("/two", batch_size=4)
def two(x: int, gate: str):
    seen("two", len(x))
    while not os.path.exists(gate[0]):
        time.sleep(0.01)
    return x


@init.endpoint("/lone", batch_size=8, batch_wait_ms=10000)
def lone(x: int):
    seen("lone", len(x))
    return x
"""


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-marks")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, marks: Path):
    src = tmp_path_factory.mktemp("batch-svc")
    (src / "app.py").write_text(SERVICE.format(marks=str(marks)))
    with PodiumServer(tmp_path_factory.mktemp("batch-home")) as s:
        s.deploy(src / "app.py", "batch")
        yield s


def sizes(marks: Path, route: str) -> list[int]:
    path = marks / f"{route}.sizes"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class Held:
    """The endpoint's one worker kept busy on /hold until `open`, so calls queue up behind it
    (then it takes them all in one batch)."""

    def __init__(self, srv: PodiumServer, marks: Path, name: str, pool: ThreadPoolExecutor) -> None:
        self.srv = srv
        self.gate = marks / f"{name}.gate"
        self.answer = pool.submit(call, srv, "/hold", {"gate": str(self.gate)})
        wait_until(self._holding, 60, what="the worker to hold")

    def _holding(self) -> bool:
        running = self.srv.http.get("/api/v1/jobs", params={"endpoint": "batch", "status": "IN_PROGRESS"})
        return any(job["route"] == "/hold" for job in running.json()["jobs"])

    def open_when_queued(self, n: int) -> None:
        """Open the gate once `n` calls wait behind it."""
        try:
            wait_until(
                lambda: self.srv.http.get("/v2/batch/health").json()["jobs"]["inQueue"] >= n,
                60,
                what=f"{n} queued calls",
            )
        finally:
            self.gate.write_text("open")
        assert self.answer.result(timeout=60).json() == "open"


def call(srv: PodiumServer, route: str, kwargs: dict[str, object]) -> httpx.Response:
    """A route call, from its own connection (callers run in threads)."""
    with httpx.Client(base_url=srv.url, headers=srv.http.headers, timeout=120) as http:
        return http.post(f"/batch{route}", json=kwargs)


def test_64_concurrent_callers_each_get_their_own_answer_from_batches(srv, marks):
    """1. The worker is held while 64 callers call the batched route at once, over route calls,
    /runsync, /run and Laminar. 2. The gate opens. Result: each caller has its own answer (the
    initializer's `scale` repeated, a caller's `offset` in its place), and batches of more than
    one call ran, none over batch_size."""
    before = sum(sizes(marks, "double"))

    def one(i: int) -> object:
        with httpx.Client(base_url=srv.url, headers=srv.http.headers, timeout=120) as http:
            if i % 4 == 0:
                return http.post("/batch/double", json={"x": i, "offset": 1}).json()
            if i % 4 == 1:
                return http.post("/v2/batch/runsync", json={"input": {"x": i}}).json()["output"]
            if i % 4 == 2:
                job = http.post("/v2/batch/run", json={"input": {"x": i}}).json()
                return srv.wait_job(job["id"], timeout=120)["output"]
            return http.post("/v2/endpoint/run", json={"endpoint": "batch", "inputs": {"x": i}, "env": {}}).json()[
                "outputs"
            ]["out"]["value"]

    with ThreadPoolExecutor(65) as pool:
        held = Held(srv, marks, "many", pool)
        answers = [pool.submit(one, i) for i in range(64)]
        held.open_when_queued(64)
        got = [a.result(timeout=120) for a in answers]
    for i, answer in enumerate(got):
        out = i * 2 + (1 if i % 4 == 0 else 0)
        # Laminar sends a number as its JSON text (what every lmnr client accepts).
        assert answer == (str(out) if i % 4 == 3 else {"x": i, "out": out}), (i, answer)
    seen = sizes(marks, "double")
    assert sum(seen) - before == 64
    assert max(seen) > 1 and max(seen) <= 32, seen
    metrics = srv.http.get("/metrics").text
    assert "podium_batch_size_bucket" in metrics and "podium_batch_size_count" in metrics


def test_the_console_shows_the_batch_sizes_formed(srv, marks):
    """After the batches above: the endpoint page's table of sizes over the last hour."""
    nonce = "a-login-form-nonce"
    login = httpx.post(
        f"{srv.url}/console/login", data={"csrf": nonce, "api_key": ADMIN_KEY}, cookies={LOGIN_COOKIE: nonce}
    )
    assert login.status_code == 303, login.text
    with httpx.Client(base_url=srv.url, cookies={COOKIE: login.cookies[COOKIE]}, timeout=60) as console:
        page = console.get("/console/endpoints/batch").text
    table = page[page.index('id="batch-sizes"') :]
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td class="num">(\d+)</td><td class="num">(\d+)</td></tr>', table)
    jobs_by_size = {int(size): int(jobs) for size, _batches, jobs in rows}
    assert sum(jobs_by_size.values()) >= 64 and max(jobs_by_size) > 1, rows


def test_async_routes_batch_too(srv, marks):
    with ThreadPoolExecutor(9) as pool:
        held = Held(srv, marks, "async", pool)
        answers = [pool.submit(call, srv, "/adouble", {"x": i}) for i in range(8)]
        held.open_when_queued(8)
        assert [a.result(timeout=60).json() for a in answers] == [i * 2 for i in range(8)]
    assert sizes(marks, "adouble") == [8]


def test_an_exception_fails_every_call_of_the_batch_with_the_error(srv, marks):
    with ThreadPoolExecutor(6) as pool:
        held = Held(srv, marks, "boom", pool)
        answers = [pool.submit(call, srv, "/boom", {"x": i}) for i in range(5)]
        held.open_when_queued(5)
        failed = [a.result(timeout=60) for a in answers]
    assert sizes(marks, "boom") == [5]
    details = {r.json()["detail"] for r in failed}
    assert all(r.status_code == 500 for r in failed)
    (detail,) = details  # the one error of the batch, for every call
    assert detail.startswith("ValueError: boom on ")
    assert sorted(map(int, detail.removeprefix("ValueError: boom on ").split(","))) == [0, 1, 2, 3, 4]


def test_a_result_of_the_wrong_length_fails_every_call_saying_so(srv, marks):
    with ThreadPoolExecutor(5) as pool:
        held = Held(srv, marks, "short", pool)
        answers = [pool.submit(call, srv, "/short", {"x": i}) for i in range(4)]
        held.open_when_queued(4)
        failed = [a.result(timeout=60) for a in answers]
    assert sizes(marks, "short") == [4]
    for r in failed:
        assert r.status_code == 500
        assert "returned 3 results for a batch of 4 calls" in r.text, r.text


def test_an_invalid_call_fails_alone_with_its_400(srv, marks):
    """The element's annotation is checked per call (`x: int`), before the batch is formed."""
    before = len(sizes(marks, "adouble"))
    with ThreadPoolExecutor(6) as pool:
        held = Held(srv, marks, "invalid", pool)
        inputs: list[object] = [1, 2, "not a number", 4, 5]
        answers = [pool.submit(call, srv, "/adouble", {"x": x}) for x in inputs]
        held.open_when_queued(5)
        got = [a.result(timeout=60) for a in answers]
    assert got[2].status_code == 400 and "'x' does not fit its annotation" in got[2].text, got[2].text
    assert [r.json() for i, r in enumerate(got) if i != 2] == [2, 4, 8, 10]
    assert sizes(marks, "adouble")[before:] == [4]


def test_a_lone_call_does_not_wait_for_company(srv, marks):
    """/lone waits up to 10 s for more calls, but only while others are about. 1. A lone call is
    taken. 2. Only then a second call is made. Result: each ran in a batch of its own (a worker
    that waited for company would have put the second in the first's batch)."""
    assert call(srv, "/lone", {"x": 0}).json() == 0  # the worker is up and idle
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(call, srv, "/lone", {"x": 1})

        def taken() -> bool:
            jobs = srv.http.get("/api/v1/jobs", params={"endpoint": "batch", "limit": 5}).json()["jobs"]
            return any(j["route"] == "/lone" and j["status"] != "IN_QUEUE" for j in jobs[:1])

        wait_until(taken, 30, what="the lone call to be taken")
        second = call(srv, "/lone", {"x": 2})
        assert first.result(timeout=60).json() == 1 and second.json() == 2
    assert sizes(marks, "lone") == [1, 1, 1]


def test_a_streaming_route_cannot_be_batched(srv, tmp_path):
    for requirements in ("", ', requirements=["six"]'):
        (tmp_path / "app.py").write_text(
            textwrap.dedent(f"""\
                import podium

                @podium.service(name="streamer"{requirements})
                def init():
                    return {{}}

                @init.endpoint("/tokens", batch_size=8)
                def tokens(prompt: str):
                    yield prompt
                """)
        )
        out = srv.cli("deploy", str(tmp_path / "app.py"), "--name", "streamer", check=False)
        assert out.returncode != 0
        assert "a streaming route cannot be batched" in out.stdout + out.stderr, out.stdout + out.stderr


def test_the_python_client_calls_a_batched_route_as_any_other(srv):
    deployment = podium.get_deployment("batch", url=srv.url, api_key=ADMIN_KEY)
    assert deployment.double(x=20) == {"x": 20, "out": 40}


def test_concurrency_and_batching_combine(srv, tmp_path, marks):
    """A worker with two slots runs two batches at once. 1. Calls of /two, whose batches wait for
    a gate, are made. 2. Once two batches have started (both slots busy), the gate opens.
    Result: every call is answered (with one slot, the second batch could not start and the
    gate would never open)."""
    (tmp_path / "app.py").write_text(
        SERVICE.format(marks=str(marks)).replace("max_workers=1,", "max_workers=1, concurrency=2,")
    )
    srv.deploy(tmp_path / "app.py", "batch2")
    gate = marks / "two.gate"

    def one(i: int) -> object:
        with httpx.Client(base_url=srv.url, headers=srv.http.headers, timeout=120) as http:
            return http.post("/batch2/two", json={"x": i, "gate": str(gate)}).json()

    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(one, i) for i in range(8)]
        try:
            wait_until(lambda: len(sizes(marks, "two")) >= 2, 60, what="two batches in flight")
        finally:
            gate.write_text("open")
        assert sorted(a.result(timeout=60) for a in answers) == list(range(8))


def test_a_runpod_style_handler_takes_a_list_of_jobs(srv, tmp_path):
    (tmp_path / "handler.py").write_text(
        textwrap.dedent("""\
            import podium

            @podium.handler(batch_size=4)
            def embed(jobs):
                return [{"n": job["input"]["n"], "batch": len(jobs)} for job in jobs]
            """)
    )
    srv.deploy(tmp_path / "handler.py", "embed")
    r = srv.http.post("/v2/embed/runsync", json={"input": {"n": 7}})
    assert r.json()["output"] == {"n": 7, "batch": 1}, r.text
