"""Catch-up and reconciliation: what the providers' own APIs say, against what was received.

:func:`catch_up` reads each provider's alert events since a moment from its Events API
(:meth:`~alerthooks.providers.Provider.events_api`) and puts each through the receiver's
pipeline (:meth:`~alerthooks.receiver.Receiver.ingest`): an event already received runs nothing
again, so catching up twice is harmless; :class:`CatchUpSchedule` is the worker's periodic run of
it (``AlertHooks(catch_up_every=…)``). :func:`reconcile` compares the stored alert states with
the statuses a provider reports (:meth:`~alerthooks.providers.Provider.status_api`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from alerthooks.events import AlertState
from alerthooks.providers import MissingCredentials, Provider, RemoteStatus, Subject
from alerthooks.receiver import Receiver
from alerthooks.store import StoreError

logger = logging.getLogger(__name__)

DEFAULT_SINCE = timedelta(hours=72)
"""How far back ``alerthooks catch-up`` reads by default: as long as the providers retry."""

_BATCH = 100  # events ingested concurrently: one page of the providers' APIs
_DURATION = re.compile(r"([0-9]{1,6})([mhd])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """The moment ``--since`` names: a duration back from ``now`` (``30m``, ``72h``, ``7d``) or
    an ISO-8601 time (UTC unless it says otherwise). Raises ``ValueError`` with one line."""
    now = now or datetime.now(timezone.utc)
    value = text.strip()
    match = _DURATION.fullmatch(value)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value else "?")
    except ValueError:
        raise ValueError(
            f"--since: {text!r} is neither a duration (30m, 72h, 7d) nor an ISO-8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if moment > now:
        raise ValueError(f"--since: {text!r} is in the future")
    return moment


@dataclass
class CatchUpResult:
    """What catching up did for one provider: events ``fetched`` from its API, how many were
    ``new`` to the store and how many were ``already_received``; ``skipped`` says why the
    provider was not read (no events API, no credentials), ``error`` why reading stopped
    (counts are what was done until then); ``clamped`` is set when ``since`` was older than the
    provider keeps events, to the moment read from instead."""

    provider: str
    fetched: int = 0
    new: int = 0
    already_received: int = 0
    skipped: str | None = None
    error: str | None = None
    clamped: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether nothing went wrong (a skip is not wrong)."""
        return self.error is None

    def line(self) -> str:
        """One line for the CLI: ``stripe: 14 fetched, 3 new, 11 already received``."""
        if self.skipped is not None:
            return f"{self.provider}: skipped: {self.skipped}"
        text = (
            f"{self.provider}: {self.fetched} fetched, {self.new} new, "
            f"{self.already_received} already received"
        )
        if self.clamped is not None:
            text += (
                f" (from {self.clamped:%Y-%m-%d %H:%M} UTC: {self.provider} keeps events no longer)"
            )
        if self.error is not None:
            text += f"; error: {self.error}"
        return text


async def catch_up(
    receiver: Receiver,
    providers: Iterable[Provider],
    *,
    since: datetime | timedelta = DEFAULT_SINCE,
    now: datetime | None = None,
) -> list[CatchUpResult]:
    """Read each of ``providers``' alert events since ``since`` (a moment, or a duration back
    from now) and ingest each; one :class:`CatchUpResult` per provider, in order.

    A provider without an events API or without credentials is skipped; one whose API keeps
    failing after the retries gets its ``error`` and the others are still read. A store that
    cannot be reached stops everything (:class:`~alerthooks.store.StoreError`).
    """
    now = now or datetime.now(timezone.utc)
    start = now - since if isinstance(since, timedelta) else since
    results = []
    for provider in providers:
        results.append(await _catch_up_one(receiver, provider, start, now))
    return results


async def _catch_up_one(
    receiver: Receiver, provider: Provider, since: datetime, now: datetime
) -> CatchUpResult:
    result = CatchUpResult(provider.name)
    try:
        api = provider.events_api()
    except MissingCredentials as exc:
        result.skipped = f"no API credentials ({exc})"
        return result
    except Exception as exc:
        result.error = str(exc) or type(exc).__name__
        return result
    if api is None:
        result.skipped = "no events API to read"
        return result
    if api.retention is not None and since < now - api.retention:
        since = result.clamped = now - api.retention
        logger.info("%s catch-up clamped to %s", provider.name, since.isoformat())
    # The next page is read while this one is ingested: the API's latency and the store's
    # commits overlap instead of adding up.
    pages: asyncio.Queue[list[dict[str, Any]] | BaseException | None] = asyncio.Queue(2)

    async def read() -> None:
        batch: list[dict[str, Any]] = []
        try:
            async for payload in api.events_since(since):
                result.fetched += 1
                batch.append(payload)
                if len(batch) >= _BATCH:
                    await pages.put(batch)
                    batch = []
            await pages.put(batch)
            await pages.put(None)
        except Exception as exc:
            await pages.put(batch)
            await pages.put(exc)

    async def ingest(batch: list[dict[str, Any]]) -> None:
        # A page at a time, concurrently, as deliveries arrive: the store commits them together.
        for ingested in await asyncio.gather(*(receiver.ingest(provider, p) for p in batch)):
            if ingested.new:
                result.new += 1
            else:
                result.already_received += 1

    reader = asyncio.create_task(read(), name=f"alerthooks-catch-up-{provider.name}")
    try:
        while (page := await pages.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            await ingest(page)
    except StoreError:
        raise
    except Exception as exc:
        result.error = str(exc) or type(exc).__name__
        logger.error("%s catch-up stopped: %s", provider.name, result.error)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await api.aclose()
    logger.info(
        "%s catch-up: %d fetched, %d new, %d already received",
        provider.name,
        result.fetched,
        result.new,
        result.already_received,
    )
    return result


class CatchUpSchedule:
    """The worker's periodic catch-up of ``providers`` through ``receiver``, every ``every``
    seconds: 72 hours back the first time, then from a period before the start of the last run
    that completed for every provider (the overlap covers events a provider created late).
    The worker calls it (:meth:`~alerthooks.worker.Worker.every`)."""

    def __init__(self, receiver: Receiver, providers: Iterable[Provider], every: float) -> None:
        self.receiver = receiver
        self.providers = list(providers)
        self.every = every
        #: When the last run that completed for every provider started.
        self.caught_up_at: datetime | None = None

    async def __call__(self) -> None:
        """Run one catch-up; log each provider it did not complete for."""
        started = datetime.now(timezone.utc)
        since: datetime | timedelta = DEFAULT_SINCE
        if self.caught_up_at is not None:
            since = self.caught_up_at - timedelta(seconds=self.every)
        results = await catch_up(self.receiver, self.providers, since=since, now=started)
        for result in results:
            if not result.ok:
                logger.warning("catch-up: %s", result.line())
        if all(r.ok for r in results):
            self.caught_up_at = started


# -- reconciliation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """A subject whose state at the provider differs from the stored one: ``remote`` is
    ``"in_alarm"`` or ``"within_limit"``, ``local`` either of them or None (no stored state)."""

    provider: str
    alert_id: str
    subject: str
    local: str | None
    remote: str | None
    customer_id: str | None = None
    subscription_id: str | None = None


def _key(alert_id: str, customer: str | None, subscription: str | None) -> tuple[str, str, str]:
    return alert_id, customer or "", subscription or ""


async def reconcile(
    states: Sequence[AlertState],
    providers: Iterable[Provider],
    *,
    notes: list[str] | None = None,
) -> list[Drift]:
    """Ask each of ``providers`` that can say (:meth:`Provider.status_api`) for the status of
    the subjects in ``states``, and return every subject whose status differs.

    A subject is a drift when the provider reports another state than the stored one, or
    ``in_alarm`` for a subject with no stored state (an event never received). A subject the
    provider says nothing about (still being evaluated, say) is not, nor is a provider's
    ``within_limit`` for a subject with no stored state. Providers that cannot say, or have
    no credentials, are left out and a line saying so is appended to ``notes``. A provider API
    failing after its retries raises.
    """
    by_provider: dict[str, list[AlertState]] = {}
    for state in states:
        by_provider.setdefault(state.provider, []).append(state)
    drifts: list[Drift] = []
    for provider in providers:
        mine = by_provider.get(provider.name, [])
        try:
            api = provider.status_api()
        except MissingCredentials as exc:
            if mine and notes is not None:
                notes.append(f"{provider.name}: not reconciled: no API credentials ({exc})")
            continue
        if api is None:
            if mine and notes is not None:
                notes.append(f"{provider.name}: not reconciled: no alert-status API")
            continue
        if not mine:
            await api.aclose()
            continue
        subjects = [Subject(s.alert_id, s.customer_id, s.subscription_id) for s in mine]
        try:
            remote = await api.statuses(subjects)
        finally:
            await api.aclose()
        drifts.extend(compare(provider.name, mine, remote))
    return drifts


def compare(
    provider: str, states: Sequence[AlertState], remote: Sequence[RemoteStatus]
) -> list[Drift]:
    """The drifts between ``states`` (one provider's) and the ``remote`` statuses it reported
    (see :func:`reconcile` for what counts)."""
    local = {_key(s.alert_id, s.customer_id, s.subscription_id): s for s in states}
    theirs = {_key(r.alert_id, r.customer_id, r.subscription_id): r for r in remote}
    drifts = []
    for key in sorted(local.keys() | theirs.keys()):
        mine, other = local.get(key), theirs.get(key)
        here = mine.state if mine else None
        there = other.state if other else None
        if here == there or there is None or (here is None and there != "in_alarm"):
            continue
        alert_id, customer, subscription = key
        drifts.append(
            Drift(
                provider=provider,
                alert_id=alert_id,
                subject=customer or subscription or "-",
                local=here,
                remote=there,
                customer_id=customer or None,
                subscription_id=subscription or None,
            )
        )
    return drifts
