"""Jobs on an endpoint, RunPod-style: submit, wait, stream, cancel.

::

    from podium.client.jobs import Endpoint

    with Endpoint("echo") as ep:            # by name or id; URL and key as for the CLI
        print(ep.run_sync({"text": "hi"}))  # the output, or JobFailed / JobTimeout
        job = ep.run({"text": "later"})
        for chunk in job.stream():          # a generator handler's chunks, each once
            ...

:mod:`podium.aio` has the same API for asyncio. Both are thin transports: what to ask, when to ask
again and what an answer means is written once here, as *plans* (generators that yield the
:class:`Call` to make, the :class:`Sleep` to take or the :class:`Give` value to hand back, and are sent
each call's outcome). A transport only carries plans out with its own HTTP client and clock.

Errors, all :class:`~podium.errors.PodiumError`::

    PodiumError
    ├── JobFailed        the job ended FAILED, CANCELLED or TIMED_OUT (carries job_id, status, error)
    ├── JobTimeout       a job, or one request, took longer than allowed (also a TimeoutError)
    ├── ConfigError      no key, or the server cannot be reached
    └── APIError         the server answered an error (401 bad key, 404 unknown endpoint or job, ...)
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypedDict
from urllib.parse import quote

import httpx

from podium.client.http import auth_headers, raise_for, resolve
from podium.errors import ConfigError, JobFailed, JobTimeout, PodiumError

__all__ = ["Endpoint", "Job", "JobFailed", "JobTimeout", "Waiting"]

#: States a job never leaves (retry aside); RunPod's client forgets CANCELLED here, we do not.
FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
#: /runsync holds the request at most this long (RunPod's bounds for `?wait=`, in ms).
WAIT_MS = (1000, 300_000)
#: Answers that mean "not now, nothing done": safe to ask again for a call that may be repeated.
RETRY_STATUSES = frozenset({429, 503})
#: First and largest pause between attempts of one call, in seconds (jittered).
RETRY_BASE, RETRY_CAP = 0.25, 4.0
#: Seconds a /status poll is given at least, past a wait's deadline if need be: the server holds
#: a queued job's answer until a worker takes it, up to 1 s, and must not be cut off doing so.
POLL_FLOOR = 2.0
#: A server's Retry-After is honoured up to this many seconds.
RETRY_AFTER_CAP = 10.0
#: Pauses between polls of a job, in seconds: quick for short jobs, gentle for long ones.
POLL_FIRST, POLL_CAP = 0.05, 1.0


class Waiting(TypedDict):
    """Why a queued job waits, as its status says (``Job.waiting()``)."""

    #: starting, at_capacity, no_gpu, building, init_failing, stopped or low_priority.
    reason: str
    #: A sentence for people ("workers of echo busy: 1 of at most 1; 2 jobs ahead of this one").
    detail: str
    #: Since when, in Unix seconds.
    since: float


# -- plans: the steps a transport carries out ---------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One HTTP request. ``repeat`` says when it may be sent again after a failure: ``"safe"``
    (asking twice changes nothing) after any network error or a 429/503, ``"unsent"`` only when it
    never reached the server (creating a job twice, or a drained /stream chunk lost, is worse than
    an error)."""

    method: str
    path: str
    timeout: float
    repeat: Literal["safe", "unsent"] = "unsent"
    json: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"

    def options(self) -> dict[str, Any]:
        """The rest of the request, as httpx's ``request()`` takes it."""
        return {"json": self.json, "params": self.params, "timeout": self.timeout}


@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Give:
    """A value for the caller: the result, or one chunk of a stream."""

    value: Any


#: What a transport sends back into a plan after a Call: the answer, or why there was none.
Outcome = httpx.Response | httpx.TransportError
Plan = Generator[Call | Sleep | Give, Any, None]


class Steps:
    """A plan's steps, for a ``for`` loop: ``reply(outcome)`` is what the next step is sent."""

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._reply: Any = None

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Call | Sleep | Give:
        reply, self._reply = self._reply, None
        return self._plan.send(reply)  # StopIteration when the plan is done ends the loop

    def reply(self, outcome: Outcome) -> None:
        self._reply = outcome


def job_body(
    input: Mapping[str, Any],
    webhook: str | None = None,
    policy: Mapping[str, Any] | None = None,
    s3_config: Mapping[str, str] | None = None,
    route: str | None = None,
) -> dict[str, Any]:
    """The /run and /runsync body; options are left out unless given, so server defaults apply."""
    body: dict[str, Any] = {"input": dict(input)}
    if route is not None:
        body["route"] = route
    if webhook is not None:
        body["webhook"] = webhook
    if policy is not None:
        body["policy"] = dict(policy)
    if s3_config is not None:
        body["s3Config"] = dict(s3_config)
    return body


def wait_ms(timeout: float) -> int:
    """`timeout` seconds as a /runsync `?wait=`, clamped to what the server accepts."""
    lo, hi = WAIT_MS
    return max(lo, min(hi, int(timeout * 1000)))


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delta or HTTP date), capped; None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP)


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter, so clients that failed together do not return together."""
    ceiling = min(RETRY_CAP, RETRY_BASE * 2**attempt)
    return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def poll_delays() -> Iterator[float]:
    return (min(POLL_CAP, POLL_FIRST * 2**n) for n in itertools.count())


def retry_delay(call: Call, outcome: Outcome) -> float | None:
    """How long to wait before sending `call` again, or None if it must not be sent again."""
    if isinstance(outcome, httpx.Response):
        if call.repeat == "safe" and outcome.status_code in RETRY_STATUSES:
            return retry_after(outcome.headers.get("Retry-After")) or 0.0
        return None
    if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return 0.0  # the request never left: any call may go again
    if call.repeat == "safe" and isinstance(outcome, httpx.NetworkError | httpx.RemoteProtocolError):
        return 0.0
    return None


def failure(call: Call, exc: httpx.TransportError, url: str) -> PodiumError:
    """The error to raise when `call` got no answer."""
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        why = str(exc) or type(exc).__name__
        return ConfigError(f"cannot reach Podium at {url} ({why}): is `podium up` running?")
    if isinstance(exc, httpx.UnsupportedProtocol):
        return ConfigError(f"not a Podium URL: {url!r} (it needs http:// or https://)")
    if isinstance(exc, httpx.TimeoutException):
        return JobTimeout(f"{call} timed out after {call.timeout:g} s")
    return PodiumError(f"{call} failed: {type(exc).__name__}: {exc}")


def answer(call: Call, outcome: Outcome, url: str) -> Any:
    """The decoded JSON of a good answer; the matching error otherwise."""
    if isinstance(outcome, httpx.TransportError):
        raise failure(call, outcome, url)
    raise_for(outcome)
    try:
        return outcome.json()
    except ValueError:
        raise PodiumError(
            f"{call} answered HTTP {outcome.status_code} without JSON: is {url} a Podium server?"
        ) from None


def still(job_id: str, status: str, timeout: float | None) -> JobTimeout:
    return JobTimeout(f"job {job_id} is still {status} after {timeout:g} s", job_id)


def result(body: Mapping[str, Any]) -> Any:
    """A final status answer's output; JobFailed unless it COMPLETED."""
    if body["status"] != "COMPLETED":
        raise JobFailed(body["id"], body["status"], body.get("error"))
    return body.get("output")


class BaseEndpoint:
    """Configuration and plans shared by the sync and the asyncio ``Endpoint`` (parameters: see
    :class:`Endpoint`); no I/O here."""

    def __init__(
        self,
        name_or_id: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
    ) -> None:
        self.name = name_or_id
        self.url, key = resolve(url, api_key)
        self.timeout = timeout
        self.retries = retries
        self._headers = auth_headers(key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, url={self.url!r})"

    def _call(self, method: str, op: str, repeat: Literal["safe", "unsent"] = "unsent", **kw: Any) -> Call:
        kw.setdefault("timeout", self.timeout)
        return Call(method, f"/v2/{quote(self.name, safe='')}/{op}", repeat=repeat, **kw)

    def _exchange(self, call: Call) -> Generator[Call | Sleep | Give, Any, Any]:
        """Send `call`, again while that is safe and attempts remain; the decoded answer."""
        return answer(call, (yield from self._attempts(call)), self.url)

    def _attempts(self, call: Call) -> Generator[Call | Sleep | Give, Any, Outcome]:
        """Send `call`, again while that is safe and attempts remain; the last outcome."""
        attempt = 0
        while True:
            outcome: Outcome = yield call
            delay = retry_delay(call, outcome) if attempt < self.retries else None
            if delay is None:
                return outcome
            yield Sleep(max(delay, backoff(attempt)))
            attempt += 1

    def _run_plan(self, body: dict[str, Any]) -> Plan:
        sent = yield from self._exchange(self._call("POST", "run", json=body))
        yield Give(sent["id"])

    def _run_sync_plan(self, body: dict[str, Any], timeout: float) -> Plan:
        deadline = time.monotonic() + timeout
        wait = wait_ms(timeout)
        # The server holds the request `wait` ms, then needs an ordinary request's time to answer.
        limit = wait / 1000 + self.timeout
        call = self._call("POST", "runsync", json=body, params={"wait": wait}, timeout=limit)
        sent = yield from self._exchange(call)
        if sent["status"] not in FINAL:  # the wait ended first: go on asking until our own deadline
            sent = yield from self._until_final(sent["id"], deadline, timeout)
        yield Give(result(sent))

    def _health_plan(self) -> Plan:
        yield Give((yield from self._exchange(self._call("GET", "health", "safe"))))

    def _purge_plan(self) -> Plan:
        yield Give((yield from self._exchange(self._call("POST", "purge-queue")))["removed"])

    def _job_plan(self, method: str, op: str, job_id: str, repeat: Literal["safe", "unsent"]) -> Plan:
        """One call about a job; its status."""
        call = self._call(method, f"{op}/{quote(job_id, safe='')}", repeat)
        yield Give((yield from self._exchange(call))["status"])

    def _waiting_plan(self, job_id: str) -> Plan:
        """/status once: why the job waits (None: it is not queued)."""
        call = self._call("GET", f"status/{quote(job_id, safe='')}", "safe")
        yield Give((yield from self._exchange(call)).get("waiting"))

    def _redeliver_plan(self, job_id: str) -> Plan:
        """Send an ended job's final status to its webhook again; the delivery, once attempted."""
        # The server answers once the attempt is recorded: up to its own webhook time-out more.
        call = Call("POST", f"/api/v1/jobs/{quote(job_id, safe='')}/redeliver", timeout=self.timeout + 20)
        yield Give((yield from self._exchange(call)))

    def _output_plan(self, job_id: str, timeout: float | None) -> Plan:
        deadline = None if timeout is None else time.monotonic() + timeout
        yield Give(result((yield from self._until_final(job_id, deadline, timeout))))

    def _until_final(
        self, job_id: str, deadline: float | None, timeout: float | None
    ) -> Generator[Call | Sleep | Give, Any, Any]:
        """Poll /status until the job is final (its answer) or the deadline passes (JobTimeout)."""
        delays = poll_delays()
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            # A poll never outlasts the deadline by more than POLL_FLOOR, however slow the server.
            limit = self.timeout if left is None else min(self.timeout, max(left, POLL_FLOOR))
            call = self._call("GET", f"status/{quote(job_id, safe='')}", "safe", timeout=limit)
            outcome = yield from self._attempts(call)
            body = answer(call, outcome, self.url)
            if body["status"] in FINAL:
                return body
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise still(job_id, body["status"], timeout)
            # A job waiting for a worker to start answers when to ask again (Retry-After).
            hint = retry_after(outcome.headers.get("Retry-After")) if isinstance(outcome, httpx.Response) else None
            pause = max(next(delays), hint or 0.0)
            yield Sleep(pause if left is None else min(pause, left))

    def _stream_plan(self, job_id: str, timeout: float | None) -> Plan:
        deadline = None if timeout is None else time.monotonic() + timeout
        delays = poll_delays()
        call = self._call("GET", f"stream/{quote(job_id, safe='')}")  # drains: never re-sent once it left
        while True:
            body = yield from self._exchange(call)
            chunks = body.get("stream") or []
            for chunk in chunks:
                yield Give(chunk.get("output"))
            if body["status"] in FINAL:
                result(body)
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise still(job_id, body["status"], timeout)
            if chunks:  # output is flowing: ask again soon
                delays = poll_delays()
            yield Sleep(next(delays))


class BaseJob:
    """A job handle: its endpoint and id (no I/O here; see ``Job``)."""

    endpoint: BaseEndpoint

    def __init__(self, endpoint: BaseEndpoint, job_id: str) -> None:
        self.endpoint = endpoint
        self.id = job_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.endpoint.name!r}, {self.id!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BaseJob) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, str]:
        return (self.endpoint.url, self.endpoint.name, self.id)

    def _status_plan(self) -> Plan:
        return self.endpoint._job_plan("GET", "status", self.id, "safe")

    def _cancel_plan(self) -> Plan:
        return self.endpoint._job_plan("POST", "cancel", self.id, "safe")

    def _retry_plan(self) -> Plan:
        return self.endpoint._job_plan("POST", "retry", self.id, "unsent")


# -- the sync transport ---------------------------------------------------------------------------


class Endpoint(BaseEndpoint):
    """A Podium endpoint's jobs, over one pooled HTTP connection.

    Parameters:
        name_or_id: the endpoint, by name or by id.
        url, api_key: the server and key; when missing, PODIUM_URL / PODIUM_API_KEY, then the
            credentials file `podium up` wrote.
        timeout: seconds one request may take (/runsync gets its wait on top).
        retries: extra attempts for a request that failed in a way that is safe to repeat:
            any call that never reached the server; status, health and cancel also after a
            network error or a 429/503 answer (Retry-After is honoured).
        transport: an ``httpx.BaseTransport`` to use instead of the network (tests).
    """

    def __init__(
        self,
        name_or_id: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(name_or_id, url=url, api_key=api_key, timeout=timeout, retries=retries)
        self._http = httpx.Client(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    def run(
        self,
        input: Mapping[str, Any],
        *,
        route: str | None = None,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
        s3_config: Mapping[str, str] | None = None,
    ) -> Job:
        """Queue a job (on `route`, e.g. ``"/predict_batch"``, else the default route; a named
        route takes `input` as its keyword arguments); returns at once."""
        return Job(self, self._one(self._run_plan(job_body(input, webhook, policy, s3_config, route))))

    def run_sync(
        self,
        input: Mapping[str, Any],
        *,
        route: str | None = None,
        timeout: float = 90.0,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a job (on `route`, else the default route) and return its output; JobFailed if it
        fails, JobTimeout after `timeout` s."""
        return self._one(self._run_sync_plan(job_body(input, webhook, policy, route=route), timeout))

    def health(self) -> dict[str, Any]:
        """Job counts by state and worker counts: ``{"jobs": {...}, "workers": {...}}``."""
        return self._one(self._health_plan())  # type: ignore[no-any-return]

    def purge_queue(self) -> int:
        """Cancel every queued job (running ones go on); how many were removed."""
        return int(self._one(self._purge_plan()))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _one(self, plan: Plan) -> Any:
        return next(self._carry_out(plan))

    def _carry_out(self, plan: Plan) -> Iterator[Any]:
        """Make the plan's calls, take its sleeps, yield what it gives."""
        steps = Steps(plan)
        for step in steps:
            if isinstance(step, Call):
                steps.reply(self._send(step))
            elif isinstance(step, Sleep):
                time.sleep(step.seconds)
            else:
                yield step.value

    def _send(self, call: Call) -> Outcome:
        try:
            return self._http.request(call.method, call.path, **call.options())
        except httpx.TransportError as exc:
            return exc


class Job(BaseJob):
    """One job on an :class:`Endpoint`. ``Job(endpoint, job_id)`` rebuilds a handle from a saved id."""

    endpoint: Endpoint

    def status(self) -> str:
        """IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED or TIMED_OUT."""
        return str(self.endpoint._one(self._status_plan()))

    def output(self, timeout: float | None = None) -> Any:
        """Wait until the job is final and return its output (JobFailed, or JobTimeout after `timeout` s)."""
        return self.endpoint._one(self.endpoint._output_plan(self.id, timeout))

    def stream(self, timeout: float | None = None) -> Iterator[Any]:
        """Each chunk a generator handler yields, once, until the job is final (JobFailed if it failed)."""
        return self.endpoint._carry_out(self.endpoint._stream_plan(self.id, timeout))

    def cancel(self) -> str:
        """Stop the job (a queued one never runs); its status after, normally CANCELLED."""
        return str(self.endpoint._one(self._cancel_plan()))

    def retry(self) -> str:
        """Queue a FAILED or TIMED_OUT job again under the same id; its status, IN_QUEUE."""
        return str(self.endpoint._one(self._retry_plan()))

    def waiting(self) -> Waiting | None:
        """Why the job is still queued (reason, detail, since), or None once it is not."""
        found: Waiting | None = self.endpoint._one(self.endpoint._waiting_plan(self.id))
        return found

    def redeliver(self) -> dict[str, Any]:
        """Send the ended job's final status to its webhook again (signed, one more attempt;
        a deploy key); the delivery with its attempts."""
        return dict(self.endpoint._one(self.endpoint._redeliver_plan(self.id)))
