"""PostgreSQL store: one database shared by several replicas, through an asyncpg pool.

Leases and due times use the database clock (``now()``), so replicas with skewed clocks agree.
Claims use ``FOR UPDATE SKIP LOCKED``; ``begin`` relies on row locks and the unique keys, so two
replicas receiving the same event at once never both run a handler.

URL: any libpq-style ``postgresql://user@host:port/db`` URL. Extra query parameters read here:
``schema=NAME`` keeps the tables in that schema (created when missing), ``pool_size=N`` caps the
pool (default 10), ``group_commit=off`` gives each ``begin`` and ``finish`` a statement and commit
of its own instead of batching those of the deliveries in flight (default on; see
:meth:`PostgresStore._run_batch`).

Workers of other processes hear of new queued work at once: recording it sends a ``NOTIFY`` on
channel ``alerthooks`` (payload: the schema, or empty) in the same transaction, and a worker
keeps one connection ``LISTEN``ing (see :meth:`PostgresStore.watch`); polling covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

try:
    import asyncpg
except ImportError:
    # A receiver on memory:// or SQLite never imports this module: asyncpg is an extra.
    raise ImportError(
        'a postgresql:// store needs asyncpg: pip install "alerthooks-sdk[postgres]"'
    ) from None

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
from alerthooks.store._group_commit import GroupCommit

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    _Conn = PoolConnectionProxy[Any]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_CHANNEL = "alerthooks"  # NOTIFY payload: the schema ("" for the default), so schemas stay apart

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS alerthooks_schema (version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS alerthooks_events (
        seq bigserial PRIMARY KEY,
        provider text NOT NULL,
        event_id text NOT NULL,
        event_type text,
        body bytea NOT NULL,
        received_at timestamptz NOT NULL,
        UNIQUE (provider, event_id)
    )""",
    """CREATE TABLE IF NOT EXISTS alerthooks_outcomes (
        provider text NOT NULL,
        event_id text NOT NULL,
        handler text NOT NULL,
        status text NOT NULL,
        attempts integer NOT NULL DEFAULT 0,
        last_error text,
        owner text,
        lease_until timestamptz,
        due_at timestamptz NOT NULL DEFAULT now(),
        history jsonb NOT NULL DEFAULT '[]',
        started boolean NOT NULL DEFAULT true,
        PRIMARY KEY (provider, event_id, handler)
    )""",
    "CREATE INDEX IF NOT EXISTS alerthooks_outcomes_status ON alerthooks_outcomes (status, due_at)",
    "CREATE INDEX IF NOT EXISTS alerthooks_outcomes_event ON alerthooks_outcomes (event_id)",
    "CREATE INDEX IF NOT EXISTS alerthooks_outcomes_due ON alerthooks_outcomes (({due}))"
    " WHERE {due} IS NOT NULL",
]

# When a pair becomes claimable: pending/failed at due_at, running when its lease expires, never
# (NULL) when done or dead. The partial index alerthooks_outcomes_due serves the claim order, so a
# claim reads only the rows it takes however long the backlog: queries spell it exactly so.
_CLAIMABLE_AT = (
    "CASE WHEN status = 'running' THEN lease_until"
    " WHEN status IN ('pending', 'failed') THEN due_at END"
)
_SCHEMA = [statement.replace("{due}", _CLAIMABLE_AT) for statement in _SCHEMA]

# ``history``: a JSON array of [error or null, finished_at epoch] per finished run, oldest first.
# ``started``: whether the handler of a running pair has started or is only claimed: taking
# over an expired lease counts the run that died as an attempt only when it started.

# One alert state per subject; '' stands for no customer or no subscription (a key column cannot
# be NULL). Texts compare in the "C" collation, as Python and SQLite compare them, so the order
# of the list and the tie-break between events that occurred at the same time are the same in
# every store. ``alerthooks_state_fold`` holds one row while events stored before the states
# were kept (seq <= until_seq) are still to be folded in.
_STATES_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS alerthooks_states (
        provider text COLLATE "C" NOT NULL,
        alert_id text COLLATE "C" NOT NULL,
        customer_id text COLLATE "C" NOT NULL,
        subscription_id text COLLATE "C" NOT NULL,
        alert_name text,
        state text NOT NULL,
        since timestamptz NOT NULL,
        event_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (provider, alert_id, customer_id, subscription_id)
    )""",
    "CREATE TABLE IF NOT EXISTS alerthooks_state_fold (until_seq bigint NOT NULL)",
]
_SCHEMA += _STATES_SCHEMA


async def _add_history(conn: _Conn) -> None:
    """Schema 1 to 2: each outcome keeps its attempt history."""
    await conn.execute(
        "ALTER TABLE alerthooks_outcomes ADD COLUMN IF NOT EXISTS history jsonb NOT NULL"
        " DEFAULT '[]'"
    )


async def _add_alert_states(conn: _Conn) -> None:
    """Schema 2 to 3: alert state per subject; the events stored so far are to be folded in."""
    for statement in _STATES_SCHEMA:
        await conn.execute(statement)
    await conn.execute(
        "INSERT INTO alerthooks_state_fold (until_seq) SELECT max(seq) FROM alerthooks_events"
        " HAVING max(seq) IS NOT NULL"
    )


async def _add_started(conn: _Conn) -> None:
    """Schema 3 to 4: a running pair's handler started or only claimed (running ones from
    before count as started, as they did)."""
    await conn.execute(
        "ALTER TABLE alerthooks_outcomes ADD COLUMN IF NOT EXISTS started boolean NOT NULL"
        " DEFAULT true"
    )


# Schema versions: 1, the first; 2 added ``history``; 3 the alert states; 4 ``started``.
_MIGRATIONS: dict[int, Callable[[_Conn], Awaitable[None]]] = {
    1: _add_history,
    2: _add_alert_states,
    3: _add_started,
}

_STATE_COLUMNS = (
    "provider, alert_id, customer_id, subscription_id, alert_name, state, since, event_id"
)
# Keep a state change unless the subject's state was set by an event that occurred later; two
# replicas racing on one subject serialize on its row, and the later event stays.
_STATE_CONFLICT = (
    " ON CONFLICT (provider, alert_id, customer_id, subscription_id) DO UPDATE SET"
    " alert_name = EXCLUDED.alert_name, state = EXCLUDED.state, since = EXCLUDED.since,"
    " event_id = EXCLUDED.event_id WHERE (EXCLUDED.since, EXCLUDED.event_id)"
    " > (alerthooks_states.since, alerthooks_states.event_id)"
)

_DROP_UNPARSED = (
    "DELETE FROM alerthooks_outcomes WHERE provider = $1 AND event_id = $2 AND handler = $3"
    " AND status = 'unparsed'"
)
_LEASE = "now() + $LEASE::float8 * interval '1 second'"
_EVENT_COLUMNS = (
    "SELECT seq, provider, event_id, event_type, body, received_at FROM alerthooks_events"
)


# Rejected deliveries, apart from the events (created on first use, no schema version):
# bounded by the trim that follows each write.
_REJECTIONS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS alerthooks_rejections (id bigserial PRIMARY KEY,"
    " received_at timestamptz NOT NULL, provider text NOT NULL, status integer NOT NULL,"
    " reason text NOT NULL, source text, body_bytes bigint NOT NULL, event_id text,"
    " event_type text, dropped bigint NOT NULL DEFAULT 0)"
)
_REJECTION_COLUMNS = (
    "received_at, provider, status, reason, source, body_bytes, event_id, event_type, dropped"
)


def _lease(param: int) -> str:
    return _LEASE.replace("$LEASE", f"${param}")


# Recording a new event, in one statement and one round trip (parameters: provider, event id,
# type, body, received_at, handlers, status, owner, lease, channel, payload). A concurrent insert
# of the same event makes it wait for that one, then do nothing.
_BEGIN_SQL = (
    "WITH event AS (INSERT INTO alerthooks_events"
    " (provider, event_id, event_type, body, received_at)"
    " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true AS new),"
    " outcomes AS (INSERT INTO alerthooks_outcomes"
    " (provider, event_id, handler, status, owner, lease_until)"
    " SELECT $1, $2, h, $7::text, $8::text,"
    f" CASE WHEN $7::text = 'running' THEN {_lease(9)} END"
    " FROM unnest($6::text[]) AS h WHERE EXISTS (SELECT 1 FROM event)),"
    "{state}"
    # Queued work: tell listening workers (sent when this statement commits).
    " notified AS (SELECT pg_notify($10, $11) FROM event"
    " WHERE $7::text = 'pending' AND cardinality($6::text[]) > 0)"
    " SELECT new FROM event LEFT JOIN notified ON true"
)
# The same with the state the event sets (parameters 12 to 17: alert id, customer, subscription,
# alert name, state, since), in the same statement, so in the same transaction.
_BEGIN_STATE_SQL = _BEGIN_SQL.replace(
    "{state}",
    f" state AS (INSERT INTO alerthooks_states ({_STATE_COLUMNS})"
    " SELECT $1, $12, $13, $14, $15, $16, $17, $2 FROM event"
    f"{_STATE_CONFLICT}),",
)
_BEGIN_SQL = _BEGIN_SQL.replace("{state}", "")

# begin's re-claim of an event's handlers (parameters: provider, event_id, owner, lease seconds,
# the error of a run that died); the caller adds which rows and RETURNING. The receiver runs
# what it claims at once: claimed there is started.
_RECLAIM_HEAD = (
    f"UPDATE alerthooks_outcomes o SET status = 'running', owner = $3, lease_until = {_lease(4)},"
    " started = true,"
)


# Taking over a running pair (its lease expired, or its process is gone) counts the run that
# died as a failed attempt with error $DIED: the rows whose old status is 'running' and whose
# handler started (one only claimed never ran).
_DIED = "o.status = 'running' AND o.started"
_COUNT_DIED = (
    f"attempts = o.attempts + CASE WHEN {_DIED} THEN 1 ELSE 0 END,"
    f" last_error = CASE WHEN {_DIED} THEN $DIED::text ELSE o.last_error END,"
    f" history = CASE WHEN {_DIED} THEN o.history || jsonb_build_array(jsonb_build_array("
    "$DIED::text, extract(epoch FROM now())::float8)) ELSE o.history END"
)
# In the claim, a takeover that makes max_attempts ($4) marks the pair dead instead.
_DEAD_NOW = f"{_DIED} AND o.attempts + 1 >= $4"

CLAIM_SQL = (
    "WITH due AS (SELECT provider, event_id, handler FROM alerthooks_outcomes"
    f" WHERE {_CLAIMABLE_AT} <= now() ORDER BY {_CLAIMABLE_AT} LIMIT $3 FOR UPDATE SKIP LOCKED)"
    f" UPDATE alerthooks_outcomes o SET status = CASE WHEN {_DEAD_NOW} THEN 'dead'"
    " ELSE 'running' END,"
    f" owner = CASE WHEN {_DEAD_NOW} THEN NULL ELSE $1 END,"
    f" lease_until = CASE WHEN {_DEAD_NOW} THEN NULL ELSE {_lease(2)} END, started = false,"
    f" {_COUNT_DIED.replace('$DIED', '$5')}"
    " FROM due WHERE o.provider = due.provider AND o.event_id = due.event_id"
    " AND o.handler = due.handler RETURNING o.provider, o.event_id, o.handler, o.attempts,"
    " o.status, (SELECT e.body FROM alerthooks_events e WHERE e.provider = o.provider"
    " AND e.event_id = o.event_id) AS body"
)
"""The claim (parameters: owner, lease seconds, limit, max attempts, the error of a run that
died): the index gives the oldest due pairs, and only their bodies are read. Tests check its
plan."""
# The claim as run: leases only, so committed without waiting for the WAL flush, as inline
# begins are (see _run_batch): the run's finish commits as the server has it and flushes this
# too; a crash of the server before that leaves the pairs pending again.
_CLAIM_NO_FLUSH = CLAIM_SQL.replace(
    "WITH due AS", "WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)), due AS"
).replace(" FROM due WHERE ", " FROM due, no_flush WHERE ")
assert _CLAIM_NO_FLUSH.count("no_flush") == 2, "CLAIM_SQL changed shape: adapt _CLAIM_NO_FLUSH"
_NO_LIMIT = 2**31 - 1
_RECLAIM = (
    f"{_RECLAIM_HEAD} {_COUNT_DIED.replace('$DIED', '$5')}"
    " WHERE o.provider = $1 AND o.event_id = $2"
)


# Recording a finished run (rows of provider, event id, handler, error, retry delay, dead, owner):
# a success is always recorded, a failure only while ``owner`` still holds the lease.
_FINISH_UPDATE = (
    "UPDATE alerthooks_outcomes o SET status = CASE WHEN r.error IS NULL THEN 'done'"
    " WHEN r.dead THEN 'dead' ELSE 'failed' END, last_error = r.error,"
    " attempts = o.attempts + 1, owner = NULL, lease_until = NULL,"
    " history = o.history || jsonb_build_array(jsonb_build_array(r.error,"
    " extract(epoch FROM now())::float8)),"
    " due_at = CASE WHEN r.error IS NULL THEN o.due_at"
    " ELSE now() + r.delay * interval '1 second' END"
    " FROM unnest($F1::text[], $F2::text[], $F3::text[], $F4::text[], $F5::float8[],"
    " $F6::bool[], $F7::text[]) AS r(provider, event_id, handler, error, delay, dead, owner)"
    " WHERE o.provider = r.provider AND o.event_id = r.event_id AND o.handler = r.handler"
    " AND ((r.error IS NULL AND o.status <> 'done')"
    " OR (r.error IS NOT NULL AND o.status = 'running' AND o.owner = r.owner))"
)


def _numbered(sql: str, letter: str, first: int) -> str:
    """``sql`` with its parameters ``$<letter>1``, ``$<letter>2``… numbered from ``first``."""
    return re.sub(rf"\${letter}(\d+)", lambda m: f"${int(m.group(1)) + first - 1}", sql)


_FINISH_SQL = _numbered(_FINISH_UPDATE, "F", 1)

# Store.start of claimed pairs (parameters: columns provider, event_id, handler, owner): the run
# is an attempt from here. Only a running pair this owner holds is marked. Committed without
# waiting for the WAL flush, as a claim is.
_START_SQL = (
    "WITH no_flush AS (SELECT set_config('synchronous_commit', 'off', true)),"
    " started AS (UPDATE alerthooks_outcomes o SET started = true"
    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
    " AS r(provider, event_id, handler, owner)"
    " WHERE o.provider = r.provider AND o.event_id = r.event_id AND o.handler = r.handler"
    " AND o.status = 'running' AND o.owner = r.owner)"
    " SELECT 1 FROM no_flush"
)
_StartRow = tuple[str, str, str, str]

# Group commit: the begins and finishes of the deliveries in flight in ONE statement, so one
# round trip and one commit (see _group_commit.py). Parameters are column arrays: events ($1-$5),
# their outcomes ($6-$11), the states they set ($12-$19), finished runs ($20-$26), the NOTIFY
# channel and payload ($27, $28), whether to commit without waiting for the flush ($29). Rows
# come sorted by key, so two replicas' batches lock rows in the same order; the statement returns
# the events that were new.
_BATCH_SQL = (
    "WITH event AS (INSERT INTO alerthooks_events"
    " (provider, event_id, event_type, body, received_at)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], $5::timestamptz[])"
    " ON CONFLICT DO NOTHING RETURNING provider, event_id),"
    " outcomes AS (INSERT INTO alerthooks_outcomes"
    " (provider, event_id, handler, status, owner, lease_until)"
    " SELECT o.provider, o.event_id, o.handler, o.status, o.owner,"
    " CASE WHEN o.status = 'running' THEN now() + o.lease * interval '1 second' END"
    " FROM unnest($6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[])"
    " AS o(provider, event_id, handler, status, owner, lease)"
    " JOIN event e ON e.provider = o.provider AND e.event_id = o.event_id RETURNING status),"
    f" state AS (INSERT INTO alerthooks_states ({_STATE_COLUMNS})"
    " SELECT DISTINCT ON (s.p, s.a, s.cu, s.su) s.p, s.a, s.cu, s.su, s.n, s.st, s.si, s.e"
    " FROM unnest($12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],"
    " $18::text[], $19::timestamptz[]) AS s(p, e, a, cu, su, n, st, si)"
    " JOIN event ev ON ev.provider = s.p AND ev.event_id = s.e"
    ' ORDER BY s.p, s.a, s.cu, s.su, s.si DESC, s.e COLLATE "C" DESC'
    f"{_STATE_CONFLICT}),"
    f" finished AS ({_numbered(_FINISH_UPDATE, 'F', 20)}),"
    # Queued work: tell listening workers (sent when this statement commits).
    " notified AS (SELECT pg_notify($27, $28)"
    " WHERE EXISTS (SELECT 1 FROM outcomes WHERE status = 'pending')),"
    # $29: commit without waiting for the WAL flush (see _run_batch); else as the server has it.
    " commit AS (SELECT set_config('synchronous_commit', 'off', true) WHERE $29::bool)"
    " SELECT e.provider, e.event_id FROM event e LEFT JOIN notified ON true"
    " LEFT JOIN commit ON true"
)

_FinishRow = tuple[str, str, str, str | None, float, bool, str]


class _Begin(NamedTuple):
    delivery: Delivery
    owner: str
    lease: float
    claim: bool


class _Finish(NamedTuple):
    rows: list[_FinishRow]


_Op = _Begin | _Finish


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column lists (the parameters of an ``unnest``)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _batch_key(op: _Op) -> tuple[str, str, str]:
    """Ops of one kind and event go in separate batches: one statement must not insert an event
    twice, nor record one handler's run twice."""
    if isinstance(op, _Begin):
        return "begin", op.delivery.provider, op.delivery.event_id
    return "finish", op.rows[0][0], op.rows[0][1]


def _start_key(rows: list[_StartRow]) -> _StartRow:
    """Start marks of one handler's run go in separate batches (one statement must not update
    a row twice)."""
    return rows[0]


def _parse_url(url: str) -> tuple[str, str | None, int, bool]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in ("schema", "pool_size", "group_commit")}
    rest = [(k, v) for k, v in query if k not in ours]
    schema = ours.get("schema") or None
    if schema is not None and not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"Postgres store URL: schema {schema!r} is not a plain identifier")
    try:
        pool_size = int(ours.get("pool_size", "10"))
    except ValueError:
        raise ValueError("Postgres store URL: pool_size must be a whole number") from None
    group_commit = ours.get("group_commit", "on")
    if group_commit not in ("on", "off"):
        raise ValueError("Postgres store URL: group_commit must be on or off")
    dsn = urlunsplit(parts._replace(scheme="postgresql", query=urlencode(rest)))
    return dsn, schema, pool_size, group_commit == "on"


async def _reset(conn: asyncpg.Connection) -> None:
    """Ready a connection for the pool again: asyncpg's full reset (a round trip) only when a
    transaction was left open. The store's statements leave no session state (LISTEN has a
    connection of its own), so the common release costs no round trip."""
    if conn.is_in_transaction():
        await conn.reset()


class PostgresStore(Store):
    """Events and outcomes in PostgreSQL; safe for any number of replicas and workers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._dsn, self.schema, self.pool_size, self.batching = _parse_url(url)
        self._batch: GroupCommit[_Op] = GroupCommit(self._run_batch, key=_batch_key)
        # Start marks in batches of their own: a handler waits for its mark, which must not
        # queue behind the outcomes' batches and their WAL flushes.
        self._starts: GroupCommit[list[_StartRow]] = GroupCommit(self._run_starts, key=_start_key)
        self._pool: asyncpg.Pool | None = None
        self._lock: asyncio.Lock | None = None
        self._listener: asyncio.Task[None] | None = None
        self._rejections_table = False

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self.schema!r})"

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._pool is None:
                settings = {"search_path": self.schema} if self.schema else {}
                pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=10,
                    server_settings=settings,
                    reset=_reset,
                )
                try:
                    async with pool.acquire() as conn, conn.transaction():
                        await self._migrate(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _migrate(self, conn: _Conn) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alerthooks schema'))")
        if self.schema:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        for statement in _SCHEMA:
            await conn.execute(statement)
        version = await conn.fetchval("SELECT max(version) FROM alerthooks_schema")
        if version is None:
            await conn.execute(
                "INSERT INTO alerthooks_schema (version) VALUES ($1)", SCHEMA_VERSION
            )
        elif version > SCHEMA_VERSION:
            raise StoreError(
                f"database has alerthooks schema version {version}; this alerthooks knows "
                f"up to {SCHEMA_VERSION}"
            )
        elif version < SCHEMA_VERSION:
            for step in range(version, SCHEMA_VERSION):
                await _MIGRATIONS[step](conn)
            await conn.execute("UPDATE alerthooks_schema SET version = $1", SCHEMA_VERSION)
            logger.info("postgres store: schema %d migrated to %d", version, SCHEMA_VERSION)

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[_Conn]:
        try:
            pool = await self._get_pool()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                try:
                    yield conn
                except asyncpg.PostgresError as exc:
                    raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc
                except (StoreError, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    # The connection may be half-broken (lost mid-query); the pool replaces it.
                    conn.terminate()
                    raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"postgres: {type(exc).__name__}: {exc}") from exc

    async def open(self) -> None:
        """Create the pool and the schema if needed."""
        async with self._conn():
            pass

    async def close(self) -> None:
        """Stop listening, let the batches in flight finish, and close the pool."""
        await self.unwatch()
        await self._batch.drain()
        await self._starts.drain()
        self._rejections_table = False
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), 10)
            except (asyncio.TimeoutError, OSError, asyncpg.InterfaceError):
                pool.terminate()

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake`` whenever another process queues work or replays some: a background
        task keeps one connection (outside the pool) listening, and reconnects with backoff when
        it is lost; it calls ``wake`` once on each (re)connection, for work queued meanwhile."""
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(wake), name="alerthooks-listen")

    async def unwatch(self) -> None:
        """Stop listening."""
        task, self._listener = self._listener, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _listen(self, wake: Callable[[], None]) -> None:
        tag = self.schema or ""

        def heard(conn: object, pid: int, channel: str, payload: object) -> None:
            if payload == tag:
                wake()

        delay = 1.0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn, timeout=10)
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _, lost=lost: lost.set())
                await conn.add_listener(_CHANNEL, heard)
                logger.debug("postgres store: listening for new work")
                delay = 1.0
                wake()
                await lost.wait()
                logger.warning("postgres store: lost its listening connection; polling meanwhile")
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
                logger.warning(
                    "postgres store: cannot listen for new work (%s); polling meanwhile",
                    f"{type(exc).__name__}: {exc}",
                )
            finally:
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        """See :meth:`Store.begin`."""
        d = delivery
        if self.batching and d.unparsed is None:
            begun = await self._batch.submit(_Begin(d, owner, lease, claim))
            if isinstance(begun, Begun):
                return begun
            async with self._conn() as conn:  # stored already: a redelivery
                return await self._begin_again(conn, d, owner=owner, lease=lease, claim=claim)
        return await self._begin_one(d, owner=owner, lease=lease, claim=claim)

    async def _begin_one(self, d: Delivery, *, owner: str, lease: float, claim: bool) -> Begun:
        """``begin`` in a statement of its own."""
        handlers = list(d.handlers)
        async with self._conn() as conn:
            if d.unparsed is not None:
                return await self._begin_unparsed(conn, d)
            # The common case, a new event, in one statement and one round trip.
            params: tuple[Any, ...] = (
                d.provider,
                d.event_id,
                d.event_type,
                d.body,
                d.received_at,
                handlers,
                "running" if claim else "pending",
                owner if claim else None,
                lease,
                _CHANNEL,
                self.schema or "",
            )
            if d.state is None:
                new = await conn.fetchval(_BEGIN_SQL, *params)
            else:
                c = d.state
                new = await conn.fetchval(
                    _BEGIN_STATE_SQL,
                    *params,
                    c.alert_id,
                    c.customer_id or "",
                    c.subscription_id or "",
                    c.alert_name,
                    c.state,
                    c.since,
                )
            if new:
                return Begun(True, d.handlers if claim else (), ())
            return await self._begin_again(conn, d, owner=owner, lease=lease, claim=claim)

    async def _run_batch(self, ops: list[_Op]) -> list[object]:
        """Run the begins and finishes of the deliveries in flight as ONE statement (one round
        trip, one commit): a :class:`Begun` for each new event, None for one stored already (its
        caller goes on with a statement of its own), None for each finish. When the database
        refuses the statement (a deadlock with another replica's batch, a bad row), nothing of
        it was committed: each op then runs alone, so only a faulty one fails."""
        begins = sorted(
            (op for op in ops if isinstance(op, _Begin)),
            key=lambda b: (b.delivery.provider, b.delivery.event_id),
        )
        events: list[tuple[Any, ...]] = []
        outcomes: list[tuple[Any, ...]] = []
        states: list[tuple[Any, ...]] = []
        for b in begins:
            d = b.delivery
            events.append((d.provider, d.event_id, d.event_type, d.body, d.received_at))
            status, owner = ("running", b.owner) if b.claim else ("pending", None)
            outcomes.extend((d.provider, d.event_id, h, status, owner, b.lease) for h in d.handlers)
            if d.state is not None:
                c = d.state
                states.append(
                    (
                        d.provider,
                        d.event_id,
                        c.alert_id,
                        c.customer_id or "",
                        c.subscription_id or "",
                        c.alert_name,
                        c.state,
                        c.since,
                    )
                )
        finished = sorted(row for op in ops if isinstance(op, _Finish) for row in op.rows)
        try:
            async with self._conn() as conn:
                rows = await conn.fetch(
                    _BATCH_SQL,
                    *_columns(events, 5),
                    *_columns(outcomes, 6),
                    *_columns(states, 8),
                    *_columns(finished, 7),
                    _CHANNEL,
                    self.schema or "",
                    # Only leases to commit (inline begins): their callers run handlers next and
                    # answer only after recording the outcomes, with a commit as the server has
                    # it that flushes the WAL up to there, this one included; the same as the
                    # SQLite store's begin without fsync. So this commit needs no flush of its
                    # own, only to be visible to other replicas, which it is at once.
                    not finished and all(b.claim for b in begins),
                )
        except StoreError as exc:
            if not isinstance(exc.__cause__, asyncpg.PostgresError):
                raise  # the database is unreachable or the connection was lost
            logger.debug("postgres store: batch of %d refused (%s); one by one", len(ops), exc)
            return await asyncio.gather(
                *(self._run_alone(op) for op in ops), return_exceptions=True
            )
        new = {(r["provider"], r["event_id"]) for r in rows}
        results: list[object] = []
        for op in ops:
            if isinstance(op, _Finish):
                results.append(None)
                continue
            d = op.delivery
            if (d.provider, d.event_id) in new:
                results.append(Begun(True, d.handlers if op.claim else (), ()))
            else:
                results.append(None)
        return results

    async def _run_alone(self, op: _Op) -> object:
        if isinstance(op, _Finish):
            await self._finish_one(op.rows)
            return None
        return await self._begin_one(op.delivery, owner=op.owner, lease=op.lease, claim=op.claim)

    async def _begin_unparsed(self, conn: _Conn, d: Delivery) -> Begun:
        new = await conn.fetchval(
            "WITH event AS (INSERT INTO alerthooks_events"
            " (provider, event_id, event_type, body, received_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true AS new),"
            " marker AS (INSERT INTO alerthooks_outcomes"
            " (provider, event_id, handler, status, last_error)"
            " SELECT $1, $2, $6, 'unparsed', $7 FROM event)"
            " SELECT new FROM event",
            d.provider,
            d.event_id,
            d.event_type,
            d.body,
            d.received_at,
            UNPARSED_HANDLER,
            d.unparsed,
        )
        return Begun(bool(new), (), ())

    async def _begin_again(
        self, conn: _Conn, d: Delivery, *, owner: str, lease: float, claim: bool
    ) -> Begun:
        handlers = list(d.handlers)
        async with conn.transaction():
            await conn.execute(_DROP_UNPARSED, d.provider, d.event_id, UNPARSED_HANDLER)
            added = 0
            if handlers:
                status = await conn.execute(
                    "INSERT INTO alerthooks_outcomes (provider, event_id, handler, status)"
                    " SELECT $1, $2, h, 'pending' FROM unnest($3::text[]) AS h"
                    " ON CONFLICT DO NOTHING",
                    d.provider,
                    d.event_id,
                    handlers,
                )
                added = int(status.rsplit(" ", 1)[-1])
            if not claim:
                if added:  # handlers registered since the first delivery: queued work
                    await self._notify(conn)
                return Begun(False, (), ())
            claimed = await conn.fetch(
                f"{_RECLAIM} AND (o.status IN ('pending', 'failed') OR (o.status = 'running'"
                " AND o.lease_until <= now())) RETURNING o.handler",
                d.provider,
                d.event_id,
                owner,
                lease,
                PROCESS_DIED,
            )
            names = {r["handler"] for r in claimed}
            busy = await conn.fetch(
                "SELECT handler, owner FROM alerthooks_outcomes WHERE provider = $1"
                " AND event_id = $2 AND status = 'running'",
                d.provider,
                d.event_id,
            )
            others = [r for r in busy if r["handler"] not in names]
            gone = [r["owner"] for r in others if owner_gone(r["owner"])]
            if gone:  # a process of this host that held it no longer exists
                taken = await conn.fetch(
                    f"{_RECLAIM} AND o.status = 'running' AND o.owner = ANY($6::text[])"
                    " RETURNING o.handler",
                    d.provider,
                    d.event_id,
                    owner,
                    lease,
                    PROCESS_GONE,
                    gone,
                )
                names.update(r["handler"] for r in taken)
            return Begun(
                False,
                tuple(sorted(names)),
                tuple(sorted(r["handler"] for r in others if r["handler"] not in names)),
            )

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
        delays = retry_in or {}
        rows = [
            (provider, event_id, n, error, float(delays.get(n, 0.0)), n in dead, owner)
            for n, error in results.items()
        ]
        if not rows:
            return
        if self.batching:
            await self._batch.submit(_Finish(rows))
            return
        await self._finish_one(rows)

    async def _finish_one(self, rows: list[_FinishRow]) -> None:
        async with self._conn() as conn:
            await conn.execute(_FINISH_SQL, *_columns(rows, 7))

    async def extend(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str, lease: float
    ) -> None:
        """See :meth:`Store.extend`."""
        async with self._conn() as conn:
            await conn.execute(
                f"UPDATE alerthooks_outcomes SET lease_until = {_lease(4)}"
                " WHERE provider = $1 AND event_id = $2 AND handler = ANY($3::text[])"
                " AND status = 'running' AND owner = $5",
                provider,
                event_id,
                list(handlers),
                lease,
                owner,
            )

    async def try_lease(self, name: str, *, owner: str, seconds: float) -> bool:
        """See :meth:`Store.try_lease`: a row of ``alerthooks_leases`` (created on first use)."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('alerthooks leases'))")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS alerthooks_leases (name text PRIMARY KEY,"
                " owner text NOT NULL, lease_until timestamptz NOT NULL)"
            )
            holder = await conn.fetchval(
                "INSERT INTO alerthooks_leases (name, owner, lease_until)"
                " VALUES ($1, $2, now() + make_interval(secs => $3))"
                " ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,"
                " lease_until = EXCLUDED.lease_until"
                " WHERE alerthooks_leases.lease_until <= now() OR alerthooks_leases.owner = $2"
                " RETURNING owner",
                name,
                owner,
                seconds,
            )
        return bool(holder == owner)

    async def start(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str
    ) -> None:
        """See :meth:`Store.start`: with the other marks in flight, in a group commit of their
        own, committed without waiting for the WAL flush (the outcome's commit flushes it; only
        a crash of the database server in between could lose the mark, and with it one
        attempt's count)."""
        rows = [(provider, event_id, name, owner) for name in handlers]
        if not rows:
            return
        if self.batching:
            await self._starts.submit(rows)
            return
        await self._run_starts([rows])

    async def _run_starts(self, batch: list[list[_StartRow]]) -> list[object]:
        """The start marks of the runs in flight, one statement (the rows in key order, so two
        replicas' statements lock them in the same order)."""
        rows = sorted(row for rows in batch for row in rows)
        async with self._conn() as conn:
            await conn.execute(_START_SQL, *_columns(rows, 4))
        return [None] * len(batch)

    async def claim(
        self, *, owner: str, lease: float, limit: int, max_attempts: int | None = None
    ) -> Sequence[Claim]:
        """See :meth:`Store.claim`."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                _CLAIM_NO_FLUSH,
                owner,
                lease,
                limit,
                _NO_LIMIT if max_attempts is None else max_attempts,
                PROCESS_DIED,
            )
        claims: list[Claim] = []
        for r in rows:
            if r["status"] == "dead":
                log_dead_after_crash(r["provider"], r["event_id"], r["handler"], r["attempts"])
                continue
            claims.append(
                Claim(r["provider"], r["event_id"], bytes(r["body"]), r["handler"], r["attempts"])
            )
        return claims

    async def _notify(self, conn: _Conn) -> None:
        await conn.execute("SELECT pg_notify($1, $2)", _CHANNEL, self.schema or "")

    async def expire_gone(self) -> int:
        """See :meth:`Store.expire_gone`."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT owner FROM alerthooks_outcomes WHERE status = 'running'"
            )
            gone = [r["owner"] for r in rows if owner_gone(r["owner"])]
            if not gone:
                return 0
            status = await conn.execute(
                "UPDATE alerthooks_outcomes SET lease_until = now() - interval '1 second'"
                " WHERE status = 'running' AND owner = ANY($1::text[]) AND lease_until > now()",
                gone,
            )
        return int(status.rsplit(" ", 1)[-1])

    async def replay(
        self, event_ids: Collection[str] = (), *, dead: bool = False, failed: bool = False
    ) -> int:
        """See :meth:`Store.replay`."""
        statuses = [s for s, wanted in (("dead", dead), ("failed", failed)) if wanted]
        async with self._conn() as conn, conn.transaction():
            if statuses:
                status = await conn.execute(
                    "UPDATE alerthooks_outcomes SET status = 'pending', attempts = 0,"
                    " due_at = now() WHERE status = ANY($1::text[])",
                    statuses,
                )
            else:
                status = await conn.execute(
                    "UPDATE alerthooks_outcomes SET status = 'pending', attempts = 0,"
                    " due_at = now() WHERE event_id = ANY($1::text[])"
                    " AND status IN ('failed', 'dead')",
                    list(event_ids),
                )
            count = int(status.rsplit(" ", 1)[-1])
            if count:
                await self._notify(conn)
        return count

    async def resolve_unparsed(
        self, provider: str, event_id: str, handlers: Collection[str]
    ) -> bool:
        """See :meth:`Store.resolve_unparsed`."""
        async with self._conn() as conn, conn.transaction():
            status = await conn.execute(_DROP_UNPARSED, provider, event_id, UNPARSED_HANDLER)
            if status.rsplit(" ", 1)[-1] == "0":
                return False
            names = list(handlers)
            if names:
                await conn.execute(
                    "INSERT INTO alerthooks_outcomes (provider, event_id, handler, status)"
                    " SELECT $1, $2, h, 'pending' FROM unnest($3::text[]) AS h"
                    " ON CONFLICT DO NOTHING",
                    provider,
                    event_id,
                    names,
                )
                await self._notify(conn)
        return True

    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        """See :meth:`Store.prune`."""
        async with self._conn() as conn:
            gone = await conn.fetchval(
                "WITH old AS (SELECT provider, event_id FROM alerthooks_events e"
                " WHERE received_at < $1 AND NOT EXISTS (SELECT 1 FROM alerthooks_outcomes o"
                " WHERE o.provider = e.provider AND o.event_id = e.event_id"
                " AND o.status <> 'done') ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED),"
                " outcomes AS (DELETE FROM alerthooks_outcomes o USING old"
                " WHERE o.provider = old.provider AND o.event_id = old.event_id),"
                " events AS (DELETE FROM alerthooks_events e USING old"
                " WHERE e.provider = old.provider AND e.event_id = old.event_id RETURNING 1)"
                " SELECT count(*) FROM events",
                before,
                limit,
            )
        return int(gone)

    async def next_due(self) -> float | None:
        """See :meth:`Store.next_due`."""
        async with self._conn() as conn:
            value = await conn.fetchval(
                f"SELECT extract(epoch FROM (SELECT {_CLAIMABLE_AT} FROM alerthooks_outcomes"
                f" WHERE {_CLAIMABLE_AT} IS NOT NULL ORDER BY {_CLAIMABLE_AT} LIMIT 1) - now())"
                "::float8"
            )
        return None if value is None else max(0.0, float(value))

    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        """See :meth:`Store.get`."""
        async with self._conn() as conn:
            found = await _load(
                conn, f"{_EVENT_COLUMNS} WHERE provider = $1 AND event_id = $2", provider, event_id
            )
        return found[0] if found else None

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

        def param(value: Any) -> str:
            params.append(value)
            return f"${len(params)}"

        if status is not None:
            where.append(
                "EXISTS (SELECT 1 FROM alerthooks_outcomes o WHERE o.provider = e.provider"
                f" AND o.event_id = e.event_id AND o.status = {param(status)})"
            )
        if provider is not None:
            where.append(f"e.provider = {param(provider)}")
        if search:
            where.append(
                f"(e.event_id = {param(search)}"
                f" OR position({param(search.encode())}::bytea IN e.body) > 0)"
            )
        if since is not None:
            where.append(f"e.received_at >= {param(since)}")
        if until is not None:
            where.append(f"e.received_at < {param(until)}")
        if before is not None:
            where.append(f"e.seq < {param(before)}")
        sql = (
            f"{_EVENT_COLUMNS} e"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + f" ORDER BY seq DESC LIMIT {param(limit)}"
        )
        async with self._conn() as conn:
            return await _load(conn, sql, *params)

    async def _rejections_ready(self, conn: _Conn) -> None:
        if not self._rejections_table:
            async with conn.transaction():
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtext('alerthooks rejections'))"
                )
                await conn.execute(_REJECTIONS_SCHEMA)
            self._rejections_table = True

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        """See :meth:`Store.record_rejections`."""
        rows = [
            (
                r.received_at,
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
        async with self._conn() as conn:
            await self._rejections_ready(conn)
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO alerthooks_rejections ({_REJECTION_COLUMNS})"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    rows,
                )
                await conn.execute(
                    "DELETE FROM alerthooks_rejections WHERE id <= (SELECT max(id) FROM"
                    " alerthooks_rejections) - $1 OR (id IN (SELECT id FROM"
                    " alerthooks_rejections ORDER BY id LIMIT 100)"
                    " AND received_at < now() - make_interval(days => $2))",
                    REJECTIONS_KEPT,
                    REJECTIONS_DAYS,
                )

    async def rejections(
        self, *, limit: int = 50, provider: str | None = None
    ) -> Sequence[Rejection]:
        """See :meth:`Store.rejections`."""
        async with self._conn() as conn:
            await self._rejections_ready(conn)
            rows = await conn.fetch(
                f"SELECT {_REJECTION_COLUMNS} FROM alerthooks_rejections"
                " WHERE $1::text IS NULL OR provider = $1 ORDER BY id DESC LIMIT $2",
                provider,
                limit,
            )
        return [Rejection(*row) for row in rows]

    async def prune_rejections(self, *, before: datetime) -> int:
        """See :meth:`Store.prune_rejections`."""
        async with self._conn() as conn:
            await self._rejections_ready(conn)
            status = await conn.execute(
                "DELETE FROM alerthooks_rejections WHERE received_at < $1", before
            )
        return int(status.rsplit(" ", 1)[-1])

    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        """See :meth:`Store.states`."""
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {_STATE_COLUMNS} FROM alerthooks_states"
                " WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR state = $2)"
                " ORDER BY provider, alert_id, customer_id, subscription_id",
                provider,
                None if in_alarm is None else "in_alarm" if in_alarm else "within_limit",
            )
        return [
            AlertState(
                provider=r["provider"],
                alert_id=r["alert_id"],
                alert_name=r["alert_name"],
                customer_id=r["customer_id"] or None,
                subscription_id=r["subscription_id"] or None,
                state=r["state"],
                since=r["since"],
                event_id=r["event_id"],
            )
            for r in rows
        ]

    async def unfolded(self, *, after: int = 0, limit: int = 500) -> Sequence[Unfolded] | None:
        """See :meth:`Store.unfolded`."""
        async with self._conn() as conn:
            until = await conn.fetchval("SELECT min(until_seq) FROM alerthooks_state_fold")
            if until is None:
                return None
            rows = await conn.fetch(
                "SELECT seq, provider, event_id, body FROM alerthooks_events"
                " WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
                after,
                until,
                limit,
            )
        return [Unfolded(r["seq"], r["provider"], r["event_id"], bytes(r["body"])) for r in rows]

    async def fold(
        self, changes: Sequence[tuple[str, str, StateChange]], *, done: bool = False
    ) -> None:
        """See :meth:`Store.fold`."""
        async with self._conn() as conn, conn.transaction():
            if changes:
                await conn.execute(
                    f"INSERT INTO alerthooks_states ({_STATE_COLUMNS})"
                    " SELECT DISTINCT ON (p, a, cu, su) p, a, cu, su, n, st, si, e"
                    " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],"
                    " $6::text[], $7::timestamptz[], $8::text[]) AS c(p, a, cu, su, n, st, si, e)"
                    ' ORDER BY p, a, cu, su, si DESC, e COLLATE "C" DESC'
                    f"{_STATE_CONFLICT}",
                    *(list(column) for column in zip(*_state_rows(changes), strict=True)),
                )
            if done:
                await conn.execute("DELETE FROM alerthooks_state_fold")


def _state_rows(changes: Sequence[tuple[str, str, StateChange]]) -> list[tuple[Any, ...]]:
    return [
        (
            provider,
            c.alert_id,
            c.customer_id or "",
            c.subscription_id or "",
            c.alert_name,
            c.state,
            c.since,
            event_id,
        )
        for provider, event_id, c in changes
    ]


async def _load(conn: _Conn, sql: str, *params: Any) -> list[StoredEvent]:
    rows = await conn.fetch(sql, *params)
    if not rows:
        return []
    outcome_rows = await conn.fetch(
        "SELECT provider, event_id, handler, status, attempts, last_error, due_at, history"
        " FROM alerthooks_outcomes WHERE event_id = ANY($1::text[]) ORDER BY handler",
        [r["event_id"] for r in rows],
    )
    by_event: dict[tuple[str, str], list[Outcome]] = {}
    for o in outcome_rows:
        by_event.setdefault((o["provider"], o["event_id"]), []).append(
            Outcome(
                o["handler"],
                o["status"],
                o["attempts"],
                o["last_error"],
                o["due_at"] if o["status"] == "failed" else None,
                tuple(
                    Attempt(number, error, datetime.fromtimestamp(at, timezone.utc))
                    for number, (error, at) in enumerate(json.loads(o["history"]), 1)
                ),
            )
        )
    return [
        StoredEvent(
            r["provider"],
            r["event_id"],
            r["event_type"],
            bytes(r["body"]),
            r["received_at"],
            tuple(by_event.get((r["provider"], r["event_id"]), ())),
            r["seq"],
        )
        for r in rows
    ]
