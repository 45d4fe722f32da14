"""`podium dev`: serves a service on a private server and redeploys it when its file changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from server import ADMIN_KEY, FAST, free_port, wait_until

pytestmark = pytest.mark.slow

APP = """
import podium

@podium.service(name="devsvc", max_workers=1)
def init():
    return {{}}

@init.endpoint("/hello")
def hello():
    return "{greeting}"
"""


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_dev_redeploys_on_change_and_cleans_up(tmp_path, stop):
    """1. `podium dev` serves the file 2. it is changed: one line says so, then the new version
    serves 3. SIGINT (Ctrl-C) or SIGTERM (a supervisor, an IDE) stops it. Result: its
    temporary home is gone."""
    app = tmp_path / "app.py"
    app.write_text(APP.format(greeting="v1"))
    port = free_port()
    env = {**os.environ, **FAST, "PODIUM_ADMIN_KEY": ADMIN_KEY}
    env.pop("PODIUM_DATABASE_URL", None)
    log = (tmp_path / "dev.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "podium", "dev", str(app), "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=tmp_path,
    )
    url = f"http://127.0.0.1:{port}/devsvc/hello"

    def answer():
        try:
            r = httpx.post(url, headers={"x-api-key": ADMIN_KEY}, json={}, timeout=10)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    try:
        assert wait_until(answer, 60, 0.1, "first deploy") == "v1"
        app.write_text(APP.format(greeting="v2"))
        wait_until(lambda: answer() == "v2", 60, 0.1, "redeploy after the change")
        output = wait_until(
            lambda: "app.py changed, redeployed: version" in (text := (tmp_path / "dev.log").read_text()) and text,
            30,
            what="the reload's line",
        )
        assert output.count("try:") == 1, "the deploy banner once, then one line per reload"
        home = next(line.split("state in ")[1].strip() for line in output.splitlines() if "state in " in line)
        assert os.path.isdir(home)
    finally:
        proc.send_signal(stop)
        rc = proc.wait(30)
    assert rc in (0, 130, -stop, 128 + stop), f"a clean stop, not {rc}"
    assert not os.path.exists(home), "the temporary state is removed"
    assert not list(tmp_path.glob(".podium*")), "dev keeps its state out of the project directory"
