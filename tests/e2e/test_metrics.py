"""GET /metrics: Prometheus text with the numbers an operator watches, from a real server."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import SERVICES
from server import PodiumServer

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_jobs_cold_starts_requests_and_levels(tmp_path):
    with PodiumServer(tmp_path / "home") as srv:
        eid = srv.deploy(SERVICES / "rp.py", "rp")["endpoint_id"]
        for i in range(3):
            srv.http.post(f"/v2/{eid}/runsync", json={"input": {"value": i}})
        srv.wait_job(srv.http.post(f"/v2/{eid}/run", json={"input": {"fail": "x"}}).json()["id"])
        srv.http.get(f"/v2/{eid}/status/nosuchjob")
        text = srv.http.get("/metrics").text
    m = samples(text)
    ep = (("endpoint", eid),)
    assert m[("podium_jobs_submitted_total", (("endpoint", eid), ("kind", "runsync")))] == 3
    assert m[("podium_jobs_ended_total", (("endpoint", eid), ("status", "COMPLETED")))] == 3
    assert m[("podium_jobs_ended_total", (("endpoint", eid), ("status", "FAILED")))] == 1
    assert m[("podium_job_execution_seconds_count", ep)] == 4
    assert m[("podium_job_delay_seconds_count", ep)] == 4
    assert m[("podium_cold_starts_total", ep)] >= 1
    assert m[("podium_worker_start_seconds_count", ep)] >= 1
    assert m[("podium_workers", (("endpoint", eid), ("state", "idle")))] == 1
    assert m[("podium_http_requests_total", (("method", "POST"), ("status", "200"), ("surface", "runpod")))] >= 4
    assert m[("podium_http_requests_total", (("method", "GET"), ("status", "404"), ("surface", "runpod")))] == 1
    assert m[("podium_http_requests_total", (("method", "GET"), ("status", "200"), ("surface", "worker")))] >= 1
