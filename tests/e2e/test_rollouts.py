"""Canary rollouts through a real server and real workers: a share of new calls, on every
surface, goes to a second version (which one is fixed by a hash of the job id, so each job's
version is checked exactly); promote, abort, the leader's failure-rate guard, the history of
each step, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.core.split import routed_to_canary
from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory):
    with PodiumServer(tmp_path_factory.mktemp("rollouts-home")) as s:
        yield s


def service(root: Path, tag: str, *, fail: bool = False) -> Path:
    """A service whose routes answer `tag` (which version ran the call), or, with `fail`, raise."""
    path = root / tag
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.py").write_text(
        "import podium\n\n\n"
        "@podium.service(name='canary', max_workers=1)\n"
        "def init():\n    return {}\n\n\n"
        "@init.endpoint('/which')\n"
        f"def which():\n    if {fail!r}:\n        raise RuntimeError('the canary is broken')\n    return {tag!r}\n\n\n"
        "@init.endpoint('/v1/completions', openai=True, model='m')\n"
        f"def complete(prompt):\n    return {tag!r}\n"
    )
    return path


def deploy(srv: PodiumServer, path: Path, name: str, *args: str) -> dict[str, Any]:
    return json.loads(srv.cli("deploy", str(path), "--name", name, "--json", *args).stdout)


def rollout(srv: PodiumServer, name: str, *args: str, check: bool = True) -> Any:
    res = srv.cli("rollout", name, *args, "--json", check=check)
    return json.loads(res.stdout) if res.returncode == 0 else res


def status(srv: PodiumServer, name: str) -> dict[str, Any]:
    return json.loads(srv.cli("status", name, "--json").stdout)


def history(srv: PodiumServer, name: str) -> list[dict[str, Any]]:
    return json.loads(srv.cli("history", name, "--json").stdout)["history"]  # type: ignore[no-any-return]


def jobs_of(srv: PodiumServer, name: str) -> list[dict[str, Any]]:
    listed = srv.http.get("/api/v1/jobs", params={"endpoint": name, "limit": 1000}).json()["jobs"]
    return [srv.wait_job(j["id"]) for j in listed]


def route_call(srv: PodiumServer, name: str) -> httpx.Response:
    return srv.http.post(f"/{name}/which", json={}, timeout=60)


def runsync(srv: PodiumServer, name: str) -> Any:
    r = srv.http.post(f"/v2/{name}/runsync", json={"input": {}}, timeout=60)
    r.raise_for_status()
    return r.json()["output"]


def completion(srv: PodiumServer, name: str) -> Any:
    r = srv.http.post(f"/v2/{name}/openai/v1/completions", json={"model": "m", "prompt": "hi"}, timeout=60)
    r.raise_for_status()
    return r.json()["choices"][0]["text"]


def until_canary(call: Any, tag: str, most: int = 60) -> list[Any]:
    """Call until `tag` (the canary's, or v1's) answers once: a 50 % split misses it `most` times
    in a row with probability 2**-most. Every answer, in order."""
    answers = []
    for _ in range(most):
        answers.append(call())
        if answers[-1] == tag:
            return answers
    raise AssertionError(f"the canary never answered in {most} calls: {answers}")


def test_split_by_job_id_on_every_surface(srv: PodiumServer, tmp_path: Path) -> None:
    """1. v1 serves; v2 is deployed with --canary 50.
    2. Route calls, /runsync and OpenAI calls go on until each surface has reached the canary.
    Result: every job ran on the version the hash of its id names (exactly), both versions
    answered, and `podium status` shows each version's calls, failures and p50 as counted."""
    one = deploy(srv, service(tmp_path, "one"), "split")
    two = deploy(srv, service(tmp_path, "two"), "split", "--canary", "50")
    assert two["version"] == one["version"]  # the endpoint still points at v1
    assert two["rollout"]["percent"] == 50 and two["rollout"]["version_id"] != one["version"]
    canary = two["rollout"]["version_id"]

    answers = until_canary(lambda: route_call(srv, "split").json(), "two")
    answers += until_canary(lambda: runsync(srv, "split"), "two")
    answers += until_canary(lambda: completion(srv, "split"), "two")
    if "one" not in answers:  # each surface's first call went to the canary (1 in 8): now v1
        answers += until_canary(lambda: route_call(srv, "split").json(), "one")
    assert set(answers) == {"one", "two"}

    jobs = jobs_of(srv, "split")
    ran = {one["version"]: 0, canary: 0}
    for job in jobs:
        want = canary if routed_to_canary(job["id"], 50) else one["version"]
        assert job["status"] == "COMPLETED"
        assert job["version_id"] == want, job["id"]
        out = job["output"]
        said = out if isinstance(out, str) else out["choices"][0]["text"]  # an OpenAI completion
        assert said == ("two" if want == canary else "one")
        ran[want] += 1
    assert sum(1 for a in answers if a == "two") == ran[canary]

    shown = status(srv, "split")["rollout"]
    figures = {v["version"]: v for v in shown["versions"]}
    for version, n in ran.items():
        assert figures[version]["calls"] == n
        assert figures[version]["failures"] == 0
        assert figures[version]["p50_ms"] is not None
    assert figures[canary]["role"] == "canary" and figures[canary]["percent"] == 50
    text = srv.cli("status", "split").stdout
    assert "canary" in text and canary[:8] in text and f"{ran[canary]} calls" in text


def test_rollout_of_a_deployed_version_and_promote(srv: PodiumServer, tmp_path: Path) -> None:
    """1. v1, then v2, then a rollback: v2 is a version the endpoint has run.
    2. `podium rollout NAME V2 --percent 10`, `--percent 50`, then `--promote`.
    Result: the endpoint runs v2, v1's workers drain away, every call answers v2, and the
    history has each step with the key that took it."""
    one = deploy(srv, service(tmp_path, "one"), "promo")
    two = deploy(srv, service(tmp_path, "two"), "promo")
    srv.cli("rollback", "promo", one["version"])
    wait_until(lambda: status(srv, "promo")["state"] == "ACTIVE", 60, what="rolled back")

    started = rollout(srv, "promo", two["version"][:10], "--percent", "10")
    assert started["rollout"]["version_id"] == two["version"]
    assert rollout(srv, "promo", "--percent", "50")["rollout"]["percent"] == 50
    until_canary(lambda: route_call(srv, "promo").json(), "two")

    promoted = rollout(srv, "promo", "--promote")
    assert promoted["version"] == two["version"] and promoted["rollout"] is None
    wait_until(
        lambda: all(w["version_id"] == two["version"] for w in status(srv, "promo")["workers"]),
        60,
        what="v1's workers drained",
    )
    assert [route_call(srv, "promo").json() for _ in range(10)] == ["two"] * 10

    steps = [(h["action"], h["version"]) for h in history(srv, "promo")][:4]
    assert steps == [
        ("promote", two["version"]),
        ("percent", two["version"]),
        ("start", two["version"]),
        (None, one["version"]),  # the rollback
    ]
    assert all(h["key_id"] for h in history(srv, "promo")[:3])
    text = srv.cli("history", "promo").stdout
    assert "promote" in text and "canary at 10 %" in text


def test_abort_returns_all_traffic(srv: PodiumServer, tmp_path: Path) -> None:
    """1. v2 is a canary at 50 % of v1's calls, and has answered.
    2. `podium rollout NAME --abort`.
    Result: every call answers v1 again, v2's workers drain, the history says so."""
    one = deploy(srv, service(tmp_path, "one"), "abort")
    two = deploy(srv, service(tmp_path, "two"), "abort", "--canary", "50")
    until_canary(lambda: route_call(srv, "abort").json(), "two")

    aborted = rollout(srv, "abort", "--abort")
    assert aborted["version"] == one["version"] and aborted["rollout"] is None
    assert [route_call(srv, "abort").json() for _ in range(10)] == ["one"] * 10
    wait_until(
        lambda: all(w["version_id"] == one["version"] for w in status(srv, "abort")["workers"]),
        60,
        what="the canary's workers drained",
    )
    latest = history(srv, "abort")[0]
    assert (latest["action"], latest["version"]) == ("abort", two["rollout"]["version_id"])


def test_guard_aborts_a_failing_canary(srv: PodiumServer, tmp_path: Path) -> None:
    """1. A canary that fails every call, at 50 % with --max-failure-rate 0.05.
    2. Calls go on until the rollout is gone.
    Result: the leader aborted it after at least 20 of the canary's calls, the history says so
    (no key: Podium did it), and the endpoint answers v1 to every call."""
    one = deploy(srv, service(tmp_path, "one"), "guard")
    bad = deploy(srv, service(tmp_path, "bad", fail=True), "guard", "--canary", "50", "--max-failure-rate", "0.05")
    failed = 0
    for _ in range(400):
        r = route_call(srv, "guard")
        failed += r.status_code != 200
        if status(srv, "guard")["rollout"] is None:
            break
    wait_until(lambda: status(srv, "guard")["rollout"] is None, 30, what="the guard's abort")
    assert failed >= 20

    latest = history(srv, "guard")[0]
    assert latest["action"] == "guard" and latest["version"] == bad["rollout"]["version_id"]
    assert latest["key_id"] is None
    assert "--max-failure-rate 0.05" in latest["message"] and "failed" in latest["message"]
    calls = int(latest["message"].split(" of ")[1].split()[0])
    assert calls >= 20
    assert [route_call(srv, "guard").json() for _ in range(5)] == ["one"] * 5
    assert "guard" in srv.cli("history", "guard").stdout
    assert status(srv, "guard")["version"] == one["version"]


def test_refusals(srv: PodiumServer, tmp_path: Path) -> None:
    """Unknown versions, another project's version, shares out of range, the current version,
    and steps with no rollout under way are refused with a clear error (and change nothing)."""
    one = deploy(srv, service(tmp_path, "one"), "refuse")
    srv.cli("projects", "create", "elsewhere")
    other = json.loads(
        srv.cli("deploy", str(service(tmp_path, "two")), "--name", "theirs", "--project", "elsewhere", "--json").stdout
    )
    path = "/api/v1/endpoints/refuse/rollout"

    r = srv.http.put(path, json={"version": "0123456789abcdef", "percent": 10})
    assert r.status_code == 404 and "0123456789abcdef" in r.json()["detail"]
    r = srv.http.put(path, json={"version": other["version"], "percent": 10})
    assert r.status_code == 404 and other["version"] in r.json()["detail"]
    r = srv.http.put(path, json={"version": one["version"], "percent": 10})
    assert r.status_code == 422 and "already" in r.json()["detail"]  # a Conflict
    for bad in (0, 100):
        r = srv.http.put(path, json={"version": other["version"], "percent": bad})
        assert r.status_code in (400, 422), r.text
    r = srv.http.post(f"{path}/promote")
    assert r.status_code == 422 and "no rollout under way" in r.json()["detail"]
    res = rollout(srv, "refuse", "nope", "--percent", "10", check=False)
    assert res.returncode == 1 and "nope" in res.stderr
    res = srv.cli("deploy", str(service(tmp_path, "two")), "--name", "fresh", "--canary", "10", check=False)
    assert res.returncode == 1 and "deploy it first" in res.stderr

    assert srv.http.get(path).json()["rollout"] is None
    assert [h["action"] for h in history(srv, "refuse")] == [None]


def test_the_python_client_steps_a_rollout(srv: PodiumServer, tmp_path: Path) -> None:
    """The client's methods: start a rollout of a deployed version, change its share, read it,
    abort it; each answer is the server's."""
    import podium

    one = deploy(srv, service(tmp_path, "one"), "pyclient")
    two = deploy(srv, service(tmp_path, "two"), "pyclient")
    srv.cli("rollback", "pyclient", one["version"])
    wait_until(lambda: status(srv, "pyclient")["state"] == "ACTIVE", 60, what="rolled back")

    d = podium.get_deployment("pyclient", url=srv.url, api_key=srv.key)
    started = d.rollout(two["version"][:8], percent=20, max_failure_rate=0.5)
    assert started is not None
    assert (started["version_id"], started["percent"], started["max_failure_rate"]) == (two["version"], 20, 0.5)
    changed = d.rollout(percent=40)
    assert changed is not None and (changed["percent"], changed["max_failure_rate"]) == (40, 0.5)
    changed = d.rollout(percent=40, max_failure_rate=0.2)
    assert changed is not None and changed["max_failure_rate"] == 0.2
    seen = d.rollout_status()
    assert seen is not None and [v["role"] for v in seen["versions"]] == ["current", "canary"]
    assert [v["percent"] for v in seen["versions"]] == [60, 40]
    d.abort_rollout()
    assert d.rollout_status() is None and d.info["version"] == one["version"]
    with pytest.raises(podium.APIError, match="no rollout under way"):
        d.promote_rollout()


def test_the_rollout_api_is_described_in_openapi(srv: PodiumServer) -> None:
    paths = srv.http.get("/openapi.json").json()["paths"]
    rollout = paths["/api/v1/endpoints/{ref}/rollout"]
    assert {"get", "put"} <= set(rollout)
    schema = rollout["put"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"version", "percent", "max_failure_rate"} <= set(schema["properties"])
    assert "post" in paths["/api/v1/endpoints/{ref}/rollout/promote"]
    assert "post" in paths["/api/v1/endpoints/{ref}/rollout/abort"]
