"""The store's interface: what the queue, the catalog and the rest use, whichever database it is.

`open_store` (podium.store) picks the engine from the URL: SQLite (`store.sqlite`) or PostgreSQL
(`store.postgres`). Both hand out short transactions (`Store.tx`) whose bodies speak `Conn`, and
run the call path's statements (`Prepared`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

from sqlalchemy import Boolean
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util.typing import TupleAny

from podium.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")


def sync_url(url: str) -> str:
    """A user's database URL with the driver Podium uses for it: the standard library's sqlite3
    (run on the loop, see store.sqlite), or psycopg 3 (whose async side the server uses)."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return str(u.set(drivername="sqlite"))
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"):
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL scheme {u.drivername!r}: use sqlite:// or postgresql://")


def is_sqlite(url: str) -> bool:
    return make_url(sync_url(url)).drivername == "sqlite"


def migrate(url: str) -> None:
    """Bring the schema to the newest Alembic revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    command.upgrade(cfg, "head")


#: A row as the store hands it out: read by column name.
Row: TypeAlias = Mapping[Any, Any]


class Prepared:
    """A statement of the call path, compiled once for SQLite and run there on the driver's cursor
    (no compiled-cache lookup, execution context or result object per call); on PostgreSQL it is
    executed through SQLAlchemy like any other. Its binds are named (`bindparam`); values it
    spells out (`status == 'IN_QUEUE'`) are bound as compiled. Boolean columns it returns come back
    as bools, as SQLAlchemy's would.
    """

    __slots__ = ("statement", "sql", "names", "fixed", "booleans", "_columns", "_flags")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        compiled = cast(ClauseElement, statement).compile(dialect=sqlite.dialect())
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.names: tuple[str, ...] = tuple(compiled.positiontup or ())
        #: Binds whose value is part of the statement.
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        self.booleans = frozenset(
            name for name, _, _, kind in getattr(compiled, "_result_columns", ()) if isinstance(kind, Boolean)
        )
        #: The names of the columns it returns, and which of them are booleans (its first rows tell).
        self._columns: list[str] | None = None
        self._flags: list[str] = []

    def run(self, raw: sqlite3.Connection, params: Mapping[str, Any]) -> list[Row]:
        values = {**self.fixed, **params} if self.fixed else params
        try:
            cursor = raw.execute(self.sql, [values[name] for name in self.names])
            found = cursor.fetchall()
        except sqlite3.Error as exc:  # as SQLAlchemy raises it, so callers catch one kind
            raise DBAPIError.instance(self.sql, None, exc, sqlite3.Error) from exc
        if not found:
            return []
        columns = self._columns
        if columns is None:
            columns = self._columns = [d[0] for d in cursor.description]
            self._flags = [name for name in columns if name in self.booleans]
        rows = [dict(zip(columns, row, strict=False)) for row in found]
        for name in self._flags:
            for row in rows:
                if row[name] is not None:
                    row[name] = bool(row[name])
        return cast("list[Row]", rows)


class Conn(Protocol):
    """What a transaction body may do: the subset of SQLAlchemy's AsyncConnection Podium uses,
    and the call path's prepared statements."""

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...

    async def rows(self, prepared: Prepared, parameters: Mapping[str, Any]) -> list[Row]: ...


class Store(ABC):
    """Owns the database connection(s); hands out short transactions.

    Parameters:
        url: `sqlite:///path` or `postgresql://user@host/db`.
    """

    #: Whether this is SQLite: one server process, which alone shows what it stored.
    sqlite: bool
    #: Whether `run`'s statements of one loop turn go together, in order, in one round trip
    #: (PostgreSQL): a statement started in the same turn as another sees what it wrote.
    pipelines: bool = False

    def __init__(self, url: str) -> None:
        self.url = url
        #: Durable commits made, each returned only once on disk: on SQLite the WAL's fsyncs
        #: (one covers the commits made before it), on PostgreSQL the commits that waited for
        #: their WAL flush (concurrent ones share it). /metrics shows it.
        self.flushes = 0
        #: Exchanges with the database server (PostgreSQL; 0 on SQLite, which has none).
        self.round_trips = 0

    @property
    def conninfo(self) -> str | None:
        """The database as a libpq URL, for connections of their own (LISTEN, the leader's lock);
        None on SQLite."""
        return None

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.url)

    @abstractmethod
    def tx(self, *, durable: bool = True) -> AbstractAsyncContextManager[Conn]:
        """One transaction: rolled back on error, else committed.

        `durable`: return only once the commit is on disk (for what is promised to a caller or a
        worker). False for transitions that are redone anyway if a crash loses them (a lease
        taken, a heartbeat, a progress update), and for reads.
        """

    async def run(self, prepared: Prepared, params: Mapping[str, Any], *, durable: bool = True) -> list[Row]:
        """One statement that is a transaction by itself (see `tx` for `durable`)."""
        async with self.tx(durable=durable) as conn:
            return await conn.rows(prepared, params)

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any]) -> list[Row]:
        """One read statement (PostgreSQL sends it with the loop turn's other statements)."""
        async with self.read() as conn:
            return await conn.rows(prepared, params)

    @abstractmethod
    def read(self) -> AbstractAsyncContextManager[Conn]:
        """A read, with as little of a transaction as the engine allows."""

    def mark(self) -> int:
        """SQLite: where the store's history is now (its running count of changes), for
        `sync(upto=...)` later. 0 elsewhere."""
        return 0

    @abstractmethod
    async def sync(self, upto: int | None = None) -> None:
        """Make every commit so far durable (those of `durable=False` transactions included);
        on SQLite, with `upto` (a `mark()`), only as far as that: nothing once it is on disk."""

    @abstractmethod
    async def close(self) -> None: ...
