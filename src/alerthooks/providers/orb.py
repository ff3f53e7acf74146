"""Orb: ``X-Orb-Signature`` verification and normalization of its alert webhooks.

Orb signs ``v1:{X-Orb-Timestamp}:{raw body}`` with HMAC-SHA256 keyed by the endpoint's secret as
given (not decoded) and sends ``X-Orb-Signature: v1=<hex>``, possibly several space-separated
entries; the timestamp is ISO-8601, UTC when it has no zone. This is what ``orb-billing``'s
``client.webhooks.verify_signature`` checks (``src/orb/resources/webhooks.py`` in
orbcorp/orb-python).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from alerthooks.events import AlertEvent, AlertKind, EventType
from alerthooks.providers.base import (
    NotAnAlert,
    Rejected,
    SecretProvider,
    build_event,
    clean_key,
    lenient_decimal,
    mapping,
    text,
)
from alerthooks.providers.signing import ascii_values, check_window, matches, signature
from alerthooks.sources import Networks

TIMESTAMP_HEADER = "x-orb-timestamp"
SIGNATURE_HEADER = "x-orb-signature"
DEFAULT_TOLERANCE = 300
SECRET_ENV = "ORB_WEBHOOK_SECRET"

ALERT_EVENT_TYPES: dict[str, EventType] = {
    "subscription.usage_exceeded": "alert.triggered",
    "subscription.cost_exceeded": "alert.triggered",
    "subscription.spend_exceeded": "alert.triggered",
    "customer.credit_balance_dropped": "alert.triggered",
    "customer.credit_balance_depleted": "alert.triggered",
    "customer.credit_balance_recovered": "alert.cleared",
}
"""Orb's alert webhooks and what each one means."""

KINDS: dict[str, AlertKind] = {
    "subscription.usage_exceeded": "usage",
    "subscription.cost_exceeded": "spend",
    "subscription.spend_exceeded": "spend",
    "customer.credit_balance_dropped": "credit_balance",
    "customer.credit_balance_depleted": "credit_balance",
    "customer.credit_balance_recovered": "credit_balance",
}
"""The :attr:`AlertEvent.kind` of each of Orb's alert webhooks."""

# Which properties carry the threshold and the evaluated value, per event type.
_AMOUNTS: dict[str, tuple[str | None, str | None]] = {
    "subscription.usage_exceeded": ("quantity_threshold", "evaluated_quantity"),
    "subscription.cost_exceeded": ("amount_threshold", "evaluated_amount"),
    "subscription.spend_exceeded": ("amount_threshold", "evaluated_amount"),
    "customer.credit_balance_dropped": ("balance_threshold", None),
    "customer.credit_balance_depleted": (None, None),
    "customer.credit_balance_recovered": (None, None),
}
_SEPARATORS = re.compile(r"[\s,]+")


def _zulu(value: str) -> str:
    """``value`` with a trailing ``Z`` written as ``+00:00``: ``datetime.fromisoformat`` reads
    ``Z`` only from Python 3.11 on."""
    return value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value


def parse_timestamp(value: str) -> datetime:
    """An ``X-Orb-Timestamp`` (or ``created_at``) as an aware UTC datetime; a value without a
    zone is UTC. Raises ``ValueError`` when it is not ISO-8601."""
    if not value.isascii():
        raise ValueError("not ASCII")
    moment = datetime.fromisoformat(_zulu(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("out of range") from None


def _message(body: bytes, timestamp: str) -> bytes:
    return b"v1:" + timestamp.encode() + b":" + body


def expected_signature(body: bytes, timestamp: str, secret: str) -> str:
    """The hex HMAC-SHA256 Orb computes over ``v1:{timestamp}:{body}`` with ``secret``."""
    return signature(secret.encode(), _message(body, timestamp))


def verify(
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> None:
    """Check ``X-Orb-Timestamp`` / ``X-Orb-Signature`` against ``body``; any of ``secrets`` may
    match any ``v1=`` entry.

    Raises :class:`Rejected` (400) when a header is missing or malformed, the timestamp is more
    than ``tolerance`` seconds from ``now`` (default: the current time) either way, or no entry
    matches.
    """
    if not timestamp:
        raise Rejected(400, "missing X-Orb-Timestamp header")
    if not signature:
        raise Rejected(400, "missing X-Orb-Signature header")
    if not secrets:
        raise Rejected(400, "no Orb webhook secret configured")
    try:
        moment = parse_timestamp(timestamp)
    except ValueError:
        raise Rejected(400, "malformed X-Orb-Timestamp header") from None
    check_window(moment.timestamp(), tolerance, now=None if now is None else now.timestamp())
    given = ascii_values(
        [entry[3:] for entry in _SEPARATORS.split(signature) if entry.startswith("v1=")]
    )
    if not matches([secret.encode() for secret in secrets], _message(body, timestamp), given):
        raise Rejected(400, "signature mismatch")


def signature_headers(
    body: bytes | str, secret: str, timestamp: datetime | str | None = None
) -> dict[str, str]:
    """``X-Orb-Timestamp`` and ``X-Orb-Signature`` for ``body``, as Orb sends them (timestamp
    as naive UTC ISO-8601 with milliseconds; default now)."""
    raw = body.encode() if isinstance(body, str) else body
    if timestamp is None:
        timestamp = datetime.now(timezone.utc)
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is not None:
            timestamp = timestamp.astimezone(timezone.utc).replace(tzinfo=None)
        timestamp = timestamp.isoformat(timespec="milliseconds")
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: "v1=" + expected_signature(raw, timestamp, secret),
    }


def _nested_id(obj: Mapping[str, Any], key: str, *, where: str) -> str | None:
    """``obj[key]["id"]`` when ``obj[key]`` is an object; None when it is null or absent."""
    return _nested_text(obj, key, "id", where=where)


def _nested_text(obj: Mapping[str, Any], key: str, field: str, *, where: str) -> str | None:
    """``obj[key][field]`` when ``obj[key]`` is an object; None when either is null or
    absent."""
    inner = obj.get(key)
    if inner is None:
        return None
    if not isinstance(inner, dict):
        raise NotAnAlert(f"{where}.{key} is not an object")
    return text(inner, field, where=f"{where}.{key}", required=False)


def _only_threshold(alert: Mapping[str, Any]) -> Decimal | None:
    """The alert's threshold when it has exactly one (the event itself does not say which)."""
    thresholds = alert.get("thresholds")
    if not isinstance(thresholds, list) or len(thresholds) != 1:
        return None
    only = thresholds[0]
    if not isinstance(only, dict):
        raise NotAnAlert("alert_configuration.thresholds[0] is not an object")
    return lenient_decimal(only, "value", where="alert_configuration.thresholds[0]")


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from one of Orb's alert webhooks.

    Usage, cost and spend exceeded and credit balance dropped or depleted become
    ``alert.triggered``; credit balance recovered ``alert.cleared``. Raises :class:`NotAnAlert`
    for other event types and for payloads missing a field Orb always sends.
    """
    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in ALERT_EVENT_TYPES:
        raise NotAnAlert(f"event type {event_type!r} is not an alert")
    event_id = text(payload, "id", where="event")
    try:
        occurred_at = parse_timestamp(text(payload, "created_at", where="event"))
    except ValueError:
        raise NotAnAlert("event.created_at is not an ISO-8601 timestamp") from None
    properties = mapping(payload, "properties", where="event")
    alert = mapping(properties, "alert_configuration", where="properties")
    where = "alert_configuration"
    if event_type.startswith("subscription."):
        subscription = mapping(payload, "subscription", where="event")
        subscription_id: str | None = text(subscription, "id", where="subscription")
        customer_id = _nested_id(subscription, "customer", where="subscription")
        external_id = _nested_text(
            subscription, "customer", "external_customer_id", where="subscription"
        )
    else:
        customer = mapping(payload, "customer", where="event")
        customer_id = text(customer, "id", where="customer")
        external_id = text(customer, "external_customer_id", where="customer", required=False)
        subscription_id = _nested_id(alert, "subscription", where=where)
    if customer_id is None:
        customer_id = _nested_id(alert, "customer", where=where)
    if external_id is None:
        external_id = _nested_text(alert, "customer", "external_customer_id", where=where)
    meter_id = text(properties, "billable_metric_id", where="properties", required=False)
    if meter_id is None:
        meter_id = _nested_id(alert, "metric", where=where)
    threshold_key, value_key = _AMOUNTS[event_type]
    threshold = (
        lenient_decimal(properties, threshold_key, where="properties") if threshold_key else None
    )
    if threshold is None:
        threshold = _only_threshold(alert)
    value = lenient_decimal(properties, value_key, where="properties") if value_key else None
    currency = text(alert, "currency", where=where, required=False)
    pricing_unit = properties.get("pricing_unit")
    if currency is None and isinstance(pricing_unit, dict):
        currency = text(pricing_unit, "name", where="properties.pricing_unit", required=False)
    alert_type = text(alert, "type", where=where, required=False)
    return build_event(
        id=event_id,
        provider="orb",
        type=ALERT_EVENT_TYPES[event_type],
        alert_id=text(alert, "id", where=where),
        kind=KINDS[event_type],
        alert_name=None,
        meter_id=meter_id,
        customer_id=customer_id,
        external_customer_id=external_id,
        subscription_id=subscription_id,
        threshold=threshold,
        threshold_mode="absolute" if threshold is not None else None,
        value=value,
        occurred_at=occurred_at,
        livemode=None,
        alert_type=alert_type or event_type.split(".", 1)[1],
        currency=currency,
        raw=dict(payload),
    )


class Orb(SecretProvider):
    """Orb deliveries, verified with one or more webhook secrets (the first signs test
    deliveries; the others are accepted too, for rotation).

    ``secret`` is used exactly as Orb shows it; a list gives several. ``tolerance`` is how far
    (in seconds, either way) ``X-Orb-Timestamp`` may be from now. ``allowed_ips`` restricts the
    source networks (see :mod:`alerthooks.sources`).
    """

    name = "orb"
    env_hint = secret_env = SECRET_ENV
    alert_types = frozenset(ALERT_EVENT_TYPES)

    def __init__(
        self,
        secret: str | Sequence[str] = (),
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        if isinstance(secret, str):
            secret = [secret]
        super().__init__([s for s in secret if s], tolerance=tolerance, allowed_ips=allowed_ips)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` (400) unless ``X-Orb-Signature`` matches a configured secret
        and ``X-Orb-Timestamp`` is within the tolerance."""
        verify(
            body,
            headers.get(TIMESTAMP_HEADER),
            headers.get(SIGNATURE_HEADER),
            self._secrets,
            tolerance=self.tolerance,
        )

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The webhook event's ``id`` (Orb's idempotency key)."""
        return clean_key(payload.get("id"))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Orb's event type, such as ``subscription.usage_exceeded``."""
        return clean_key(payload.get("type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def sign(self, body: bytes, *, timestamp: datetime | str | None = None) -> dict[str, str]:
        """``X-Orb-Timestamp`` and ``X-Orb-Signature`` for ``body`` under the first secret,
        dated ``timestamp`` (default now)."""
        if not self._secrets:
            raise ValueError(f"no Orb webhook secret: set {SECRET_ENV}")
        return signature_headers(body, self._secrets[0], timestamp)
