"""Reports (a hash of) an endpoint secret it was given as an environment variable."""

import hashlib
import os

import podium


@podium.handler(name="secret-env", max_workers=1)
def handler(job):
    token = os.environ.get("TOKEN", "")
    return {"token_sha256": hashlib.sha256(token.encode()).hexdigest(), "value": job["input"].get("value")}
