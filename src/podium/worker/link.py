"""The worker's side of the worker protocol, over one keep-alive HTTP connection."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from podium import _json

log = logging.getLogger("podium.worker")

#: Longer than any server's long-poll window, so a held job-take is never cut short by us.
POLL_TIMEOUT = 120.0


class ServerLink:
    """job-take / job-done / job-stream / ping for one worker of one endpoint.

    Parameters:
        url: the server's base URL.
        key: a worker token (or any key allowed to run this endpoint's jobs).
        endpoint: endpoint id or name.
        worker_id: this worker's id, unique per process.
    """

    def __init__(self, url: str, key: str, endpoint: str, worker_id: str) -> None:
        self.base = f"{url.rstrip('/')}/v2/{endpoint}"
        self.worker_id = worker_id
        headers = {"Authorization": f"Bearer {key}", "User-Agent": "podium-worker"}
        timeout = httpx.Timeout(30.0, read=POLL_TIMEOUT)
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)
        # Pings come from another thread; give them their own connection.
        self.ping_http = httpx.Client(base_url=url, headers=headers, timeout=10.0)

    def close(self) -> None:
        self.http.close()
        self.ping_http.close()

    def take(self, in_progress: bool = False) -> dict[str, Any] | None:
        r = self.http.get(
            f"{self.base}/job-take/{self.worker_id}",
            params={"job_in_progress": int(in_progress)},
        )
        if r.status_code == 204 or not r.content:
            return None
        r.raise_for_status()
        job = r.json()
        return job if isinstance(job, dict) else None

    def _post(self, path: str, body: Any, *, attempts: int = 30) -> None:
        """Post until the server has it: a result must not be lost to a server restart."""
        data = _json.dumpb(body)
        delay = 0.1
        for attempt in range(attempts):
            try:
                r = self.http.post(path, content=data, headers={"Content-Type": "application/json"})
                if r.status_code < 500:
                    if r.status_code >= 400:
                        log.error("server refused %s: %s %s", path, r.status_code, r.text[:500])
                    return
            except httpx.TransportError as exc:
                if attempt == attempts - 1:
                    raise
                log.warning("posting to server failed (%s); retrying", exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def done(self, job_id: str, body: dict[str, Any]) -> None:
        self._post(f"{self.base}/job-done/{self.worker_id}/{job_id}", body)

    def chunk(self, job_id: str, value: Any) -> None:
        self._post(f"{self.base}/job-stream/{self.worker_id}/{job_id}", {"output": value})

    def ping(self, job_ids: list[str]) -> None:
        params = {"job_id": ",".join(job_ids)} if job_ids else {}
        self.ping_http.get(f"{self.base}/ping/{self.worker_id}", params=params)

    def unhealthy(self, reason: str) -> None:
        self.ping_http.post(
            f"{self.base}/ping/{self.worker_id}", json={"status": "unhealthy", "reason": reason}
        )

    def get_json(self, path: str) -> Any:
        r = self.http.get(path)
        r.raise_for_status()
        return r.json()

    def get_bytes(self, path: str) -> bytes:
        r = self.http.get(path)
        r.raise_for_status()
        return r.content
