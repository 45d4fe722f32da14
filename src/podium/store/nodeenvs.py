"""Which Ray nodes hold a built copy of which environment: each node builds its own (the Ray
backend), and the replica that starts a worker there records it, so `podium envs ls` on any
replica says where each environment is."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from podium.clock import Clock
from podium.store.cluster import upsert
from podium.store.engine import Store
from podium.store.tables import node_envs


@dataclass(frozen=True, slots=True)
class NodeEnv:
    """One node's copy of an environment."""

    node_id: str
    address: str
    #: When a worker last started on it there.
    used_at: float

    def as_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "address": self.address, "used_at": self.used_at}


class NodeEnvs:
    """Record and list the nodes' copies of environments."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or Clock()

    async def node_holds(self, env_hash: str, node_id: str, address: str) -> None:
        """A worker starts on `node_id` in its copy of the environment (built now, or found)."""
        row = {"env_hash": env_hash, "node_id": node_id, "address": address, "used_at": self.clock.now()}
        async with self.store.tx() as conn:
            await conn.execute(upsert(self.store, node_envs, [row]))

    async def env_nodes(self) -> dict[str, list[NodeEnv]]:
        """Each environment's copies on nodes, by its hash, most recently used first."""
        q = select(node_envs).order_by(node_envs.c.used_at.desc())
        async with self.store.tx() as conn:
            rows = (await conn.execute(q)).mappings().all()
        out: dict[str, list[NodeEnv]] = {}
        for r in rows:
            out.setdefault(r["env_hash"], []).append(NodeEnv(r["node_id"], r["address"], r["used_at"]))
        return out
