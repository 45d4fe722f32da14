"""Environments per version, against one real server: services that import packages Podium's own
environment lacks (hand-made wheels served with --find-links, and one from the real index), two
pins of one package serving at once, cache hits, failed builds, ten workers waiting for one build,
and `podium envs ls / gc`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from podium.envs.builder import EnvStore
from podium.envs.requirements import Requirements
from server import PodiumServer, wait_until
from wheels import make_wheel

pytestmark = [pytest.mark.slow, pytest.mark.boxed]

APP = """
import sys

import podium_envpkg  # at the top: the deploying machine does not have it

import podium


@podium.service(name="envs-test", min_workers=1{settings})
def init():
    return {{}}


@init.endpoint("/which")
def which():
    return {{"pkg": podium_envpkg.VERSION, "prefix": sys.prefix, "code": {code}}}
"""


class Ctx:
    def __init__(self, srv: PodiumServer, root: Path) -> None:
        self.srv = srv
        self.root = root

    def service(self, name: str, *, requirements: str | None = None, settings: str = "", code: int = 1) -> Path:
        d = self.root / name
        d.mkdir(exist_ok=True)
        (d / "app.py").write_text(APP.format(settings=settings, code=code))
        if requirements is not None:
            (d / "requirements.txt").write_text(requirements)
        return d

    def deploy(self, path: Path, name: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.srv.cli("deploy", str(path), "--name", name, "--timeout", "110", check=check)

    def endpoint(self, name: str) -> dict[str, Any]:
        r = self.srv.http.get(f"/api/v1/endpoints/{name}")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def which(self, name: str) -> dict[str, Any]:
        r = self.srv.http.post(f"/{name}/which", json={})
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def build(self, version: str) -> dict[str, Any]:
        return self.srv.http.get(f"/api/v1/versions/{version}/build", params={"offset": 0}).json()  # type: ignore[no-any-return]

    def builds_of(self, env: str) -> int:
        """How many times an environment was built (each build starts a section of its log)."""
        return (self.srv.home / "envs" / f"{env}.log").read_text().count("== building environment ")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = tmp_path_factory.mktemp("wheels")
    for version in ("1.0", "2.0"):
        make_wheel(found, "podium_envpkg", version, f"VERSION = {version!r}\n")
    make_wheel(found, "podium_envextra", "1.0", "EXTRA = True\n")
    return found


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory, wheels: Path) -> Iterator[Ctx]:
    # Only these wheels besides the index (not the machine's own --find-links).
    with PodiumServer(tmp_path_factory.mktemp("envs-home"), env={"PIP_FIND_LINKS": str(wheels)}) as srv:
        yield Ctx(srv, tmp_path_factory.mktemp("services"))


def test_a_service_that_imports_its_dependency_at_the_top_deploys_from_a_machine_without_it(ctx: Ctx):
    assert importlib.util.find_spec("podium_envpkg") is None  # this Python is the CLI's and the server's
    res = ctx.deploy(ctx.service("pinned-one", requirements="podium-envpkg==1.0\n"), "pinned-one")
    assert "+ podium-envpkg==1.0" in res.stderr  # the installer's progress, shown by deploy
    out = ctx.which("pinned-one")
    assert out["pkg"] == "1.0"
    assert Path(out["prefix"]).parent == (ctx.srv.home / "envs").resolve()
    # The environment sees its own packages and podium, never the server's (fastapi, sqlalchemy...).
    python = str(Path(out["prefix"]) / "bin" / "python")
    probe = "import podium, podium_envpkg, importlib.util as u; print(u.find_spec('fastapi') is None)"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"
    log = ctx.srv.cli("logs", "pinned-one", "--build").stdout
    assert "+ podium-envpkg==1.0" in log and "== environment ready ==" in log


def test_two_endpoints_pinning_two_versions_of_one_package_serve_at_once(ctx: Ctx):
    ctx.deploy(ctx.service("pinned-one", requirements="podium-envpkg==1.0\n"), "pinned-one")
    ctx.deploy(ctx.service("pinned-two", settings=', requirements=["podium-envpkg==2.0"]'), "pinned-two")
    assert ctx.which("pinned-one")["pkg"] == "1.0"
    assert ctx.which("pinned-two")["pkg"] == "2.0"
    for name in ("pinned-one", "pinned-two"):  # both workers are alive together (min_workers=1)
        assert ctx.endpoint(name)["workers_by_state"]["ready"] >= 1


def test_a_redeploy_with_a_code_change_only_builds_nothing(ctx: Ctx):
    ctx.deploy(ctx.service("cache-hit", requirements="podium-envpkg==1.0\n", code=1), "cache-hit")
    first = ctx.endpoint("cache-hit")
    res = ctx.deploy(ctx.service("cache-hit", code=2), "cache-hit")
    again = ctx.endpoint("cache-hit")
    assert again["version"] != first["version"]
    assert ctx.which("cache-hit")["code"] == 2
    assert "podium-envpkg" not in res.stderr  # no installer output: nothing was built
    assert "reused: its requirements were built before" in res.stderr
    env = ctx.build(again["version"])["env"]
    assert env == ctx.build(first["version"])["env"]
    assert ctx.builds_of(env) == 1  # also shared with pinned-one's versions, built once for all


def test_a_failed_build_keeps_the_previous_version_serving_and_deploy_exits_non_zero(ctx: Ctx):
    ctx.deploy(ctx.service("keeps-serving", requirements="podium-envpkg==1.0\n"), "keeps-serving")
    before = ctx.endpoint("keeps-serving")
    res = ctx.deploy(
        ctx.service("keeps-serving", requirements="podium-envpkg==1.0\npodium-no-such-package-zz==9.9\n"),
        "keeps-serving",
        check=False,
    )
    assert res.returncode != 0
    assert "failed to build" in res.stderr and "podium-no-such-package-zz" in res.stderr
    failed_version = re.search(r"the environment of version (\w+) failed", res.stderr).group(1)
    # The failed version's build, by a prefix of its id, while the endpoint runs another one.
    shown = ctx.srv.cli("versions", "show", failed_version[:8]).stdout
    assert "environment" in shown and ": failed" in shown and "podium-no-such-package-zz" in shown
    log = ctx.srv.cli("logs", "keeps-serving", "--build", "--version", failed_version[:8]).stdout
    assert "podium-no-such-package-zz" in log
    # The server forgets the failed redeploy on its next pass; the endpoint never left its version.
    after = wait_until(
        lambda: (e := ctx.endpoint("keeps-serving"))["pending_version"] is None and e,
        20,
        what="the failed redeploy forgotten",
    )
    assert (after["version"], after["state"]) == (before["version"], "ACTIVE")
    assert ctx.which("keeps-serving")["pkg"] == "1.0"
    failed = [
        v
        for v in ctx.srv.http.get("/api/v1/endpoints/keeps-serving/versions").json()["versions"]
        if v["build_state"] == "failed"
    ]
    assert failed == []  # the failed version was never pointed at: not in the endpoint's history
    history = ctx.srv.http.get("/api/v1/endpoints/keeps-serving/history").json()["history"]
    assert len(history) == 1


@pytest.mark.parametrize(
    ("requirements", "settings", "message"),
    [
        ("podium-no-such-package-zz==1.0\n", "", "podium-no-such-package-zz"),
        ("podium-envpkg==1.0\n", ', python="3.99"', "cannot create a Python 3.99 environment"),
    ],
)
def test_a_first_deploy_whose_build_fails_puts_the_endpoint_in_error(ctx: Ctx, requirements, settings, message):
    name = "first-fails-" + str(len(settings))
    res = ctx.deploy(ctx.service(name, requirements=requirements, settings=settings), name, check=False)
    assert res.returncode != 0 and message in res.stderr
    ep = wait_until(lambda: (e := ctx.endpoint(name))["state"] != "CREATING" and e, 20, what="the endpoint's state")
    assert ep["state"] == "ERROR"
    assert "failed to build" in ep["error"] and message in ep["error"]
    build = ctx.build(ep["version"])
    assert build["state"] == "failed" and message in build["error"]


def test_the_worker_still_checks_the_routes_read_from_source(ctx: Ctx):
    d = ctx.root / "sneaky"
    d.mkdir()
    (d / "requirements.txt").write_text("podium-envpkg==1.0\n")
    (d / "app.py").write_text(
        textwrap.dedent("""
        import podium

        @podium.service(name="sneaky")
        def init():
            return {}

        @init.endpoint("/seen")
        def seen():
            return 1

        init.endpoint("/unseen")(lambda: 2)  # not a decorator: deploy cannot read it
    """)
    )
    res = ctx.deploy(d, "sneaky", check=False)
    assert res.returncode != 0
    ep = ctx.endpoint("sneaky")
    assert ep["state"] == "ERROR" and "routes differ" in ep["error"]


def test_builders_racing_for_one_environment_build_it_once(
    tmp_path: Path, wheels: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    store = EnvStore(tmp_path / "envs")
    reqs = Requirements(("podium-envpkg==1.0",))
    with ThreadPoolExecutor(4) as pool:  # each holds its own open file: the lock excludes them all
        found = list(pool.map(lambda _: store.build(reqs.env_hash(), reqs, "0" * 16), range(4)))
    assert len({i.python for i in found}) == 1
    assert store.log_path(reqs.env_hash()).read_text().count("== building environment ") == 1


def test_ten_workers_starting_together_build_once(ctx: Ctx):
    d = ctx.service("ten", requirements="podium-envpkg==2.0\npodium-envextra==1.0\n", settings=", max_workers=10")
    ctx.srv.cli("deploy", str(d), "--name", "ten", "--min-workers", "10", "--no-wait")
    ep = wait_until(
        lambda: (e := ctx.endpoint("ten"))["workers_by_state"]["ready"] == 10 and e, 100, 0.2, "ten ready workers"
    )
    assert ctx.builds_of(ctx.build(ep["version"])["env"]) == 1
    assert {w["pid"] for w in ep["workers"]} and len(ep["workers"]) == 10
    ctx.srv.http.delete("/api/v1/endpoints/ten")


def test_envs_ls_shows_users_and_gc_removes_only_unused_environments(ctx: Ctx):
    ctx.deploy(ctx.service("pinned-one", requirements="podium-envpkg==1.0\n"), "pinned-one")
    ctx.deploy(ctx.service("pinned-two", settings=', requirements=["podium-envpkg==2.0"]'), "pinned-two")
    one = ctx.build(ctx.endpoint("pinned-one")["version"])["env"]
    two = ctx.build(ctx.endpoint("pinned-two")["version"])["env"]
    envs = {e["hash"]: e for e in json.loads(ctx.srv.cli("envs", "ls", "--json").stdout)}
    assert "pinned-one" in envs[one]["endpoints"] and envs[one]["size"] > 0
    assert envs[two]["endpoints"] == ["pinned-two"] and envs[two]["packages"] == ["podium-envpkg==2.0"]
    assert ctx.endpoint("pinned-two")["version"] in envs[two]["versions"]
    assert one[:12] in ctx.srv.cli("envs", "ls").stdout
    ctx.srv.http.delete("/api/v1/endpoints/pinned-two").raise_for_status()
    gone = json.loads(ctx.srv.cli("envs", "gc", "--json").stdout)["removed"]
    assert two in [e["hash"] for e in gone] and one not in [e["hash"] for e in gone]
    assert not (ctx.srv.home / "envs" / two).exists()
    assert ctx.which("pinned-one")["pkg"] == "1.0"


def test_an_http_app_with_requirements_is_read_from_source_and_served(ctx: Ctx):
    d = ctx.root / "asgi-app"
    d.mkdir()
    (d / "requirements.txt").write_text("podium-envpkg==2.0\n")
    (d / "app.py").write_text(
        textwrap.dedent("""
        import podium_envpkg


        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": podium_envpkg.VERSION.encode()})
    """)
    )
    ctx.deploy(d, "asgi-app")
    r = ctx.srv.http.get("/asgi-app/anything")
    assert (r.status_code, r.text) == (200, "2.0")


def test_a_package_from_the_real_index_that_podium_lacks(ctx: Ctx):
    assert importlib.util.find_spec("inflection") is None
    d = ctx.root / "from-index"
    d.mkdir()
    (d / "requirements.txt").write_text("inflection==0.5.1\n")
    (d / "app.py").write_text(
        textwrap.dedent("""
        import inflection
        import podium

        @podium.handler(name="from-index")
        def handler(job):
            return inflection.camelize(job["input"]["text"])
    """)
    )
    ctx.deploy(d, "from-index")
    r = ctx.srv.http.post("/v2/from-index/runsync", json={"input": {"text": "device_type"}})
    assert r.json()["output"] == "DeviceType"
    assert subprocess.run([sys.executable, "-c", "import inflection"], capture_output=True).returncode != 0


def test_a_pin_the_worker_runtime_cannot_use_is_a_clear_error(ctx: Ctx):
    res = ctx.deploy(
        ctx.service("old-pydantic", requirements="podium-envpkg==1.0\npydantic==1.10.13\n"), "old-pydantic", check=False
    )
    assert res.returncode != 0
    assert "conflict with what Podium's worker runtime needs" in res.stderr and "pydantic" in res.stderr


def test_a_runpod_worker_gets_runpod_from_its_own_requirements(ctx: Ctx):
    import runpod  # the version the compatibility tests use, pinned in the worker's requirements.txt

    d = ctx.root / "rp-own"
    d.mkdir()
    (d / "requirements.txt").write_text(f"runpod=={runpod.__version__}\n")
    (d / "handler.py").write_text(
        textwrap.dedent("""
        import sys

        import runpod


        def handler(job):
            return {"prefix": sys.prefix, "runpod": runpod.__file__}


        runpod.serverless.start({"handler": handler})
    """)
    )
    ctx.deploy(d, "rp-own")
    out = ctx.srv.http.post("/v2/rp-own/runsync", json={"input": {}}).json()["output"]
    envs = (ctx.srv.home / "envs").resolve()
    assert Path(out["prefix"]).parent == envs and Path(out["runpod"]).is_relative_to(Path(out["prefix"]))


def test_deploying_from_python_reports_the_build_through_get_deployment(ctx: Ctx, capsys: pytest.CaptureFixture[str]):
    import podium

    d = ctx.root / "from-python"
    d.mkdir()
    (d / "pysvc.py").write_text(
        textwrap.dedent("""
        import podium

        @podium.service(name="from-python", requirements=["podium-envextra==1.0"])
        def init():
            return {}

        @init.endpoint("/extra")
        def extra():
            import podium_envextra  # only there: this module is imported here to deploy it
            return podium_envextra.EXTRA
    """)
    )
    spec = importlib.util.spec_from_file_location("pysvc", d / "pysvc.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pysvc"] = module
    spec.loader.exec_module(module)
    dep = podium.deploy(module.init, url=ctx.srv.url, api_key=ctx.srv.key)()
    ready = podium.get_deployment(dep, wait=True, progress=True, timeout=110)
    assert ready.status == "ACTIVE" and ready.extra() is True
    assert "+ podium-envextra==1.0" in capsys.readouterr().err


def test_the_users_pins_win_over_what_the_runtime_would_bring(ctx: Ctx):
    ctx.deploy(ctx.service("old-orjson", requirements="podium-envpkg==1.0\norjson==3.10.0\n"), "old-orjson")
    python = str(Path(ctx.which("old-orjson")["prefix"]) / "bin" / "python")
    probe = subprocess.run([python, "-c", "import orjson; print(orjson.__version__)"], capture_output=True, text=True)
    assert probe.stdout.strip() == "3.10.0"  # the runtime only asks for orjson>=3.10; the worker runs on it


def test_a_redeploy_waiting_for_its_environment_survives_a_server_restart(tmp_path: Path, wheels: Path):
    env = {"PIP_FIND_LINKS": str(wheels)}
    with PodiumServer(tmp_path / "home", env=env) as srv:
        c = Ctx(srv, tmp_path)
        c.deploy(c.service("restarts", requirements="podium-envpkg==1.0\n"), "restarts")
        srv.cli(
            "deploy", str(c.service("restarts", requirements="podium-envpkg==2.0\n")), "--name", "restarts", "--no-wait"
        )
    # Closed at once: the build may be cut short, or done with the endpoint not yet switched.
    with PodiumServer(tmp_path / "home", env=env) as again:
        c = Ctx(again, tmp_path)
        wait_until(lambda: c.endpoint("restarts")["pending_version"] is None, 60, 0.2, "the redeploy applied")
        assert (
            wait_until(
                lambda: (r := again.http.post("/restarts/which", json={})).status_code == 200 and r.json(),
                60,
                0.2,
                "an answer",
            )["pkg"]
            == "2.0"
        )


@pytest.mark.parametrize(
    "line",
    [
        "-r {secret}",
        "--index-url http://127.0.0.1:9/simple",
        "--find-links {wheels}",
        "-e {wheels}",
        "podium-envpkg @ file://{wheels}/podium_envpkg-1.0-py3-none-any.whl",
        "podium-envpkg @ http://127.0.0.1:9/podium_envpkg-1.0-py3-none-any.whl",
    ],
)
def test_requirement_lines_that_are_no_pep508_requirements_are_refused_at_deploy(ctx: Ctx, wheels: Path, line: str):
    """Issue 22, finding 6: a client that skips the CLI's own check sent `-r /path/.env` and the
    build error showed the file's first line. The server refuses the line, naming it, at deploy."""
    secret = ctx.root / "server.env"
    secret.write_text("SERVER_SECRET=s3cr3t-first-line\n")
    line = line.format(secret=secret, wheels=wheels)
    from podium.bundle import describe, make_bundle

    bundle = make_bundle(ctx.service("refused-line", requirements="podium-envpkg==1.0\n"))
    version = {**describe(bundle), "requirements": {"packages": [line], "python": None}}
    assert ctx.srv.http.put(f"/api/v1/blobs/{bundle.sha256}", content=bundle.data).status_code == 200
    r = ctx.srv.http.post("/api/v1/deploy", json={"name": "refused-line", "version": version})
    assert r.status_code == 400 and repr(line) in r.json()["detail"], r.text
    assert "s3cr3t" not in r.text
    assert ctx.srv.http.get("/api/v1/endpoints/refused-line").status_code == 404


def _uv_installs(home: Path) -> list[int]:
    """Pids of `uv pip install` processes building an environment under `home`."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [
        int(line.split(None, 1)[0])
        for line in out.splitlines()[1:]
        if " pip install " in line and str(home / "envs") in line
    ]


def test_a_build_underway_ends_when_the_server_stops(server_factory, tmp_path: Path):
    """A `uv` build kept running after the server stopped (the build ran in a daemon thread, its
    installer in the server's process group). Stopping the server kills the build's process group.
    The index here accepts connections and never answers, so the installer waits on it."""
    index = socket.socket()
    index.bind(("127.0.0.1", 0))
    index.listen(16)
    url = f"http://127.0.0.1:{index.getsockname()[1]}/simple"
    env = {"PIP_INDEX_URL": url, "UV_INDEX_URL": url, "UV_HTTP_TIMEOUT": "600", "PIP_FIND_LINKS": ""}
    srv = server_factory(tmp_path / "home", env=env)
    deploying = None
    try:
        service = Ctx(srv, tmp_path).service("stuck-build", requirements="podium-envpkg==1.0\n")
        deploying = subprocess.Popen(
            [sys.executable, "-m", "podium", "deploy", str(service), "--name", "stuck"],
            env=srv.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        pids = wait_until(lambda: _uv_installs(srv.home), 60, 0.1, "the installer waiting on the index")
        srv.stop()
        wait_until(
            lambda: not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in pids),
            20,
            0.1,
            "the installer to end with the server",
        )
    finally:
        if deploying is not None:
            deploying.kill()
            deploying.wait()
        srv.close()
        for pid in _uv_installs(tmp_path / "home"):  # what the old code left behind
            os.kill(pid, signal.SIGKILL)
        index.close()


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie its parent has not reaped."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_version_reads_only_the_build_it_started(ctx: Ctx):
    """Environments are shared by content, across projects, and so was their build log: a
    version of project beta whose environment project alpha had built read alpha's build. A
    version reads the build attempt it started, and none when it started none."""
    service = ctx.service("iso-build", requirements="podium-envextra==1.0\npodium-envpkg==1.0\n")
    ctx.deploy(service, "iso-build")
    mine = ctx.build(ctx.endpoint("iso-build")["version"])
    assert mine["state"] == "ready" and any("== building environment" in line for line in mine["lines"])
    beta_key = json.loads(ctx.srv.cli("projects", "create", "isobuild", "--json").stdout)["admin_key"]["key"]
    ctx.srv.cli("deploy", str(service), "--name", "iso-build", "--project", "isobuild", "--timeout", "110")
    with httpx.Client(base_url=ctx.srv.url, headers={"Authorization": f"Bearer {beta_key}"}, timeout=30) as beta:
        version = beta.get("/api/v1/endpoints/iso-build").json()["version"]
        theirs = beta.get(f"/api/v1/versions/{version}/build", params={"offset": 0}).json()
    assert theirs["env"] == mine["env"] and theirs["state"] == "ready"
    assert theirs["lines"] == [], "another project's build output"
