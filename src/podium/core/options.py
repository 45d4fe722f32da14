"""The RunPod job request: `input` plus the options RunPod defines, checked and normalised.

`{"input", "webhook", "policy": {"executionTimeout", "ttl", "lowPriority"}, "s3Config", "env"}`,
and Podium's `route` (which route of the service runs the job; the default one when absent);
any other top-level key is dropped. `s3Config` and `env` are worker-only: they travel in the job's
secret fields and are never part of anything a caller can read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from podium.core.errors import InvalidRequest

SECOND_MS = 1000
DAY_MS = 86_400_000
#: RunPod's bounds, in ms.
TIMEOUT_RANGE = (5 * SECOND_MS, 7 * DAY_MS)
TTL_RANGE = (10 * SECOND_MS, 7 * DAY_MS)
S3_KEYS = ("accessId", "accessSecret", "bucketName", "endpointUrl")


@dataclass
class JobOptions:
    """What a job request asks for beyond its input (all optional)."""

    webhook: str | None = None
    timeout_ms: int | None = None
    ttl_ms: int | None = None
    low_priority: bool = False
    s3_config: dict[str, str] | None = None
    #: Per-request environment (Laminar's `env`): worker-only, dropped when the job ends.
    env: dict[str, str] | None = None

    def policy(self) -> dict[str, Any] | None:
        """The policy as the worker sees it in `job["policy"]` (only what was asked)."""
        out: dict[str, Any] = {}
        if self.timeout_ms is not None:
            out["executionTimeout"] = self.timeout_ms
        if self.ttl_ms is not None:
            out["ttl"] = self.ttl_ms
        if self.low_priority:
            out["lowPriority"] = True
        return out or None

    def secret(self) -> dict[str, Any] | None:
        """The worker-only fields of the job dict."""
        out: dict[str, Any] = {}
        if self.s3_config:
            out["s3Config"] = self.s3_config
        if self.env:
            out["env"] = self.env
        return out or None


def _bad(error: str, detail: str) -> InvalidRequest:
    return InvalidRequest(detail, code=error)


def _ms(policy: dict[str, Any], name: str, bounds: tuple[int, int]) -> int | None:
    value = policy.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise _bad("invalid_policy", f"policy.{name} must be a whole number of milliseconds")
    lo, hi = bounds
    if not lo <= value <= hi:
        raise _bad(
            "invalid_policy",
            f"policy.{name} must be between {lo} and {hi} milliseconds, got {int(value)}",
        )
    return int(value)


def parse_webhook(value: Any) -> str | None:
    """A webhook URL as given (None when absent); 400 unless it is an absolute http(s) URL."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 2048:
        raise _bad("invalid_webhook", "webhook must be an http(s) URL of at most 2048 characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _bad("invalid_webhook", "webhook must be an absolute http:// or https:// URL")
    return value


def _s3(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("invalid_s3config", f"s3Config must be an object with {', '.join(S3_KEYS)}")
    missing = [k for k in S3_KEYS if not isinstance(value.get(k), str) or not value[k]]
    if missing:
        # Name the keys, never echo the values: they are credentials.
        raise _bad("invalid_s3config", f"s3Config needs non-empty strings for: {', '.join(missing)}")
    return {k: value[k] for k in S3_KEYS}


def parse_env(value: Any) -> dict[str, str] | None:
    """`env`: an object of string values (names only in errors: values are often secrets)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("invalid_env", "env must be an object of string values")
    bad = sorted(str(k) for k, v in value.items() if not isinstance(v, str))
    if bad:
        raise _bad("invalid_env", f"env values must be strings; not so for: {', '.join(bad)}")
    return value or None


#: RunPod's policy keys. Callers spell them in other cases too (ComfyUI's notes send
#: `executiontimeout`): they are matched without regard to case.
POLICY_KEYS = ("executionTimeout", "ttl", "lowPriority")


def _policy_keys(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy with its keys in RunPod's spelling; an unknown key is a 400, never a limit the
    caller thinks is set and is not."""
    known = {k.lower(): k for k in POLICY_KEYS}
    out: dict[str, Any] = {}
    for key, value in policy.items():
        name = known.get(str(key).lower())
        if name is None:
            raise _bad("invalid_policy", f"policy.{key} is not a policy key (known: {', '.join(POLICY_KEYS)})")
        if name in out:
            raise _bad("invalid_policy", f"policy.{name} is given twice (as {key!r} too)")
        out[name] = value
    return out


def _route(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip("/") or len(value) > 1024:
        raise _bad("invalid_route", 'route must be the path of one of the service\'s routes, like "/predict"')
    return value.strip("/")


@dataclass(frozen=True)
class JobRequest:
    """A /run or /runsync body, split: the job's input, which route (None: the default one) and
    the options."""

    input: dict[str, Any]
    route: str | None
    options: JobOptions


def parse_job_request(body: Any) -> JobRequest:
    """Split a RunPod request body into its input, route and options (400 on anything malformed)."""
    if not isinstance(body, dict):
        raise _bad("invalid_request", 'request body must be a JSON object like {"input": {...}}')
    if "input" not in body:
        raise _bad("missing_input", 'request body needs an "input" object: {"input": {...}}')
    if not isinstance(body["input"], dict):
        raise _bad("invalid_input", '"input" must be a JSON object')
    policy = body.get("policy")
    if policy is None:
        policy = {}
    if not isinstance(policy, dict):
        raise _bad("invalid_policy", "policy must be an object")
    policy = _policy_keys(policy)
    low = policy.get("lowPriority", False)
    if not isinstance(low, bool):
        raise _bad("invalid_policy", "policy.lowPriority must be true or false")
    options = JobOptions(
        webhook=parse_webhook(body.get("webhook")),
        timeout_ms=_ms(policy, "executionTimeout", TIMEOUT_RANGE),
        ttl_ms=_ms(policy, "ttl", TTL_RANGE),
        low_priority=low,
        s3_config=_s3(body.get("s3Config")),
        env=parse_env(body.get("env")),
    )
    return JobRequest(body["input"], _route(body.get("route")), options)
