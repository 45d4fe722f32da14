"""The store: SQLAlchemy 2 over SQLite (WAL) or PostgreSQL, and its migrations.

SQLite runs on the event loop itself, through one connection: every transaction is short and takes
the write lock up front (`BEGIN IMMEDIATE`), so statements never hop to a thread and never meet
`database is locked` half-way. Commits do not fsync (`synchronous=NORMAL`); a transaction whose
effect is promised to someone (a job accepted, a result stored) waits for an fsync of the WAL, and
one fsync, run off the loop, covers every commit made before it started: group commit, without a
writer thread. Checkpoints (copying the WAL into the database file, with its fsyncs) run off the
loop too, every few thousand changes, never inside a commit. Only a lock held by another process
is waited for off the loop.

PostgreSQL goes through the asyncio driver (psycopg 3) with a pool of kept connections, and the
same policy: a transaction that promises nothing waits for no WAL flush (the connections'
`synchronous_commit` is off; PostgreSQL flushes within a fraction of a second), and one that
promises turns it on for itself (concurrent durable commits share their flushes). Connections are
not pinged before use: one cut since its last use fails its request with 503 and is replaced.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable
from sqlalchemy.util.typing import TupleAny

from podium.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
log = logging.getLogger("podium.store")


def sync_url(url: str) -> str:
    """A user's database URL with the driver Podium uses for it: the standard library's sqlite3
    (run on the loop, see above), or psycopg 3 (whose async side the server uses)."""
    u = make_url(url)
    if u.drivername in ("sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"):
        return str(u.set(drivername="sqlite"))
    if u.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+asyncpg"):
        return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise ConfigError(f"unsupported database URL scheme {u.drivername!r}: use sqlite:// or postgresql://")


def is_sqlite(url: str) -> bool:
    return make_url(sync_url(url)).drivername == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Transactions are begun by hand (BEGIN IMMEDIATE), not by the driver.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # Commits write the WAL without an fsync; WalSync makes the promised ones durable.
    cur.execute("PRAGMA synchronous=NORMAL")
    # Never wait for another process's lock on the loop: Store.tx() waits for it in a thread.
    cur.execute("PRAGMA busy_timeout=0")
    # Checkpoints are Checkpointer's, in a thread: inside a commit they would stall the loop.
    cur.execute("PRAGMA wal_autocheckpoint=0")
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


#: PostgreSQL: this transaction's commit returns once its WAL is on disk.
_DURABLE = text("SET LOCAL synchronous_commit TO ON")


#: PostgreSQL: a transaction whose commit record must be flushed (so all before it are too).
_FLUSH = text("SELECT pg_current_xact_id()")


class Conn(Protocol):
    """What a transaction body may do: the subset of SQLAlchemy's AsyncConnection Podium uses."""

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]: ...

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any: ...


class _Inline:
    """A synchronous SQLAlchemy connection behind the async calls the queries are written with.
    Awaiting it never suspends: a transaction body runs to its end without the loop switching."""

    __slots__ = ("sync",)

    def __init__(self, sync: Connection) -> None:
        self.sync = sync

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]:
        return self.sync.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self.sync.scalar(statement, parameters)


def _fsync(path: str) -> None:
    """Flush a file's written pages to disk (opened anew: SQLite may have recreated it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:  # no WAL: everything committed is in the database file, synced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalSync:
    """Group commit for SQLite: `await durable(n)` returns once the first `n` changes (the
    connection's running `total_changes`) are on disk. One fsync at a time, off the loop; the
    callers that arrive while one runs share the next."""

    def __init__(self, wal_path: str, changes: Callable[[], int]) -> None:
        self.wal_path = wal_path
        self.changes = changes
        self.synced = 0
        self._running: asyncio.Task[None] | None = None

    async def durable(self, upto: int) -> None:
        while self.synced < upto:
            if self._running is None:
                self._running = asyncio.get_running_loop().create_task(self._flush(self.changes()))
            await asyncio.shield(self._running)

    async def _flush(self, target: int) -> None:
        try:
            await asyncio.to_thread(_fsync, self.wal_path)
            self.synced = max(self.synced, target)
        finally:
            self._running = None


def _checkpoint(database: str, mode: str) -> None:
    """Copy the WAL's frames into the database file (its own connection; PASSIVE never waits
    for, nor blocks, the writer)."""
    conn = sqlite3.connect(database, timeout=5.0)
    try:
        conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    finally:
        conn.close()


class Checkpointer:
    """Runs a checkpoint off the loop once `every` changes were committed since the last one, so
    the WAL stays small (a fully checkpointed WAL is rewound by the next commit)."""

    def __init__(self, database: str, every: int = 2000) -> None:
        self.database = database
        self.every = every
        self._mark = 0
        self._running: asyncio.Task[None] | None = None

    def committed(self, changes: int) -> None:
        if changes - self._mark >= self.every and self._running is None:
            self._mark = changes
            self._running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.to_thread(_checkpoint, self.database, "PASSIVE")
        except sqlite3.Error as exc:  # a later one catches up
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._running = None

    async def close(self) -> None:
        if self._running is not None:
            await self._running
        await asyncio.to_thread(_checkpoint, self.database, "TRUNCATE")


class Store:
    """Owns the database connection(s); hands out short transactions.

    Parameters:
        url: `sqlite:///path` or `postgresql://user@host/db`.
        busy_timeout: SQLite only: seconds to wait for a lock held by another process (then the
            transaction fails with OperationalError, which the server answers with 503).
        pool_size: PostgreSQL only: connections this process keeps (each replica its own).
    """

    def __init__(self, url: str, busy_timeout: float = 10.0, pool_size: int = 40) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.busy_timeout = busy_timeout
        self.engine: AsyncEngine | None = None
        self._sync: Connection | None = None
        self._lock = asyncio.Lock()
        self._wal: WalSync | None = None
        self._checkpoints: Checkpointer | None = None
        if self.sqlite:
            # One connection, kept open: the WAL stays in place and every commit is ours.
            sync_engine = create_engine(
                sync_url(url), poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
            event.listen(sync_engine, "connect", _sqlite_pragmas)
            self._sync_engine = sync_engine
        else:
            self.engine = create_async_engine(
                # Connections are kept, not opened per burst: a new one costs PostgreSQL a process.
                sync_url(url), pool_size=pool_size, max_overflow=0, pool_timeout=30,
                connect_args={"options": "-c synchronous_commit=off"},
            )

    @property
    def conninfo(self) -> str | None:
        """The database as a libpq URL, for connections of their own (LISTEN, the leader's lock);
        None on SQLite."""
        if self.sqlite:
            return None
        return make_url(sync_url(self.url)).set(drivername="postgresql").render_as_string(hide_password=False)

    async def migrate(self) -> None:
        await asyncio.to_thread(migrate, self.url)

    def _connection(self) -> Connection:
        if self._sync is None:
            self._sync = self._sync_engine.connect()
            raw = self._sync.connection.dbapi_connection
            assert raw is not None
            database = make_url(sync_url(self.url)).database or ""
            self._wal = WalSync(f"{database}-wal", lambda: int(raw.total_changes))
            self._checkpoints = Checkpointer(database)
        return self._sync

    @asynccontextmanager
    async def tx(self, *, durable: bool = True) -> AsyncIterator[Conn]:
        """One transaction: committed on exit, rolled back on error.

        `durable`: return only once the commit is on disk (for what is promised to a caller or a
        worker). False for transitions that are redone anyway if a crash loses them (a lease
        taken, a heartbeat, a progress update), and for reads.
        """
        if self.engine is not None:
            async with self.engine.begin() as pooled:
                if durable:
                    await pooled.execute(_DURABLE)
                yield pooled
            return
        async with self._lock:
            sync = self._connection()
            await self._begin(sync)
            assert self._wal is not None
            before = self._wal.changes()
            try:
                yield _Inline(sync)
            except BaseException:
                sync.rollback()
                raise
            sync.commit()
            after = self._wal.changes()
            assert self._checkpoints is not None
            self._checkpoints.committed(after)
        if durable and after > before:
            await self._wal.durable(after)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A read: on SQLite no transaction of its own (one statement reads a consistent
        snapshot), so no write lock and no commit; elsewhere an ordinary transaction."""
        if self.engine is not None:
            async with self.engine.connect() as pooled:
                yield pooled
            return
        if self._lock.locked():  # a transaction is open on the one connection: wait for it
            async with self._lock:
                yield _Inline(self._connection())
        else:
            yield _Inline(self._connection())

    async def sync(self) -> None:
        """Make every commit so far durable (those of `durable=False` transactions included)."""
        if self.engine is not None:
            # A durable commit that writes WAL (an xid) flushes the WAL up to it, so every commit before.
            async with self.engine.begin() as pooled:
                await pooled.execute(_DURABLE)
                await pooled.execute(_FLUSH)
            return
        if self._wal is not None:
            await self._wal.durable(self._wal.changes())

    async def _begin(self, conn: Connection) -> None:
        """Take the write lock; if another process holds it, wait for it off the loop."""
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            conn.rollback()
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
        await asyncio.to_thread(self._begin_waiting, conn)

    def _begin_waiting(self, conn: Connection) -> None:
        conn.exec_driver_sql(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except OperationalError:
            conn.rollback()
            raise
        finally:
            conn.exec_driver_sql("PRAGMA busy_timeout=0")

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            return
        async with self._lock:
            if self._sync is not None:
                self._sync.close()
                self._sync = None
            self._sync_engine.dispose()
            if self._checkpoints is not None:
                await self._checkpoints.close()
                self._checkpoints = None
