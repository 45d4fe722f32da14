"""Usage per project, endpoint and version: a real server, real workers, jobs of known length.

The leader rolls usage up every PODIUM_USAGE_ROLLUP seconds (0.3 here); every figure is read
back through the CLI, the API, the console and /metrics, and again after a restart.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import podium
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow

#: Each call of /nap sleeps this long: its execution seconds are at least that.
NAP = 0.4
NAPPER = f"""
import time

import podium


@podium.service(name="napper", cpus=2, min_workers=1, max_workers=1)
def init():
    return {{}}


@init.endpoint("/nap", default=True)
def nap():
    time.sleep({NAP})
    return {{"slept": {NAP}}}
"""


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path / "home", env={"PODIUM_USAGE_ROLLUP": "0.3"}) as server:
        yield server


def usage(srv: PodiumServer, by: str = "endpoint") -> list[dict[str, Any]]:
    return list(json.loads(srv.cli("usage", "--by", by, "--json").stdout))


def napper(srv: PodiumServer) -> dict[str, Any]:
    return wait_until(
        lambda: next((r for r in usage(srv) if r["endpoint"] == "napper" and r["jobs"] >= 3), None),
        30,
        what="three jobs rolled up",
    )


def test_usage_adds_up_jobs_of_known_length_and_survives_a_restart(srv, tmp_path):
    """1. An endpoint whose workers reserve 2 CPUs runs three jobs of 0.4 s each. 2. Its usage
    says 3 jobs, at least 1.2 execution seconds and at least 2 x 1.2 CPU core-seconds, the same
    per version and per day, in the API, the console and /metrics. 3. The server is killed and
    started again: the figures are still there and grow with a fourth job."""
    (tmp_path / "napper").mkdir()
    (tmp_path / "napper" / "app.py").write_text(NAPPER)
    ep = srv.deploy(tmp_path / "napper" / "app.py", "napper")
    for _ in range(3):
        r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {}})
        assert r.json()["status"] == "COMPLETED", r.text
    row = napper(srv)
    assert row["jobs"] == 3
    assert row["execution_seconds"] >= 3 * NAP
    assert row["worker_seconds"]["cpu"] >= 2 * 3 * NAP
    assert row["worker_seconds"]["gpu"] == 0 and row["worker_seconds"]["memory_mb"] == 0

    rows = usage(srv, "version")
    [version] = [r for r in rows if r["endpoint"] == "napper"]
    assert version["version"] == ep["version"] and version["jobs"] == 3
    assert sum(r["jobs"] for r in usage(srv, "day")) == 3

    api = srv.http.get("/api/v1/usage", params={"since": "1d", "by": "endpoint"}).json()
    assert api["rows"][0]["project"] == "default" and {"jobs", "execution_seconds", "worker_seconds"} <= set(
        api["rows"][0]
    )
    bad = srv.http.get("/api/v1/usage", params={"since": "soon"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_since"
    assert "napper" in srv.cli("usage").stdout
    by_day = podium.usage("1d", "day", url=srv.url, api_key=srv.key)
    assert sum(r["jobs"] for r in by_day) == 3 and by_day[0]["project"] == "default"

    metrics = srv.http.get("/metrics").text
    cpu = re.search(
        rf'podium_worker_seconds_total{{[^}}]*endpoint="{ep["endpoint_id"]}"[^}}]*resource="cpu"}} (\S+)', metrics
    )
    assert cpu is not None and float(cpu.group(1)) >= 2 * 3 * NAP

    with httpx.Client(base_url=srv.url, timeout=30) as web:
        csrf = re.search(r'name="csrf" value="([^"]+)"', web.get("/console/login").text).group(1)
        assert web.post("/console/login", data={"csrf": csrf, "api_key": srv.key}).status_code == 303
        page = web.get("/console/usage", params={"by": "endpoint"}).text
        assert 'id="usage-chart"' in page and "<rect" in page and "napper" in page

    before = napper(srv)
    srv.stop(signal.SIGKILL)
    srv.start()
    after = napper(srv)
    assert after["jobs"] == 3 and after["worker_seconds"]["cpu"] >= before["worker_seconds"]["cpu"]
    r = srv.http.post(f"/v2/{ep['endpoint_id']}/runsync", json={"input": {}})
    assert r.json()["status"] == "COMPLETED", r.text
    grown = wait_until(lambda: next((r for r in usage(srv) if r["endpoint"] == "napper" and r["jobs"] == 4), None), 30)
    assert grown["execution_seconds"] >= 4 * NAP and grown["worker_seconds"]["cpu"] > after["worker_seconds"]["cpu"]
