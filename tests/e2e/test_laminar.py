"""Laminar-style calls, server-sent events and per-request env, against a real server and workers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import SERVICES
from server import PodiumServer, wait_until
from sidevenv import side_python

pytestmark = pytest.mark.slow

ENV_SECRET = "env-secret-value-7d1e"
LAM = SERVICES / "laminar"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("laminar-home"), env={"PODIUM_SSE_KEEPALIVE": "0.3"}) as s:
        s.deploy(LAM / "answer.py", "answer")
        s.deploy(LAM / "tokens.py", "tokens")
        s.deploy(LAM / "shapes.py", "shapes")
        yield s


def frames(text: str) -> list[dict]:
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize(("path", "key"), [("/v1/pipeline/run", "pipeline"), ("/v2/endpoint/run", "endpoint")])
def test_run_answers_outputs_and_run_id(srv, path, key):
    r = srv.http.post(
        path,
        json={
            key: "answer",
            "inputs": {"question": "why"},
            "env": {"TOKEN": ENV_SECRET},
            "metadata": {"user": "u1"},
            "traceId": "t",
            "parentSpanId": "s",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outputs"] == {
        "answer": {"value": "plain: why?"},
        "env_names": {"value": '["TOKEN"]'},
        "env_len": {"value": str(len(ENV_SECRET))},
    }
    job = srv.job(body["runId"])
    assert job["status"] == "COMPLETED"
    assert ENV_SECRET not in json.dumps(job)


def test_non_dict_results_are_one_output_named_output(srv):
    r = srv.http.post("/v1/pipeline/run", json={"pipeline": "tokens", "inputs": {"n": 2}, "env": {}})
    assert r.json()["outputs"] == {"output": {"value": "null"}}  # None is not a NodeInput: JSON text


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"pipeline": "answer", "inputs": {"question": "q"}}, "api.invalidRequest"),  # no env
        ({"pipeline": "nosuch", "inputs": {}, "env": {}}, "api.noTargetPipeline"),
        ({"pipeline": "answer", "inputs": {}, "env": {}}, "api.missingGraphInput"),
        ({"pipeline": "answer", "inputs": {"question": "q", "colour": 1}, "env": {}}, "api.invalidRequest"),
        ({"pipeline": "answer", "inputs": [], "env": {}}, "api.invalidRequest"),
        ({"pipeline": "answer", "inputs": {"question": "q"}, "env": {"A": 1}}, "api.invalidRequest"),
        ({"inputs": {}, "env": {}}, "api.invalidRequest"),
    ],
)
def test_errors_are_400s_in_laminars_shape(srv, body, code):
    r = srv.http.post("/v1/pipeline/run", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error_code"] == code and r.json()["error_message"]


def test_a_raising_route_is_a_graph_running_error(srv):
    r = srv.http.post("/v2/endpoint/run", json={"endpoint": "tokens", "inputs": {"fail_at": 0}, "env": {}})
    assert r.status_code == 400
    assert r.json() == {"error_code": "api.GraphRunningError", "error_message": "ValueError: failed at token 0"}


def test_stream_true_answers_server_sent_events(srv):
    with srv.http.stream(
        "POST",
        "/v1/pipeline/run",
        json={"pipeline": "tokens", "inputs": {"n": 3, "pause": 0.5}, "env": {}, "stream": True},
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    got = frames(text)
    assert [f["type"] for f in got] == ["NodeChunk"] * 3 + ["GraphRunOutput"]
    assert [f["content"] for f in got[:3]] == ["t0 ", "t1 ", "t2 "]
    assert got[-1]["runId"] == r.headers["x-podium-job-id"]
    assert ": keep-alive" in text, "silence is filled with keep-alive comments"


def test_a_failing_stream_ends_with_exactly_one_error_frame(srv):
    r = srv.http.post(
        "/v2/endpoint/run", json={"endpoint": "tokens", "inputs": {"n": 3, "fail_at": 1}, "env": {}, "stream": True}
    )
    got = frames(r.text)
    assert [f["type"] for f in got] == ["NodeChunk", "RunEndpointEventError"]
    assert got[-1]["error"] == "ValueError: failed at token 1"


def test_route_calls_take_accept_event_stream_and_an_env_header(srv):
    r = srv.http.post(
        "/answer/answer",
        json={"question": "how"},
        headers={"Accept": "text/event-stream", "X-Podium-Env": json.dumps({"K": ENV_SECRET})},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    [final] = frames(r.text)
    assert final["type"] == "GraphRunOutput" and final["outputs"]["env_names"] == {"value": '["K"]'}
    bad = srv.http.post("/answer/answer", json={"question": "how"}, headers={"X-Podium-Env": "{nope"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_env"


def test_a_client_that_hangs_up_does_not_cancel_the_job(srv):
    with srv.http.stream(
        "POST", "/tokens/tokens", json={"n": 4, "pause": 0.3}, headers={"Accept": "text/event-stream"}
    ) as r:
        job_id = r.headers["x-podium-job-id"]
        next(r.iter_lines())
    final = srv.wait_job(job_id)
    assert final["status"] == "COMPLETED"


def test_runpod_requests_carry_env_to_the_worker_only(srv):
    r = srv.http.post("/v2/answer/runsync", json={"input": {"question": "q"}, "env": {"X": ENV_SECRET}})
    out = r.json()
    assert out["output"]["env_names"] == ["X"] and ENV_SECRET not in r.text
    status = srv.http.get(f"/v2/answer/status/{out['id']}")
    assert ENV_SECRET not in status.text


def test_the_env_never_reaches_a_log(srv):
    """A pipeline run, a route call and a RunPod call, each with its own env value; the route
    logs a line in each job, so the worker's log covers them, and no log holds a value."""
    secrets = [f"{ENV_SECRET}-{i}" for i in range(3)]
    runs = [
        srv.http.post(
            "/v1/pipeline/run", json={"pipeline": "answer", "inputs": {"question": "a"}, "env": {"T": secrets[0]}}
        ),
        srv.http.post(
            "/answer/answer", json={"question": "b"}, headers={"X-Podium-Env": json.dumps({"T": secrets[1]})}
        ),
        srv.http.post("/v2/answer/runsync", json={"input": {"question": "c"}, "env": {"T": secrets[2]}}),
    ]
    assert [r.status_code for r in runs] == [200, 200, 200], [r.text for r in runs]
    job_ids = [runs[0].json()["runId"], runs[1].headers["x-podium-job-id"], runs[2].json()["id"]]
    for job_id in job_ids:
        assert srv.wait_job(job_id)["status"] == "COMPLETED"

    def logs() -> str:
        return "".join(p.read_text(errors="replace") for p in srv.home.rglob("*.log"))

    wait_until(lambda: all(job_id in logs() for job_id in job_ids), what="each job's line in a log")
    text = logs()
    for secret in secrets:
        assert secret not in text


def test_endpoint_and_pipeline_are_reserved_names(srv):
    res = srv.cli("deploy", str(LAM / "tokens.py"), "--name", "endpoint", check=False)
    assert res.returncode == 1 and "endpoint" in res.stderr
    assert httpx.get(f"{srv.url}/healthz").status_code == 200


# -- the real lmnr clients ---------------------------------------------------------------------

LMNR = Path(__file__).parents[1] / "lmnr" / "run.py"
#: What every lmnr client takes: a string and a list of chat messages as they are, everything
#: else (numbers, lists of strings, objects, booleans, null, 0.3.7's ConditionedValue) as its JSON
#: text, since lmnr 0.1.1 and 0.3.7 raise on a 200 that carries one of them.
SHAPES = {
    "text": {"value": "hi"},
    "chat": {"value": [{"role": "user", "content": "hi"}]},
    "int": {"value": "3"},
    "float": {"value": "2.5"},
    "strings": {"value": '["a","b"]'},
    "object": {"value": '{"k":[1,null]}'},
    "bool": {"value": "true"},
    "null": {"value": "null"},
    "conditioned": {"value": '{"condition":"c","value":"v"}'},
}


def lmnr(version: str, srv: PodiumServer, name: str, inputs: dict) -> dict:
    """Run pipeline `name` with the real lmnr `version` client (its own venv); what it gave."""
    python = side_python(f"lmnr-{version}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMNR_")}
    done = subprocess.run(
        [str(python), str(LMNR), srv.url, srv.key, name, json.dumps(inputs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version", ["0.1.1", "0.3.7"])
def test_the_real_lmnr_clients_take_every_output_shape(srv, version):
    """1. A pipeline returns one output of each JSON shape at once. 2. The real lmnr client of
    `version` runs it and parses the answer (it raised on numbers and lists of strings before).
    3. Its SSE answer carries the same outputs; an unknown pipeline is lmnr's own error."""
    got = lmnr(version, srv, "shapes", {"label": "hi"})
    assert got.get("outputs") == SHAPES, got
    assert srv.job(got["run_id"])["status"] == "COMPLETED"
    r = srv.http.post(
        "/v1/pipeline/run", json={"pipeline": "shapes", "inputs": {"label": "hi"}, "env": {}, "stream": True}
    )
    assert frames(r.text)[-1]["outputs"] == SHAPES
    missing = lmnr(version, srv, "nosuch", {})
    assert missing["raised"] in {"EndpointRunError", "PipelineRunError"} and missing["error"] == "api.noTargetPipeline"
