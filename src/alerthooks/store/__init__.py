"""Where verified events and each handler's outcome are kept.

One small interface, :class:`Store`, and one module per backend. :func:`open_store` picks the
backend from a URL: ``memory://``, ``sqlite:///path.db`` or ``postgresql://…``.
"""

from __future__ import annotations

import abc
import logging
import os
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from alerthooks.events import AlarmState, AlertState

logger = logging.getLogger(__name__)

DEFAULT_STORE_URL = "sqlite:///alerthooks.db"
STORE_ENV = "ALERTHOOKS_STORE"
SCHEMA_VERSION = 4

Status = Literal["pending", "running", "done", "failed", "dead", "unparsed"]

UNPARSED_HANDLER = "<unparsed>"
"""The handler name of the outcome that marks an event ``unparsed``: a verified event of an
alert type (:meth:`Provider.is_alert_type <alerthooks.providers.Provider.is_alert_type>`)
whose payload could not be normalized. Its ``last_error`` is the reason; it is never claimed,
and it gives way to the matching handlers once the event reads (a redelivery that normalizes,
or :meth:`Store.resolve_unparsed`). No registered handler can take this name."""

PROCESS_DIED = "the process running it died (lease expired)"
"""The error recorded for a run whose lease expired before it finished: the process that held
it stopped without recording an outcome (a crash, an OOM kill, ``os._exit``)."""
PROCESS_GONE = "the process running it died (no longer running on this host)"
"""The error recorded for a run taken over from a process of this host that no longer exists."""


class StoreError(Exception):
    """The store could not be reached or refused a write; the receiver answers 503."""


class StateChange(NamedTuple):
    """The alert state an event sets for its subject: recorded with the event, kept unless the
    store holds a state set by an event that occurred later (see :meth:`Store.states`).

    The subject is ``customer_id`` or ``subscription_id`` (both None: the alert as a whole);
    ``since`` is the event's ``occurred_at``, timezone-aware.
    """

    alert_id: str
    alert_name: str | None
    customer_id: str | None
    subscription_id: str | None
    state: AlarmState
    since: datetime


class Delivery(NamedTuple):
    """A verified event about to be recorded, with the handlers it goes to, and the alert state
    it sets (None when it is not an alert).

    A named tuple rather than a frozen dataclass: one is built per delivery, at a third of the
    cost.
    """

    provider: str
    event_id: str
    event_type: str | None
    body: bytes
    received_at: datetime
    handlers: tuple[str, ...]
    state: StateChange | None = None
    unparsed: str | None = None
    """Why the event, an alert, could not be normalized (then ``handlers`` is empty): it is
    stored ``unparsed`` with this reason."""


class Unfolded(NamedTuple):
    """An event stored before the store kept alert state, to fold into it (see
    :meth:`Store.unfolded`); ``cursor`` orders them."""

    cursor: int
    provider: str
    event_id: str
    body: bytes


class Begun(NamedTuple):
    """What :meth:`Store.begin` found (a named tuple, like :class:`Delivery`).

    ``new``: the event was not stored before. ``claimed``: handlers the caller now holds a lease
    on and should run. ``busy``: handlers another live lease holds (another replica is running
    them).
    """

    new: bool
    claimed: tuple[str, ...]
    busy: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """One finished run of a handler on an event: ``number`` counts every run of the pair,
    replays included (from 1); ``error`` is None when it succeeded."""

    number: int
    error: str | None
    finished_at: datetime


@dataclass(frozen=True)
class Outcome:
    """One (event, handler) pair as stored.

    ``attempts`` counts the runs since the pair was last replayed (``max_attempts`` applies to
    it); ``history`` keeps every finished run, oldest first, across replays.
    """

    handler: str
    status: Status
    attempts: int
    last_error: str | None
    due_at: datetime | None = None
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True)
class StoredEvent:
    """A stored event with its handler outcomes.

    ``cursor`` orders events in the store (greater is newer): pass it as
    ``events(before=…)`` for the page of older ones."""

    provider: str
    event_id: str
    event_type: str | None
    body: bytes
    received_at: datetime
    outcomes: tuple[Outcome, ...]
    cursor: int = 0


REJECTIONS_KEPT = 10_000
"""Rejected deliveries a store keeps at most (the newest); see :meth:`Store.record_rejections`."""
REJECTIONS_DAYS = 30
"""Days a store keeps a rejected delivery at most."""


@dataclass(frozen=True)
class Rejection:
    """A delivery the receiver refused (4xx, or 503 for a provider without credentials).

    What an operator needs to debug "your endpoint is failing" and nothing an attacker sent
    that could carry a credential: never the body, a signature or a header's value. ``source``
    is the client's address (behind trusted proxies, the forwarded one); ``event_id`` and
    ``event_type`` are read from the body after the decision, when it parses (unverified: what
    the sender claims). ``dropped`` counts the rejections of this process that the rate limit
    kept from the store just before this one.
    """

    received_at: datetime
    provider: str
    status: int
    reason: str
    source: str | None = None
    body_bytes: int = 0
    event_id: str | None = None
    event_type: str | None = None
    dropped: int = 0


@dataclass(frozen=True)
class Claim:
    """An (event, handler) pair a worker now holds a lease on, with what it needs to run it.

    ``attempts`` counts the runs before this one.
    """

    provider: str
    event_id: str
    body: bytes
    handler: str
    attempts: int


class Store(abc.ABC):
    """Durable record of events, per-handler outcomes and the alert state the events set.

    ``begin`` and ``finish`` are the receiver's hot path; each is one atomic write. Outcomes move
    ``pending`` → ``running`` (leased to an owner until the lease expires) → ``done``, or
    ``failed`` (due again at ``due_at``) and, once attempts are exhausted, ``dead``. An alert
    that could not be normalized has one ``unparsed`` outcome instead (see
    :data:`UNPARSED_HANDLER`), which nothing claims and :meth:`prune` keeps.
    """

    url: str

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect and create the schema if needed. Idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. Idempotent."""

    def watch(self, wake: Callable[[], None]) -> None:  # noqa: B027 - optional hook
        """Call ``wake`` (on the current event loop) whenever another process makes handlers due
        in this store, until :meth:`unwatch`. Stores that cannot tell do nothing: the worker
        polls them."""

    async def unwatch(self) -> None:  # noqa: B027 - optional hook
        """Stop calling the ``wake`` given to :meth:`watch`. Idempotent."""

    async def try_lease(self, name: str, *, owner: str, seconds: float) -> bool:
        """Take the store-wide lease ``name`` for ``owner`` for ``seconds`` (renewing it when
        ``owner`` holds it already) unless another owner holds a live one; whether ``owner``
        holds it now. For jobs one replica at a time runs, such as the periodic catch-up. A store
        no other process shares (memory) always grants it."""
        return True

    @abc.abstractmethod
    async def begin(
        self, delivery: Delivery, *, owner: str, lease: float, claim: bool = True
    ) -> Begun:
        """Record ``delivery`` unless it is stored already, add a pending outcome for each of its
        handlers not recorded yet, and (when ``claim``) lease every pending or failed handler
        that no live lease holds to ``owner`` for ``lease`` seconds.

        A new delivery's ``state`` is recorded in the same transaction, unless its subject's
        state was set by an event that occurred later (see :meth:`states`).

        A delivery with ``unparsed`` set records a new event with one ``unparsed`` outcome
        (handler :data:`UNPARSED_HANDLER`, the reason as its ``last_error``) and changes nothing
        of an event stored already. A redelivery without it (the event reads now) removes the
        event's ``unparsed`` outcome before adding its handlers.

        The pairs it leases count as started (:meth:`start`): the receiver runs them at once.

        A lease held by a process of this host that no longer exists (:func:`owner_gone`)
        counts as expired. Taking over an expired lease of a started run counts the run that
        died as an attempt (error :data:`PROCESS_DIED` or :data:`PROCESS_GONE`), as
        :meth:`claim` does; one claimed but never started is taken over without counting.
        """

    @abc.abstractmethod
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
        """Record the results of handlers ``owner`` ran: None means done, a string is the error.

        Every result recorded increments the attempt count, adds an :class:`Attempt` to the
        pair's history and releases the lease. A failure is due again
        after ``retry_in[handler]`` seconds (immediately when absent); a failed handler named in
        ``dead`` is marked dead instead. A failure is ignored when ``owner`` no longer holds the
        lease (another worker has the pair now); a success is always recorded.
        """

    @abc.abstractmethod
    async def extend(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str, lease: float
    ) -> None:
        """Renew ``owner``'s leases on these running handlers to ``lease`` seconds from now, so a
        handler that runs long is not claimed by another worker meanwhile."""

    @abc.abstractmethod
    async def start(
        self, provider: str, event_id: str, handlers: Collection[str], *, owner: str
    ) -> None:
        """Mark ``owner``'s leased pairs of these handlers as started, just before they run: an
        attempt counts from here. A pair claimed (:meth:`claim`) whose process dies before it
        starts is taken over without counting an attempt; one that started counts the run that
        died. The mark is committed, visible to every process, before this returns; like a
        claim it need not wait for the disk (the run's outcome is flushed after it), so only a
        crash of the machine or database server, not of this process, can lose it, and with it
        one attempt's count."""

    @abc.abstractmethod
    async def claim(
        self, *, owner: str, lease: float, limit: int, max_attempts: int | None = None
    ) -> Sequence[Claim]:
        """Lease up to ``limit`` due pairs to ``owner`` for ``lease`` seconds, oldest due first:
        pending ones, failed ones whose ``due_at`` has passed, and running ones whose lease
        expired (their worker died). Two callers never get the same pair while a lease lives.
        The pairs are claimed, not started: the caller marks them with :meth:`start` as it
        runs them.

        Taking over an expired lease of a started run counts the run that died as an attempt
        (error :data:`PROCESS_DIED`, in the history too); when that makes ``max_attempts``, the
        pair is marked dead instead of claimed, so a handler that takes its process down is not
        retried forever. A pair claimed but never started is claimed again without counting.
        """

    async def expire_gone(self) -> int:
        """End the leases that processes of this host which no longer exist hold
        (:func:`owner_gone`), so the next :meth:`claim` takes their pairs over at once (counting
        the run that died) instead of after the lease; return how many. A worker calls it when
        it starts. The base implementation does nothing."""
        return 0

    @abc.abstractmethod
    async def replay(
        self, event_ids: Collection[str] = (), *, dead: bool = False, failed: bool = False
    ) -> int:
        """Make failed and dead handlers of ``event_ids`` (any provider) pending again with no
        attempts, or with ``dead`` every dead handler and with ``failed`` every failed one (not
        yet dead); return how many pairs were reset. Their history stays.
        """

    @abc.abstractmethod
    async def resolve_unparsed(
        self, provider: str, event_id: str, handlers: Collection[str]
    ) -> bool:
        """Replace the ``unparsed`` outcome of this event by a pending outcome for each of
        ``handlers`` not recorded yet (one atomic write), once the stored body normalizes; False
        (and nothing written) when the event has no ``unparsed`` outcome (any more)."""

    @abc.abstractmethod
    async def prune(self, *, before: datetime, limit: int = 10_000) -> int:
        """Delete up to ``limit`` events received before ``before`` whose handlers are all done
        (or that had none), with their outcomes; return how many events went (call again while
        it returns ``limit``). A redelivery of a pruned event
        counts as new, so keep more than the providers' retry window (Stripe: 3 days)."""

    @abc.abstractmethod
    async def next_due(self) -> float | None:
        """Seconds until the next pair becomes claimable (0 when one is due now), or None when
        nothing is waiting. Running pairs count from their lease expiry.
        """

    @abc.abstractmethod
    async def get(self, provider: str, event_id: str) -> StoredEvent | None:
        """One stored event with its outcomes."""

    @abc.abstractmethod
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
        """Newest stored events first; with ``status``, only events having an outcome in it.

        ``provider`` keeps that provider's; ``search`` those whose id is it or whose body
        contains it (a customer, subscription or alert id, an alert's name); ``since`` and
        ``until`` bound ``received_at`` (``since`` <= it < ``until``); ``before`` keeps those
        older than the event of that :attr:`StoredEvent.cursor` (the next page)."""

    # -- rejected deliveries ----------------------------------------------------------------------
    #
    # Kept apart from events, bounded: at most REJECTIONS_KEPT rows and REJECTIONS_DAYS days.
    # The base implementation keeps none; every built-in store keeps them.

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:  # noqa: B027
        """Keep ``rejections`` (the receiver's rate limit decides how many come), trimming the
        oldest beyond :data:`REJECTIONS_KEPT` and those older than :data:`REJECTIONS_DAYS`."""

    async def rejections(
        self, *, limit: int = 50, provider: str | None = None
    ) -> Sequence[Rejection]:
        """The recorded rejections, newest first; with ``provider``, only that provider's."""
        return []

    async def prune_rejections(self, *, before: datetime) -> int:
        """Delete the rejections recorded before ``before``; return how many went."""
        return 0

    # -- alert state ------------------------------------------------------------------------------
    #
    # begin records a new delivery's state change in the same transaction as the event: one state
    # per (provider, alert, customer, subscription), the one of the event that occurred last
    # (ties: the greater event id), whatever order deliveries arrive in. Pruning events keeps
    # the states they set.

    @abc.abstractmethod
    async def states(
        self, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> Sequence[AlertState]:
        """The alert states kept, ordered by provider, alert, customer and subscription; with
        ``in_alarm``, only those in alarm (True) or within the limit (False); with ``provider``,
        only that provider's."""

    @abc.abstractmethod
    async def unfolded(self, *, after: int = 0, limit: int = 500) -> Sequence[Unfolded] | None:
        """Events stored before this store kept alert state (a store migrated from schema 2),
        whose state is still to be folded in: up to ``limit`` of them with a cursor above
        ``after``, in cursor order. None when there is nothing to fold (anymore)."""

    @abc.abstractmethod
    async def fold(
        self, changes: Sequence[tuple[str, str, StateChange]], *, done: bool = False
    ) -> None:
        """Apply state changes computed from stored events, ``(provider, event_id, change)``,
        each kept only where it occurred later than the state held, as ``begin`` does; with
        ``done``, :meth:`unfolded` has nothing more to give."""


def log_dead_after_crash(provider: str, event_id: str, handler: str, attempts: int) -> None:
    """Log that a claim marked a pair dead because its runs kept taking their process down."""
    logger.error(
        "%s event %s: handler %s is dead after %d attempts: %s",
        provider,
        event_id,
        handler,
        attempts,
        PROCESS_DIED,
    )


def owner_gone(owner: str | None) -> bool:
    """Whether the process that ``owner`` names (``host:pid:random``, see
    :attr:`AlertHooks.owner`) is known to be gone: it ran on this host and no process has its
    pid now. Owners of other hosts, of this process, or that do not parse are never gone (their
    leases run out instead)."""
    if not owner:
        return False
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, as another user's process
        return False
    return False


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@``) replaced by ``***``, for logs and repr."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}{slash}{tail}"


def open_store(url: str | None = None) -> Store:
    """Build the store for ``url``; default: env ``ALERTHOOKS_STORE`` or ``./alerthooks.db``."""
    url = url or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        from alerthooks.store.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from alerthooks.store.sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from alerthooks.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(
        f"unsupported store URL scheme {scheme!r}; use memory://, sqlite:///PATH or postgresql://…"
    )
