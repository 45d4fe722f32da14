"""Run one Laminar pipeline with the real `lmnr` client of the venv this runs in (0.1.1: the
endpoint API; 0.3.7: the pipeline API), pointed at a Podium server.

    python run.py URL KEY NAME INPUTS_JSON

Prints one JSON object: {"outputs", "run_id"} as the client parsed them, or {"raised", "error"}
when the client raised (for lmnr's own run errors, `error` is their error_code)."""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import version

url, key, name, inputs = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
os.environ["LMNR_PROJECT_API_KEY"] = key  # 0.3.x reads it at import

if version("lmnr").startswith("0.1."):
    from lmnr import Laminar

    client = Laminar(key)
    client.url = f"{url}/v2/endpoint/run"
    call = lambda: client.run(endpoint=name, inputs=inputs, env={})  # noqa: E731
else:
    from lmnr.sdk.client import Laminar

    Laminar._base_url = url
    client = Laminar(key)
    call = lambda: client.run(pipeline=name, inputs=inputs, env={})  # noqa: E731

try:
    answer = call()
except Exception as exc:  # what the client raised, for the test to check
    print(json.dumps({"raised": type(exc).__name__, "error": getattr(exc, "error_code", str(exc))}))
else:
    print(json.dumps({"outputs": answer.model_dump()["outputs"], "run_id": answer.run_id}))
