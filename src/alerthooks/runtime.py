"""What inline and queued mode share: the :class:`Runtime` (store, handlers, providers, settings),
the leases of running handlers (:class:`LeaseKeeper`), recording handler outcomes
(:func:`record_outcomes`), and reading a stored body back into an event (:func:`stored_event`).

The receiver (inline mode) and the worker (queued mode) both build on it; neither imports the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from alerthooks.dispatch import Dispatcher
from alerthooks.events import AlertEvent
from alerthooks.observe import Observers
from alerthooks.providers import NotAnAlert, Provider
from alerthooks.providers.base import normalized
from alerthooks.store import Store, StoreError

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Runtime:
    """What the receiver and the worker share: the store, the handlers, the providers, who this
    process is in the store (``owner``), and the lease and retry settings.

    One object, held by reference, so replacing :attr:`store` (before startup) reaches both.
    """

    store: Store
    dispatcher: Dispatcher
    providers: Mapping[str, Provider]
    owner: str
    lease_seconds: float = 300.0
    max_attempts: int = 8
    retry_backoff: float = 1.0
    retry_backoff_max: float = 3600.0
    observers: Observers = field(default_factory=Observers, repr=False)
    """What watches deliveries and handler runs (metrics, traces); empty unless asked."""
    renewals: LeaseRenewals = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.renewals = LeaseRenewals(self)


async def record_outcomes(
    runtime: Runtime,
    provider: str,
    event_id: str,
    results: Mapping[str, str | None],
    *,
    retry_in: Mapping[str, float] | None = None,
    dead: Collection[str] = (),
    tries: int | None = None,
) -> bool:
    """Record the outcomes of handlers this process ran (:meth:`Store.finish`), retrying with
    backoff while the store fails, so a store blip after the handlers ran does not leave them
    to their lease and run them again; ``tries`` bounds the attempts (default: until recorded).
    Return whether they were recorded. The caller keeps the leases renewed meanwhile."""
    delay = _RECORD_RETRY_FIRST
    cap = max(_RECORD_RETRY_FIRST, min(_RECORD_RETRY_MAX, runtime.lease_seconds / 10))
    failures = 0
    while True:
        try:
            await runtime.store.finish(
                provider, event_id, results, owner=runtime.owner, retry_in=retry_in, dead=dead
            )
        except Exception as exc:
            failures += 1
            reason = exc if isinstance(exc, StoreError) else type(exc).__name__
            if tries is not None and failures >= tries:
                logger.warning(
                    "%s event %s: outcomes not recorded (%s); they run again when the lease "
                    "expires",
                    provider,
                    event_id,
                    reason,
                )
                return False
            if failures == 1:
                logger.warning(
                    "%s event %s: outcomes not recorded yet (%s); retrying until the store answers",
                    provider,
                    event_id,
                    reason,
                )
            else:
                logger.debug(
                    "%s event %s: outcomes still not recorded: %s", provider, event_id, reason
                )
        else:
            if failures:
                logger.info(
                    "%s event %s: outcomes recorded after %d failed write(s)",
                    provider,
                    event_id,
                    failures,
                )
            return True
        await asyncio.sleep(delay)
        delay = min(delay * 2, cap)


_RECORD_RETRY_FIRST = 0.05
_RECORD_RETRY_MAX = 5.0


class LeaseKeeper:
    """Renews a running event's leases every third of ``lease_seconds`` until :meth:`stop`, so
    a handler that outlives its lease is not claimed and run again elsewhere meanwhile.

    Keepers share one timer per :class:`Runtime` (:class:`LeaseRenewals`): starting and
    stopping one is a dict entry, not a timer of its own, since nearly every handler finishes
    long before its first renewal.
    """

    def __init__(
        self, runtime: Runtime, provider: str, event_id: str, handlers: Sequence[str]
    ) -> None:
        self.runtime = runtime
        self.provider = provider
        self.event_id = event_id
        self.handlers = handlers
        #: Renewal ticks this keeper has lived through; it renews from the second on.
        self.ticks = 0
        self._renewing: asyncio.Task[None] | None = None
        runtime.renewals.add(self)

    def renew(self, loop: asyncio.AbstractEventLoop) -> None:
        """Extend the leases in the background."""
        self._renewing = loop.create_task(self._renew())

    async def _renew(self) -> None:
        runtime = self.runtime
        try:
            await runtime.store.extend(
                self.provider,
                self.event_id,
                self.handlers,
                owner=runtime.owner,
                lease=runtime.lease_seconds,
            )
        except Exception as exc:  # logged, never left unretrieved in the task
            logger.warning("%s event %s: lease not renewed: %s", self.provider, self.event_id, exc)

    def stop(self) -> None:
        """Stop renewing (the caller records the outcomes next)."""
        self.runtime.renewals.discard(self)
        # A renewal in flight is left to finish: it only touches leases still held, and
        # cancelling a query midway costs a Postgres connection.


class LeaseRenewals:
    """The running :class:`LeaseKeeper` objects of one :class:`Runtime`, and the one timer that
    renews them: it ticks every third of ``lease_seconds`` while any is running, and a keeper
    renews from its second tick on, so every lease is renewed within two thirds of it."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._keepers: dict[LeaseKeeper, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, keeper: LeaseKeeper) -> None:
        """Renew ``keeper``'s leases until :meth:`discard`."""
        self._keepers[keeper] = None
        if self._timer is None or self._loop is not asyncio.get_running_loop():
            self._loop = asyncio.get_running_loop()
            self._timer = self._loop.call_later(self.runtime.lease_seconds / 3, self._tick)

    def discard(self, keeper: LeaseKeeper) -> None:
        """Stop renewing ``keeper``'s leases."""
        self._keepers.pop(keeper, None)

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        for keeper in list(self._keepers):
            keeper.ticks += 1
            if keeper.ticks >= 2:
                keeper.renew(loop)
        self._timer = (
            loop.call_later(self.runtime.lease_seconds / 3, self._tick) if self._keepers else None
        )


@dataclass(frozen=True)
class Unreadable:
    """Why a stored body does not read as an event (see :func:`stored_event`): ``reason`` is one
    line; ``not_an_alert`` when the provider read it and said it is no alert (the reason is then
    the provider's own)."""

    reason: str
    not_an_alert: bool = False

    def __str__(self) -> str:
        return f"not an alert: {self.reason}" if self.not_an_alert else self.reason


def stored_event(
    providers: Mapping[str, Provider], provider: str, body: bytes, event_id: str | None = None
) -> AlertEvent | Unreadable:
    """The event a stored body stands for, read again with ``providers[provider]``, its id set
    to ``event_id`` (the stored id, which a header may have given) where one is given; else why
    it cannot be read. Never raises: a normalizer's bug leaves the event unreadable, nothing
    worse."""
    found = providers.get(provider)
    if found is None:
        return Unreadable(f"the app has no provider {provider!r}")
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return Unreadable("stored body is not JSON")
    if not isinstance(payload, dict):
        return Unreadable("stored body is not a JSON object")
    try:
        if event_id is None:
            return found.normalize(payload)
        return normalized(found, event_id, payload)
    except NotAnAlert as exc:
        return Unreadable(exc.reason, not_an_alert=True)
    except Exception as exc:
        return Unreadable(f"normalize raised {type(exc).__name__}: {exc}")
