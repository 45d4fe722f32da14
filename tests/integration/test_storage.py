"""podium.storage against a real S3-compatible server (moto, in a subprocess)."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

import s3server
from podium.errors import ConfigError
from podium.storage import UploadError, upload_bytes, upload_files
from s3server import SECRET, S3Server
from server import free_port

s3_server = s3server.s3_server


def job(server: S3Server, job_id: str = "job-123") -> dict[str, object]:
    return {"id": job_id, "input": {}, "s3Config": server.s3config()}


def test_upload_files_returns_fetchable_urls_in_order(s3_server: S3Server, tmp_path: Path) -> None:
    first, second = tmp_path / "a.bin", tmp_path / "b.txt"
    first.write_bytes(bytes(range(256)) * 4)
    second.write_bytes(b"second file\n")

    urls = upload_files(job(s3_server), [first, str(second)])

    assert [urlsplit(u).path for u in urls] == [
        f"/{s3_server.bucket}/job-123/a.bin",
        f"/{s3_server.bucket}/job-123/b.txt",
    ]
    for url, path in zip(urls, (first, second)):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.content == path.read_bytes()
    assert SECRET not in "".join(urls)


def test_upload_bytes_with_content_type_and_prefix(s3_server: S3Server) -> None:
    url = upload_bytes(
        job(s3_server), "out.json", b'{"ok": true}', content_type="application/json", prefix="results/run-7"
    )

    assert urlsplit(url).path == f"/{s3_server.bucket}/results/run-7/out.json"
    response = httpx.get(url, timeout=10)
    assert response.content == b'{"ok": true}'
    assert response.headers["content-type"] == "application/json"


def test_prefix_defaults_to_the_job_id(s3_server: S3Server) -> None:
    upload_bytes(job(s3_server, "job-prefix-check"), "x.txt", b"x")

    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="job-prefix-check/")
    assert [o["Key"] for o in listed["Contents"]] == ["job-prefix-check/x.txt"]


def test_bare_s3config_gets_a_fresh_prefix(s3_server: S3Server) -> None:
    one = urlsplit(upload_bytes(s3_server.s3config(), "same.txt", b"1")).path
    two = urlsplit(upload_bytes(s3_server.s3config(), "same.txt", b"2")).path

    assert one != two and one.endswith("/same.txt") and two.endswith("/same.txt")


@pytest.mark.parametrize("key", ["accessId", "accessSecret", "bucketName", "endpointUrl"])
def test_missing_key_is_named_and_the_secret_is_not(s3_server: S3Server, key: str) -> None:
    config = s3_server.s3config()
    del config[key]

    with pytest.raises(ConfigError) as caught:
        upload_bytes({"id": "j", "s3Config": config}, "x.txt", b"x")

    assert key in str(caught.value)
    assert SECRET not in str(caught.value)


def test_empty_value_is_named_without_the_values(s3_server: S3Server) -> None:
    with pytest.raises(ConfigError) as caught:
        upload_bytes({"id": "j", "s3Config": s3_server.s3config(bucketName=" ")}, "x.txt", b"x")

    assert "bucketName" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_job_without_s3config_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no s3Config"):
        upload_files({"id": "j", "input": {}}, [])


def test_missing_local_file_uploads_nothing(s3_server: S3Server, tmp_path: Path) -> None:
    present = tmp_path / "present.txt"
    present.write_text("here")

    with pytest.raises(FileNotFoundError):
        upload_files(job(s3_server, "job-partial"), [present, tmp_path / "absent.txt"])

    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix="job-partial/")
    assert listed["KeyCount"] == 0


def test_unknown_bucket_is_an_upload_error_without_the_secret(s3_server: S3Server) -> None:
    with pytest.raises(UploadError) as caught:
        upload_bytes(s3_server.s3config(bucketName="no-such-bucket"), "x.txt", b"x")

    assert "NoSuchBucket" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value)


def test_unreachable_endpoint_error_is_scrubbed_and_unchained() -> None:
    # botocore's connection error echoes the endpoint URL: a secret in it proves the scrubbing.
    config = {
        "accessId": s3server.ACCESS_ID,
        "accessSecret": SECRET,
        "bucketName": "b",
        "endpointUrl": f"http://127.0.0.1:{free_port()}/{SECRET}",
    }

    with pytest.raises(UploadError) as caught:
        upload_bytes(config, "x.txt", b"x")

    assert "Could not connect" in str(caught.value) and "***" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert caught.value.__context__ is None and caught.value.__cause__ is None


def test_expires_beyond_the_presign_limit_is_refused(s3_server: S3Server) -> None:
    with pytest.raises(ValueError, match="expires"):
        upload_bytes(job(s3_server), "x.txt", b"x", expires=8 * 24 * 3600)


def test_without_boto3_the_error_says_what_to_install(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)

    with pytest.raises(ConfigError, match=r"pip install 'podium\[s3\]'"):
        upload_bytes(job(s3_server), "x.txt", b"x")
