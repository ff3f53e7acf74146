"""Alert state: who is in alarm now, derived from the events recorded.

The receiver computes each alert's :class:`~alerthooks.store.StateChange` (:func:`state_change`)
and the store keeps it in the transaction that records the event. Events a store holds from
before it kept state are folded in through the providers that normalize them
(:func:`fold_stored`); :func:`alert_states` does that first when the store says it must, and
:class:`StateReader` does it once per store (what ``AlertHooks.alert_states`` reads through).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import timezone

from alerthooks.events import AlertEvent, AlertKind, AlertState
from alerthooks.providers import Provider
from alerthooks.runtime import Unreadable, stored_event
from alerthooks.store import StateChange, Store

logger = logging.getLogger(__name__)

FOLD_PAGE = 500
"""Stored events read, normalized and folded per round trip."""


def state_change(event: AlertEvent) -> StateChange:
    """The state ``event`` sets for its subject: ``alert.triggered`` sets ``in_alarm``,
    ``alert.cleared`` ``within_limit``, since the event occurred (a naive time read as UTC)."""
    since = event.occurred_at
    if since.tzinfo is None:
        since = since.replace(tzinfo=timezone.utc)
    return StateChange(
        event.alert_id,
        event.alert_name,
        event.customer_id,
        event.subscription_id,
        "in_alarm" if event.type == "alert.triggered" else "within_limit",
        since,
    )


def subject_of(found: AlertState) -> str | None:
    """The id of the subject a state is about: the subscription where there is one, else the
    customer; None for an alert as a whole."""
    return found.subscription_id or found.customer_id


async def fold_stored(store: Store, providers: Mapping[str, Provider]) -> bool:
    """Fold the state of events stored before ``store`` kept it, reading each with its provider
    in ``providers``; True when nothing is left to fold. Events of a provider not given are
    left for a later call with it (logged once per call); folding twice is harmless."""
    after = 0
    missing: dict[str, int] = {}
    folded = 0
    while True:
        page = await store.unfolded(after=after, limit=FOLD_PAGE)
        if page is None:
            return True
        if not page:
            break
        changes: list[tuple[str, str, StateChange]] = []
        for item in page:
            if item.provider not in providers:
                missing[item.provider] = missing.get(item.provider, 0) + 1
                continue
            event = stored_event(providers, item.provider, item.body, item.event_id)
            if isinstance(event, Unreadable):
                if not event.not_an_alert:  # a body the provider cannot read sets no state
                    logger.debug("%s: a stored body does not read: %s", item.provider, event)
                continue
            changes.append((item.provider, item.event_id, state_change(event)))
        await store.fold(changes)
        folded += len(changes)
        after = page[-1].cursor
    if missing:
        logger.warning(
            "alert state: %s stored before the state was kept not folded in: no such provider "
            "here; they are folded once a receiver with it reads the state",
            ", ".join(f"{count} {name} event(s)" for name, count in sorted(missing.items())),
        )
        return False
    await store.fold([], done=True)
    logger.info("alert state: %d stored alert event(s) folded in", folded)
    return True


async def alert_states(
    store: Store,
    providers: Mapping[str, Provider],
    *,
    in_alarm: bool | None = None,
    provider: str | None = None,
) -> Sequence[AlertState]:
    """The states ``store`` keeps (see :meth:`~alerthooks.store.Store.states`), after folding
    in the events it holds from before it kept them."""
    await fold_stored(store, providers)
    return await store.states(in_alarm=in_alarm, provider=provider)


async def alert_kinds(
    store: Store, providers: Mapping[str, Provider], states: Sequence[AlertState]
) -> dict[tuple[str, str], AlertKind]:
    """The :attr:`~alerthooks.events.AlertEvent.kind` of each (provider, alert) in ``states``,
    read from the stored event that set one of its states (an alert's kind is the same in every
    event it sends, so one read per alert); ``other`` where that event cannot be read here."""
    kinds: dict[tuple[str, str], AlertKind] = {}
    for found in states:
        key = (found.provider, found.alert_id)
        if key in kinds:
            continue
        stored = await store.get(found.provider, found.event_id)
        event = (
            stored_event(providers, found.provider, stored.body, found.event_id)
            if stored is not None
            else None
        )
        kinds[key] = event.kind if isinstance(event, AlertEvent) else "other"
    return kinds


class StateReader:
    """Reads the alert states a store keeps, folding in the events it holds from before it kept
    them (with ``providers``) the first time each store is read: what this app's providers
    cannot read now, they never will, so once per store is enough."""

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self.providers = providers
        self._folded: Store | None = None  # the store whose earlier events were folded in

    async def states(
        self, store: Store, *, in_alarm: bool | None = None, provider: str | None = None
    ) -> list[AlertState]:
        """As :func:`alert_states`, folding only on the first read of ``store``."""
        if self._folded is not store:
            await fold_stored(store, self.providers)
            self._folded = store
        return list(await store.states(in_alarm=in_alarm, provider=provider))
