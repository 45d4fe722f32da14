"""Shared fixtures for the three tiers: a migrated store on SQLite and on a throwaway PostgreSQL
cluster (integration), the app in process (`api`, integration), real servers (`server_factory`,
`basic`, e2e). This directory is on sys.path: support modules (server.py, inprocess.py,
pgcluster.py, raycluster.py, s3server.py, wheels.py) import by their bare names."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the support modules

from podium.store import Store, migrate, open_store  # noqa: E402

_db_counter = itertools.count()

#: The tiers, fastest first: `pytest` runs them in this order, `pytest tests/unit` runs one, and
#: each test carries its tier's marker (`pytest -m "not e2e"`).
TIERS = ("unit", "integration", "e2e")
HERE = Path(__file__).parent


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> None:
    """A test module outside the tiers would run in no tier's command: say where it goes."""
    if file_path.parent == HERE and file_path.name.startswith("test_") and file_path.suffix == ".py":
        raise pytest.UsageError(
            f"{file_path.name} is directly under tests/: move it to tests/unit (no processes), "
            "tests/integration (a real store, the app in process) or tests/e2e (real servers)"
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def tier(item: pytest.Item) -> int:
        parts = item.path.relative_to(HERE).parts
        return TIERS.index(parts[0]) if parts[0] in TIERS else len(TIERS)

    for item in items:
        if (i := tier(item)) < len(TIERS):
            item.add_marker(TIERS[i])
        if i == TIERS.index("e2e") and item.get_closest_marker("slow") is None:
            # `pytest -m "not slow"` (make test-fast) must never start a server.
            raise pytest.UsageError(f"{item.path.name} is in tests/e2e: mark it `pytestmark = pytest.mark.slow`")
    items.sort(key=tier)  # stable: each module's tests stay together, in file order


@pytest.fixture(scope="module", autouse=True)
def sandbox_setting(request: pytest.FixtureRequest) -> Iterator[None]:
    """Servers a module starts run their workers boxed when the module is marked `boxed`, the
    product's default; elsewhere PODIUM_SANDBOX=off, since those tests hand workers marker files
    under tmp_path (not in a box) and signal them by the pids they report (not the host's). The
    environment allowlist applies either way. Set before any of the module's servers copies the
    environment: autouse fixtures come first within their scope."""
    boxed = request.node.get_closest_marker("boxed") is not None
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PODIUM_SANDBOX", "on" if boxed else "off")
        yield


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from pgcluster import PgCluster, find_pg_bin

    if find_pg_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed: run scripts/ensure-postgres.sh")
        pytest.skip("PostgreSQL is not installed (scripts/ensure-postgres.sh installs it)")
    cluster = PgCluster(tmp_path_factory.mktemp("pg"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'podium.db'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{next(_db_counter)}")  # type: ignore[attr-defined]


@pytest.fixture
async def store(request: pytest.FixtureRequest, db_url: str) -> AsyncIterator[Store]:
    """A migrated store; on SQLite a copy of the session's migrated template (a millisecond,
    where migrating takes a second)."""
    if db_url.startswith("sqlite:///"):
        shutil.copyfile(request.getfixturevalue("migrated_sqlite"), db_url.removeprefix("sqlite:///"))
    else:
        migrate(db_url)
    s = open_store(db_url)
    yield s
    await s.close()


SERVICES = HERE / "services"


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[object]:
    """Start real servers (each in its own $PODIUM_HOME unless given one); all stopped after the
    test. `server_factory(home, db_url=..., env=..., args=...)` takes PodiumServer's arguments."""
    from server import PodiumServer

    with contextlib.ExitStack() as stack:
        count = itertools.count()

        def make(home: Path | None = None, **kw: object) -> PodiumServer:
            return stack.enter_context(PodiumServer(home or tmp_path / f"home{next(count)}", **kw))  # type: ignore[arg-type]

        yield make


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite database, copied by `api` and `store` for each test."""
    path = tmp_path_factory.mktemp("template") / "podium.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
async def api(request: pytest.FixtureRequest, tmp_path: Path, migrated_sqlite: Path) -> AsyncIterator[object]:
    """The whole app in process on its own SQLite store, workers off (`tests/inprocess.py`): for
    router tests, which need no server process and no worker. The one way tests/integration
    builds the app; tests/e2e start real servers with `server_factory`.
    `@pytest.mark.parametrize("api", ["sqlite", "postgresql"], indirect=True)` runs a test on both."""
    from inprocess import in_process

    if getattr(request, "param", "sqlite") == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"t{next(_db_counter)}")
        async with in_process(tmp_path / "home", db_url=url) as app:
            yield app
    else:
        async with in_process(tmp_path / "home", template=migrated_sqlite) as app:
            yield app


@pytest.fixture(scope="module")
def basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, dict[str, object]]]:
    """One server for a module, with tests/services/basic deployed as `basic`."""
    from server import PodiumServer

    with PodiumServer(tmp_path_factory.mktemp("basic-home")) as srv:
        yield srv, srv.deploy(SERVICES / "basic", "basic")
