"""The store on PostgreSQL.

PostgreSQL goes through the asyncio driver (psycopg 3) with kept connections, and the same policy
as SQLite: a transaction that promises nothing waits for no WAL flush, one that promises waits for
its own (concurrent durable commits share their flushes). The promise is a connection's, not a
statement's: durable transactions run on connections whose `synchronous_commit` is on, the others
on connections where it is off, so no transaction spends a round trip saying which it is.

The call path's statements (`Prepared`) skip SQLAlchemy: compiled once for PostgreSQL, run on the
driver's connection as server-side prepared statements. One that is a transaction by itself
(`Store.run`: a job stored, taken, ended, read) is one round trip on an autocommit connection,
not three (BEGIN, the statement, COMMIT). Connections are not pinged before use (a round trip):
one the server ended since its last use (a restart, a terminated backend) has said so on its
socket, which is peeked at instead, and is replaced.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, func
from sqlalchemy.dialects.postgresql import psycopg as pg_dialect
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util.typing import TupleAny

from podium.store.engine import Conn, Prepared, Row, Store, sync_url

if TYPE_CHECKING:  # the driver is imported when the store connects (a SQLite server never does)
    import psycopg

#: A statement that makes its transaction write a commit record (an xid), so that committing it
#: durably flushes the WAL up to it, and so every commit before it.
_FLUSH = Prepared(func.pg_current_xact_id().select())

_DIALECT = pg_dialect.dialect()  # type: ignore[no-untyped-call]


class _Compiled:
    """A Prepared statement as PostgreSQL runs it: its SQL with named binds, the values fixed in it."""

    __slots__ = ("sql", "fixed")

    def __init__(self, prepared: Prepared) -> None:
        compiled = prepared.statement.compile(dialect=_DIALECT)  # type: ignore[attr-defined]
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}


_compiled: dict[Prepared, _Compiled] = {}


def _compile(prepared: Prepared) -> _Compiled:
    found = _compiled.get(prepared)
    if found is None:
        found = _compiled[prepared] = _Compiled(prepared)
    return found


def _has_rows(cursor: psycopg.AsyncCursor[Any]) -> bool:
    """Whether the statement returned rows (not `cursor.description`, which builds a column
    object per column each time it is read: a third of a one-row read's time)."""
    from psycopg import pq

    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


async def _rows(
    driver: psycopg.AsyncConnection[Any], prepared: Prepared, params: Mapping[str, Any]
) -> tuple[list[Row], int]:
    """Run a Prepared statement on the driver's connection (prepared on the server once per
    connection): its rows, and how many rows it changed. Errors are raised as SQLAlchemy raises
    them, so callers catch one kind."""
    import psycopg
    from psycopg.rows import dict_row

    compiled = _compile(prepared)
    values = {**compiled.fixed, **params} if compiled.fixed else params
    try:
        async with driver.cursor(row_factory=dict_row) as cursor:
            await cursor.execute(compiled.sql, values, prepare=True)
            found: list[Row] = list(await cursor.fetchall()) if _has_rows(cursor) else []
            return found, cursor.rowcount
    except psycopg.Error as exc:
        raise DBAPIError.instance(compiled.sql, None, exc, psycopg.Error) from exc


async def _pipelined(
    driver: psycopg.AsyncConnection[Any], statements: list[tuple[Prepared, Mapping[str, Any]]]
) -> list[tuple[list[Row], int]]:
    """Several Prepared statements sent at once (pipeline mode): one round trip, and one implicit
    transaction, which the first error aborts whole (raised as `_rows` raises it)."""
    import psycopg
    from psycopg.rows import dict_row

    cursors = []
    try:
        async with driver.pipeline():
            for prepared, params in statements:
                compiled = _compile(prepared)
                cursor = driver.cursor(row_factory=dict_row)
                await cursor.execute(compiled.sql, {**compiled.fixed, **params}, prepare=True)
                cursors.append(cursor)
        out: list[tuple[list[Row], int]] = []
        for cursor in cursors:
            found: list[Row] = list(await cursor.fetchall()) if _has_rows(cursor) else []
            out.append((found, cursor.rowcount))
        return out
    except psycopg.Error as exc:
        raise DBAPIError.instance("(pipeline)", None, exc, psycopg.Error) from exc
    finally:
        for cursor in cursors:
            await cursor.close()


class _Pooled:
    """A pooled PostgreSQL connection in a transaction; counts its statements (round trips)."""

    __slots__ = ("conn", "statements", "wrote")

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.statements = 0
        self.wrote = False

    def _count(self, statement: Executable, changed: int) -> None:
        self.statements += 1
        # Rows changed: the commit has a record to flush (an unknown count, -1, counts too).
        self.wrote = self.wrote or bool(getattr(statement, "is_dml", False) and changed)

    async def execute(self, statement: Executable, parameters: Any = None) -> CursorResult[*TupleAny]:
        result = await self.conn.execute(statement, parameters)
        self._count(statement, result.rowcount)
        return result

    async def scalar(self, statement: Executable, parameters: Any = None) -> Any:
        result = await self.conn.execute(statement, parameters)
        self._count(statement, result.rowcount)
        return result.scalar()

    async def rows(self, prepared: Prepared, parameters: Mapping[str, Any]) -> list[Row]:
        raw = await self.conn.get_raw_connection()
        found, changed = await _rows(raw.driver_connection, prepared, parameters)  # type: ignore[arg-type]
        self._count(prepared.statement, changed)
        return found


def _quiet(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection has heard nothing since its last use: a server that ended it
    (restarted, killed, the backend terminated) has closed the socket or said so, so a cut
    connection is dropped here, not found by the next request (a peek, no round trip)."""
    try:
        return not select.select([conn.fileno()], [], [], 0)[0]
    except (OSError, ValueError):
        return False


def _checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
    """A pooled connection that is not `_quiet` is replaced before use (SQLAlchemy retries)."""
    if not _quiet(record.driver_connection):
        raise DisconnectionError("the server ended this connection")


class _Autocommit:
    """Kept autocommit connections, for transactions of one statement (one round trip each).
    Taken and given back by hand, not through a context manager: this is every call's path."""

    def __init__(self, conninfo: str, size: int, synchronous_commit: str) -> None:
        self.conninfo = conninfo
        self.options = f"-c synchronous_commit={synchronous_commit}"
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)

    async def take(self) -> psycopg.AsyncConnection[Any]:
        """A sound connection (a kept one, else a new one); give it back with `give`."""
        await self._slots.acquire()
        try:
            return await self._sound()
        except BaseException:
            self._slots.release()
            raise

    async def _sound(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        while self._idle:
            conn = self._idle.pop()
            if _quiet(conn):
                return conn
            await conn.close()
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, options=self.options)
        except psycopg.Error as exc:
            raise DBAPIError.instance("connect", None, exc, psycopg.Error) from exc

    async def give(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Kept only if it is idle and sound (not cut, not left mid-statement by a cancel)."""
        import psycopg

        try:
            if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self._idle.append(conn)
            else:
                await conn.close()
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


#: A statement waiting to be sent with others: its binds, and who waits for its rows.
_Waiting = tuple[Prepared, Mapping[str, Any], "asyncio.Future[list[Row]]"]


class PostgresStore(Store):
    """The store on PostgreSQL, through kept connections.

    Parameters:
        url: `postgresql://user@host/db`.
        pool_size: connections this process keeps at most (each replica its own): a quarter
            each for durable transactions, the others, and durable and other statements alone.
    """

    sqlite = False
    pipelines = True

    def __init__(self, url: str, pool_size: int = 40) -> None:
        super().__init__(url)
        quarter = max(1, pool_size // 4)

        def engine(synchronous_commit: str) -> AsyncEngine:
            # Connections are kept, not opened per burst: a new one costs PostgreSQL a process.
            return create_async_engine(
                sync_url(url),
                pool_size=quarter,
                max_overflow=0,
                pool_timeout=30,
                connect_args={"options": f"-c synchronous_commit={synchronous_commit}"},
            )

        #: Durable transactions, and the others.
        self.engine: AsyncEngine = engine("on")
        self._fast = engine("off")
        for pooled in (self.engine, self._fast):
            event.listen(pooled.sync_engine.pool, "checkout", _checkout)
        self._reads = self._fast.execution_options(isolation_level="AUTOCOMMIT")
        conninfo = self.conninfo
        assert conninfo is not None
        self._one = {True: _Autocommit(conninfo, quarter, "on"), False: _Autocommit(conninfo, quarter, "off")}
        #: Statements alone (`run`) of this loop turn, durable and not, waiting to be sent.
        self._batches: dict[bool, list[_Waiting] | None] = {True: None, False: None}
        self._sending: set[asyncio.Task[None]] = set()

    @property
    def conninfo(self) -> str | None:
        return make_url(sync_url(self.url)).set(drivername="postgresql").render_as_string(hide_password=False)

    def tx(self, *, durable: bool = True) -> AbstractAsyncContextManager[Conn]:
        return self._pooled(durable)

    @asynccontextmanager
    async def _pooled(self, durable: bool) -> AsyncIterator[Conn]:
        async with (self.engine if durable else self._fast).begin() as conn:
            pooled = _Pooled(conn)
            yield pooled
        if pooled.statements:  # BEGIN went out with the first one, then COMMIT
            self.round_trips += pooled.statements + 2
            if durable and pooled.wrote:
                self.flushes += 1

    async def run(self, prepared: Prepared, params: Mapping[str, Any], *, durable: bool = True) -> list[Row]:
        """One statement alone; those of one loop turn (and durability) go together (`_send`)."""
        loop = asyncio.get_running_loop()
        batch = self._batches[durable]
        if batch is None:
            batch = self._batches[durable] = []
            # Its first step comes after this loop turn's other callbacks: they join the batch.
            task = loop.create_task(self._send(durable))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        done: asyncio.Future[list[Row]] = loop.create_future()
        batch.append((prepared, params, done))
        return await done

    async def _send(self, durable: bool) -> None:
        """The statements of one loop turn, pipelined in one round trip and one transaction: one
        commit, so one WAL flush, for all (group commit). If one fails (or the transaction meets
        a deadlock), nothing of them was committed: each runs again alone, and only the one at
        fault fails."""
        batch, self._batches[durable] = self._batches[durable] or [], None
        try:
            pool = self._one[durable]
            conn = await pool.take()
            try:
                self.round_trips += 1
                if len(batch) > 1:
                    try:
                        outcomes = await _pipelined(conn, [(prepared, params) for prepared, params, _ in batch])
                    except DBAPIError:
                        if conn.closed:
                            raise
                        outcomes = None
                    if outcomes is not None:
                        if durable and any(changed for _, changed in outcomes):
                            self.flushes += 1
                        for (_, _, done), (found, _) in zip(batch, outcomes, strict=True):
                            if not done.done():
                                done.set_result(found)
                        return
                    self.round_trips += len(batch) - 1
                for prepared, params, done in batch:
                    try:
                        found, changed = await _rows(conn, prepared, params)
                    except DBAPIError as exc:
                        if not done.done():
                            done.set_exception(exc)
                        if conn.closed:
                            raise
                        continue
                    if durable and changed:
                        self.flushes += 1
                    if not done.done():
                        done.set_result(found)
            finally:
                await pool.give(conn)
        except BaseException as exc:  # the connection failed (or the store closes): all that wait
            for _, _, done in batch:
                if done.done():
                    continue
                if isinstance(exc, Exception):
                    done.set_exception(exc)
                else:
                    done.cancel()
            if not isinstance(exc, Exception):
                raise

    async def fetch(self, prepared: Prepared, params: Mapping[str, Any]) -> list[Row]:
        # With the loop turn's statements that promise nothing: a round trip shared, and no
        # pooled connection checked out through SQLAlchemy.
        return await self.run(prepared, params, durable=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Conn]:
        """A read: each statement its own snapshot (autocommit), one round trip each."""
        async with self._reads.connect() as conn:
            pooled = _Pooled(conn)
            yield pooled
        self.round_trips += pooled.statements

    async def sync(self, upto: int | None = None) -> None:
        # A durable commit that writes WAL (an xid) flushes the WAL up to it, so every commit
        # before; sent with the loop turn's other durable statements (/run's inserts), it shares
        # their flush.
        await self.run(_FLUSH, {}, durable=True)

    async def close(self) -> None:
        for task in list(self._sending):
            await asyncio.wait([task])
        for one in self._one.values():
            await one.close()
        await self._fast.dispose()
        await self.engine.dispose()
