"""The image-generator example's handler, called directly (its start call is under a __main__ guard).

examples/runpod-worker/handler.py is not imported: it calls runpod.serverless.start at import.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from PIL import Image

import s3server
from s3server import SECRET, S3Server

s3_server = s3server.s3_server

EXAMPLE = Path(__file__).parents[2] / "examples" / "image-generator" / "handler.py"


@pytest.fixture(scope="module")
def imggen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("image_generator_handler", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def request(job_id: str = "img-job", **input: Any) -> dict[str, Any]:
    return {"id": job_id, "input": input}


def test_base64_images_are_pngs_of_the_requested_size(imggen: ModuleType) -> None:
    workflow = {"prompt": "a red fox at dawn", "width": 96, "height": 64, "count": 3, "seed": 7}

    out = imggen.handler(request(workflow=workflow, tobase64=True))

    assert out["files"] == []
    assert sorted(out["datas"]) == ["image_001.png", "image_002.png", "image_003.png"]
    images = [png(base64.b64decode(data)) for data in out["datas"].values()]
    assert all(image.size == (96, 64) for image in images)
    assert len({image.tobytes() for image in images}) == 3  # each image of a batch differs


def test_same_prompt_and_seed_give_the_same_images(imggen: ModuleType) -> None:
    workflow = {"prompt": "same", "width": 32, "height": 32, "seed": 3}

    first = imggen.handler(request(workflow=workflow, tobase64=True))
    again = imggen.handler(request("other-job", workflow=workflow, tobase64=True))
    reseeded = imggen.handler(request(workflow={**workflow, "seed": 4}, tobase64=True))

    assert first["datas"] == again["datas"] != reseeded["datas"]


def test_tobucket_uploads_fetchable_pngs(imggen: ModuleType, s3_server: S3Server) -> None:
    job = request(
        "img-bucket", workflow={"prompt": "bucket", "width": 40, "height": 24, "count": 2}, tobucket=True, tobase64=True
    )
    job["s3Config"] = s3_server.s3config()

    out = imggen.handler(job)

    assert len(out["files"]) == 2
    for url, (name, data) in zip(out["files"], out["datas"].items()):
        assert f"/img-bucket/{name}" in url and SECRET not in url
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content == base64.b64decode(data)
        assert png(response.content).size == (40, 24)


def test_tobucket_without_s3config_is_an_error(imggen: ModuleType) -> None:
    out = imggen.handler(request(workflow={"prompt": "p"}, tobucket=True))

    assert out == {"error": "tobucket needs s3Config in the request"}


def test_upload_failure_is_an_error_without_the_secret(imggen: ModuleType, s3_server: S3Server) -> None:
    job = request(workflow={"prompt": "p", "width": 16, "height": 16}, tobucket=True)
    job["s3Config"] = s3_server.s3config(bucketName="no-such-bucket")

    out = imggen.handler(job)

    assert out["error"].startswith("upload failed") and SECRET not in out["error"]


@pytest.mark.parametrize(
    ("job_input", "message"),
    [
        ({"tobase64": True}, "workflow must be an object"),
        ({"workflow": {"width": 64}, "tobase64": True}, "workflow.prompt is required"),
        ({"workflow": {"prompt": "  "}, "tobase64": True}, "workflow.prompt must not be empty"),
        ({"workflow": {"prompt": "p", "width": "64"}, "tobase64": True}, "workflow.width must be an integer"),
        ({"workflow": {"prompt": "p", "height": True}, "tobase64": True}, "workflow.height must be an integer"),
        ({"workflow": {"prompt": "p", "width": 4096}, "tobase64": True}, "workflow.width must be between"),
        ({"workflow": {"prompt": "p", "count": 0}, "tobase64": True}, "workflow.count must be between"),
        ({"workflow": {"prompt": "p", "steps": 20}, "tobase64": True}, "unknown workflow keys: steps"),
        ({"workflow": {"prompt": "p"}, "tobase64": "yes"}, "tobase64 and tobucket must be true or false"),
        ({"workflow": {"prompt": "p"}}, "nothing to return"),
    ],
)
def test_bad_input_is_answered_with_an_error(imggen: ModuleType, job_input: dict[str, Any], message: str) -> None:
    out = imggen.handler(request(**job_input))

    assert list(out) == ["error"]
    assert message in out["error"]


def test_input_that_is_not_an_object_is_an_error(imggen: ModuleType) -> None:
    assert "error" in imggen.handler({"id": "j", "input": "draw me a fox"})
