"""Store: SQLAlchemy tables, the engine, migrations, and the queries that are not job-queue semantics."""

from podium.store.engine import Store, migrate

__all__ = ["Store", "migrate"]
