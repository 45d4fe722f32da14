"""Fuzz every operation of the HTTP API from the server's own OpenAPI description (schemathesis),
against a real `podium up`: no answer may be a server error, and every call must answer in time.

What the fuzzer is given beyond the description, and why:

* Request bodies. The description declares none (the handlers read the body themselves, as JSON
  whatever its Content-Type), so schemathesis would send none. A `before_load_schema` hook gives
  each POST/PUT/PATCH operation an optional body in three variants, as three JSON media types the
  server parses alike: `application/json`, the keys its handler reads with plausible types
  (`bodies`), to get past the first checks; `...loose+json`, the same keys with values of any
  type; `...any+json`, any JSON value at all.
* Real names. A path parameter generated at random never names anything, so each operation's cases
  are drawn partly from the fully generated strategy and partly with path parameters fixed to
  things that exist (the `real` fixture): the deployed endpoints, a job of each, their versions
  and bundle, a key, a secret. Stopping, rolling back and removing an endpoint are aimed at a
  throwaway one (`victim`), and what leaves an endpoint unusable runs last (`run_order`), so the
  others keep answering.
* Bounds. The long polls (job-take, job-take-batch, job-stop) hold a request PODIUM_TAKE_TIMEOUT
  seconds, runsync PODIUM_RUNSYNC_WAIT, route calls PODIUM_ROUTE_WAIT: the server runs with them at
  1, 2 and 3 s. runsync's `?wait=` (ms, up to 300 000: a caller asking to wait five minutes) is
  folded into 1-10 s so one case cannot legitimately outlast the 15 s "no hang" bound. Scaling
  settings in generated bodies are capped (min_workers <= 1, max_workers <= 3) so a case cannot
  start dozens of worker processes; generated job inputs never name the test services' `marker`
  argument (a job that waits for a file nobody writes).
* Server errors it found (now fixed) stay pinned, each by its minimal request, in `KNOWN`.

Answers that relay a job's outcome or an endpoint's state are 5xx by design and are counted, not
failed (`DESIGNED`): a route that raised (500 route_error), a worker lost (502), a call still
running after the wait (504 timeout), a stopped or failed endpoint (503). Any other 5xx fails,
above all 500 internal_error, the answer to an unhandled exception.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.hooks import GLOBAL_HOOK_DISPATCHER

from conftest import SERVICES
from server import ADMIN_KEY, PodiumServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ENV = {"PODIUM_TAKE_TIMEOUT": "1", "PODIUM_RUNSYNC_WAIT": "2", "PODIUM_ROUTE_WAIT": "3"}
#: "No hang": every call must have answered, its whole body read, within this many seconds.
REQUEST_TIMEOUT = 15.0
MAX_EXAMPLES = 80
#: Operations whose cases on a real endpoint are held for seconds by design.
SLOW = {"job-take", "job-take-batch", "job-stop", "runsync"}
SLOW_MAX_EXAMPLES = 15

TYPED, LOOSE, ANY_JSON = "application/json", "application/x-podium-loose+json", "application/x-podium-any+json"
#: Any JSON value but a float (a schema that allows everything is dropped from `properties` by
#: the generator, and then the key is never sent).
V: dict[str, Any] = {"type": ["object", "array", "string", "integer", "boolean", "null"]}
S: dict[str, Any] = {"type": "string"}
OBJ: dict[str, Any] = {"type": "object"}
STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": S}
S3_KEYS = ["accessId", "accessSecret", "bucketName", "endpointUrl"]
NAME: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}
#: Kept so in every variant. Scaling: more would start that many worker processes.
PINNED: dict[str, Any] = {
    "min_workers": {"type": "integer", "minimum": 0, "maximum": 1},
    "max_workers": {"type": "integer", "minimum": 1, "maximum": 3},
}


def obj(properties: dict[str, Any], *required: str) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **({"required": list(required)} if required else {})}


def bodies(real: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """The body each handler reads (src/podium/server/*.py), with plausible types, by operation."""
    # No webhook here: a valid one would be called (the loose variant sends it, of any type).
    job = obj(
        {
            "input": obj({"value": V, "fail": V}),
            "env": STR_MAP,
            "policy": obj(
                {
                    "executionTimeout": {"type": "integer", "minimum": 5000, "maximum": 604_800_000},
                    "ttl": {"type": "integer", "minimum": 10_000, "maximum": 604_800_000},
                    "lowPriority": {"type": "boolean"},
                }
            ),
            "s3Config": obj({k: {"type": "string", "minLength": 1} for k in S3_KEYS}, *S3_KEYS),
        },
        "input",
    )
    laminar = {"inputs": obj({"value": V, "name": V}), "env": STR_MAP, "metadata": OBJ, "stream": {"type": "boolean"}}
    # Real routes or anything at all, real-looking config or out of range. No min_workers: the
    # worker of a version with a made-up entry could only fail to start.
    config = obj(
        {**PINNED, "min_workers": {"const": 0}, "idle_timeout": {"type": "number"}, "concurrency": {"type": "integer"}},
        "min_workers",
        "max_workers",
        "idle_timeout",
        "concurrency",
    )
    version = obj(
        {
            "sha256": {"enum": real["sha256"]},
            "service": S,
            "entry": S,
            "size": {"type": "integer"},
            "routes": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"anyOf": [{"enum": real["routes"]}, {}]},
            },
            "runtime": {"enum": ["podium", "runpod", "x"]},
            "config": config,
        },
        "sha256",
        "service",
        "entry",
        "routes",
        "config",
        "size",
    )
    return {
        ("POST", "/api/v1/deploy"): obj({"name": NAME, "message": S, "version": version}, "name", "version"),
        ("PATCH", "/api/v1/endpoints/{ref}/scaling"): obj(
            {
                **PINNED,
                "idle_timeout": {"type": "number"},
                "concurrency": {"type": "integer"},
                "scaler": {"enum": ["request-count", "queue-delay", "x"]},
                "target": {"type": "number"},
                "max_jobs_per_worker": {"type": "integer"},
                "max_worker_memory_mb": {"type": "integer"},
                "queue_cap": {"type": "integer"},
            }
        ),
        # Periods of an hour or more: a case must not leave a schedule firing every second.
        ("POST", "/api/v1/endpoints/{ref}/schedules"): obj(
            {
                "route": {"anyOf": [{"enum": ["/work", "/hello", "/", "/nope"]}, S]},
                "cron": {"anyOf": [{"enum": ["0 3 * * *", "61 * * * *"]}, S]},
                "every": {"type": "number", "minimum": 3600},
                "timezone": {"anyOf": [{"enum": ["UTC", "Europe/Rome", "Mars/Olympus"]}, S]},
                "input": obj({"value": V}),
                "overlap": {"type": "boolean"},
            },
            "route",
        ),
        ("POST", "/api/v1/endpoints/{ref}/rollback"): obj({"version": {"enum": real["version_id"]}, "message": S}),
        ("PUT", "/api/v1/endpoints/{ref}/secrets"): obj({"MY_TOKEN": S, "PODIUM_X": S, "lower_ok": S}),
        ("POST", "/api/v1/keys"): obj(
            {
                "role": {"enum": ["read", "invoke", "deploy", "admin", "worker", "root"]},
                "name": S,
                "expires": {"type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]$"},
            }
        ),
        ("POST", "/api/v1/projects"): obj({"name": NAME}),
        ("POST", "/api/v1/webhook-secret/rotate"): obj(
            {"window": {"type": ["string", "number"], "pattern": "^[0-9]+(\\.[0-9]+)?[smhd]?$"}}
        ),
        ("POST", "/v2/{endpoint_id}/run"): job,
        ("POST", "/v2/{endpoint_id}/runsync"): job,
        ("POST", "/v1/pipeline/run"): obj({"pipeline": {"enum": real["endpoint"]}, **laminar}, "pipeline", "env"),
        ("POST", "/v2/endpoint/run"): obj({"endpoint": {"enum": real["endpoint"]}, **laminar}, "endpoint", "env"),
        ("POST", "/v2/{endpoint_id}/job-done/{worker_id}/{job_id}"): obj(
            {
                "status": {"enum": ["IN_PROGRESS", "COMPLETED", "FAILED"]},
                "output": V,
                "error": V,
                "error_info": OBJ,
                "retryable": {"type": "boolean"},
                "stopPod": {"type": "boolean"},
            }
        ),
        ("POST", "/v2/{endpoint_id}/job-stream/{worker_id}/{job_id}"): obj({"output": V}),
        ("POST", "/v2/{endpoint_id}/ping/{worker_id}"): obj({"status": {"enum": ["unhealthy", "ok"]}, "reason": S}),
        ("POST", "/{endpoint}/{route}"): obj(
            {"value": V, "name": S, "message": S, "items": {"type": "integer"}, "number": V, "greeting": V}
        ),
    }


def body_hook(real: dict[str, Any]) -> Any:
    """The `before_load_schema` hook that gives each POST/PUT/PATCH operation its body variants."""
    known = bodies(real)

    def before_load_schema(context: Any, raw_schema: dict[str, Any]) -> None:
        for path, item in raw_schema.get("paths", {}).items():
            for method, op in item.items():
                if method.upper() not in ("POST", "PUT", "PATCH") or "requestBody" in op:
                    continue
                typed = known.get((method.upper(), path))
                content: dict[str, Any] = {ANY_JSON if typed else TYPED: {"schema": {}}}
                if typed:
                    loose = obj({k: PINNED.get(k, V) for k in typed["properties"]})
                    content.update({TYPED: {"schema": typed}, LOOSE: {"schema": loose}})
                op["requestBody"] = {"required": False, "content": content}

    return before_load_schema


#: (status, error) answers that report a job's or an endpoint's state, not a server fault.
DESIGNED = {
    (500, "route_error"),
    (502, "worker_lost"),
    (502, "timed_out"),
    (502, "cancelled"),
    (503, "endpoint_inactive"),
    (503, "endpoint_error"),
    (504, "timeout"),
    (504, "api.timeout"),
}


def short_name(op: Any) -> str:
    """`runsync`, `job-take`, ...: the path's last fixed segment."""
    parts = [p for p in op.path.split("/") if p and not p.startswith("{")]
    return parts[-1] if parts else op.path


def is_remove_endpoint(op: Any) -> bool:
    return op.method.upper() == "DELETE" and op.path == "/api/v1/endpoints/{ref}"


def run_order(op: Any) -> int:
    """Last: what leaves an endpoint unusable. A worker id the server has not seen reporting itself
    unhealthy fails the endpoint (worker_api.ping: a remote worker that never got ready), and
    removing one is for good."""
    if is_remove_endpoint(op):
        return 2
    return 1 if op.method.upper() == "POST" and short_name(op) == "ping" else 0


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    with PodiumServer(tmp_path_factory.mktemp("fuzz-home"), env=ENV) as s:
        yield s


@pytest.fixture(scope="module")
def real(srv: PodiumServer) -> dict[str, Any]:
    """Deploy what the fuzzer's path parameters may name; the values each parameter may take."""
    rp, hello, victim = (
        srv.deploy(SERVICES / "rp.py", "rp"),
        srv.deploy(SERVICES / "basic", "hello"),
        srv.deploy(SERVICES / "basic", "victim"),
    )
    http = srv.http
    rp_job = http.post("/v2/rp/run", json={"input": {"value": 1}}).json()["id"]
    hello_job = http.post("/v2/hello/run", json={"input": {"value": 2}}).json()["id"]
    key = http.post("/api/v1/keys", json={"name": "fuzz", "role": "read"}).json()["id"]
    assert http.put("/api/v1/endpoints/hello/secrets", json={"FUZZ_SECRET": "x"}).status_code == 200
    versions = [http.get(f"/api/v1/versions/{v['version']}").json() for v in (rp, hello)]
    names = ["rp", "hello", rp["endpoint_id"], hello["endpoint_id"]]
    return {
        "ref": [*names, "victim"],
        "endpoint_id": names,
        "endpoint": ["hello", "rp"],
        "route": ["work", "hello", "fail", "stream", "progress", "handler"],
        "job_id": [rp_job, hello_job],
        "version_id": [v["id"] for v in versions],
        "sha256": [versions[1]["sha256"]],
        "routes": [r for v in versions for r in v["routes"]],
        "key_id": [key],
        "name": ["FUZZ_SECRET"],
        "victim": ["victim", victim["endpoint_id"]],
    }


def path_choices(op: Any, real: dict[str, Any]) -> list[dict[str, Any] | None]:
    """Path-parameter overrides for one operation: None (all generated), or real values for some."""
    if is_remove_endpoint(op) or op.path.endswith(("/stop", "/rollback")):
        options = {"ref": real["victim"]}  # on rp/hello, later calls would meet a 503, a 404, another service
    else:
        options = {p.name: real[p.name] for p in op.path_parameters if p.name in real}
    names = list(options)
    fixed = [dict(zip(names, values)) for values in itertools.product(*(options[n] for n in names))]
    return [None, *fixed] if names else [None]


def fold_wait(case: Any) -> Any:
    wait = (case.query or {}).get("wait")
    if isinstance(wait, int) and not isinstance(wait, bool) and wait > 10_000:
        case.query["wait"] = 1000 + wait % 9000
    return case


def bind(check: Any, op: Any) -> Any:
    """`check` for one operation, as a function of the case alone (what @given wants)."""

    def run(case: Any) -> None:
        check(op, case)

    return run


def log_excerpt(srv: PodiumServer, start: int) -> str:
    """The server's own record of each distinct unhandled error logged since `start` (its tail)."""
    seen: dict[str, str] = {}
    for line in (srv.home / "server.log").read_bytes()[start:].decode(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("level") == "error":
            tail = "\n".join(str(record.get("exc", "")).splitlines()[-12:])
            seen.setdefault(tail, f"{record.get('msg')}\n{tail}")
    return "\n\n".join(seen.values()) or "(nothing logged)"


def test_every_operation_answers_without_server_errors_or_hangs(srv: PodiumServer, real: dict[str, Any]) -> None:
    hook = schemathesis.hook(body_hook(real))
    try:
        schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json", timeout=10)
    finally:
        GLOBAL_HOOK_DISPATCHER.unregister(hook)
    operations = sorted((r.ok() for r in schema.get_all_operations()), key=run_order)
    assert len(operations) > 40, [op.label for op in operations]

    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    cases: Counter[str] = Counter()
    statuses: dict[str, Counter[int]] = {}
    designed: Counter[str] = Counter()
    failures: list[str] = []
    hung: dict[str, str] = {}
    # Calls run on a thread so a stream that never ends cannot hold the test: `requests`' timeout
    # bounds each read, not the whole answer. A hung call's thread is abandoned. Each call has a
    # connection of its own (session=None), so cases stay independent when one breaks it.
    pool = [ThreadPoolExecutor(1)]

    def check(op: Any, case: Any) -> None:
        if op.label in hung:  # one hang per operation is enough (shrinking one costs 15 s a step)
            return
        cases[op.label] += 1
        future = pool[0].submit(case.call, base_url=srv.url, headers=headers, timeout=REQUEST_TIMEOUT)
        try:
            response = future.result(REQUEST_TIMEOUT + 1)
        except (FutureTimeout, requests.Timeout):
            hung[op.label] = f"no answer within {REQUEST_TIMEOUT} s:\n    {case.as_curl_command(headers=headers)}"
            pool[0].shutdown(wait=False, cancel_futures=True)
            pool[:] = [ThreadPoolExecutor(1)]
            return
        statuses.setdefault(op.label, Counter())[response.status_code] += 1
        if response.status_code >= 500:
            try:
                body = response.json()
            except ValueError:
                body = None
            error = (body.get("error") or body.get("error_code")) if isinstance(body, dict) else None
            if isinstance(error, dict):  # OpenAI's shape: {"error": {"message", "type", "code"}}
                error = error.get("code")
            if (response.status_code, error) in DESIGNED:
                designed[f"{response.status_code} {error}"] += 1
                return
        case.validate_response(response, checks=(not_a_server_error,), headers=headers)

    started = time.monotonic()
    for op in operations:
        strategy = (
            st.sampled_from(path_choices(op, real))
            .flatmap(lambda pp, op=op: op.as_strategy(path_parameters=pp) if pp else op.as_strategy())
            .map(fold_wait)
        )
        run = settings(
            max_examples=SLOW_MAX_EXAMPLES if short_name(op) in SLOW else MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            print_blob=False,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )(given(case=strategy)(bind(check, op)))
        log_start = (srv.home / "server.log").stat().st_size
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # collected, so that every operation still runs
            failures.append(f"{op.label}:\n{exc}\n--- server.log ---\n{log_excerpt(srv, log_start)}")
        if op.label in hung:
            failures.append(f"{op.label}: {hung[op.label]}")
    elapsed = time.monotonic() - started
    pool[0].shutdown(wait=False, cancel_futures=True)

    per_op = "\n".join(
        f"  {label}: {n} cases, statuses {dict(sorted(statuses.get(label, {}).items()))}"
        for label, n in sorted(cases.items())
    )
    print(
        f"\nschemathesis {schemathesis.__version__}: {sum(cases.values())} cases over {len(operations)} "
        f"operations in {elapsed:.0f} s, {len(failures)} failing operations (server errors or hangs); "
        f"designed 5xx: {dict(designed) or 'none'}\n{per_op}"
    )
    assert httpx.get(f"{srv.url}/healthz", timeout=5).status_code == 200
    assert not failures, "\n\n".join(failures)


def call(srv: PodiumServer, method: str, path: str, body: Any = None) -> httpx.Response:
    """One request on a connection of its own (after an unhandled error the server drops its
    keep-alive connection, and a request sent on it right after fails with a reset)."""
    return httpx.request(
        method, srv.url + path, json=body, timeout=REQUEST_TIMEOUT, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    )


def version_body(real: dict[str, Any], **changes: Any) -> dict[str, Any]:
    config = {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 1}
    return {
        "sha256": real["sha256"][0],
        "service": "basic",
        "entry": "app.py",
        "size": 1,
        "routes": real["routes"][-1:],
        "config": config,
        **changes,
    }


def known_role_unhashable(srv: PodiumServer, real: dict[str, Any]) -> list[int]:
    return [call(srv, "POST", "/api/v1/keys", {"role": []}).status_code]


def known_deploy_invalid_config(srv: PodiumServer, real: dict[str, Any]) -> list[int]:
    config = {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 0}
    body = {"name": "known-config", "version": version_body(real, config=config)}
    return [call(srv, "POST", "/api/v1/deploy", body).status_code]


def known_deploy_malformed_routes(srv: PodiumServer, real: dict[str, Any]) -> list[int]:
    body = {"name": "known-routes", "version": version_body(real, routes=[True])}
    deployed = call(srv, "POST", "/api/v1/deploy", body)
    if deployed.status_code >= 400:
        return [deployed.status_code]  # refused: what a fix may do
    return [
        deployed.status_code,
        call(srv, "GET", "/known-routes/openapi.json").status_code,
        call(srv, "POST", "/known-routes/x", {}).status_code,
        call(srv, "POST", "/v2/known-routes/run", {"input": {}}).status_code,
        call(srv, "POST", "/v1/pipeline/run", {"pipeline": "known-routes", "env": {}}).status_code,
    ]


#: Server errors the fuzzer found, each by its minimal request (fixed; kept as regressions).
KNOWN = [
    pytest.param(known_role_unhashable, id="keys-role-unhashable"),
    pytest.param(known_deploy_invalid_config, id="deploy-invalid-config"),
    pytest.param(known_deploy_malformed_routes, id="deploy-malformed-routes"),
]


@pytest.mark.parametrize("requests_of", KNOWN)
def test_known_server_errors(srv: PodiumServer, real: dict[str, Any], requests_of: Any) -> None:
    statuses = requests_of(srv, real)
    assert all(status < 500 for status in statuses), statuses
