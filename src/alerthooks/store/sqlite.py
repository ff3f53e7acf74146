"""SQLite store: one file, durable on every acknowledged write, for a single host.

The SQL of each operation lives here; the thread that runs it is the group-commit engine in
:mod:`alerthooks.store._sqlite_writer`: operations queued at once share one transaction and one
fsync. A ``begin`` that leases handlers is committed without waiting for an fsync: nothing is
answered on it alone (the receiver answers after ``finish``, whose fsync makes both durable).
The event loop never blocks on SQLite. ``BEGIN IMMEDIATE`` makes every batch exclusive, so
several processes on one file (for instance uvicorn workers) never claim the same work twice,
and they may open a fresh file at the same moment.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``; ``?busy_timeout=S``
sets how long to wait for another process's lock before answering 503 (default 5 s).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from alerthooks.store import (
    SCHEMA_VERSION,
    Attempt,
    Begun,
    Claim,
    Delivery,
    Outcome,
    Status,
    Store,
    StoredEvent,
    StoreError,
)
from alerthooks.store._sqlite_writer import GroupCommitWriter

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
    history TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at);
CREATE INDEX IF NOT EXISTS alerthooks_outcomes_due ON alerthooks_outcomes ({due})
    WHERE {due} IS NOT NULL;
"""
# ``history``: a JSON array of [error or null, finished_at] per finished run, oldest first.
# Schema versions: 1, the first; 2 added ``history``.
_MIGRATIONS = {
    1: "ALTER TABLE alerthooks_outcomes ADD COLUMN history TEXT NOT NULL DEFAULT '[]'",
}
_ATTEMPT = "history = json_insert(history, '$[#]', json_array(?, ?))"

# Outcomes are keyed by the event's sequence number, not its (random) id: new rows append to the
# end of the b-tree, so a group commit writes a few pages instead of one per event.

_SEQ = "SELECT seq FROM alerthooks_events WHERE event_id = ? AND provider = ?"

# When a pair becomes claimable: pending/failed at due_at, running when its lease expires, never
# (NULL) when done or dead. The partial index alerthooks_outcomes_due serves the claim order, so
# a claim reads only the rows it takes however long the backlog: queries must spell the
# expression exactly as the index does.
_CLAIMABLE_AT = (
    "CASE WHEN status = 'running' THEN lease_until"
    " WHEN status IN ('pending', 'failed') THEN due_at END"
)
_SCHEMA = _SCHEMA.replace("{due}", _CLAIMABLE_AT)

CLAIM_SQL = (
    "SELECT o.seq, e.provider, e.event_id, o.handler, o.attempts, e.body"
    " FROM alerthooks_outcomes o JOIN alerthooks_events e ON e.seq = o.seq"
    f" WHERE {_CLAIMABLE_AT} <= ? ORDER BY {_CLAIMABLE_AT} LIMIT ?"
)
"""The claim query (parameters: now, limit); tests check its plan."""
NEXT_DUE_SQL = (
    f"SELECT {_CLAIMABLE_AT} FROM alerthooks_outcomes WHERE {_CLAIMABLE_AT} IS NOT NULL"
    f" ORDER BY {_CLAIMABLE_AT} LIMIT 1"
)


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


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Open ``path`` ready for the store: WAL, ``synchronous=FULL``, the schema created or
    checked. Several processes may do this on one fresh file at once: switching it to WAL and
    creating the schema are retried until ``busy_timeout`` while another one holds the lock
    (SQLite's busy handler does not cover the journal-mode switch)."""
    deadline = time.monotonic() + busy_timeout
    pause = 0.002
    while True:
        try:
            return _connect_once(path, busy_timeout)
        except sqlite3.OperationalError as exc:
            if not _busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED
    return "locked" in str(exc) or "busy" in str(exc)


def _connect_once(path: str, busy_timeout: float) -> sqlite3.Connection:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"sqlite store {path}: cannot create directory {Path(path).parent}:"
            f" {exc.strerror or exc}"
        ) from exc
    try:
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StoreError(_unopenable(path, exc)) from exc
    try:
        try:
            (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
            if mode != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                raise
            raise StoreError(_unopenable(path, exc)) from exc
        conn.execute("PRAGMA synchronous=FULL")
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
                    f"{path} has schema version {row[0]}; this alerthooks knows "
                    f"up to {SCHEMA_VERSION}"
                )
            elif row[0] < SCHEMA_VERSION:
                for version in range(row[0], SCHEMA_VERSION):
                    conn.execute(_MIGRATIONS[version])
                conn.execute("UPDATE alerthooks_schema SET version = ?", (SCHEMA_VERSION,))
                logger.info(
                    "sqlite store %s: schema %d migrated to %d", path, row[0], SCHEMA_VERSION
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def _unopenable(path: str, exc: sqlite3.Error) -> str:
    """One line saying which file could not be opened and why, in the operating system's words
    where SQLite gives only "unable to open database file"."""
    target = Path(path)
    reason = str(exc)
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        existed = target.exists()
        os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o644))
        if not existed:
            target.unlink()
        # The file is fine: SQLite needs its -wal and -shm files beside it.
        fd, probe = tempfile.mkstemp(dir=target.parent, prefix=".alerthooks-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as os_error:
        reason = (os_error.strerror or str(os_error)).lower()
        if os_error.filename and Path(os_error.filename) != target:
            reason += f" (directory {target.parent}, where the -wal and -shm files go)"
    return f"sqlite store {path}: cannot open the database file: {reason}"


def _ts(value: float) -> datetime:
    return datetime.fromtimestamp(value, timezone.utc)


class SQLiteStore(Store):
    """Events and outcomes in one SQLite file (WAL, ``synchronous=FULL``), written by one thread
    with group commit."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self.busy_timeout = _parse_url(url)
        # Writer-thread only: sequence numbers of events begun and not finished yet, so finish
        # needs no lookup; ``_new_seqs`` holds those of the open transaction until it commits.
        self._seqs: dict[tuple[str, str], int] = {}
        self._new_seqs: dict[tuple[str, str], int] = {}
        self._writer = GroupCommitWriter(
            self._connect,
            label=self.path,
            on_begin=self._new_seqs.clear,
            on_commit=self._committed,
        )

    def __repr__(self) -> str:
        return f"SQLiteStore({self.url!r})"

    def _committed(self) -> None:
        if len(self._seqs) > 100_000:
            self._seqs.clear()
        self._seqs.update(self._new_seqs)

    async def _submit(self, fn: Callable[[sqlite3.Connection], T], *, durable: bool = True) -> T:
        return await self._writer.submit(fn, durable=durable)

    def _connect(self) -> sqlite3.Connection:
        return connect(self.path, self.busy_timeout)

    async def open(self) -> None:
        """Start the writer thread and create the schema if needed."""
        await self._submit(lambda conn: None)

    async def close(self) -> None:
        """Finish queued writes, then stop the writer thread and close the connection."""
        await self._writer.close()

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
                        f" attempts = attempts + 1, owner = NULL, lease_until = 0, {_ATTEMPT}"
                        " WHERE seq = ? AND handler = ? AND status != 'done'",
                        (None, now, row[0], handler),
                    )
                else:
                    conn.execute(
                        "UPDATE alerthooks_outcomes SET status = ?, last_error = ?,"
                        " attempts = attempts + 1, owner = NULL, lease_until = 0, due_at = ?,"
                        f" {_ATTEMPT}"
                        " WHERE seq = ? AND handler = ? AND status = 'running' AND owner = ?",
                        (
                            "dead" if handler in dead else "failed",
                            error,
                            now + delays.get(handler, 0.0),
                            error,
                            now,
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
            rows = conn.execute(CLAIM_SQL, (now, limit)).fetchall()
            conn.executemany(
                "UPDATE alerthooks_outcomes SET status = 'running', owner = ?, lease_until = ?"
                " WHERE seq = ? AND handler = ?",
                [(owner, now + lease, seq, h) for seq, _, _, h, _, _ in rows],
            )
            return [Claim(p, e, bytes(body), h, n) for _, p, e, h, n, body in rows]

        return await self._submit(op)

    async def replay(
        self, event_ids: Collection[str] = (), *, dead: bool = False, failed: bool = False
    ) -> int:
        """See :meth:`Store.replay`."""
        ids = list(event_ids)
        statuses = [s for s, wanted in (("dead", dead), ("failed", failed)) if wanted]

        def op(conn: sqlite3.Connection) -> int:
            now = time.time()
            if statuses:
                cur = conn.execute(
                    "UPDATE alerthooks_outcomes SET status = 'pending', attempts = 0, due_at = ?"
                    f" WHERE status IN ({', '.join('?' for _ in statuses)})",
                    (now, *statuses),
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
            row = conn.execute(NEXT_DUE_SQL).fetchone()
            return None if row is None else max(0.0, row[0] - time.time())

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
            Outcome(
                handler,
                status,
                attempts,
                error,
                _ts(due) if status == "failed" else None,
                _history(history),
            )
            for handler, status, attempts, error, due, history in conn.execute(
                "SELECT handler, status, attempts, last_error, due_at, history"
                " FROM alerthooks_outcomes WHERE seq = ? ORDER BY handler",
                (seq,),
            )
        )
        found.append(
            StoredEvent(provider, event_id, event_type, bytes(body), _ts(received_at), outcomes)
        )
    return found


def _history(raw: str) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(number, error, _ts(at)) for number, (error, at) in enumerate(json.loads(raw), 1)
    )
