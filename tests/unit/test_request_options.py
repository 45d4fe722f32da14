"""Unit tests: RunPod request options, and recognising a RunPod worker file without running it."""

from __future__ import annotations

import pytest

from conftest import SERVICES
from podium.core.errors import InvalidRequest
from podium.core.options import parse_job_request
from podium.runpod_source import inspect_source, route_table
from podium.signing import signed_headers, verify
from podium.worker.runpod_file import environment

S3 = {"accessId": "AKIA", "accessSecret": "very-secret", "bucketName": "b", "endpointUrl": "http://s3"}


def test_options_are_parsed_and_unknown_keys_dropped():
    job = parse_job_request(
        {
            "input": {"a": 1},
            "route": "/predict_batch",
            "webhook": "https://example.com/h",
            "s3Config": S3,
            "junk": True,
            "policy": {"executionTimeout": 5000, "ttl": 10_000, "lowPriority": True},
        }
    )
    opts = job.options
    assert job.input == {"a": 1} and job.route == "predict_batch"
    assert opts.policy() == {"executionTimeout": 5000, "ttl": 10_000, "lowPriority": True}
    assert opts.secret() == {"s3Config": S3}
    assert opts.webhook == "https://example.com/h"
    bare = parse_job_request({"input": {}})
    plain = bare.options
    assert bare.route is None
    assert plain.policy() is None and plain.secret() is None and not plain.low_priority


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "invalid_request"),
        ({}, "missing_input"),
        ({"input": [1]}, "invalid_input"),
        ({"input": {}, "policy": {"executionTimeout": 4999}}, "invalid_policy"),
        ({"input": {}, "policy": {"executionTimeout": 8 * 86_400_000}}, "invalid_policy"),
        ({"input": {}, "policy": {"executionTimeout": "5000"}}, "invalid_policy"),
        ({"input": {}, "policy": {"ttl": 9999}}, "invalid_policy"),
        ({"input": {}, "policy": {"lowPriority": "yes"}}, "invalid_policy"),
        ({"input": {}, "policy": []}, "invalid_policy"),
        ({"input": {}, "policy": {"executionTimout": 5000}}, "invalid_policy"),
        ({"input": {}, "policy": {"ttl": 10_000, "TTL": 10_000}}, "invalid_policy"),
        ({"input": {}, "webhook": "file:///etc/passwd"}, "invalid_webhook"),
        ({"input": {}, "s3Config": {**S3, "bucketName": ""}}, "invalid_s3config"),
        ({"input": {}, "s3Config": "x"}, "invalid_s3config"),
    ],
)
def test_malformed_requests_are_400s_that_say_why(body, error):
    with pytest.raises(InvalidRequest) as exc:
        parse_job_request(body)
    assert exc.value.code == error


def test_s3config_errors_name_keys_never_values():
    with pytest.raises(InvalidRequest) as exc:
        parse_job_request({"input": {}, "s3Config": {**S3, "endpointUrl": None}})
    assert "endpointUrl" in str(exc.value.detail) and "very-secret" not in str(exc.value.detail)


def test_a_runpod_worker_file_is_recognised_without_running_it():
    src = """
import runpod
raise SystemExit("deploy must not run this file")

def handler(job):
    def inner():
        yield 1
    return list(inner())

runpod.serverless.start({"handler": handler})
"""
    assert inspect_source(src) == {
        "handler": "handler",
        "streaming": False,
        "is_async": False,
        "aggregate_stream": False,
        "openai": False,
    }


def test_generator_async_and_config_by_name_are_seen():
    src = """
from runpod import serverless

async def gen(job):
    yield {"i": 1}

config = {"handler": gen, "return_aggregate_stream": True}
if __name__ == "__main__":
    serverless.start(config)
"""
    assert inspect_source(src) == {
        "handler": "gen",
        "streaming": True,
        "is_async": True,
        "aggregate_stream": True,
        "openai": False,
    }


def test_a_worker_that_reads_openai_route_is_marked_openai():
    """worker-vllm's way (tests/services/openai/rp_worker.py): its handler route is marked, so the
    console shows the `openai` sample for it."""
    src = (SERVICES / "openai" / "rp_worker.py").read_text()
    info = inspect_source(src)
    assert info is not None and info["openai"] is True and info["is_async"] and info["aggregate_stream"]
    assert route_table(info)[0]["openai"] is True
    assert "openai" not in route_table({**info, "openai": False})[0]


def test_a_plain_module_is_not_a_runpod_worker():
    assert inspect_source("def handler(job):\n    return job\n") is None
    assert inspect_source("import asyncio\nasyncio.start(1)\n") is None


def test_worker_environment_points_at_this_server_and_never_busy_pings():
    env = environment(url="http://127.0.0.1:9", endpoint_id="ep", worker_id="w1", token="t", ping_interval=0.2)
    assert env["RUNPOD_WEBHOOK_GET_JOB"] == "http://127.0.0.1:9/v2/ep/job-take/$ID?gpu=cpu"
    assert "/job-done/$RUNPOD_POD_ID/$ID?" in env["RUNPOD_WEBHOOK_POST_OUTPUT"]
    assert env["RUNPOD_PING_INTERVAL"] == "1000"
    assert env["RUNPOD_POD_ID"] == "w1" and env["RUNPOD_AI_API_KEY"] == "t"
    assert env["RUNPOD_SKIP_AUTO_SYSTEM_CHECKS"] == "true"


def test_signatures_verify_and_expire():
    body = b'{"id": "j"}'
    headers = signed_headers("k", body, now=1000)
    assert verify("k", headers, body, now=1100)
    assert not verify("k", headers, body, now=2000)  # replayed too late
    assert not verify("k", {**headers, "X-Podium-Timestamp": "1001"}, body, now=1100)
    assert not verify("k", {}, body)


def test_policy_keys_match_without_regard_to_case():
    opts = parse_job_request(
        {"input": {}, "policy": {"executiontimeout": 5000, "TTL": 10_000, "lowpriority": True}}
    ).options
    assert (opts.timeout_ms, opts.ttl_ms, opts.low_priority) == (5000, 10_000, True)
    with pytest.raises(InvalidRequest) as exc:
        parse_job_request({"input": {}, "policy": {"timeout": 5000}})
    assert "executionTimeout, ttl, lowPriority" in exc.value.detail
