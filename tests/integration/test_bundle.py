"""Bundles: deterministic, content-addressed, safe to unpack; the schema matches its migrations."""

from __future__ import annotations

import io
import zipfile

import pytest

from podium.bundle import describe, extract, make_bundle
from podium.errors import BundleError
from podium.store import open_store
from podium.store.catalog import Catalog

APP = "import podium\n\n@podium.service(name='x')\ndef init():\n    return {}\n\n@init.endpoint('/a')\ndef a(v=1):\n    return v\n"


def test_same_content_same_bytes_and_version(tmp_path):
    for d in ("one", "two"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "app.py").write_text(APP)
        (tmp_path / d / "__pycache__").mkdir()
        (tmp_path / d / "__pycache__" / "junk.pyc").write_bytes(b"x")
    b1, b2 = make_bundle(tmp_path / "one"), make_bundle(tmp_path / "two")
    assert b1.data == b2.data and b1.files == ["app.py"]
    assert describe(b1)["id"] == describe(b2)["id"]
    (tmp_path / "two" / "app.py").write_text(APP + "# changed\n")
    assert describe(make_bundle(tmp_path / "two"))["id"] != describe(b1)["id"]


def test_entry_detection_and_errors(tmp_path):
    (tmp_path / "lib.py").write_text("x = 1\n")
    with pytest.raises(BundleError, match="no entry file found"):
        make_bundle(tmp_path)
    with pytest.raises(BundleError, match="no such file"):
        make_bundle(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BundleError, match="deploy a .py file"):
        make_bundle(tmp_path / "notes.txt")
    assert make_bundle(tmp_path, entry="lib.py").entry == "lib.py"


def test_import_errors_name_the_entry(tmp_path):
    (tmp_path / "app.py").write_text("import nonexistent_module_xyz\n")
    with pytest.raises(BundleError, match="importing app.py failed: ModuleNotFoundError"):
        describe(make_bundle(tmp_path))


def test_extract_refuses_paths_that_escape(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../evil.py", "x")
    with pytest.raises(BundleError, match="escapes"):
        extract(buf.getvalue(), tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_migrations_match_the_schema(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    from podium.store import migrate
    from podium.store.engine import sync_url
    from podium.store.tables import metadata

    migrate(db_url)
    migrate(db_url)  # idempotent
    engine = create_engine(sync_url(db_url))
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


async def test_projects_keep_the_bundles_of_their_versions_across_the_migration(db_url):
    """Migration 0011 gives every project the bundles its versions were made of, so existing
    deploys and rollbacks keep working; a project owns nothing else."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text

    from podium.store.engine import MIGRATIONS, sync_url

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(db_url).replace("%", "%%"))
    command.upgrade(cfg, "0009")
    engine = create_engine(sync_url(db_url))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO projects (id, name, created_at) VALUES ('p1', 'one', 0), ('p2', 'two', 0)"))
        conn.execute(
            text(
                "INSERT INTO versions (id, project_id, sha256, service, entry, runtime, routes, config, size, created_at) "
                "VALUES ('v1', 'p1', :sha, 's', 'app.py', 'podium', '[]', '{}', 1, 5)"
            ),
            {"sha": "a" * 64},
        )
    engine.dispose()
    command.upgrade(cfg, "head")
    store = open_store(db_url)
    try:
        catalog = Catalog(store)
        assert await catalog.owns_blob("p1", "a" * 64)
        assert not await catalog.owns_blob("p2", "a" * 64)
        await catalog.own_blob("p2", "a" * 64)
        await catalog.own_blob("p2", "a" * 64)  # once is enough; twice is no error
        assert await catalog.owns_blob("p2", "a" * 64)
    finally:
        await store.close()
