"""Drives the real `digitalhub` SDK against the server in DHCORE_ENDPOINT; run with the side
venv's python: `python sdk_flow.py SCENARIO PROJECT`. Prints one JSON object of what it saw."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import requests
from digitalhub.utils.exceptions import EntityError, EntityNotExistsError

import digitalhub as dh

HERE = Path(__file__).parent
ENV_SECRET = "env-secret-9f3c1a"


def serve_flow(project: str) -> dict:
    seen: dict = {}
    p = dh.get_or_create_project(project)
    again = dh.get_or_create_project(project)
    seen["project"] = [p.name, again.name]
    f = p.new_function(
        name="echo",
        kind="python",
        python_version="PYTHON3_10",
        code_src=str(HERE / "echo_function.py"),
        handler="serve",
        init_function="init",
    )
    run = f.run(
        action="serve",
        wait=True,
        init_parameters={"greeting": "Ciao"},
        log_info=False,
        envs=[{"name": "SERVICE_TOKEN", "value": ENV_SECRET}],
    )
    seen["state"] = run.status.state
    seen["service_url"] = run.status.service["url"]
    r = run.invoke(json={"name": "Ada"})
    seen["post"] = [r.status_code, r.json()]
    r = run.invoke(method="GET", url=f"http://{run.status.service['url']}/hello?x=1")
    seen["get"] = [r.status_code, r.text]
    run.refresh()
    seen["refreshed"] = run.status.state
    seen["stored_envs"] = dh.get_run(run.key).spec.envs
    seen["got"] = dh.get_run(run.key).status.state
    seen["runs_listed"] = [x.id for x in p.list_runs()]
    seen["run_id"] = run.id
    seen["logs"] = "\n".join(log._text for log in run.logs())
    old_url = run.status.service["url"]
    run.stop()
    run.refresh()
    seen["stopped"] = run.status.state
    seen["stopped_has_service"] = run.status.service is not None
    seen["old_url_after_stop"] = requests.post(f"http://{old_url}", json={"name": "x"}, timeout=30).status_code
    try:
        run.invoke(json={"name": "x"})
        seen["invoke_after_stop"] = "answered"
    except EntityError as exc:
        seen["invoke_after_stop"] = str(exc)
    run.resume()
    run.wait(log_info=False)
    seen["resumed"] = run.status.state
    r = run.invoke(json={"name": "Bob"})
    seen["post_after_resume"] = [r.status_code, r.json()]
    dh.delete_run(run.key)
    try:
        dh.get_run(run.key)
        seen["after_delete"] = "found"
    except EntityNotExistsError:
        seen["after_delete"] = "EntityNotExistsError"
    return seen


def failing_init(project: str) -> dict:
    p = dh.get_or_create_project(project)
    f = p.new_function(
        name="broken",
        kind="python",
        python_version="PYTHON3_10",
        code_src=str(HERE / "failing_init.py"),
        handler="serve",
        init_function="init",
    )
    run = f.run(action="serve", wait=True, init_parameters={"model_path": "/models/m.bin"}, log_info=False)
    return {"state": run.status.state, "message": run.status.message, "service": run.status.service, "run_id": run.id}


def start(project: str) -> dict:
    """A running serve run, left running (for the proxy and wire-level checks)."""
    p = dh.get_or_create_project(project)
    f = p.new_function(
        name="echo",
        kind="python",
        python_version="PYTHON3_10",
        code_src=str(HERE / "echo_function.py"),
        handler="serve",
        init_function="init",
    )
    run = f.run(
        action="serve",
        wait=True,
        init_parameters={"greeting": "Hi"},
        log_info=False,
        envs=[{"name": "SERVICE_TOKEN", "value": ENV_SECRET}],
    )
    return {"state": run.status.state, "run_id": run.id, "url": run.status.service["url"]}


def cleanup(project: str) -> dict:
    """Deleting a function with its runs, then the project."""
    p = dh.get_or_create_project(project)
    f = p.new_function(
        name="echo",
        kind="python",
        python_version="PYTHON3_10",
        code_src=str(HERE / "echo_function.py"),
        handler="serve",
        init_function="init",
    )
    run = f.run(action="serve", wait=False, init_parameters={"greeting": "Bye"}, log_info=False)
    seen = {"run_id": run.id, "functions": [x.name for x in p.list_functions()]}
    dh.delete_function("echo", project=project, delete_all_versions=True, cascade=True)
    seen["runs_after"] = [r.id for r in dh.list_runs(project=project)]
    seen["functions_after"] = [x.name for x in dh.list_functions(project=project)]
    dh.delete_project(project)
    try:
        dh.get_project(project)
        seen["project_after"] = "found"
    except EntityNotExistsError:
        seen["project_after"] = "EntityNotExistsError"
    return seen


def errors(project: str) -> dict:
    seen: dict = {}
    p = dh.get_or_create_project(project)
    try:
        dh.get_run(f"store://{project}/run/python+serve:run/0123456789abcdef")
        seen["unknown_run"] = "found"
    except EntityNotExistsError:
        seen["unknown_run"] = "EntityNotExistsError"
    try:
        p.new_function(
            name="bad",
            kind="python",
            python_version="PYTHON3_10",
            code="def serve(context, event:\n    return 1\n",
            handler="serve",
        )
        seen["bad_code"] = "accepted"
    except Exception as exc:
        seen["bad_code"] = f"{type(exc).__name__}: {exc}"
    return seen


if __name__ == "__main__":
    scenario, project = sys.argv[1], sys.argv[2]
    result = {
        "serve_flow": serve_flow,
        "failing_init": failing_init,
        "start": start,
        "cleanup": cleanup,
        "errors": errors,
    }[scenario](project)
    print(json.dumps(result))
