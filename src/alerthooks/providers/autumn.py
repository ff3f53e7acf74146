"""Autumn: Svix-delivered (Standard Webhooks) usage alerts and limits.

Followed: useautumn/autumn at 187c0a7 (2026-08-22). ``apps/docs/mintlify/api/openapi.yml``
(``webhooks``: ``balances.usage_alert_triggered`` and ``balances.limit_reached``),
``server/src/internal/balances/trackWebhooks/checkUsageAlerts.ts`` (what a usage alert sends,
and the idempotency key Autumn gives Svix: customer, entity, feature, threshold type and value),
``server/src/external/svix/svixHelpers.ts`` (the payload is ``{type, data}``, plus ``id`` and
``occurred_at`` in milliseconds for some event types, never for these), and the deprecated
``customer.threshold_reached`` of ``handleThresholdReached.ts`` (API versions before 2.1).

Autumn names no alert: an alert is identified by what Autumn itself keys it on, the feature,
the entity, the threshold type and the threshold (``api_calls:_:usage_percentage:80``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from alerthooks.events import AlertEvent, ThresholdMode
from alerthooks.providers.base import (
    NotAnAlert,
    build_event,
    clean_key,
    lenient_decimal,
    mapping,
    number,
    text,
)
from alerthooks.providers.standard_webhooks import StandardWebhooksProvider

SECRET_ENV = "AUTUMN_WEBHOOK_SECRET"
USAGE_ALERT = "balances.usage_alert_triggered"
LIMIT_REACHED = "balances.limit_reached"
LEGACY_THRESHOLD = "customer.threshold_reached"
ALERT_EVENT_TYPES = frozenset({USAGE_ALERT, LIMIT_REACHED, LEGACY_THRESHOLD})

# threshold_type: "usage" / "remaining" count units, the *_percentage ones a share of the
# allowance; "usage_percentage_threshold" is how the OpenAPI example writes one.
_PERCENT = frozenset({"usage_percentage", "remaining_percentage", "usage_percentage_threshold"})
_REMAINING = frozenset({"remaining", "remaining_percentage"})


def _occurred_at(payload: dict[str, Any]) -> datetime:
    """``occurred_at`` (Unix milliseconds) where Autumn sends it; else now, when the delivery
    is read (Autumn's alert payloads carry no time; Svix dates the delivery in
    ``webhook-timestamp``, which is within the tolerance of now)."""
    if payload.get("occurred_at") is not None:
        millis = number(payload, "occurred_at", where="event")
        try:
            return datetime.fromtimestamp(millis / 1000, timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise NotAnAlert("event.occurred_at is out of range") from None
    return datetime.now(timezone.utc)


def normalize(payload: dict[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from ``balances.usage_alert_triggered``,
    ``balances.limit_reached`` or the older ``customer.threshold_reached``; each is
    ``alert.triggered`` (Autumn sends nothing when usage falls back)."""
    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in ALERT_EVENT_TYPES:
        raise NotAnAlert(f"event type {event_type!r} is not an alert")
    data = mapping(payload, "data", where="event")
    threshold: Decimal | None = None
    mode: ThresholdMode | None = None
    name: str | None = None
    if event_type == LEGACY_THRESHOLD:
        customer = mapping(data, "customer", where="data")
        feature = mapping(data, "feature", where="data")
        customer_id = text(customer, "id", where="data.customer")
        feature_id = text(feature, "id", where="data.feature")
        entity_id = None
        alert_type = text(data, "threshold_type", where="data")
        kind = "usage"
        key = [feature_id, "_", alert_type]
    else:
        customer_id = text(data, "customer_id", where="data")
        feature_id = text(data, "feature_id", where="data")
        entity_id = text(data, "entity_id", where="data", required=False)
        if event_type == USAGE_ALERT:
            alert = mapping(data, "usage_alert", where="data")
            alert_type = text(alert, "threshold_type", where="data.usage_alert")
            threshold = lenient_decimal(alert, "threshold", where="data.usage_alert")
            if threshold is None:
                raise NotAnAlert("data.usage_alert.threshold is missing")
            mode = "percentage" if alert_type in _PERCENT else "absolute"
            name = text(alert, "name", where="data.usage_alert", required=False)
            kind = "credit_balance" if alert_type in _REMAINING else "usage"
            key = [feature_id, entity_id or "_", alert_type, str(threshold)]
        else:
            alert_type = text(data, "limit_type", where="data")
            kind = "spend" if alert_type == "spend_limit" else "usage"
            key = [feature_id, entity_id or "_", "limit", alert_type]
    alert_id = clean_key(":".join(key))
    if alert_id is None:
        raise NotAnAlert("the alert's feature and threshold make no usable alert id")
    return build_event(
        id=text(payload, "id", where="event", required=False) or "",  # else webhook-id
        provider="autumn",
        type="alert.triggered",
        alert_id=alert_id,
        alert_name=name,
        meter_id=feature_id,
        customer_id=customer_id,
        subscription_id=None,
        threshold=threshold,
        threshold_mode=mode,
        value=None,
        occurred_at=_occurred_at(payload),
        livemode=None,
        alert_type=alert_type,
        currency=None,
        raw=payload,
        kind=kind,
        external_customer_id=customer_id,
    )


class Autumn(StandardWebhooksProvider):
    """Autumn's webhooks, delivered by Svix: ``secrets`` are the endpoint's ``whsec_…``
    signing secrets (env ``AUTUMN_WEBHOOK_SECRET``, comma-separated to rotate). Autumn's
    payloads carry no id: ``webhook-id`` is the event id."""

    name = "autumn"
    env_hint = secret_env = SECRET_ENV
    alert_types = ALERT_EVENT_TYPES

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)


__all__ = ["Autumn", "normalize"]
