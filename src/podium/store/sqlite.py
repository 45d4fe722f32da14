"""The store on SQLite (WAL).

SQLite runs on the event loop itself, through one connection: every transaction is short and takes
the write lock up front (`BEGIN IMMEDIATE`), so statements never hop to a thread and never meet
`database is locked` half-way. The call path's few statements (`Prepared`) are compiled once and
run on the driver's cursor: SQLAlchemy's execution layer cost more than SQLite's own work.

Commits do not fsync: the promised ones wait for a group commit, and checkpoints run off the loop
(`store.wal`). Only a lock held by another process is waited for off the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable
from sqlalchemy.util.typing import TupleAny

from podium.store.engine import Conn, Prepared, Row, Store, sync_url
from podium.store.wal import Checkpointer, WalSync

log = logging.getLogger("podium.store")


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

    def __init__(self, store: SqliteStore, durable: bool) -> None:
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


class SqliteStore(Store):
    """The store on one SQLite file, through one connection on the loop.

    Parameters:
        url: `sqlite:///path`.
        busy_timeout: seconds to wait for a lock held by another process (then the transaction
            fails with OperationalError, which the server answers with 503).
    """

    sqlite = True

    def __init__(self, url: str, busy_timeout: float = 10.0) -> None:
        super().__init__(url)
        self.busy_timeout = busy_timeout
        self._inline: _Inline | None = None
        self._lock = asyncio.Lock()
        #: The write transaction this loop turn's transactions share, committed by `_commit` at
        #: the turn's end (see `tx`); resolved once committed.
        self._open: asyncio.Future[None] | None = None
        self._wal: WalSync | None = None
        self._checkpoints: Checkpointer | None = None
        # One connection, kept open: the WAL stays in place and every commit is ours.
        sync_engine = create_engine(sync_url(url), poolclass=StaticPool, connect_args={"check_same_thread": False})
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        self._sync_engine = sync_engine

    def _connection(self) -> _Inline:
        if self._inline is None:
            sync = self._sync_engine.connect()
            raw = sync.connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            self._inline = _Inline(sync, raw)
            database = make_url(sync_url(self.url)).database or ""
            self._wal = WalSync(f"{database}-wal", lambda: int(raw.total_changes), self._flushed)
            self._checkpoints = Checkpointer(database, self._quiet)
        return self._inline

    def _flushed(self) -> None:
        self.flushes += 1

    def tx(self, *, durable: bool = True) -> AbstractAsyncContextManager[Conn]:
        """One transaction (see Store.tx). The transactions of one loop turn share one commit at
        the turn's end (a savepoint each, so one failing undoes only itself): the write lock is
        taken and the WAL written once per turn, not once per request. Those not `durable`
        return before the commit, which follows within the same turn.
        """
        return _Shared(self, durable)

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
        """A read: no transaction of its own (one statement reads a consistent snapshot), so no
        write lock and no commit."""
        if self._lock.locked():  # a transaction is open on the one connection: wait for it
            async with self._lock:
                yield self._connection()
        else:
            yield self._connection()

    def mark(self) -> int:
        return self._wal.changes() if self._wal is not None else 0

    async def sync(self, upto: int | None = None) -> None:
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
