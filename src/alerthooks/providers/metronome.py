"""Metronome: ``Metronome-Webhook-Signature`` verification and normalization of its threshold
notifications (``alerts.*``).

Metronome signs ``{date}\\n{raw body}`` with HMAC-SHA256 keyed by the webhook's secret and sends
the hex digest in ``Metronome-Webhook-Signature``; ``date`` is the ``X-Metronome-Date`` header
(sent alongside an identical ``Date``, which older integrations used and proxies may rewrite).
This is what ``@metronome/sdk``'s ``webhooks.verifySignature`` checks
(``src/resources/webhooks.ts`` in Metronome-Industries/metronome-node); the Python SDK has no
webhook module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Literal

from alerthooks.apis.metronome import MetronomeClient
from alerthooks.events import AlertEvent, AlertKind, EventType
from alerthooks.providers.base import (
    NotAnAlert,
    Rejected,
    RemoteStatus,
    SecretProvider,
    Subject,
    build_event,
    clean_key,
    lenient_decimal,
    mapping,
    text,
)
from alerthooks.providers.signing import ascii_values, check_window, matches, signature
from alerthooks.sources import Networks

SIGNATURE_HEADER = "metronome-webhook-signature"
DATE_HEADER = "x-metronome-date"
FALLBACK_DATE_HEADER = "date"
DEFAULT_TOLERANCE = 300
SECRET_ENV = "METRONOME_WEBHOOK_SECRET"

# Threshold notifications Metronome documents (docs.metronome.com, "Webhooks" and "Threshold
# notifications"), each with its kind. Each ``_reached`` has a ``_resolved`` twin sent when the
# condition clears.
KINDS: dict[str, AlertKind] = {
    "usage_threshold": "usage",
    "spend_threshold": "spend",
    "invoice_total": "spend",
    "low_remaining_credit_balance": "credit_balance",
    "low_remaining_commit_balance": "credit_balance",
    "low_remaining_commit_percentage": "credit_balance",
    "low_remaining_contract_credit_balance": "credit_balance",
    "low_remaining_contract_credit_percentage": "credit_balance",
    "low_remaining_contract_credit_and_commit_balance": "credit_balance",
    "low_remaining_seat_balance": "other",
}
"""The :attr:`AlertEvent.kind` of each kind of threshold notification (the ``<kind>`` of
``alerts.<kind>_reached``); a kind not here is ``other``. Seats are neither usage, money nor
credit, so a seat balance is ``other``."""
_ALERT_TYPE = re.compile(r"alerts\.([a-z0-9_]+?)_(reached|resolved)")
_STATES: dict[str, EventType] = {"reached": "alert.triggered", "resolved": "alert.cleared"}
# The property that carries the value compared with the threshold, by kind of notification.
_VALUE_KEYS = (
    "current_usage",
    "current_spend",
    "invoice_total",
    "remaining_balance",
    "remaining_percentage",
)
_ENVIRONMENTS = {"PRODUCTION": True, "SANDBOX": False}


class _AlertTypes(frozenset[str]):
    """The documented ``alerts.*`` types when iterated; membership holds for any ``alerts.*``
    type, so one Metronome adds later is kept (``unparsed``) when it cannot be read rather than
    dropped as ``ignored``."""

    def __contains__(self, item: object) -> bool:
        return isinstance(item, str) and item.startswith("alerts.")


ALERT_EVENT_TYPES = _AlertTypes(
    f"alerts.{kind}_{state}" for kind in KINDS for state in ("reached", "resolved")
)
"""Metronome's threshold notification types (any ``alerts.*`` type counts as one)."""


def parse_date(value: str) -> datetime:
    """A ``X-Metronome-Date`` / ``Date`` value (RFC 1123, as Metronome sends it, or ISO-8601)
    as an aware UTC datetime; raise ``ValueError`` when it is neither."""
    if not value.isascii():
        raise ValueError("not ASCII")
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        stripped = value.strip()
        # datetime.fromisoformat reads a trailing "Z" only from Python 3.11 on.
        if stripped[-1:] in ("Z", "z"):
            stripped = stripped[:-1] + "+00:00"
        moment = datetime.fromisoformat(stripped)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("out of range") from None


def expected_signature(body: bytes, date: str, secret: str) -> str:
    """The hex HMAC-SHA256 Metronome computes over ``{date}\\n{body}`` with ``secret``."""
    return signature(secret.encode(), date.encode() + b"\n" + body)


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: datetime | None = None,
) -> None:
    """Check ``Metronome-Webhook-Signature`` against ``body`` and the date header
    (``X-Metronome-Date``, else ``Date``); any of ``secrets`` may match. ``headers`` has
    lower-case names.

    Raises :class:`Rejected` (400) when a header is missing or malformed, the date is more than
    ``tolerance`` seconds from ``now`` (default: the current time) either way, or the signature
    matches no secret.
    """
    date = headers.get(DATE_HEADER) or headers.get(FALLBACK_DATE_HEADER)
    given = headers.get(SIGNATURE_HEADER)
    if not date:
        raise Rejected(400, "missing X-Metronome-Date header")
    if not given:
        raise Rejected(400, "missing Metronome-Webhook-Signature header")
    if not secrets:
        raise Rejected(400, "no Metronome webhook secret configured")
    try:
        moment = parse_date(date)
    except ValueError:
        raise Rejected(400, "malformed X-Metronome-Date header") from None
    check_window(moment.timestamp(), tolerance, now=None if now is None else now.timestamp())
    keys = [secret.encode() for secret in secrets]
    if not matches(keys, date.encode() + b"\n" + body, ascii_values([given.strip()])):
        raise Rejected(400, "signature mismatch")


def signature_headers(
    body: bytes | str, secret: str, date: datetime | str | None = None
) -> dict[str, str]:
    """``X-Metronome-Date``, ``Date`` and ``Metronome-Webhook-Signature`` for ``body``, as
    Metronome sends them (the date in RFC 1123 form; default now)."""
    raw = body.encode() if isinstance(body, str) else body
    if date is None:
        date = datetime.now(timezone.utc)
    if isinstance(date, datetime):
        date = format_datetime(date.astimezone(timezone.utc), usegmt=True)
    return {
        DATE_HEADER: date,
        FALLBACK_DATE_HEADER: date,
        SIGNATURE_HEADER: expected_signature(raw, date, secret),
    }


def _livemode(payload: Mapping[str, Any], properties: Mapping[str, Any]) -> bool | None:
    environment = properties.get("environment_type", payload.get("environment_type"))
    return _ENVIRONMENTS.get(environment) if isinstance(environment, str) else None


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from a Metronome threshold notification.

    ``alerts.<kind>_reached`` becomes ``alert.triggered`` and ``alerts.<kind>_resolved``
    ``alert.cleared``. Raises :class:`NotAnAlert` for other types and for notifications missing
    a field Metronome always sends (``id``, ``properties.alert_id``, ``properties.timestamp``).
    """
    event_type = payload.get("type")
    match = _ALERT_TYPE.fullmatch(event_type) if isinstance(event_type, str) else None
    if match is None:
        raise NotAnAlert(f"event type {event_type!r} is not a threshold notification")
    kind, state = match.groups()
    event_id = text(payload, "id", where="event")
    properties = mapping(payload, "properties", where="event")
    try:
        occurred_at = parse_date(text(properties, "timestamp", where="properties"))
    except ValueError:
        raise NotAnAlert("properties.timestamp is not an ISO-8601 timestamp") from None
    threshold = lenient_decimal(properties, "threshold", where="properties")
    value = None
    for key in _VALUE_KEYS:
        value = lenient_decimal(properties, key, where="properties")
        if value is not None:
            break
    mode = "percentage" if kind.endswith("_percentage") else "absolute"
    return build_event(
        id=event_id,
        provider="metronome",
        type=_STATES[state],
        alert_id=text(properties, "alert_id", where="properties"),
        kind=KINDS.get(kind, "other"),
        alert_name=text(properties, "alert_name", where="properties", required=False),
        meter_id=text(properties, "billable_metric_id", where="properties", required=False),
        customer_id=text(properties, "customer_id", where="properties", required=False),
        external_customer_id=None,
        subscription_id=None,
        threshold=threshold,
        threshold_mode=mode if threshold is not None else None,
        value=value,
        occurred_at=occurred_at,
        livemode=_livemode(payload, properties),
        alert_type=f"{kind}_reached",
        currency=text(properties, "credit_type_id", where="properties", required=False),
        triggered_at=occurred_at if state == "reached" else None,
        raw=dict(payload),
    )


class Metronome(SecretProvider):
    """Metronome deliveries, verified with one or more webhook secrets (the first signs test
    deliveries; the others are accepted too, for rotation).

    ``secret`` is used exactly as given; a list gives several. ``tolerance`` is how far (in
    seconds, either way) the date header may be from now. ``allowed_ips`` restricts the source
    networks (see :mod:`alerthooks.sources`; Metronome publishes its webhook addresses).
    """

    name = "metronome"
    env_hint = secret_env = SECRET_ENV
    alert_types: frozenset[str] = ALERT_EVENT_TYPES

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
        """Raise :class:`Rejected` (400) unless ``Metronome-Webhook-Signature`` matches a
        configured secret and the date is within the tolerance."""
        verify(body, headers, self._secrets, tolerance=self.tolerance)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The notification's ``id`` (Metronome's deduplication key)."""
        return clean_key(payload.get("id"))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Metronome's notification type, such as ``alerts.usage_threshold_reached``."""
        return clean_key(payload.get("type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def status_api(self) -> MetronomeStatuses:
        """Each customer's alert statuses (``POST /v1/customer-alerts/list``) with the
        manager's credentials (``METRONOME_API_KEY``, ``ALERTHOOKS_METRONOME_API_BASE``) and
        retry policy; raises :class:`MissingCredentials` without a key."""
        return MetronomeStatuses(MetronomeClient.from_env())

    def sign(self, body: bytes, *, date: datetime | str | None = None) -> dict[str, str]:
        """``X-Metronome-Date``, ``Date`` and ``Metronome-Webhook-Signature`` for ``body``
        under the first secret, dated ``date`` (default now)."""
        if not self._secrets:
            raise ValueError(f"no Metronome webhook secret: set {SECRET_ENV}")
        return signature_headers(body, self._secrets[0], date)


_CUSTOMER_STATES: dict[str, Literal["in_alarm", "within_limit"]] = {
    "in_alarm": "in_alarm",
    "ok": "within_limit",
}


class MetronomeStatuses:
    """Metronome's ``customer_status`` of each enabled alert a customer sees, for the customers
    asked about (``in_alarm``; ``ok`` is within the limit; ``evaluating`` says nothing yet)."""

    def __init__(self, api: MetronomeClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"MetronomeStatuses({self._api!r})"

    async def statuses(self, subjects: Sequence[Subject]) -> list[RemoteStatus]:
        """The status of every enabled alert each customer in ``subjects`` sees."""
        found: list[RemoteStatus] = []
        for customer in sorted({s.customer_id for s in subjects if s.customer_id}):
            for alert, status in await self._api.customer_statuses(customer):
                state = _CUSTOMER_STATES.get(status) if isinstance(status, str) else None
                if state is not None and isinstance(alert.get("id"), str):
                    found.append(RemoteStatus(alert["id"], state, customer_id=customer))
        return found

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()
