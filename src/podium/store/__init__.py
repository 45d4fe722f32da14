"""Store: SQLAlchemy tables, the engines, migrations, and the queries that are not job-queue semantics."""

from podium.store.engine import Store, is_sqlite, migrate
from podium.store.postgres import PostgresStore
from podium.store.sqlite import SqliteStore


def open_store(url: str, busy_timeout: float = 10.0, pool_size: int = 40) -> Store:
    """The store for a database URL: SQLite (`busy_timeout`: seconds to wait for a lock another
    process holds) or PostgreSQL (`pool_size`: connections this process keeps)."""
    if is_sqlite(url):
        return SqliteStore(url, busy_timeout=busy_timeout)
    return PostgresStore(url, pool_size=pool_size)


__all__ = ["Store", "migrate", "open_store"]
