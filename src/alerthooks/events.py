"""The one event model every provider's alert webhook is normalized into."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

EventType = Literal["alert.triggered", "alert.cleared"]
ThresholdMode = Literal["absolute", "percentage"]


class AlertEvent(BaseModel):
    """A usage alert that fired or cleared, whichever provider sent it.

    Instances are frozen. ``raw`` holds the provider's whole parsed payload for anything the
    normalized fields do not carry.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    """The provider's event id (``evt_…`` for Stripe, ``ev_…`` for Chargebee)."""
    provider: str
    """``"stripe"`` or ``"chargebee"``."""
    type: EventType
    """``"alert.triggered"`` when a threshold was crossed; ``"alert.cleared"`` when usage is back
    within the limit."""
    alert_id: str
    alert_name: str | None = None
    meter_id: str | None = None
    """Stripe meter id, or Chargebee metered feature id."""
    customer_id: str | None = None
    subscription_id: str | None = None
    threshold: Decimal | None = None
    threshold_mode: ThresholdMode | None = None
    value: Decimal | None = None
    """The usage that crossed the threshold (Stripe only)."""
    occurred_at: datetime
    """When the provider created the event, timezone-aware UTC."""
    livemode: bool | None = None
    alert_type: str | None = None
    """The provider's own kind of alert, e.g. ``usage_threshold``, ``usage_exceeded``,
    ``spend_exceeded``."""
    currency: str | None = None
    """The currency of a money threshold, as the provider names it; None for usage ones."""
    triggered_at: datetime | None = None
    """When the provider says the alarm began, where it says so (timezone-aware UTC)."""
    alert_key: str | None = None
    """The key of an alert the manager owns (``alerts.toml``), recovered from its ownership
    marker; None for alerts the manager does not own."""
    raw: dict[str, Any]
