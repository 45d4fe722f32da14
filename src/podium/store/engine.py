"""The store: SQLAlchemy 2 over SQLite (WAL) or PostgreSQL, and its migrations.

SQLite runs on the event loop itself, through one connection: every transaction is short and takes
the write lock up front (`BEGIN IMMEDIATE`), so statements never hop to a thread and never meet
`database is locked` half-way. The call path's few statements (`Prepared`) are compiled once and
run on the driver's cursor: SQLAlchemy's execution layer cost more than SQLite's own work.

Commits do not fsync (`synchronous=NORMAL`); a transaction whose effect is promised to someone (a
job accepted, a result stored) waits for an fsync of the WAL, and one fsync, run off the loop,
covers every commit made before it started: group commit, without a writer thread. Checkpoints
(copying the WAL into the database file, with its fsyncs) run off the loop too, every few
hundred changes, never inside a commit. Only a lock held by another process is waited for off
the loop.

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
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast

from sqlalchemy import Boolean, Connection, create_engine, event, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
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
    # A WAL started over is cut back to this size (64 MiB), not kept at its largest.
    cur.execute("PRAGMA journal_size_limit=67108864")
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


class _Inline:
    """A synchronous SQLAlchemy connection behind the async calls the queries are written with.
    Awaiting it never suspends: a transaction body runs to its end without the loop switching."""

    __slots__ = ("sync", "raw")

    def __init__(self, sync: Connection, raw: sqlite3.Connection) -> None:
        self.sync = sync
        self.raw = raw

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]:
        return self.sync.execute(statement, parameters)

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        return self.sync.scalar(statement, parameters)

    async def rows(self, prepared: Prepared, parameters: Mapping[str, Any]) -> list[Row]:
        return prepared.run(self.raw, parameters)

    def begin(self) -> None:
        """BEGIN IMMEDIATE: the write lock now (sqlite3.OperationalError if another process has it)."""
        self.raw.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        # SQLAlchemy's connection may have begun its own (no-op) transaction on a statement it ran.
        if self.sync.in_transaction():
            self.sync.commit()
        else:
            self.raw.commit()

    def rollback(self) -> None:
        if self.sync.in_transaction():
            self.sync.rollback()
        else:
            self.raw.rollback()


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


#: WAL frames (pages, 64 MiB) past which the writer pauses for the WAL to be started over.
REWIND_FRAMES = 16384


class Checkpointer:
    """Runs a checkpoint off the loop once `every` changes were committed since the last one.

    A checkpoint's copy slows the writer's own WAL writes while it runs (they share the disk and
    the file system's journal), in proportion to what it copies: with one caller at a time, at
    every 2,000 changes (16 ms checkpoints) 29-34 runsync calls in 10,000 took over 2.5 ms, at 500
    (4 ms) 23-26, and wrk's p99 went from 2.7 to 1.9 ms; c=32 throughput lost 2-3 %. At 250 it
    lost 7 %.

    SQLite starts a fully copied WAL over only when a write transaction begins after the copy
    and before any other commit. Under sustained writes that moment never comes (the writer
    commits every loop turn, the copy runs in a thread), and the WAL, whose index is mapped into
    the server's memory, grew without end: a gigabyte in 16 s at 1,600 runsync/s. Once it holds
    REWIND_FRAMES, it makes that moment: with the writer paused (`quiet`: the store's lock held,
    no transaction open) a second checkpoint copies what the first left (what was written while
    it ran: 3-5 ms of work under load), and the next transaction writes from the WAL's start
    (which cuts the file back to 64 MiB). Transactions wait meanwhile; the loop does not."""

    def __init__(
        self, database: str, quiet: Callable[[], AbstractAsyncContextManager[None]], every: int = 500
    ) -> None:
        self.database = database
        self.quiet = quiet
        self.every = every
        self._mark = 0
        self._running: asyncio.Task[None] | None = None
        self._stopped = False
        # A thread and a connection of their own, kept. A connection opened per checkpoint, on
        # whichever pool thread was free, left memory behind in that thread's malloc arena: 9 MiB
        # more server memory after `make bench` with a checkpoint every 500 changes.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="podium-checkpoint")
        self._conn: sqlite3.Connection | None = None

    def committed(self, changes: int) -> None:
        if changes - self._mark >= self.every and self._running is None and not self._stopped:
            self._mark = changes
            self._running = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            frames = await self._checkpoint("PASSIVE")
            if frames >= REWIND_FRAMES:
                async with self.quiet():
                    await self._checkpoint("PASSIVE")
        except sqlite3.Error as exc:  # a later one catches up
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._running = None

    async def _checkpoint(self, mode: str) -> int:
        """Copy the WAL's frames into the database file (PASSIVE never waits for, nor blocks,
        the writer). Returns how many frames the WAL holds."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._copy, mode)

    def _copy(self, mode: str) -> int:
        if self._conn is None:
            self._conn = sqlite3.connect(self.database, timeout=5.0, check_same_thread=False)
        try:
            ((_, frames, _),) = self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        except sqlite3.Error:
            self._disconnect()
            raise
        return int(frames)

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def stop(self) -> None:
        """Start no more checkpoints, and let the running one end (without the store's lock
        held: it may take it, see `quiet`)."""
        self._stopped = True
        if self._running is not None:
            await self._running

    async def close(self) -> None:
        """Copy the whole WAL and cut it to nothing (once the writer's connection is closed)."""
        try:
            await self._checkpoint("TRUNCATE")
        finally:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._disconnect)
            self._thread.shutdown()


def _fail(batch: asyncio.Future[None], exc: BaseException) -> None:
    """A shared transaction that did not commit. As if the server had stopped before it: the
    promised transactions in it (waiting on `batch`) fail; the others are redone (leases run
    out, callers retry)."""
    log.error("a transaction failed to commit; its changes are lost: %s", exc)
    if not batch.done():
        batch.set_exception(exc if isinstance(exc, Exception) else OperationalError("COMMIT", None, exc))
        batch.exception()  # retrieved: the promised ones re-raise it; nobody else must


class _Shared:
    """One SQLite transaction in the loop turn's shared one (see `Store.tx`): a class, not a
    generator, as three of them run per job."""

    __slots__ = ("store", "durable", "inline", "batch", "before")

    def __init__(self, store: Store, durable: bool) -> None:
        self.store = store
        self.durable = durable

    async def __aenter__(self) -> Conn:
        store = self.store
        await store._lock.acquire()
        try:
            self.inline, self.batch = await store._enter()
        except BaseException:
            store._lock.release()
            raise
        self.before = store.mark()
        return self.inline

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        store = self.store
        try:
            store._leave(self.inline, self.batch, exc)
            after = store.mark()
        finally:
            store._lock.release()
        if exc is None and self.durable and after > self.before:
            await self.batch
            assert store._wal is not None
            await store._wal.durable(after)


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
        self._inline: _Inline | None = None
        self._lock = asyncio.Lock()
        #: SQLite: the write transaction this loop turn's transactions share, committed by
        #: `_commit` at the turn's end (see `tx`); resolved once committed.
        self._open: asyncio.Future[None] | None = None
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

    def _connection(self) -> _Inline:
        if self._inline is None:
            sync = self._sync_engine.connect()
            raw = sync.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            self._inline = _Inline(sync, raw)
            database = make_url(sync_url(self.url)).database or ""
            self._wal = WalSync(f"{database}-wal", lambda: int(raw.total_changes))
            self._checkpoints = Checkpointer(database, self._quiet)
        return self._inline

    def tx(self, *, durable: bool = True) -> AbstractAsyncContextManager[Conn]:
        """One transaction: rolled back on error, else committed.

        On SQLite, the transactions of one loop turn share one commit at the turn's end (a
        savepoint each, so one failing undoes only itself): the write lock is taken and the WAL
        written once per turn, not once per request.

        `durable`: return only once the commit is on disk (for what is promised to a caller or a
        worker). False for transitions that are redone anyway if a crash loses them (a lease
        taken, a heartbeat, a progress update), and for reads; on SQLite these return before
        the commit, which follows within the same turn.
        """
        if self.engine is not None:
            return self._pooled(self.engine, durable)
        return _Shared(self, durable)

    @asynccontextmanager
    async def _pooled(self, engine: AsyncEngine, durable: bool) -> AsyncIterator[Conn]:
        async with engine.begin() as pooled:
            if durable:
                await pooled.execute(_DURABLE)
            yield _Pooled(pooled)

    async def _enter(self) -> tuple[_Inline, asyncio.Future[None]]:
        """Under the lock: the shared transaction (begun, its commit scheduled, if none is open),
        and a savepoint in it for the caller."""
        inline = self._connection()
        if self._open is None:
            await self._begin(inline)
            loop = asyncio.get_running_loop()
            self._open = loop.create_future()
            loop.call_soon(self._commit)
        inline.raw.execute("SAVEPOINT tx")
        return inline, self._open

    def _leave(self, inline: _Inline, batch: asyncio.Future[None], exc: BaseException | None) -> None:
        """Under the lock: keep the caller's savepoint, or undo it (`exc`)."""
        if exc is None:
            inline.raw.execute("RELEASE tx")
        elif inline.raw.in_transaction:
            inline.raw.execute("ROLLBACK TO tx")
            inline.raw.execute("RELEASE tx")
        else:  # SQLite rolled the whole batch back (an I/O error, a full disk)
            self._open = None
            _fail(batch, exc)

    @asynccontextmanager
    async def _quiet(self) -> AsyncIterator[None]:
        """No transaction open, and none begins until this ends (for Checkpointer)."""
        async with self._lock:
            self._commit()
            yield

    def _commit(self) -> None:
        """Commit the transactions of the loop turn that just ran: one commit for all of them."""
        batch, self._open = self._open, None
        if batch is None or self._inline is None:
            return
        try:
            self._inline.commit()
        except Exception as exc:
            self._inline.rollback()
            _fail(batch, exc)
            return
        assert self._checkpoints is not None and self._wal is not None
        self._checkpoints.committed(self._wal.changes())
        batch.set_result(None)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A read: on SQLite no transaction of its own (one statement reads a consistent
        snapshot), so no write lock and no commit; elsewhere an ordinary transaction."""
        if self.engine is not None:
            async with self.engine.connect() as pooled:
                yield _Pooled(pooled)
            return
        if self._lock.locked():  # a transaction is open on the one connection: wait for it
            async with self._lock:
                yield self._connection()
        else:
            yield self._connection()

    def mark(self) -> int:
        """SQLite: where the store's history is now (its running count of changes), for
        `sync(upto=...)` later. 0 elsewhere."""
        return self._wal.changes() if self._wal is not None else 0

    async def sync(self, upto: int | None = None) -> None:
        """Make every commit so far durable (those of `durable=False` transactions included);
        on SQLite, with `upto` (a `mark()`), only as far as that: nothing once it is on disk."""
        if self.engine is not None:
            # A durable commit that writes WAL (an xid) flushes the WAL up to it, so every commit before.
            async with self.engine.begin() as pooled:
                await pooled.execute(_DURABLE)
                await pooled.execute(_FLUSH)
            return
        if self._wal is None or (upto is not None and self._wal.synced >= upto):
            return
        if self._open is not None:
            await self._open
        await self._wal.durable(self._wal.changes() if upto is None else upto)

    async def _begin(self, conn: _Inline) -> None:
        """Take the write lock; if another process holds it, wait for it off the loop."""
        try:
            conn.begin()
            return
        except sqlite3.OperationalError as exc:
            conn.rollback()
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        await asyncio.to_thread(self._begin_waiting, conn)

    def _begin_waiting(self, conn: _Inline) -> None:
        conn.raw.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        try:
            conn.begin()
        except sqlite3.OperationalError as exc:
            conn.rollback()
            raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        finally:
            conn.raw.execute("PRAGMA busy_timeout=0")

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.dispose()
            return
        if self._checkpoints is not None:
            await self._checkpoints.stop()
        async with self._lock:
            self._commit()
            if self._inline is not None:
                self._inline.sync.close()
                self._inline = None
            self._sync_engine.dispose()
            if self._checkpoints is not None:
                await self._checkpoints.close()
                self._checkpoints = None
