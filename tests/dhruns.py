"""A DigitalHub serve run made over Core's REST surface, as the SDK makes one (project, function
with its code, run), for tests that need a running one without the SDK's side venv."""

from __future__ import annotations

import base64
import secrets
from typing import Any

import httpx

from server import wait_until


def serve_run(http: httpx.Client, code: str, envs: dict[str, str] | None = None) -> dict[str, str]:
    """Start a run of `code` (a module with `serve(context, event)`) in a new DigitalHub project
    of `http`'s key; its project, run id and service URL once it is RUNNING."""
    project = f"p{secrets.token_hex(3)}"
    assert http.post("/api/v1/projects", json={"name": project, "kind": "project"}).status_code == 200
    source = {"handler": "serve", "base64": base64.b64encode(code.encode()).decode()}
    r = http.post(f"/api/v1/-/{project}/functions", json={"kind": "python", "name": "fn", "spec": {"source": source}})
    assert r.status_code == 200, r.text
    spec: dict[str, Any] = {"function": f"python://{project}/fn:{r.json()['id']}"}
    if envs:
        spec["envs"] = [{"name": k, "value": v} for k, v in envs.items()]
    r = http.post(f"/api/v1/-/{project}/runs", json={"kind": "python+serve:run", "spec": spec})
    assert r.status_code == 200, r.text
    run_id = r.json()["id"]

    def running() -> Any:
        status = http.get(f"/api/v1/-/{project}/runs/{run_id}").json()["status"]
        assert status["state"] != "ERROR", status
        return status["state"] == "RUNNING" and status["service"]["url"]

    url = wait_until(running, 120, 0.2, "the DigitalHub run to be RUNNING")
    return {"project": project, "run_id": run_id, "url": f"http://{url}"}
