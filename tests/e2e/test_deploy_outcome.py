"""What `podium deploy` says once it returns, through a real server and real workers: success only
when the version it deployed is current; otherwise exit 1 saying which version is and why."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from server import PodiumServer, wait_until

pytestmark = pytest.mark.slow


def service(path: Path, tag: str, release: Path | None = None) -> Path:
    """The service `outcome` answering `tag`; its initializer waits for `release` when given."""
    wait = f"while not os.path.exists({str(release)!r}):\n        time.sleep(0.05)\n    " if release else ""
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.py").write_text(
        "import os\nimport time\n\nimport podium\n\n\n"
        "@podium.service(name='outcome', max_workers=1)\n"
        f"def init():\n    {wait}return {{}}\n\n\n"
        f"@init.endpoint('/which', default=True)\ndef which():\n    return {tag!r}\n"
    )
    return path


def test_a_deploy_replaced_while_it_waits_fails_saying_which_version_is_current(tmp_path: Path) -> None:
    """v2's first worker is still in its initializer when v3 is deployed (the latest deploy wins):
    the CLI that deployed v2 stops waiting and exits 1 naming the version current when it looked
    (v1, or v3 once it has started), never 0."""
    release = tmp_path / "release"
    with PodiumServer(tmp_path / "home") as srv:
        v1 = srv.deploy(service(tmp_path / "v1", "v1"), "outcome")["version"]
        answer: dict[str, Any] = {}

        def deploy_v2() -> None:
            res = srv.cli("deploy", str(service(tmp_path / "v2", "v2", release)), "--json", check=False)
            answer.update(code=res.returncode, out=json.loads(res.stdout), err=res.stderr)

        waiting = threading.Thread(target=deploy_v2)
        waiting.start()
        try:
            pending = lambda: srv.http.get("/api/v1/endpoints/outcome").json()["pending_version"]  # noqa: E731
            wait_until(pending, 120, 0.1, "v2's deploy to wait for its first worker")
            v2 = pending()
            v3 = srv.deploy(service(tmp_path / "v3", "v3"), "outcome")["version"]
            waiting.join(120)
        finally:
            release.write_text("")
            waiting.join(120)
        assert answer["code"] == 1, answer
        assert answer["out"]["version"] in (v1, v3) and v2 not in (v1, v3), answer  # when it looked
        current = answer["out"]["version"]
        assert f"version {v2} is not current: endpoint outcome runs version {current}" in answer["out"]["deploy_error"]
        assert srv.http.post("/outcome/which", json={}).json() == "v3"
