"""The store on PostgreSQL.

PostgreSQL goes through the asyncio driver (psycopg 3) with a pool of kept connections, and the
same policy: a transaction that promises nothing waits for no WAL flush (the connections'
`synchronous_commit` is off; PostgreSQL flushes within a fraction of a second), and one that
promises turns it on for itself (concurrent durable commits share their flushes). Connections are
not pinged before use: one cut since its last use fails its request with 503 and is replaced.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.util.typing import TupleAny

from podium.store.engine import Conn, Prepared, Row, Store, sync_url

#: This transaction's commit returns once its WAL is on disk.
_DURABLE = text("SET LOCAL synchronous_commit TO ON")


#: A transaction whose commit record must be flushed (so all before it are too).
_FLUSH = text("SELECT pg_current_xact_id()")


class _Pooled:
    """A pooled PostgreSQL connection, with prepared statements run as ordinary ones."""

    __slots__ = ("conn",)

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]:
        return await self.conn.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return await self.conn.scalar(statement, parameters)

    async def rows(self, prepared: Prepared, parameters: Mapping[str, Any]) -> list[Row]:
        result = await self.conn.execute(prepared.statement, dict(parameters))
        return list(result.mappings().all()) if result.returns_rows else []


class PostgresStore(Store):
    """The store on PostgreSQL, through a pool of kept connections.

    Parameters:
        url: `postgresql://user@host/db`.
        pool_size: connections this process keeps (each replica its own).
    """

    sqlite = False

    def __init__(self, url: str, pool_size: int = 40) -> None:
        super().__init__(url)
        self.engine: AsyncEngine = create_async_engine(
            # Connections are kept, not opened per burst: a new one costs PostgreSQL a process.
            sync_url(url),
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=30,
            connect_args={"options": "-c synchronous_commit=off"},
        )

    @property
    def conninfo(self) -> str | None:
        return make_url(sync_url(self.url)).set(drivername="postgresql").render_as_string(hide_password=False)

    def tx(self, *, durable: bool = True) -> AbstractAsyncContextManager[Conn]:
        return self._pooled(self.engine, durable)

    @asynccontextmanager
    async def _pooled(self, engine: AsyncEngine, durable: bool) -> AsyncIterator[Conn]:
        async with engine.begin() as pooled:
            if durable:
                await pooled.execute(_DURABLE)
            yield _Pooled(pooled)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A read: an ordinary transaction."""
        async with self.engine.connect() as pooled:
            yield _Pooled(pooled)

    async def sync(self, upto: int | None = None) -> None:
        # A durable commit that writes WAL (an xid) flushes the WAL up to it, so every commit before.
        async with self.engine.begin() as pooled:
            await pooled.execute(_DURABLE)
            await pooled.execute(_FLUSH)

    async def close(self) -> None:
        await self.engine.dispose()
