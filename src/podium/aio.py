"""Jobs on an endpoint from asyncio: :mod:`podium.client.jobs` with ``await``.

::

    from podium import aio

    async with aio.Endpoint("echo") as ep:
        print(await ep.run_sync({"text": "hi"}))
        job = await ep.run({"n": 3})
        async for chunk in job.stream():
            ...

The plans (what to ask, when to ask again, what an answer means) and the errors are those of
:mod:`podium.client.jobs`; this module only carries the plans out over an ``httpx.AsyncClient``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any

import httpx

from podium.client.jobs import (
    BaseEndpoint,
    BaseJob,
    Call,
    JobFailed,
    JobTimeout,
    Outcome,
    Plan,
    Sleep,
    Steps,
    Waiting,
    job_body,
)

__all__ = ["Endpoint", "Job", "JobFailed", "JobTimeout", "Waiting"]


class Endpoint(BaseEndpoint):
    """A Podium endpoint's jobs, over one pooled asyncio HTTP connection.

    Parameters: as :class:`podium.client.jobs.Endpoint`; `transport` is an
    ``httpx.AsyncBaseTransport``.
    """

    def __init__(
        self,
        name_or_id: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name_or_id, url=url, api_key=api_key, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, timeout=timeout, transport=transport)

    async def run(
        self,
        input: Mapping[str, Any],
        *,
        route: str | None = None,
        webhook: str | None = None,
        policy: Mapping[str, Any] | None = None,
        s3_config: Mapping[str, str] | None = None,
    ) -> Job:
        """Queue a job (on `route`, else the default route); returns at once."""
        return Job(self, await self._one(self._run_plan(job_body(input, webhook, policy, s3_config, route))))

    async def run_sync(
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
        return await self._one(self._run_sync_plan(job_body(input, webhook, policy, route=route), timeout))

    async def health(self) -> dict[str, Any]:
        """Job counts by state and worker counts: ``{"jobs": {...}, "workers": {...}}``."""
        return await self._one(self._health_plan())  # type: ignore[no-any-return]

    async def purge_queue(self) -> int:
        """Cancel every queued job (running ones go on); how many were removed."""
        return int(await self._one(self._purge_plan()))

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def _one(self, plan: Plan) -> Any:
        async with aclosing(self._carry_out(plan)) as values:
            return await anext(values)

    async def _carry_out(self, plan: Plan) -> AsyncGenerator[Any, None]:
        """Make the plan's calls, take its sleeps, yield what it gives."""
        steps = Steps(plan)
        for step in steps:
            if isinstance(step, Call):
                steps.reply(await self._send(step))
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            else:
                yield step.value

    async def _send(self, call: Call) -> Outcome:
        try:
            return await self._http.request(call.method, call.path, **call.options())
        except httpx.TransportError as exc:
            return exc


class Job(BaseJob):
    """One job on an :class:`Endpoint`. ``Job(endpoint, job_id)`` rebuilds a handle from a saved id."""

    endpoint: Endpoint

    async def status(self) -> str:
        """IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED or TIMED_OUT."""
        return str(await self.endpoint._one(self._status_plan()))

    async def output(self, timeout: float | None = None) -> Any:
        """Wait until the job is final and return its output (JobFailed, or JobTimeout after `timeout` s)."""
        return await self.endpoint._one(self.endpoint._output_plan(self.id, timeout))

    def stream(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """Each chunk a generator handler yields, once, until the job is final (JobFailed if it failed)."""
        return self.endpoint._carry_out(self.endpoint._stream_plan(self.id, timeout))

    async def cancel(self) -> str:
        """Stop the job (a queued one never runs); its status after, normally CANCELLED."""
        return str(await self.endpoint._one(self._cancel_plan()))

    async def retry(self) -> str:
        """Queue a FAILED or TIMED_OUT job again under the same id; its status, IN_QUEUE."""
        return str(await self.endpoint._one(self._retry_plan()))

    async def waiting(self) -> Waiting | None:
        """Why the job is still queued (reason, detail, since), or None once it is not."""
        found: Waiting | None = await self.endpoint._one(self.endpoint._waiting_plan(self.id))
        return found

    async def redeliver(self) -> dict[str, Any]:
        """Send the ended job's final status to its webhook again (signed, one more attempt;
        a deploy key); the delivery with its attempts."""
        return dict(await self.endpoint._one(self.endpoint._redeliver_plan(self.id)))
