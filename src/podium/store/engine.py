"""The store: one async SQLAlchemy engine over SQLite (WAL) or PostgreSQL, and its migrations.

SQLite gets a single pooled connection: every state change is one short transaction, so serialising
them costs little and rules out `database is locked`. Nothing holds a connection while it waits.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from podium.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")


def async_url(url: str) -> str:
    """Map a user's database URL onto the async driver Podium uses for it."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return str(u.set(drivername="sqlite+aiosqlite"))
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"):
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL scheme {u.drivername!r}: use sqlite:// or postgresql://")


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (for Alembic)."""
    u = make_url(async_url(url))
    if u.drivername == "sqlite+aiosqlite":
        return str(u.set(drivername="sqlite"))
    return u.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(async_url(url)).drivername.startswith("sqlite")


def _sqlite_pragmas(busy_timeout: float, dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a job acknowledged to a client survives power loss too, not only a process crash.
    cur.execute("PRAGMA synchronous=FULL")
    # How long to wait for another process's lock before failing (the caller then gets a 503).
    cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")


class Store:
    """Owns the engine; hands out short transactions.

    Parameters:
        url: `sqlite:///path` or `postgresql://user@host/db`.
        busy_timeout: SQLite only: seconds to wait for a lock held by another process.
    """

    def __init__(self, url: str, busy_timeout: float = 10.0) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        kwargs: dict[str, Any] = {}
        if self.sqlite:
            # Every use is a committed or rolled-back transaction: no reset needed on return.
            kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60, pool_reset_on_return=None)
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine: AsyncEngine = create_async_engine(async_url(url), **kwargs)
        if self.sqlite:
            event.listen(self.engine.sync_engine, "connect", functools.partial(_sqlite_pragmas, busy_timeout))

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.url)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed on exit, rolled back on error."""
        async with self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
