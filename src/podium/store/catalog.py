"""Projects, API keys, versions and endpoints: the store's queries that are not queue semantics."""

from __future__ import annotations

from podium.clock import Clock
from podium.store.endpoints import Endpoints
from podium.store.engine import Store
from podium.store.nodeenvs import NodeEnvs
from podium.store.projects import Projects
from podium.store.versions import Versions
from podium.store.volumes import Volumes


class Catalog(Projects, Endpoints, Versions, Volumes, NodeEnvs):
    """The aggregates as one object for their callers, each in a module of its own:
    projects and keys (`projects`), endpoints (`endpoints`), versions and builds (`versions`),
    volumes (`volumes`), the Ray nodes' copies of environments (`nodeenvs`).
    None uses another's state; they share only the store and the clock."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        clock = clock or Clock()
        Projects.__init__(self, store, clock)
        Endpoints.__init__(self, store, clock)
        Versions.__init__(self, store, clock)
        Volumes.__init__(self, store, clock)
        NodeEnvs.__init__(self, store, clock)
