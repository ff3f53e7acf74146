"""The SQLite store's group-commit engine: one thread, one connection, one commit per batch.

Callers queue operations (functions of the connection); the thread runs everything queued so far
in ONE transaction with ONE commit, so concurrent callers share the fsync, then hands each caller
its result (or the error) on its own event loop. An operation marked ``durable=False`` is
committed first, in a transaction of its own, without waiting for the fsync: it is for a write
no answer depends on until a later durable write, whose fsync then covers both. When one
operation raises, the batch is rolled back and each operation is run alone, so only the faulty
one fails. ``BEGIN IMMEDIATE`` makes every batch exclusive across processes.

The WAL stays bounded: SQLite checkpoints it every :data:`WAL_AUTOCHECKPOINT_PAGES` pages, the
thread checkpoints and truncates it once it has been idle for ``idle_checkpoint`` seconds, and
after a full-disk error it checkpoints before the next batch, so the space a grown WAL holds is
given back as soon as the database can take its pages.

The engine knows nothing of the schema: ``connect`` opens a ready connection (autocommit mode,
``isolation_level=None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from alerthooks.store import StoreError

logger = logging.getLogger(__name__)

T = TypeVar("T")

WAL_AUTOCHECKPOINT_PAGES = 256
"""Pages (4 KiB each by default) the WAL may grow by before SQLite checkpoints it."""
JOURNAL_SIZE_LIMIT = 1 << 20
"""Bytes a WAL file is truncated to when it is reset after a checkpoint."""


@dataclass
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool = True


class _OpFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


_Result = tuple[bool, Any]
_SQLITE_FULL = 13


def _resolve_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", 0) & 0xFF == _SQLITE_FULL or "disk is full" in str(exc)
    )


class GroupCommitWriter:
    """Runs operations on one SQLite connection from one thread, a batch per transaction.

    ``connect`` opens the connection (on the writer thread, when first needed and again after a
    failure that closed it); ``label`` names the database in logs and errors. ``on_begin`` and
    ``on_commit`` run on the writer thread right after each ``BEGIN`` and each ``COMMIT``.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        label: str,
        on_begin: Callable[[], None] | None = None,
        on_commit: Callable[[], None] | None = None,
        idle_checkpoint: float = 1.0,
    ) -> None:
        self.label = label
        self.idle_checkpoint = idle_checkpoint
        self._connect_fn = connect
        self._on_begin = on_begin
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.conn: sqlite3.Connection | None = None
        """The connection, while open (writer thread only, or tests)."""
        self._synchronous_full = True
        self._dirty = False  # written since the last complete checkpoint
        self._checkpoint_first = False  # a full-disk error happened: checkpoint before writing

    # -- callers' side --------------------------------------------------------------------------

    async def submit(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the writer's next transaction and return what it returns (or raise what
        it raised; a database failure is a :class:`StoreError`). ``durable=False``: commit
        without waiting for the fsync (the next durable commit's fsync covers it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._queue.put(_Op(fn, future, loop, durable))
        return await future

    async def close(self) -> None:
        """Finish every operation queued so far, then stop the thread and close the connection.
        A later :meth:`submit` starts it again."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="alerthooks-sqlite", daemon=True
                )
                self._thread.start()

    # -- the writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=self.idle_checkpoint if self._dirty else None)
            except queue.Empty:
                if self.conn is None:  # nothing open to checkpoint (a failure closed it)
                    self._dirty = False
                else:
                    self._checkpoint("idle")
                continue
            if first is None:
                break
            batch = [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            try:
                self._run_batch(batch)
            except Exception as exc:  # a bug must not kill the writer and hang every caller
                logger.exception("sqlite store %s: batch failed", self.label)
                self._disconnect()
                error = StoreError(f"sqlite: {type(exc).__name__}: {exc}")
                for op in batch:
                    with contextlib.suppress(RuntimeError):
                        op.loop.call_soon_threadsafe(_resolve_all, [(op.future, False, error)])
        self._disconnect()

    def _connection(self) -> sqlite3.Connection:
        if self.conn is None:
            conn = self._connect_fn()
            try:
                conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
                conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
                (level,) = conn.execute("PRAGMA synchronous").fetchone()
            except BaseException:
                conn.close()
                raise
            self._synchronous_full = level >= 2
            self.conn = conn
            self._dirty = True  # a WAL left by an earlier run is checkpointed when idle
        return self.conn

    def _disconnect(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self.conn.close()
            self.conn = None

    def _checkpoint(self, why: str) -> bool:
        """Checkpoint the whole WAL into the database and truncate it, without waiting for other
        connections (a reader or another process's writer makes it try again later); True when
        the WAL is now empty."""
        try:
            conn = self._connection()
            (timeout,) = conn.execute("PRAGMA busy_timeout").fetchone()
            conn.execute("PRAGMA busy_timeout=0")
            try:
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout={int(timeout)}")
        except (sqlite3.Error, StoreError, OSError) as exc:
            level = logging.DEBUG if why == "idle" else logging.WARNING
            logger.log(level, "sqlite store %s: %s checkpoint failed: %s", self.label, why, exc)
            return False
        if busy:
            logger.debug("sqlite store %s: %s checkpoint deferred (busy)", self.label, why)
            return False
        self._dirty = False
        if self._checkpoint_first:
            logger.warning("sqlite store %s: WAL checkpointed after a full disk", self.label)
        self._checkpoint_first = False
        return True

    def _run_batch(self, batch: list[_Op]) -> None:
        if self._checkpoint_first:
            self._checkpoint("full-disk")
        # Writes no answer waits on commit first, without fsync, and their callers go on while
        # the durable rest of the batch waits for its fsync.
        light = [op for op in batch if not op.durable]
        if light:
            self._run_group(light, durable=False)
            if len(light) < len(batch):
                self._run_group([op for op in batch if op.durable], durable=True)
        else:
            self._run_group(batch, durable=True)

    def _run_group(self, batch: list[_Op], *, durable: bool) -> None:
        outcomes: list[_Result]
        try:
            outcomes = self._transaction(batch, durable=durable)
        except _OpFailed:
            # One operation failed: run each alone so the others still commit.
            outcomes = []
            for op in batch:
                try:
                    outcomes += self._transaction([op], durable=durable)
                except _OpFailed as failed:
                    outcomes.append((False, failed.error))
                except StoreError as exc:
                    outcomes.append((False, exc))
        except StoreError as exc:
            outcomes = [(False, exc)] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for op, (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(op.loop, []).append((op.future, ok, value))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the caller's loop is closed
                loop.call_soon_threadsafe(_resolve_all, results)

    def _transaction(self, batch: list[_Op], *, durable: bool = True) -> list[_Result]:
        """Run ``batch`` in one transaction and one commit (fsynced when ``durable``); raise
        _OpFailed when an operation raised (nothing is committed then) and StoreError when the
        database failed."""
        try:
            conn = self._connection()
            if durable != self._synchronous_full:
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._synchronous_full = durable
            conn.execute("BEGIN IMMEDIATE")
            if self._on_begin is not None:
                self._on_begin()
            try:
                results: list[_Result] = []
                for op in batch:
                    try:
                        results.append((True, op.fn(conn)))
                    except Exception as exc:
                        if isinstance(exc, sqlite3.Error) and len(batch) == 1:
                            raise
                        raise _OpFailed(exc) from exc
                conn.execute("COMMIT")
                self._dirty = True
                if self._on_commit is not None:
                    self._on_commit()
                return results
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except _OpFailed as failed:
            if _disk_full(failed.error):
                self._checkpoint_first = True
            raise
        except (sqlite3.Error, StoreError, OSError) as exc:
            if isinstance(exc, StoreError):  # it names the store already
                logger.warning("%s", exc)
            else:
                logger.warning("sqlite store %s: %s", self.label, exc)
            if _disk_full(exc):
                self._checkpoint_first = True
            elif not isinstance(exc, sqlite3.OperationalError) or "locked" not in str(exc):
                self._disconnect()
            raise exc if isinstance(exc, StoreError) else StoreError(f"sqlite: {exc}") from exc
