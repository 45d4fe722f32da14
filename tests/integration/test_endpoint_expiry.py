"""Endpoint expiry: the leader stops an endpoint once its `expires_at` has come (a Covalent
executor's time limit), and Covalent deployments stored before the column existed keep theirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet

from podium.clock import FakeClock
from podium.core.deployments import Deployments
from podium.dispatch import JobQueue
from podium.store.blobs import Bundles
from podium.store.catalog import Catalog
from podium.store.endpoints import EndpointState
from podium.store.engine import MIGRATIONS, Store, migrate
from podium.store.records import Version
from podium.store.secretbox import SecretBox


class Woken:
    """The scaling side of deploys, recording the wake-ups it is given."""

    def __init__(self) -> None:
        self.wakes = 0

    async def deployed(self, version: Version) -> bool:
        return False

    def wake(self) -> None:
        self.wakes += 1

    def restart(self, endpoint_id: str) -> None:
        pass


VERSION = {
    "id": "v1",
    "sha256": "0" * 64,
    "service": "hello",
    "entry": "app.py",
    "routes": [],
    "config": {"min_workers": 0, "max_workers": 1, "idle_timeout": 60, "concurrency": 1},
    "size": 1,
}


async def test_an_endpoint_is_stopped_once_its_expiry_has_come(store: Store, tmp_path: Path) -> None:
    clock = FakeClock()
    catalog = Catalog(store, clock)
    scaling = Woken()
    deployments = Deployments(
        catalog, Bundles(tmp_path, None), JobQueue(store), scaling, SecretBox(Fernet.generate_key()), clock
    )
    project = await catalog.ensure_project("default")
    version = await catalog.put_version(project, VERSION)
    ep, _ = await catalog.point_endpoint(project, "limited", version, key_id=None, message=None)
    other, _ = await catalog.point_endpoint(project, "forever", version, key_id=None, message=None)
    await deployments.expire_at(ep, ep.created_at + 3)

    clock.advance(2.9)
    await deployments.expire()
    found = await catalog.get_endpoint(project, ep.id)
    assert found is not None and found.state != EndpointState.INACTIVE and scaling.wakes == 0

    clock.advance(0.1)
    await deployments.expire()
    found = await catalog.get_endpoint(project, ep.id)
    assert found is not None and found.state == EndpointState.INACTIVE
    assert found.error == f"deployment {ep.id} reached its time limit (3 s)" and scaling.wakes == 1
    kept = await catalog.get_endpoint(project, other.id)
    assert kept is not None and kept.state != EndpointState.INACTIVE and kept.expires_at is None

    await deployments.expire()  # stopped already: not stopped again
    assert scaling.wakes == 1


def test_covalent_deployments_stored_before_expiry_keep_their_time_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'podium.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0011")
    engine = sa.create_engine(url)
    covalent: dict[str, Any] = {"covalent": {"time_limit": 60.0}}
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO projects (id, name, created_at) VALUES ('p', 'default', 0)"))
        for vid, runtime, config in (("vc", "covalent", covalent), ("vp", "podium", {})):
            conn.execute(
                sa.text(
                    "INSERT INTO versions (id, project_id, sha256, service, entry, runtime, routes, config, "
                    "size, created_at) VALUES (:id, 'p', :sha, 's', 'e', :runtime, '[]', :config, 1, 0)"
                ),
                {"id": vid, "sha": "0" * 64, "runtime": runtime, "config": json.dumps(config)},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO endpoints (id, project_id, name, version_id, state, min_workers, max_workers, "
                    "idle_timeout, concurrency, created_at, updated_at) "
                    "VALUES (:id, 'p', :id, :vid, 'ACTIVE', 0, 1, 60, 1, 1000, 1000)"
                ),
                {"id": f"e{vid}", "vid": vid},
            )
    migrate(url)
    with engine.begin() as conn:
        expiry = dict(conn.execute(sa.text("SELECT id, expires_at FROM endpoints")).all())
    engine.dispose()
    assert expiry == {"evc": 1060.0, "evp": None}
