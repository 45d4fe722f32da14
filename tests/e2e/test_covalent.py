"""Covalent Cloud users keep their code: the real `covalent-cloud==1.4.4` package, in its own
venv (its `covalent` dependency pins SQLAlchemy < 2), runs the seed's function service and more
against one real Podium. Scripts under tests/covalent/ are what a user would run; each prints one
JSON object of what the client saw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from server import PodiumServer
from sidevenv import side_python

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent.parent  # tests/
SCRIPTS = HERE / "covalent"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodiumServer]:
    with PodiumServer(tmp_path_factory.mktemp("covalent-home")) as server:
        yield server


@pytest.fixture(scope="module")
def run(srv: PodiumServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    python = side_python("covalent")
    home = tmp_path_factory.mktemp("covalent-user")  # no saved credentials of the machine's user
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COVALENT_", "DATAROBOT_", "PODIUM_"))}
    env.update(
        HOME=str(home),
        COVALENT_CLOUD_DISPATCHER_URI="http://127.0.0.1",
        COVALENT_CLOUD_DISPATCHER_PORT=str(srv.port),
        COVALENT_CLOUD_AUTH__API_KEY=srv.key,
    )

    def script(name: str, *args: str) -> dict[str, Any]:
        res = subprocess.run(
            [str(python), "-W", "ignore", str(SCRIPTS / name), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert res.returncode == 0, f"{name} failed:\n{res.stdout}\n{res.stderr}"
        return json.loads(res.stdout.splitlines()[-1])  # type: ignore[no-any-return]

    return script


@pytest.fixture(scope="module")
def seed(run: Any) -> dict[str, Any]:
    return run("seed.py")  # type: ignore[no-any-return]


def test_seed_runs_unchanged(seed: dict[str, Any]) -> None:
    assert seed["status_at_deploy"] == "CREATING"
    assert seed["status"] == "ACTIVE"
    assert seed["hello"] == "Hello, world! My favorite number is 42"
    assert seed["hello_1867"] == "Hello, world! My favorite number is 1867"
    assert seed["stream_covalent"] == "Hello, Covalent!\nItems: 1 5 foo\nDone streaming\n"
    assert seed["stream"] == "Hello, world!\nItems: 1 5 foo\nDone streaming\n"
    assert seed["stream_items"] == len(seed["stream"])  # the sync client yields one byte a time
    assert seed["async_hello"] == "Hello, world! My favorite number is 7"
    assert seed["again"] == {
        "id": seed["id"],
        "name": "My First Function Service",
        "status": "ACTIVE",
        "routes": [["/hello", "POST", False], ["/stream", "POST", True]],
    }
    assert seed["info_status"] == "ACTIVE"
    assert seed["id"] in seed["listed"] and seed["listed_total"] == len(seed["listed"])


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "60", *args], capture_output=True, text=True, check=True, timeout=90
    ).stdout


def test_curl_as_the_docs_show(seed: dict[str, Any]) -> None:
    """No Content-Type (curl -d sends a form type): the body is read as JSON all the same."""
    key = f"x-api-key: {seed['token']}"
    assert curl("-X", "POST", f"{seed['address']}/hello", "-H", key, "-d", '{"number": 1867}') == (
        '"Hello, world! My favorite number is 1867"'
    )
    streamed = curl("-N", "-X", "POST", f"{seed['address']}/stream", "-H", key, "-d", '{"message": "Hello, Covalent!"}')
    assert streamed.splitlines() == ["Hello, Covalent!", "Items: 1 5 foo", "Done streaming"]
    # What a route returns is a tenant's content: sandboxed, never sniffed (issue 22, finding 1).
    for route in ("hello", "stream"):
        r = httpx.post(f"{seed['address']}/{route}", headers={"x-api-key": seed["token"]}, json={})
        assert r.headers["content-security-policy"] == "sandbox" and r.headers["x-content-type-options"] == "nosniff"


def test_a_deployment_is_an_ordinary_endpoint(srv: PodiumServer, seed: dict[str, Any]) -> None:
    ep = srv.http.get(f"/api/v1/endpoints/{seed['id']}").json()
    assert ep["state"] == "ACTIVE" and [r["path"] for r in ep["routes"]] == ["/hello", "/stream"]
    assert ep["runtime"] == "covalent" and ep["name"].startswith("my-first-function-service-")
    listed = subprocess.run(
        [sys.executable, "-m", "podium", "ls"],
        env={**srv.env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert ep["name"] in listed and "covalent" in listed
    version = srv.http.get(f"/api/v1/versions/{ep['version']}").json()
    assert version["runtime"] == "covalent"
    assert version["requirements"]["packages"] == ["cloudpickle==2.2.1"]
    # Podium's own route call reaches the same worker.
    assert srv.http.post(f"/{seed['id']}/hello", json={"number": 3}).json() == "Hello, world! My favorite number is 3"


def test_inference_keys_and_teardown(run: Any, seed: dict[str, Any]) -> None:
    out = run("manage.py", seed["id"])
    assert len(out["keys_before"]) == 1
    assert sorted(out["keys_after_create"]) == sorted([*out["keys_before"], out["new_key_id"]])
    assert out["with_new_key"] == "Hello, world! My favorite number is 5"
    assert out["deleted"] is True and out["deleted_again"] is False
    assert out["with_deleted_key"][0] == 401 and out["with_deleted_key"][1]["code"] == "auth/failed"
    assert out["without_key"][0] == 401
    assert out["keys_after_delete"] == out["keys_before"]
    assert out["teardown_status"] == "INACTIVE" and out["status_after"] == "INACTIVE"
    assert out["call_after_teardown"] == [
        503,
        {"detail": f"deployment {seed['id']} was torn down", "code": "deployment_inactive"},
    ]


def test_auth_false_and_every_method(run: Any) -> None:
    out = run("open_service.py")
    assert out["status"] == "ACTIVE" and out["auth"] is False
    assert out["item"] == {"name": "apple", "count": 5}  # the initializer's argument at deploy
    assert out["item_set"] == {"apple": 5, "pear": 2}
    assert out["item_add"] == {"apple": 5, "pear": 5}
    assert out["item_remove"] == ["pear"]
    assert out["item_pear"] == {"name": "pear", "count": 5}
    assert out["countdown"] == "3\n2\n1\n" and out["async_countdown"] == "2\n1\n"
    assert out["methods"] == {
        "/item": "GET",
        "/item-set": "PUT",
        "/item-add": "PATCH",
        "/item-remove": "DELETE",
        "/countdown": "GET",
        "/whole": "POST",
        "/fail": "POST",
    }
    assert out["whole"] == "1 kinds in stock"
    base = out["address"]
    with httpx.Client(timeout=60) as http:  # no key at all
        assert http.request("GET", f"{base}/item", json={"name": "pear"}).json() == {"name": "pear", "count": 5}
        wrong = http.post(f"{base}/item", json={})
        assert wrong.status_code == 405 and wrong.json()["detail"] == "/item takes GET, not POST"
        missing = http.post(f"{base}/nope", json={})
        assert missing.status_code == 404 and missing.json()["code"] == "resource/not_found"
        bad = http.request("GET", f"{base}/item", json={"colour": "red"})
        assert bad.status_code == 422 and "colour" in bad.json()["detail"]
        failed = http.post(f"{base}/fail", json={"reason": "boom"})
        assert failed.status_code == 500 and failed.json() == {"detail": "RuntimeError: boom", "code": "function/error"}
        not_object = http.request("GET", f"{base}/item", content=b"[1, 2]")
        assert not_object.status_code == 422 and not_object.json()["code"] == "validation/error"


def test_failing_initializer(run: Any) -> None:
    out = run("failing.py")
    assert out["status"] == "ERROR"
    assert out["error"] == "FileNotFoundError: no model at /models/llama"
    assert "Traceback (most recent call last):" in out["stderr"]
    # The frame in the deployer's file (its source line is not shown: a sandboxed worker does not
    # see the deploying machine's files, even when that is this machine).
    assert ", in broken" in out["stderr"] and "failing.py" in out["stderr"]
    status, body = out["call"]
    assert status == 503 and body["code"] == "endpoint_error" and "no model at /models/llama" in body["detail"]


def test_time_limit_stops_a_deployment(run: Any) -> None:
    out = run("short_lived.py")
    assert out["status"] == "INACTIVE"
    assert out["call"] == [
        503,
        {"detail": f"deployment {out['id']} reached its time limit (3 s)", "code": "deployment_inactive"},
    ]


def test_management_errors(srv: PodiumServer) -> None:
    base = f"{srv.url}/fn/api/v0"
    with httpx.Client(timeout=30, headers={"x-api-key": srv.key}) as http:
        bad_key = http.get(f"{base}/functions", headers={"x-api-key": "pod_live_not-a-key"})
        assert bad_key.status_code == 401 and bad_key.json()["code"] == "auth/failed"
        unknown = http.get(f"{base}/functions/nosuchfunction")
        assert unknown.status_code == 404
        assert unknown.json() == {"detail": "no endpoint 'nosuchfunction'", "code": "resource/not_found"}
        assert http.put(f"{base}/functions/nosuchfunction/teardown").status_code == 404
        invalid = http.post(f"{base}/functions", json={"title": "x"})
        assert invalid.status_code == 422 and invalid.json()["code"] == "validation/error"
        asset = {"type": "Asset", "id": "0" * 24}
        body = {
            "title": "x",
            "init_fn": asset,
            "init_fn_args": asset,
            "init_fn_kwargs": asset,
            "endpoints": [{"route": "/a", "endpoint_fn": asset}],
        }
        missing = http.post(f"{base}/functions", json=body)
        assert missing.status_code == 400 and "was not uploaded" in missing.json()["detail"]
        slot = http.post(f"{base}/assets", params={"n": 1}).json()[0]
        assert http.put(slot["url"], content=b"not an archive").status_code == 200
        junk = {"type": "Asset", "id": slot["id"]}
        not_pickle = http.post(f"{base}/functions", json={**body, "init_fn": junk})
        assert not_pickle.status_code == 400 and "offsets" in not_pickle.json()["detail"]
        assert http.put(f"{base}/assets/{'f' * 24}", content=b"x").status_code == 404
        assert http.post(f"{base}/assets", params={"n": 0}).status_code == 400
        envs = http.get(f"{srv.url}/api/v2/envs", params={"name": "my-env"}).json()
        assert envs["records"][0]["status"] == "READY"


def test_listing_pages_sorts_and_filters(srv: PodiumServer, seed: dict[str, Any]) -> None:
    """After the tests above: the seed (INACTIVE), the open shop (ACTIVE), the broken model (ERROR),
    the short-lived one (INACTIVE)."""

    def listing(**params: Any) -> dict[str, Any]:
        res = httpx.get(f"{srv.url}/fn/api/v0/functions", params=params, headers={"x-api-key": srv.key}, timeout=30)
        assert res.status_code == 200, res.text
        return res.json()  # type: ignore[no-any-return]

    every = listing(count=10, page=0, sort="title", direction="ASC")
    assert [r["title"] for r in every["records"]] == [
        "broken model",
        "My First Function Service",
        "open shop",
        "short lived",
    ]
    assert every["metadata"] == {"total_count": 4, "page": 0, "count": 4}
    second = listing(count=3, page=1, sort="title", direction="DESC")
    assert [r["title"] for r in second["records"]] == ["broken model"]
    assert second["metadata"] == {"total_count": 4, "page": 1, "count": 1}
    assert [r["status"] for r in listing(status="ERROR")["records"]] == ["ERROR"]
    assert [r["id"] for r in listing(search="FIRST FUNCTION")["records"]] == [seed["id"]]
    record = every["records"][1]
    assert set(record) == {
        "id",
        "title",
        "description",
        "status",
        "created_at",
        "updated_at",
        "endpoints",
        "tags",
        "auth",
    }
    assert record["endpoints"][0] == {
        "route": "/hello",
        "method": "POST",
        "streaming": False,
        "name": "hello",
        "description": record["endpoints"][0]["description"],
    }
    bad = httpx.get(f"{srv.url}/fn/api/v0/functions", params={"sort": "colour"}, headers={"x-api-key": srv.key})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("sort must be one of")
