"""The shipped examples, deployed unchanged on a real Podium and called with the real runpod client;
the image generator uploads to a real S3-compatible server (moto)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import openai
import PIL.Image
import pytest
import runpod

import s3server
from server import PodiumServer

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
s3_server = s3server.s3_server


@pytest.fixture(scope="module")
def podium(tmp_path_factory):
    with PodiumServer(tmp_path_factory.mktemp("examples")) as srv:
        runpod.endpoint_url_base = f"{srv.url}/v2"
        yield srv


def test_image_generator_uploads_to_the_requests_bucket(podium, s3_server):
    eid = podium.deploy(EXAMPLES / "image-generator", "images")["endpoint_id"]
    ep = runpod.Endpoint(eid, api_key=podium.key)
    job = ep.run(
        {
            "input": {
                "workflow": {"prompt": "a red fox", "width": 64, "height": 48, "count": 2},
                "tobase64": True,
                "tobucket": True,
            },
            "s3Config": s3_server.s3config(),
        }
    )
    out = job.output(timeout=60)
    assert job.status() == "COMPLETED", out
    assert len(out["files"]) == 2 and sorted(out["datas"]) == ["image_001.png", "image_002.png"]
    for url in out["files"]:
        image = PIL.Image.open(io.BytesIO(httpx.get(url, timeout=10).content))
        assert image.size == (64, 48)
    raw = podium.http.get(f"/v2/{eid}/status/{job.job_id}").text
    # The access id is part of every presigned URL by design; the secret must be nowhere.
    assert s3server.SECRET not in raw
    logs = "".join(p.read_text() for p in (podium.home / "logs").rglob("*.log"))
    assert s3server.SECRET not in logs


def test_image_generator_errors_are_failed_jobs(podium):
    ep = runpod.Endpoint(podium.deploy(EXAMPLES / "image-generator", "images")["endpoint_id"], api_key=podium.key)
    job = ep.run({"input": {"workflow": {"prompt": "x"}, "tobucket": True}})
    job.output(timeout=60)
    assert job.status() == "FAILED"
    status = podium.http.get(f"/v2/{ep.endpoint_id}/status/{job.job_id}").json()
    assert status["error"] == "tobucket needs s3Config in the request"


def test_runpod_worker_example_echo_progress_and_stream(podium):
    echo = runpod.Endpoint(podium.deploy(EXAMPLES / "runpod-worker", "echo")["endpoint_id"], api_key=podium.key)
    assert echo.run_sync({"hello": "world", "progress": 2}, timeout=60) == {"echo": {"hello": "world", "progress": 2}}
    streamer = podium.deploy(EXAMPLES / "runpod-worker" / "stream_handler.py", "echo-stream")
    ep = runpod.Endpoint(streamer["endpoint_id"], api_key=podium.key)
    job = ep.run({"stream": 5})
    assert list(job.stream()) == [{"i": i} for i in range(5)]
    assert job.output(timeout=30) == [{"i": i} for i in range(5)]


def test_openai_chat_example_answers_the_openai_client(podium):
    """examples/openai-chat, deployed unchanged, called by the real `openai` package by its name."""
    podium.deploy(EXAMPLES / "openai-chat", "openai-chat")
    client = openai.OpenAI(
        base_url=f"{podium.url}/v2/openai-chat/openai/v1", api_key=podium.key, max_retries=0, timeout=60
    )
    assert [m.id for m in client.models.list()] == ["reverse-1"]
    hello = [{"role": "user", "content": "hello there"}]
    answer = client.chat.completions.create(model="reverse-1", messages=hello)
    assert answer.choices[0].message.content == "You said: there hello (2 words)"
    stream = client.chat.completions.create(model="reverse-1", messages=hello, stream=True, max_tokens=2)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "You said: there"
    assert client.completions.create(model="reverse-1", prompt="a b").choices[0].text == "You said: b a (2 words)"
