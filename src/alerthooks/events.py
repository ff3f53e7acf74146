"""The one event model every provider's alert webhook is normalized into."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

EventType = Literal["alert.triggered", "alert.cleared"]
ThresholdMode = Literal["absolute", "percentage"]
AlertKind = Literal["usage", "spend", "credit_balance", "other"]
ALERT_KINDS: tuple[AlertKind, ...] = ("usage", "spend", "credit_balance", "other")
"""Every value :attr:`AlertEvent.kind` takes."""


class AlertEvent(BaseModel):
    """A usage alert that fired or cleared, whichever provider sent it.

    Instances are frozen. ``raw`` holds the provider's whole parsed payload for anything the
    normalized fields do not carry.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The provider's event id (``evt_…`` for Stripe, ``ev_…`` for Chargebee)."""
    provider: str
    """The provider's name, as its route: ``"stripe"``, ``"chargebee"``, …"""
    type: EventType
    """``"alert.triggered"`` when a threshold was crossed; ``"alert.cleared"`` when usage is back
    within the limit."""
    alert_id: str
    """The provider's id of the alert (the rule), the same in every event it sends."""
    kind: AlertKind = "other"
    """What the alert watches, whichever provider sent it: ``"usage"`` when metered usage
    crosses a threshold, ``"spend"`` when money spent does, ``"credit_balance"`` when a prepaid
    or credit balance falls to or below one; ``"other"`` for an alert that fits none. Never
    None; also a handler filter (``kind=``)."""
    alert_name: str | None = None
    """The alert's title or name as the provider shows it, without the manager's ownership
    marker (`` [alerthooks:key]``)."""
    meter_id: str | None = None
    """Stripe meter id, or Chargebee metered feature id; None for alerts on no meter (money
    thresholds)."""
    customer_id: str | None = None
    """The customer whose usage crossed the threshold, as the provider identifies it, where
    the provider says (Stripe, Orb, Metronome)."""
    external_customer_id: str | None = None
    """The same customer's id in your own system, where the provider sends one (Stripe's and
    Orb's ``external_customer_id``)."""
    subscription_id: str | None = None
    """The subscription whose usage crossed the threshold, where the provider says
    (Chargebee)."""
    threshold: Decimal | None = None
    """The alert's threshold as the provider states it (Stripe's money amounts in the
    currency's minor unit, as Stripe writes them); None when the payload carries none."""
    threshold_mode: ThresholdMode | None = None
    """``"absolute"`` (``threshold`` in the meter's unit, or in ``currency``) or
    ``"percentage"`` (of an entitlement); None without a threshold."""
    value: Decimal | None = None
    """The usage, spend or balance compared with the threshold, exactly, where the provider
    sends it."""
    occurred_at: datetime
    """When the provider created the event, timezone-aware UTC."""
    livemode: bool | None = None
    """Whether the event is from live (True) or test mode (False); None where the provider does
    not say (Chargebee)."""
    alert_type: str | None = None
    """The provider's own kind of alert, e.g. ``usage_threshold``, ``credit_balance_threshold``,
    ``spend_exceeded``; None where the payload does not say. Also a handler filter.
    :attr:`kind` says the same in one vocabulary for every provider."""
    currency: str | None = None
    """The currency of a money threshold, as the provider names it; None for usage ones and
    for amounts in a custom pricing unit."""
    triggered_at: datetime | None = None
    """When the provider says the alarm began, where it says so (timezone-aware UTC); it may be
    earlier than ``occurred_at``, when the event was created."""
    alert_key: str | None = None
    """The key of an alert the manager owns (``alerts.toml``), recovered from its ownership
    marker; None for alerts the manager does not own."""
    raw: dict[str, Any]
    """The provider's whole parsed payload, as delivered."""


AlarmState = Literal["in_alarm", "within_limit"]


class AlertState(BaseModel):
    """Where one alert stands for one subject (a customer or a subscription): the state set by
    the event that occurred last for it, whatever the order deliveries arrived in.

    ``alert.triggered`` sets ``in_alarm`` and ``alert.cleared`` ``within_limit``; alerts the
    provider never clears (Stripe's one-time alerts) stay ``in_alarm``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    provider: str
    alert_id: str
    alert_name: str | None = None
    customer_id: str | None = None
    subscription_id: str | None = None
    state: AlarmState
    since: datetime
    """The ``occurred_at`` of the event that set this state."""
    event_id: str
    """The id of that event."""
