"""SQLite store: one file, durable on every acknowledged write, for a single host.

One writer thread owns the connection. Callers queue operations; the thread runs everything
queued so far in ONE transaction with ONE commit (group commit), so concurrent deliveries share
the fsync, then hands each caller its result on its event loop. A ``begin`` that leases
handlers is committed first, without waiting for an fsync, in a transaction of its own: nothing
is answered on it alone (the receiver answers after ``finish``, whose fsync makes both durable),
and its caller runs handlers while the durable writes of the batch wait for theirs. The event
loop never blocks on SQLite. ``BEGIN IMMEDIATE`` makes every batch exclusive, so several
processes on one file (for instance uvicorn workers) still never claim the same work twice.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; ``?busy_timeout=S``
sets how long to wait for another process's lock before answering 503 (default 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from alerthooks.store import (
    SCHEMA_VERSION,
    Begun,
    Claim,
    Delivery,
    Outcome,
    Status,
    Store,
    StoredEvent,
    StoreError,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerthooks_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS alerthooks_events (
    seq INTEGER PRIMARY KEY,
    provider TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT,
    body BLOB NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (event_id, provider)
);
CREATE TABLE IF NOT EXISTS alerthooks_outcomes (
    seq INTEGER NOT NULL REFERENCES alerthooks_events (seq),
    handler TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    owner TEXT,
    lease_until REAL NOT NULL DEFAULT 0,
    due_at REAL NOT NULL,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at);
"""
# Outcomes are keyed by the event's sequence number, not its (random) id: new rows append to the
# end of the b-tree, so a group commit writes a few pages instead of one per event.

_SEQ = "SELECT seq FROM alerthooks_events WHERE event_id = ? AND provider = ?"

# When a pair becomes claimable: pending/failed at due_at, running when its lease expires.
_CLAIMABLE_AT = "CASE WHEN status = 'running' THEN lease_until ELSE due_at END"
_OPEN = "status IN ('pending', 'failed', 'running')"


@dataclass
class _Op:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    durable: bool = True


def _parse_url(url: str) -> tuple[str, float]:
    rest = url.split(":", 1)[1]
    if not rest.startswith("///"):
        raise ValueError(f"SQLite store URL must look like sqlite:///path.db, got {url!r}")
    path, _, query = rest[3:].partition("?")
    if not path:
        raise ValueError(f"SQLite store URL {url!r} has no file path")
    params = parse_qs(query)
    try:
        timeout = float(params.get("busy_timeout", ["5"])[-1])
    except ValueError:
        raise ValueError(f"SQLite store URL {url!r}: busy_timeout must be seconds") from None
    return path, timeout


class _OpFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _resolve_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in results:
        if future.done():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


class SQLiteStore(Store):
    """Events and outcomes in one SQLite file (WAL, ``synchronous=FULL``), written by one thread
    with group commit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self.busy_timeout = _parse_url(url)
        self._queue: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # Writer-thread only: sequence numbers of events begun and not finished yet, so finish
        # needs no lookup; ``_new_seqs`` holds those of the open transaction until it commits.
        self._seqs: dict[tuple[str, str], int] = {}
        self._synchronous_full = True
        self._new_seqs: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    # -- plumbing -------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._writer, name="alerthooks-sqlite", daemon=True
                )
                self._thread.start()

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        """Run ``fn`` in the writer's next transaction. ``durable=False`` is for a write no answer
        depends on until a later durable write: it commits without waiting for the fsync (the
        next durable commit's fsync covers it)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None or not self._thread.is_alive():
            self._start()
        self._queue.put(_Op(fn, future, loop, durable))
        return await future

    def _writer(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
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
                logger.exception("sqlite store %s: batch failed", self.path)
                self._disconnect()
                error = StoreError(f"sqlite: {type(exc).__name__}: {exc}")
                for op in batch:
                    with contextlib.suppress(RuntimeError):
                        op.loop.call_soon_threadsafe(_resolve_all, [(op.future, False, error)])
        self._disconnect()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                self._synchronous_full = True
                conn.execute("PRAGMA cache_size=-32768")  # 32 MiB of hot index pages
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    row = conn.execute("SELECT MAX(version) FROM alerthooks_schema").fetchone()
                    if row[0] is None:
                        conn.execute(
                            "INSERT INTO alerthooks_schema (version) VALUES (?)", (SCHEMA_VERSION,)
                        )
                    elif row[0] > SCHEMA_VERSION:
                        raise StoreError(
                            f"{self.path} has schema version {row[0]}; this alerthooks knows "
                            f"up to {SCHEMA_VERSION}"
                        )
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def _run_batch(self, batch: list[_Op]) -> None:
        # Writes no answer waits on commit first, without fsync, and their callers go on (running
        # handlers) while the durable rest of the batch waits for its fsync.
        light = [op for op in batch if not op.durable]
        if light:
            if len(light) < len(batch):
                self._run_group(light, durable=False)
                self._run_group([op for op in batch if op.durable], durable=True)
            else:
                self._run_group(light, durable=False)
        else:
            self._run_group(batch, durable=True)

    def _run_group(self, batch: list[_Op], *, durable: bool) -> None:
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

    def _transaction(self, batch: list[_Op], *, durable: bool = True) -> list[tuple[bool, Any]]:
        """Run ``batch`` in one transaction and one commit (fsynced when ``durable``); raise
        _OpFailed when an operation raised (nothing is committed then) and StoreError when the
        database failed."""
        try:
            conn = self._connect()
            if durable != self._synchronous_full:
                conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._synchronous_full = durable
            conn.execute("BEGIN IMMEDIATE")
            self._new_seqs.clear()
            try:
                results: list[tuple[bool, Any]] = []
                for op in batch:
                    try:
                        results.append((True, op.fn(conn)))
                    except Exception as exc:
                        if isinstance(exc, sqlite3.Error) and len(batch) == 1:
                            raise
                        raise _OpFailed(exc) from exc
                conn.execute("COMMIT")
                if len(self._seqs) > 100_000:
                    self._seqs.clear()
                self._seqs.update(self._new_seqs)
                return results
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except _OpFailed:
            raise
        except (sqlite3.Error, StoreError, OSError) as exc:
            logger.warning("sqlite store %s: %s", self.path, exc)
            if not isinstance(exc, sqlite3.OperationalError) or "locked" not in str(exc):
                self._disconnect()
            raise exc if isinstance(exc, StoreError) else StoreError(f"sqlite: {exc}") from exc

    async def open(self) -> None:
        """Start the writer thread and create the schema if needed."""
        await self._submit(lambda conn: None)

    async def close(self) -> None:
        """Finish queued writes, then stop the writer thread and close the connection."""
        thread = self._thread
        if thread is None:
            return
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        self._thread = None

    # -- operations -----------------------------------------------------------------------------

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        """See :meth:`Store.begin`."""
        d = delivery

        def op(conn: sqlite3.Connection) -> Begun:
            now = time.time()
            cur = conn.execute(
                "INSERT INTO alerthooks_events (provider, event_id, event_type, body, received_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (d.provider, d.event_id, d.event_type, d.body, d.received_at.timestamp()),
            )
            if cur.rowcount == 1:
                seq = cur.lastrowid
                status, lease_until = ("running", now + lease) if claim else ("pending", 0.0)
                for h in d.handlers:
                    conn.execute(
                        "INSERT INTO alerthooks_outcomes (seq, handler, status, owner,"
                        " lease_until, due_at) VALUES (?, ?, ?, ?, ?, ?)",
                        (seq, h, status, owner if claim else None, lease_until, now),
                    )
                if claim and d.handlers and seq is not None:
                    self._new_seqs[(d.provider, d.event_id)] = seq
                return Begun(True, d.handlers if claim else (), ())
            (seq,) = conn.execute(_SEQ, (d.event_id, d.provider)).fetchone()
            conn.executemany(
                "INSERT INTO alerthooks_outcomes (seq, handler, status, due_at)"
                " VALUES (?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(seq, h, now) for h in d.handlers],
            )
            if not claim:
                return Begun(False, (), ())
            claimed: list[str] = []
            busy: list[str] = []
            for handler, status, lease_until in conn.execute(
                "SELECT handler, status, lease_until FROM alerthooks_outcomes"
                " WHERE seq = ? AND status NOT IN ('done', 'dead')",
                (seq,),
            ).fetchall():
                if status == "running" and lease_until > now:
                    busy.append(handler)
                else:
                    claimed.append(handler)
            conn.executemany(
                "UPDATE alerthooks_outcomes SET status = 'running', owner = ?, lease_until = ?"
                " WHERE seq = ? AND handler = ?",
                [(owner, now + lease, seq, h) for h in claimed],
            )
            return Begun(False, tuple(claimed), tuple(busy))

        # A begin that leases handlers is answered only after finish, whose fsync covers it; one
        # that leases none (queued mode, no handler, a duplicate) is an answer by itself.
        return await self._submit(op, durable=not (claim and d.handlers))

    async def finish(
        self,
        provider: str,
        event_id: str,
        results: Mapping[str, str | None],
        *,
        owner: str,
        retry_in: Mapping[str, float] | None = None,
        dead: Collection[str] = (),
    ) -> None:
        """See :meth:`Store.finish`."""
        delays = dict(retry_in or {})
        results = dict(results)
        dead = frozenset(dead)

        def op(conn: sqlite3.Connection) -> None:
            now = time.time()
            seq = self._seqs.pop((provider, event_id), None)
            row = (seq,) if seq is not None else conn.execute(_SEQ, (event_id, provider)).fetchone()
            if row is None:
                return
            for handler, error in results.items():
                if error is None:
                    conn.execute(
                        "UPDATE alerthooks_outcomes SET status = 'done', last_error = NULL,"
                        " attempts = attempts + 1, owner = NULL, lease_until = 0"
                        " WHERE seq = ? AND handler = ? AND status != 'done'",
                        (row[0], handler),
                    )
                else:
                    conn.execute(
                        "UPDATE alerthooks_outcomes SET status = ?, last_error = ?,"
                        " attempts = attempts + 1, owner = NULL, lease_until = 0, due_at = ?"
                        " WHERE seq = ? AND handler = ? AND status = 'running' AND owner = ?",
                        (
                            "dead" if handler in dead else "failed",
                            error,
                            now + delays.get(handler, 0.0),
                            row[0],
                            handler,
                            owner,
                        ),
                    )

        await self._submit(op)

    async def extend(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str, lease: float
    ) -> None:
        """See :meth:`Store.extend`."""
        names = list(handlers)

        def op(conn: sqlite3.Connection) -> None:
            until = time.time() + lease
            conn.executemany(
                "UPDATE alerthooks_outcomes SET lease_until = ? WHERE seq = (SELECT seq FROM"
                " alerthooks_events WHERE event_id = ? AND provider = ?) AND handler = ?"
                " AND status = 'running' AND owner = ?",
                [(until, event_id, provider, name, owner) for name in names],
            )

        await self._submit(op)

    async def claim(self, *, owner: str, lease: float, limit: int) -> Sequence[Claim]:
        """See :meth:`Store.claim`."""

        def op(conn: sqlite3.Connection) -> list[Claim]:
            now = time.time()
            rows = conn.execute(
                "SELECT o.seq, e.provider, e.event_id, o.handler, o.attempts, e.body"
                " FROM alerthooks_outcomes o JOIN alerthooks_events e ON e.seq = o.seq"
                " WHERE (o.status IN ('pending', 'failed') AND o.due_at <= ?)"
                " OR (o.status = 'running' AND o.lease_until <= ?)"
                " ORDER BY CASE WHEN o.status = 'running' THEN o.lease_until ELSE o.due_at END"
                " LIMIT ?",
                (now, now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE alerthooks_outcomes SET status = 'running', owner = ?, lease_until = ?"
                " WHERE seq = ? AND handler = ?",
                [(owner, now + lease, seq, h) for seq, _, _, h, _, _ in rows],
            )
            return [Claim(p, e, bytes(body), h, n) for _, p, e, h, n, body in rows]

        return await self._submit(op)

    async def replay(self, event_ids: Collection[str] = (), *, dead: bool = False) -> int:
        """See :meth:`Store.replay`."""
        ids = list(event_ids)

        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            if dead:
                cur = conn.execute(
                    "UPDATE alerthooks_outcomes SET status = 'pending', attempts = 0, due_at = ?"
                    " WHERE status = 'dead'",
                    (now,),
                )
                return cur.rowcount
            count = 0
            for event_id in ids:
                cur = conn.execute(
                    "UPDATE alerthooks_outcomes SET status = 'pending', attempts = 0, due_at = ?"
                    " WHERE seq IN (SELECT seq FROM alerthooks_events WHERE event_id = ?)"
                    " AND status IN ('failed', 'dead')",
                    (now, event_id),
                )
                count += cur.rowcount
            return count

        return await self._submit(op)

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        """See :meth:`Store.prune`."""
        cutoff = before.timestamp()

        def op(conn: sqlite3.Connection) -> int:
            conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS alerthooks_prune (seq INTEGER PRIMARY KEY)"
            )
            conn.execute("DELETE FROM alerthooks_prune")
            conn.execute(
                "INSERT INTO alerthooks_prune SELECT seq FROM alerthooks_events e"
                " WHERE received_at < ? AND NOT EXISTS (SELECT 1 FROM alerthooks_outcomes o"
                " WHERE o.seq = e.seq AND o.status != 'done') ORDER BY seq LIMIT ?",
                (cutoff, limit),
            )
            conn.execute(
                "DELETE FROM alerthooks_outcomes WHERE seq IN (SELECT seq FROM alerthooks_prune)"
            )
            cur = conn.execute(
                "DELETE FROM alerthooks_events WHERE seq IN (SELECT seq FROM alerthooks_prune)"
            )
            self._seqs.clear()
            return cur.rowcount

        return await self._submit(op)

    async def next_due(self) -> float | None:
        """See :meth:`Store.next_due`."""

        def op(conn: sqlite3.Connection) -> float | None:
            (at,) = conn.execute(
                f"SELECT MIN({_CLAIMABLE_AT}) FROM alerthooks_outcomes WHERE {_OPEN}"
            ).fetchone()
            return None if at is None else max(0.0, at - time.time())

        return await self._submit(op)

    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        """See :meth:`Store.get`."""

        def op(conn: sqlite3.Connection) -> StoredEvent | None:
            found = _load(
                conn,
                "SELECT seq, provider, event_id, event_type, body, received_at"
                " FROM alerthooks_events WHERE event_id = ? AND provider = ?",
                (event_id, provider),
            )
            return found[0] if found else None

        return await self._submit(op)

    async def events(
        self, *, status: Status | None = None, limit: int = 50
    ) -> Sequence[StoredEvent]:
        """See :meth:`Store.events`."""
        columns = (
            "SELECT seq, provider, event_id, event_type, body, received_at FROM alerthooks_events"
        )

        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            if status is None:
                return _load(conn, f"{columns} ORDER BY seq DESC LIMIT ?", (limit,))
            return _load(
                conn,
                f"{columns} WHERE seq IN (SELECT seq FROM alerthooks_outcomes WHERE status = ?)"
                " ORDER BY seq DESC LIMIT ?",
                (status, limit),
            )

        return await self._submit(op)


def _load(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[StoredEvent]:
    found: list[StoredEvent] = []
    for seq, provider, event_id, event_type, body, received_at in conn.execute(sql, params):
        outcomes = tuple(
            Outcome(handler, status, attempts, error, _ts(due) if status == "failed" else None)
            for handler, status, attempts, error, due in conn.execute(
                "SELECT handler, status, attempts, last_error, due_at FROM alerthooks_outcomes"
                " WHERE seq = ? ORDER BY handler",
                (seq,),
            )
        )
        found.append(
            StoredEvent(provider, event_id, event_type, bytes(body), _ts(received_at), outcomes)
        )
    return found
