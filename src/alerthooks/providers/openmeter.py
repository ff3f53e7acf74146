"""OpenMeter: Svix-delivered (Standard Webhooks) entitlement notifications.

Followed: openmeterio/openmeter at 7e57a39 (2026-08-18).
``api/spec/packages/legacy/src/notification/entitlements.tsp`` (the payloads:
``{id, type, timestamp, data {entitlement, feature, subject, customer?, value, threshold}}``),
``openmeter/notification/webhook/events.go`` (the event types),
``openmeter/notification/eventhandler/webhook.go`` (the payload is the notification event as the
API serves it, sent through Svix under the event's id) and
``openmeter/notification/consumer/entitlementbalancethreshold.go`` (how each threshold type is
evaluated: ``usage_percentage`` against ``totalAvailableGrantAmount``, ``balance_value`` against
the balance).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from alerthooks.apis.openmeter import OpenMeterClient
from alerthooks.events import AlertEvent, EventType, ThresholdMode
from alerthooks.providers.base import (
    NotAnAlert,
    build_event,
    iso_timestamp,
    lenient_decimal,
    mapping,
    text,
)
from alerthooks.providers.standard_webhooks import StandardWebhooksProvider

SECRET_ENV = "OPENMETER_WEBHOOK_SECRET"
THRESHOLD = "entitlements.balance.threshold"
RESET = "entitlements.reset"

ALERT_EVENT_TYPES: dict[str, EventType] = {THRESHOLD: "alert.triggered", RESET: "alert.cleared"}
"""OpenMeter's entitlement notifications: a threshold crossed, and the usage period reset (which
clears every threshold of the entitlement)."""

# OpenMeter's threshold types (the upper-case ones are its deprecated names).
_PERCENT = frozenset({"usage_percentage", "PERCENT"})
_USAGE = frozenset({"usage_value", "NUMBER"})
_BALANCE = frozenset({"balance_value"})


def _value(kind: str, entitlement_value: dict[str, Any]) -> Decimal | None:
    """The entitlement's value in the threshold's own unit: the usage, the usage as a
    percentage of the granted amount, or the remaining balance."""
    where = "data.value"
    if kind in _BALANCE:
        return lenient_decimal(entitlement_value, "balance", where=where)
    usage = lenient_decimal(entitlement_value, "usage", where=where)
    if kind in _USAGE or usage is None:
        return usage
    granted = lenient_decimal(entitlement_value, "totalAvailableGrantAmount", where=where)
    if not granted:
        return None
    return (usage * 100 / granted).quantize(Decimal("0.0001")).normalize()


def normalize(payload: dict[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from OpenMeter's ``entitlements.balance.threshold`` (a
    threshold crossed: ``alert.triggered``) or ``entitlements.reset`` (``alert.cleared``).

    The alert is the entitlement (``alert_id``: its id; the rule that fired is not in the
    payload), the meter its feature's key, the customer OpenMeter's customer (its ``key`` is the
    external id) or else the subject. ``value`` is in the threshold's unit: a percentage for
    ``usage_percentage``, the remaining balance for ``balance_value``, the usage otherwise.
    """
    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in ALERT_EVENT_TYPES:
        raise NotAnAlert(f"event type {event_type!r} is not an alert")
    data = mapping(payload, "data", where="event")
    entitlement = mapping(data, "entitlement", where="data")
    feature = mapping(data, "feature", where="data")
    entitlement_value = mapping(data, "value", where="data")
    customer = data.get("customer")
    customer_id = external_id = None
    if isinstance(customer, dict):
        customer_id = text(customer, "id", where="data.customer", required=False)
        external_id = text(customer, "key", where="data.customer", required=False)
    subject = data.get("subject")
    if customer_id is None and isinstance(subject, dict):
        customer_id = text(subject, "key", where="data.subject", required=False)
    if customer_id is None:
        customer_id = text(entitlement, "subjectKey", where="data.entitlement", required=False)
    threshold: Decimal | None = None
    mode: ThresholdMode | None = None
    value: Decimal | None = None
    kind = "usage"
    if event_type == THRESHOLD:
        spec = mapping(data, "threshold", where="data")
        threshold_type = text(spec, "type", where="data.threshold")
        if threshold_type not in _PERCENT | _USAGE | _BALANCE:
            raise NotAnAlert(f"data.threshold.type {threshold_type!r} is unknown")
        threshold = lenient_decimal(spec, "value", where="data.threshold")
        if threshold is None:
            raise NotAnAlert("data.threshold.value is missing")
        mode = "percentage" if threshold_type in _PERCENT else "absolute"
        value = _value(threshold_type, entitlement_value)
        kind = "credit_balance" if threshold_type in _BALANCE else "usage"
        alert_type = threshold_type
    else:
        value = lenient_decimal(entitlement_value, "usage", where="data.value")
        alert_type = "reset"
    occurred_at = iso_timestamp(payload, "timestamp", where="event")
    return build_event(
        id=text(payload, "id", where="event"),
        provider="openmeter",
        type=ALERT_EVENT_TYPES[event_type],
        alert_id=text(entitlement, "id", where="data.entitlement"),
        alert_name=None,  # the rule's name is not in the webhook
        meter_id=text(feature, "key", where="data.feature", required=False),
        customer_id=customer_id,
        subscription_id=None,
        threshold=threshold,
        threshold_mode=mode,
        value=value,
        occurred_at=occurred_at,
        livemode=None,
        alert_type=alert_type,
        currency=None,
        raw=payload,
        kind=kind,
        external_customer_id=external_id,
    )


class OpenMeter(StandardWebhooksProvider):
    """OpenMeter's notification webhooks, delivered by Svix: ``secrets`` are the channel's
    ``whsec_…`` signing secrets (env ``OPENMETER_WEBHOOK_SECRET``, comma-separated to rotate).
    The payload's ``id`` (the notification event's, which Svix also sends as its event id) is
    the event id."""

    name = "openmeter"
    env_hint = secret_env = SECRET_ENV
    alert_types = frozenset(ALERT_EVENT_TYPES)

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def events_api(self) -> OpenMeterEvents:
        """``GET /api/v1/notification/events`` with ``OPENMETER_API_KEY`` (and
        ``ALERTHOOKS_OPENMETER_API_BASE`` to replace ``https://openmeter.cloud``); raises
        :class:`~alerthooks.providers.MissingCredentials` without a key."""
        return OpenMeterEvents(OpenMeterClient.from_env())


class OpenMeterEvents:
    """OpenMeter's notification events (``GET /api/v1/notification/events?from=…``): each
    event's ``payload`` is what its webhook carried, under the same id. OpenMeter documents no
    retention."""

    retention: timedelta | None = None

    def __init__(self, api: OpenMeterClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"OpenMeterEvents({self._api!r})"

    async def events_since(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """The payload of every entitlement notification created at or after ``since``."""
        async for event in self._api.notification_events(since):
            payload = event.get("payload")
            if isinstance(payload, dict) and payload.get("type") in ALERT_EVENT_TYPES:
                yield payload

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()


__all__ = ["OpenMeter", "OpenMeterEvents", "normalize"]
