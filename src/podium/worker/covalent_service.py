"""Covalent deployments in the worker: their pickled initializer and endpoints as a Service.

Only here are a Covalent deployment's assets unpickled, in the version's environment (which has
the cloudpickle and Python the client pickled them with). The manifest the server wrote
(`podium.covalent.bundle`) says which file is what; the route table came from the client's JSON
endpoint records, so routes are matched by path. Podium's Covalent modules (pydantic models) are
imported by `load`, in Covalent workers only: every worker process imports this module.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from podium.records import ServiceConfig
from podium.sdk.service import Route, Service


def _load(root: Path, name: str) -> Any:
    from podium.covalent.assets import pickled_part

    # The version's environment has it (pinned at deploy); Podium itself does not depend on it.
    cloudpickle = importlib.import_module("cloudpickle")
    return cloudpickle.loads(pickled_part((root / name).read_bytes()))


def load(root: Path, meta: dict[str, Any]) -> Service:
    """The service: an initializer that calls the user's with its deploy-time arguments, and one
    route per endpoint (initializer results fill the parameters they name, as on Covalent)."""
    from podium.covalent.bundle import MANIFEST

    manifest = json.loads((root / MANIFEST).read_text())
    init_fn = _load(root, manifest["init_fn"])
    args = _load(root, manifest["init_fn_args"])
    kwargs = _load(root, manifest["init_fn_kwargs"])

    def initializer() -> Any:
        return init_fn(*args, **kwargs)

    config = ServiceConfig.from_dict(meta["config"])
    svc = Service(initializer, name=meta["service"], config=config)
    for i, ep in enumerate(manifest["endpoints"]):
        svc._add(Route(path=ep["route"], func=_load(root, ep["fn"]), streaming=ep["streaming"]), default=i == 0)
    return svc
