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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs

from alerthooks.events import AlertState
from alerthooks.store import (
    PROCESS_DIED,
    PROCESS_GONE,
    REJECTIONS_DAYS,
    REJECTIONS_KEPT,
    SCHEMA_VERSION,
    UNPARSED_HANDLER,
    Attempt,
    Begun,
    Claim,
    Delivery,
    Outcome,
    Rejection,
    StateChange,
    Status,
    Store,
    StoredEvent,
    StoreError,
    Unfolded,
    log_dead_after_crash,
    owner_gone,
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
    started INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (seq, handler)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at);
CREATE INDEX IF NOT EXISTS alerthooks_outcomes_due ON alerthooks_outcomes ({due})
    WHERE {due} IS NOT NULL;
{states}
"""
# ``history``: a JSON array of [error or null, finished_at] per finished run, oldest first.
# ``started``: whether the handler of a running pair has started (1) or is only claimed (0):
# taking over an expired lease counts the run that died as an attempt only when it started.

# One alert state per subject; '' stands for no customer or no subscription (a key column
# cannot be NULL). ``since``: the occurred_at of the event that set it, in microseconds since
# the epoch, so ties compare exactly. ``alerthooks_state_fold`` holds one row while events
# stored before the states were kept (seq <= until_seq) are still to be folded in.
_STATES_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerthooks_states (
    provider TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    alert_name TEXT,
    state TEXT NOT NULL,
    since INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (provider, alert_id, customer_id, subscription_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alerthooks_state_fold (until_seq INTEGER NOT NULL);
"""
_SCHEMA = _SCHEMA.replace("{states}", _STATES_SCHEMA)


def _add_history(conn: sqlite3.Connection) -> None:
    """Schema 1 to 2: each outcome keeps its attempt history."""
    conn.execute("ALTER TABLE alerthooks_outcomes ADD COLUMN history TEXT NOT NULL DEFAULT '[]'")


def _add_alert_states(conn: sqlite3.Connection) -> None:
    """Schema 2 to 3: alert state per subject; the events stored so far are to be folded in."""
    for statement in _STATES_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(
        "INSERT INTO alerthooks_state_fold (until_seq) SELECT max(seq) FROM alerthooks_events"
        " HAVING max(seq) IS NOT NULL"
    )


def _add_started(conn: sqlite3.Connection) -> None:
    """Schema 3 to 4: a running pair's handler started or only claimed (running ones from
    before count as started, as they did)."""
    conn.execute("ALTER TABLE alerthooks_outcomes ADD COLUMN started INTEGER NOT NULL DEFAULT 1")


# Schema versions: 1, the first; 2 added ``history``; 3 the alert states; 4 ``started``.
_MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {
    1: _add_history,
    2: _add_alert_states,
    3: _add_started,
}

_SET_STATE = (
    "INSERT INTO alerthooks_states (provider, alert_id, customer_id, subscription_id,"
    " alert_name, state, since, event_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (provider, alert_id, customer_id, subscription_id) DO UPDATE SET"
    " alert_name = excluded.alert_name, state = excluded.state, since = excluded.since,"
    " event_id = excluded.event_id WHERE (excluded.since, excluded.event_id) > (since, event_id)"
)
"""Keep a state change unless the subject's state was set by an event that occurred later."""
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


def _state_row(provider: str, event_id: str, c: StateChange) -> tuple[Any, ...]:
    return (
        provider,
        c.alert_id,
        c.customer_id or "",
        c.subscription_id or "",
        c.alert_name,
        c.state,
        (c.since - _EPOCH) // _MICROSECOND,
        event_id,
    )


_ATTEMPT = "history = json_insert(history, '$[#]', json_array(?, ?))"
# Taking over the lease of a run that started and whose process died: that run counts as a
# failed attempt. (A pair claimed but never started is leased again without counting.)
_TAKEOVER = (
    "UPDATE alerthooks_outcomes SET status = ?, owner = ?, lease_until = ?, started = ?,"
    f" attempts = attempts + 1, last_error = ?, {_ATTEMPT} WHERE seq = ? AND handler = ?"
)
_RELEASE = (
    "UPDATE alerthooks_outcomes SET status = 'running', owner = ?, lease_until = ?, started = ?"
    " WHERE seq = ? AND handler = ?"
)

# Outcomes are keyed by the event's sequence number, not its (random) id: new rows append to the
# end of the b-tree, so a group commit writes a few pages instead of one per event.

_SEQ = "SELECT seq FROM alerthooks_events WHERE event_id = ? AND provider = ?"
_DROP_UNPARSED = (
    "DELETE FROM alerthooks_outcomes WHERE seq = ? AND handler = ? AND status = 'unparsed'"
)

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
    "SELECT o.seq, e.provider, e.event_id, o.handler, o.attempts, o.status, o.started, e.body"
    " FROM alerthooks_outcomes o JOIN alerthooks_events e ON e.seq = o.seq"
    f" WHERE {_CLAIMABLE_AT} <= ? ORDER BY {_CLAIMABLE_AT} LIMIT ?"
)
"""The claim query (parameters: now, limit); tests check its plan."""
NEXT_DUE_SQL = (
    f"SELECT {_CLAIMABLE_AT} FROM alerthooks_outcomes WHERE {_CLAIMABLE_AT} IS NOT NULL"
    f" ORDER BY {_CLAIMABLE_AT} LIMIT 1"
)


# Rejected deliveries, apart from the events (created on first use, no schema version):
# bounded by the trim that follows each write.
_REJECTIONS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alerthooks_rejections (id INTEGER PRIMARY KEY,"
    " received_at REAL NOT NULL, provider TEXT NOT NULL, status INTEGER NOT NULL,"
    " reason TEXT NOT NULL, source TEXT, body_bytes INTEGER NOT NULL, event_id TEXT,"
    " event_type TEXT, dropped INTEGER NOT NULL DEFAULT 0)"
)
_REJECTION_COLUMNS = (
    "received_at, provider, status, reason, source, body_bytes, event_id, event_type, dropped"
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
                    _MIGRATIONS[version](conn)
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
            if d.unparsed is not None:
                if cur.rowcount == 1:
                    conn.execute(
                        "INSERT INTO alerthooks_outcomes (seq, handler, status, last_error,"
                        " due_at) VALUES (?, ?, 'unparsed', ?, ?)",
                        (cur.lastrowid, UNPARSED_HANDLER, d.unparsed, now),
                    )
                return Begun(cur.rowcount == 1, (), ())
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
                if d.state is not None:
                    conn.execute(_SET_STATE, _state_row(d.provider, d.event_id, d.state))
                return Begun(True, d.handlers if claim else (), ())
            (seq,) = conn.execute(_SEQ, (d.event_id, d.provider)).fetchone()
            conn.execute(_DROP_UNPARSED, (seq, UNPARSED_HANDLER))  # it reads now
            conn.executemany(
                "INSERT INTO alerthooks_outcomes (seq, handler, status, due_at)"
                " VALUES (?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(seq, h, now) for h in d.handlers],
            )
            if not claim:
                return Begun(False, (), ())
            claimed: list[str] = []
            busy: list[str] = []
            died: list[tuple[str, str]] = []
            for handler, status, lease_until, holder, started in conn.execute(
                "SELECT handler, status, lease_until, owner, started FROM alerthooks_outcomes"
                " WHERE seq = ? AND status NOT IN ('done', 'dead')",
                (seq,),
            ).fetchall():
                if status != "running":
                    claimed.append(handler)
                elif lease_until > now and not owner_gone(holder):
                    busy.append(handler)
                elif not started:  # claimed, never started: nothing ran, nothing to count
                    claimed.append(handler)
                else:
                    died.append((handler, PROCESS_DIED if lease_until <= now else PROCESS_GONE))
            # The receiver runs what it claims at once: claimed here is started.
            conn.executemany(_RELEASE, [(owner, now + lease, 1, seq, h) for h in claimed])
            conn.executemany(
                _TAKEOVER,
                [("running", owner, now + lease, 1, err, err, now, seq, h) for h, err in died],
            )
            claimed.extend(h for h, _ in died)
            return Begun(False, tuple(sorted(claimed)), tuple(busy))

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

    async def start(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str
    ) -> None:
        """See :meth:`Store.start`."""
        names = list(handlers)

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE alerthooks_outcomes SET started = 1 WHERE seq = (SELECT seq FROM"
                " alerthooks_events WHERE event_id = ? AND provider = ?) AND handler = ?"
                " AND status = 'running' AND owner = ?",
                [(event_id, provider, name, owner) for name in names],
            )

        # Without waiting for the fsync, as a claim: the commit is in the file once this
        # returns, which a process that dies keeps; only a crash of the machine before the
        # outcome's fsync could lose it, and with it one attempt's count.
        await self._submit(op, durable=False)

    async def try_lease(self, name: str, *, owner: str, seconds: float) -> bool:
        """See :meth:`Store.try_lease`: a row of ``alerthooks_leases`` (created on first use)."""

        def op(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute(
                "CREATE TABLE IF NOT EXISTS alerthooks_leases (name TEXT PRIMARY KEY,"
                " owner TEXT NOT NULL, lease_until REAL NOT NULL)"
            )
            conn.execute(
                "INSERT INTO alerthooks_leases (name, owner, lease_until) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " lease_until = excluded.lease_until"
                " WHERE alerthooks_leases.lease_until <= ? OR alerthooks_leases.owner = ?",
                (name, owner, now + seconds, now, owner),
            )
            row = conn.execute(
                "SELECT owner FROM alerthooks_leases WHERE name = ?", (name,)
            ).fetchone()
            return row is not None and row[0] == owner

        return await self._submit(op)

    async def claim(
        self, *, owner: str, lease: float, limit: int, max_attempts: int | None = None
    ) -> Sequence[Claim]:
        """See :meth:`Store.claim`."""

        def op(conn: sqlite3.Connection) -> list[Claim]:
            now = time.time()
            rows = conn.execute(CLAIM_SQL, (now, limit)).fetchall()
            claims: list[Claim] = []
            plain: list[tuple[str, float, int, int, str]] = []
            for seq, p, e, h, n, status, started, body in rows:
                if status == "running" and started:  # the process running it died
                    n += 1
                    dead = max_attempts is not None and n >= max_attempts
                    conn.execute(
                        _TAKEOVER,
                        (
                            "dead" if dead else "running",
                            None if dead else owner,
                            0.0 if dead else now + lease,
                            0,
                            PROCESS_DIED,
                            PROCESS_DIED,
                            now,
                            seq,
                            h,
                        ),
                    )
                    if dead:
                        log_dead_after_crash(p, e, h, n)
                        continue
                else:
                    plain.append((owner, now + lease, 0, seq, h))
                claims.append(Claim(p, e, bytes(body), h, n))
            conn.executemany(_RELEASE, plain)
            return claims

        # Leases only, as begin's for inline mode: the run's finish is fsynced, and that covers
        # this commit too; a crash of the machine before it leaves the pairs pending again.
        return await self._submit(op, durable=False)

    async def expire_gone(self) -> int:
        """See :meth:`Store.expire_gone`."""

        def op(conn: sqlite3.Connection) -> int:
            owners = [
                owner
                for (owner,) in conn.execute(
                    "SELECT DISTINCT owner FROM alerthooks_outcomes WHERE status = 'running'"
                )
                if owner_gone(owner)
            ]
            count = 0
            for owner in owners:
                count += conn.execute(
                    "UPDATE alerthooks_outcomes SET lease_until = 0"
                    " WHERE status = 'running' AND owner = ? AND lease_until > ?",
                    (owner, time.time()),
                ).rowcount
            return count

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

    async def resolve_unparsed(
        self, provider: str, event_id: str, handlers: Collection[str]
    ) -> bool:
        """See :meth:`Store.resolve_unparsed`."""
        names = list(handlers)

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(_SEQ, (event_id, provider)).fetchone()
            if (
                row is None
                or conn.execute(_DROP_UNPARSED, (row[0], UNPARSED_HANDLER)).rowcount == 0
            ):
                return False
            now = time.time()
            conn.executemany(
                "INSERT INTO alerthooks_outcomes (seq, handler, status, due_at)"
                " VALUES (?, ?, 'pending', ?) ON CONFLICT DO NOTHING",
                [(row[0], name, now) for name in names],
            )
            return True

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
        self,
        *,
        status: Status | None = None,
        limit: int = 50,
        provider: str | None = None,
        search: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        before: int | None = None,
    ) -> Sequence[StoredEvent]:
        """See :meth:`Store.events`."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("seq IN (SELECT seq FROM alerthooks_outcomes WHERE status = ?)")
            params.append(status)
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        if search:
            where.append("(event_id = ? OR instr(body, ?) > 0)")
            params += [search, search.encode()]
        if since is not None:
            where.append("received_at >= ?")
            params.append(since.timestamp())
        if until is not None:
            where.append("received_at < ?")
            params.append(until.timestamp())
        if before is not None:
            where.append("seq < ?")
            params.append(before)
        sql = (
            "SELECT seq, provider, event_id, event_type, body, received_at FROM alerthooks_events"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY seq DESC LIMIT ?"
        )

        def op(conn: sqlite3.Connection) -> list[StoredEvent]:
            return _load(conn, sql, (*params, limit))

        return await self._submit(op)

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """See :meth:`Store.record_rejections`: committed without waiting for its own fsync,
        so a flood of them costs the deliveries little."""
        rows = [
            (
                r.received_at.timestamp(),
                r.provider,
                r.status,
                r.reason,
                r.source,
                r.body_bytes,
                r.event_id,
                r.event_type,
                r.dropped,
            )
            for r in rejections
        ]
        oldest = time.time() - REJECTIONS_DAYS * 86400

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_REJECTIONS_SCHEMA)
            conn.executemany(
                f"INSERT INTO alerthooks_rejections ({_REJECTION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "DELETE FROM alerthooks_rejections WHERE id <= (SELECT max(id) FROM"
                " alerthooks_rejections) - ? OR (id IN (SELECT id FROM alerthooks_rejections"
                " ORDER BY id LIMIT 100) AND received_at < ?)",
                (REJECTIONS_KEPT, oldest),
            )

        await self._submit(op, durable=False)

    async def rejections(
        self, *, limit: int = 50, provider: str | None = None
    ) -> Sequence[Rejection]:
        """See :meth:`Store.rejections`."""

        def op(conn: sqlite3.Connection) -> list[Rejection]:
            conn.execute(_REJECTIONS_SCHEMA)
            rows = conn.execute(
                f"SELECT {_REJECTION_COLUMNS} FROM alerthooks_rejections"
                " WHERE ? IS NULL OR provider = ? ORDER BY id DESC LIMIT ?",
                (provider, provider, limit),
            )
            return [Rejection(_ts(row[0]), *row[1:]) for row in rows]

        return await self._submit(op)

    async def prune_rejections(self, *, before: datetime) -> int:
        """See :meth:`Store.prune_rejections`."""
        cutoff = before.timestamp()

        def op(conn: sqlite3.Connection) -> int:
            conn.execute(_REJECTIONS_SCHEMA)
            cur = conn.execute("DELETE FROM alerthooks_rejections WHERE received_at < ?", (cutoff,))
            return cur.rowcount

        return await self._submit(op)

    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        """See :meth:`Store.states`."""
        where: list[str] = []
        params: list[Any] = []
        if provider is not None:
            where.append("provider = ?")
            params.append(provider)
        if in_alarm is not None:
            where.append("state = ?")
            params.append("in_alarm" if in_alarm else "within_limit")
        sql = (
            "SELECT provider, alert_id, alert_name, customer_id, subscription_id, state, since,"
            " event_id FROM alerthooks_states"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY provider, alert_id, customer_id, subscription_id"
        )

        def op(conn: sqlite3.Connection) -> list[AlertState]:
            return [
                AlertState(
                    provider=p,
                    alert_id=alert_id,
                    alert_name=name,
                    customer_id=customer or None,
                    subscription_id=subscription or None,
                    state=state,
                    since=_EPOCH + since * _MICROSECOND,
                    event_id=event_id,
                )
                for p, alert_id, name, customer, subscription, state, since, event_id in (
                    conn.execute(sql, params)
                )
            ]

        return await self._submit(op)

    async def unfolded(self, *, after: int = 0, limit: int = 500) -> Sequence[Unfolded] | None:
        """See :meth:`Store.unfolded`."""

        def op(conn: sqlite3.Connection) -> list[Unfolded] | None:
            row = conn.execute("SELECT min(until_seq) FROM alerthooks_state_fold").fetchone()
            if row[0] is None:
                return None
            return [
                Unfolded(seq, provider, event_id, bytes(body))
                for seq, provider, event_id, body in conn.execute(
                    "SELECT seq, provider, event_id, body FROM alerthooks_events"
                    " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                    (after, row[0], limit),
                )
            ]

        return await self._submit(op)

    async def fold(
        self, changes: Sequence[tuple[str, str, StateChange]], *, done: bool = False
    ) -> None:
        """See :meth:`Store.fold`."""
        rows = [_state_row(provider, event_id, change) for provider, event_id, change in changes]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_SET_STATE, rows)
            if done:
                conn.execute("DELETE FROM alerthooks_state_fold")

        await self._submit(op)


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
            StoredEvent(
                provider, event_id, event_type, bytes(body), _ts(received_at), outcomes, seq
            )
        )
    return found


def _history(raw: str) -> tuple[Attempt, ...]:
    return tuple(
        Attempt(number, error, _ts(at)) for number, (error, at) in enumerate(json.loads(raw), 1)
    )
