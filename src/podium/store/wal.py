"""SQLite's WAL, made durable and kept bounded off the loop: group commit and checkpoints.

Commits do not fsync (`synchronous=NORMAL`); a transaction whose effect is promised to someone (a
job accepted, a result stored) waits for an fsync of the WAL, and one fsync, run off the loop,
covers every commit made before it started: group commit, without a writer thread. Checkpoints
(copying the WAL into the database file, with its fsyncs) run off the loop too, every few
hundred changes, never inside a commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager

log = logging.getLogger("podium.store")


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

    def __init__(self, wal_path: str, changes: Callable[[], int], on_flush: Callable[[], None]) -> None:
        self.wal_path = wal_path
        self.changes = changes
        self.on_flush = on_flush
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
            self.on_flush()
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

    def __init__(self, database: str, quiet: Callable[[], AbstractAsyncContextManager[None]], every: int = 500) -> None:
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
