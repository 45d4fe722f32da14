"""A real S3-compatible server (moto) in a subprocess on a free loopback port, for storage tests.

Test modules use it as ``s3_server = s3server.s3_server``: one server and one fresh bucket per module.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import free_port, wait_until

#: moto accepts any credentials; these are distinctive so tests can check they never leak.
ACCESS_ID = "AKIAPODIUMTESTACCESS"
SECRET = "podium-test-secret-9f3c1a7e5b2d"


@dataclass(frozen=True)
class S3Server:
    url: str
    bucket: str

    def s3config(self, **overrides: str) -> dict[str, str]:
        """The RunPod-style ``s3Config`` for this server's bucket."""
        return {
            "accessId": ACCESS_ID,
            "accessSecret": SECRET,
            "bucketName": self.bucket,
            "endpointUrl": self.url,
            **overrides,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_ID,
            aws_secret_access_key=SECRET,
            region_name="us-east-1",
        )


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path: Path = tmp_path_factory.mktemp("moto") / "moto.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"moto server exited:\n{log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/moto-api/", timeout=1).status_code < 500
            except httpx.HTTPError:
                return False

        wait_until(ready, 20, what="moto server")
        server = S3Server(url, f"podium-test-{uuid.uuid4().hex[:8]}")
        server.client().create_bucket(Bucket=server.bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
