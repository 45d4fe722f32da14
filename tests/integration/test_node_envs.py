"""Which Ray nodes hold which environment (store/nodeenvs.py), on SQLite and PostgreSQL: one row
per environment and node, the latest use kept, most recent first (`podium envs ls`)."""

from __future__ import annotations

from podium.clock import FakeClock
from podium.store import Store
from podium.store.nodeenvs import NodeEnv, NodeEnvs


async def test_each_node_is_recorded_once_per_environment_with_its_latest_use(store: Store) -> None:
    clock = FakeClock()
    envs = NodeEnvs(store, clock)
    assert await envs.env_nodes() == {}
    await envs.node_holds("a" * 24, "node-1", "10.0.0.1")
    clock.advance(10)
    await envs.node_holds("a" * 24, "node-2", "10.0.0.2")
    await envs.node_holds("b" * 24, "node-1", "10.0.0.1")
    clock.advance(10)
    # A second worker on node-1 (its address changed since): one row, moved to the front.
    await envs.node_holds("a" * 24, "node-1", "10.0.0.9")
    t = clock.now()
    assert await envs.env_nodes() == {
        "a" * 24: [NodeEnv("node-1", "10.0.0.9", t), NodeEnv("node-2", "10.0.0.2", t - 10)],
        "b" * 24: [NodeEnv("node-1", "10.0.0.1", t - 10)],
    }
