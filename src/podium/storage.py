"""Upload a handler's output files to the bucket its request names, and hand back links to them.

A RunPod-style request may carry ``s3Config`` (``accessId``, ``accessSecret``, ``bucketName``,
``endpointUrl``, optionally ``region``, default us-east-1): the caller's own bucket, so large outputs
need not travel in the JSON answer. Handlers pass the whole ``job`` (or just its ``s3Config``) and
get presigned GET URLs back::

    from podium.storage import upload_files

    def handler(job):
        return {"files": upload_files(job, ["/tmp/out.png"])}

Objects go under ``<prefix or job id>/<name>``. Path-style addressing is used so local
S3-compatible servers (MinIO, moto) work as well as AWS. The secret is never put in an error;
storage failures are raised as :class:`UploadError` with it scrubbed out.

Needs boto3: ``pip install 'podium[s3]'``.
"""

from __future__ import annotations

import mimetypes
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from podium.errors import ConfigError, UploadError

__all__ = ["UploadError", "upload_bytes", "upload_files"]

#: The longest a SigV4 presigned URL may live (7 days); also the default.
MAX_EXPIRES = 7 * 24 * 3600

_KEYS = ("accessId", "accessSecret", "bucketName", "endpointUrl")


def upload_files(
    job_or_s3config: Mapping[str, Any],
    paths: Iterable[str | os.PathLike[str]],
    *,
    prefix: str | None = None,
    expires: int = MAX_EXPIRES,
) -> list[str]:
    """Upload local files under ``<prefix or job id>/<file name>``; return presigned GET URLs, in order.

    Parameters:
        job_or_s3config: the job dict (its ``s3Config`` and ``id`` are used) or an ``s3Config`` dict.
        paths: local files; all are checked before any is uploaded.
        prefix: key prefix; defaults to the job id (a fresh random one when only s3Config is given).
        expires: lifetime of the URLs in seconds, at most 7 days.
    """
    files = [Path(p) for p in paths]
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"not a file: {path}")
    target = _Target(job_or_s3config, prefix, expires)
    urls = []
    for path in files:
        key = f"{target.prefix}/{path.name}"
        target.run(
            target.client.upload_file,
            str(path),
            target.bucket,
            key,
            ExtraArgs={"ContentType": _content_type(path.name)},
        )
        urls.append(target.presign(key))
    return urls


def upload_bytes(
    job_or_s3config: Mapping[str, Any],
    name: str,
    data: bytes,
    *,
    content_type: str | None = None,
    prefix: str | None = None,
    expires: int = MAX_EXPIRES,
) -> str:
    """Store ``data`` as ``<prefix or job id>/<name>``; return a presigned GET URL.

    ``content_type`` defaults to a guess from ``name``. Other parameters are as for :func:`upload_files`.
    """
    if not name:
        raise ValueError("name must not be empty")
    target = _Target(job_or_s3config, prefix, expires)
    key = f"{target.prefix}/{name}"
    target.run(
        target.client.put_object,
        Bucket=target.bucket,
        Key=key,
        Body=data,
        ContentType=content_type or _content_type(name),
    )
    return target.presign(key)


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _s3config(job_or_s3config: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """Split the argument into (s3Config, job id or None), validating the config without echoing it."""
    if not isinstance(job_or_s3config, Mapping):
        raise ConfigError("expected the job dict or its s3Config dict")
    if "s3Config" in job_or_s3config:
        config = job_or_s3config["s3Config"]
        job_id = job_or_s3config.get("id")
        if not isinstance(config, Mapping):
            raise ConfigError("s3Config must be an object with " + ", ".join(_KEYS))
    elif any(k in job_or_s3config for k in _KEYS):
        config, job_id = job_or_s3config, None
    else:
        raise ConfigError("the request has no s3Config (" + ", ".join(_KEYS) + ")")
    missing = [k for k in _KEYS if k not in config]
    if missing:
        raise ConfigError("s3Config is missing " + ", ".join(missing))
    bad = [k for k in _KEYS if not isinstance(config[k], str) or not config[k].strip()]
    if bad:
        raise ConfigError("s3Config needs non-empty strings for " + ", ".join(bad))
    return config, str(job_id) if job_id not in (None, "") else None


class _Target:
    """One bucket, one key prefix and a client for them, built from a validated s3Config."""

    def __init__(self, job_or_s3config: Mapping[str, Any], prefix: str | None, expires: int) -> None:
        if not 1 <= expires <= MAX_EXPIRES:
            raise ValueError(f"expires must be 1..{MAX_EXPIRES} seconds (the S3 presigned URL limit)")
        config, job_id = _s3config(job_or_s3config)
        self.expires = expires
        self.bucket: str = config["bucketName"]
        self.prefix = (prefix if prefix is not None else job_id or uuid.uuid4().hex).strip("/")
        # Scrubbed from error text: the secret must never show; the id need not, either.
        self._hide = [config["accessSecret"], config["accessId"]]
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigError("podium.storage needs boto3: pip install 'podium[s3]'") from None

        def connect() -> Any:
            # A session of our own: the default one is shared, and not thread-safe.
            return boto3.session.Session().client(
                "s3",
                endpoint_url=config["endpointUrl"],
                aws_access_key_id=config["accessId"],
                aws_secret_access_key=config["accessSecret"],
                region_name=config.get("region") or "us-east-1",
                config=Config(
                    s3={"addressing_style": "path"},  # local S3 servers have no per-bucket host names
                    signature_version="s3v4",
                    retries={"max_attempts": 3, "mode": "standard"},
                ),
            )

        self.client: Any = self.run(connect)

    def presign(self, key: str) -> str:
        url: str = self.run(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.expires,
        )
        return url

    def run(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call boto; re-raise its failures as UploadError with the credentials scrubbed out."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call(*args, **kwargs)
        except (Boto3Error, BotoCoreError, ClientError, ValueError) as exc:
            text = f"{type(exc).__name__}: {exc}"
        for secret in self._hide:
            text = text.replace(secret, "***")
        # Raised outside the except block so the original (unscrubbed) error is not even its __context__.
        raise UploadError(f"S3 upload to bucket {self.bucket!r} failed: {text}")
