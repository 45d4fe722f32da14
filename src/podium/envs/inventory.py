"""Which environments exist, which versions and endpoints use them, and which are unused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from podium.envs.builder import EnvInfo, EnvStore
from podium.store.nodeenvs import NodeEnv
from podium.store.records import Endpoint, Version


@dataclass
class EnvRecord:
    """One environment as `podium envs ls` shows it."""

    env: EnvInfo
    versions: list[str] = field(default_factory=list)
    #: Endpoints whose current (or pending) version runs in it: `envs gc` keeps it for them.
    endpoints: list[str] = field(default_factory=list)
    #: The Ray nodes that hold a copy of it (each builds its own).
    nodes: list[NodeEnv] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        e = self.env
        return {
            "hash": e.hash,
            "python": e.python,
            "packages": e.packages,
            "size": e.size,
            "created_at": e.created_at,
            "last_used": e.last_used,
            "versions": self.versions,
            "endpoints": self.endpoints,
            "nodes": [n.as_dict() for n in self.nodes],
        }


def inventory(
    store: EnvStore,
    versions: Sequence[Version],
    endpoints: Sequence[Endpoint],
    nodes: Mapping[str, list[NodeEnv]],
) -> list[EnvRecord]:
    """Every built environment with the versions recording it, the endpoints running it and the
    Ray nodes holding a copy."""
    records = {e.hash: EnvRecord(e, nodes=list(nodes.get(e.hash, ()))) for e in store.list()}
    env_of = {v.id: v.env_hash for v in versions}
    for v in versions:
        if v.env_hash in records:
            records[v.env_hash].versions.append(v.id)
    for ep in endpoints:
        wanted = [ep.version_id]
        if ep.pending:
            wanted.append(ep.pending.version_id)
        for vid in wanted:
            rec = records.get(env_of.get(vid) or "")
            if rec is not None and ep.name not in rec.endpoints:
                rec.endpoints.append(ep.name)
    return list(records.values())
