"""Stripe: ``Stripe-Signature`` verification and ``billing.alert.triggered`` normalization."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from alerthooks.apis.stripe import StripeClient
from alerthooks.events import AlertEvent
from alerthooks.marker import split_marker
from alerthooks.providers.base import (
    NotAnAlert,
    Rejected,
    SecretProvider,
    checked_event,
    clean_key,
    decimal,
    mapping,
    text,
    timestamp,
)
from alerthooks.providers.signing import check_window, matches, signature
from alerthooks.sources import Networks

ALERT_EVENT_TYPE = "billing.alert.triggered"
SIGNATURE_HEADER = "stripe-signature"
DEFAULT_TOLERANCE = 300
SECRET_ENV = "STRIPE_WEBHOOK_SECRET"
#: How long Stripe keeps events in its Events API.
EVENTS_RETENTION = timedelta(days=30)
MAX_SIGNATURE_HEADER = 4096
"""Longest ``Stripe-Signature`` accepted, in characters: Stripe sends ``t=`` and one ``v1=``
(64 hex digits) per active signing secret, about 80 characters each."""
MAX_SIGNATURE_ENTRIES = 32
"""Most ``key=value`` entries accepted in a ``Stripe-Signature``."""
# The alert's threshold as API versions before 2024-09-30 name it (since: ``usage_threshold``).
_OLD_THRESHOLD = "usage_threshold_config"


def verify(
    body: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a ``Stripe-Signature`` header against ``body``; any of ``secrets`` may match.

    Reads the header as the Stripe SDK's ``WebhookSignature.verify_header`` does (the first
    ``t=``, every ``v1=``; HMAC-SHA256 of ``"{t}.{body}"``) and checks it with
    :mod:`alerthooks.providers.signing`. Raises :class:`Rejected` (400) when the header is
    missing, malformed, too long (over :data:`MAX_SIGNATURE_HEADER` characters or
    :data:`MAX_SIGNATURE_ENTRIES` entries), matches no secret, or its timestamp is more than
    ``tolerance`` seconds away from ``now`` (default: the current time), in the past or (which
    the Stripe SDK does not check) in the future.
    """
    if not signature_header:
        raise Rejected(400, "missing Stripe-Signature header")
    if not secrets:
        raise Rejected(400, "no Stripe webhook secret configured")
    if (
        len(signature_header) > MAX_SIGNATURE_HEADER
        or signature_header.count(",") >= MAX_SIGNATURE_ENTRIES
    ):
        raise Rejected(400, "Stripe-Signature header too long")
    if not signature_header.isascii():
        raise Rejected(400, "malformed Stripe-Signature header")
    dated, candidates = _parse_header(signature_header)
    if dated is not None:
        check_window(dated, tolerance, now=now, future_only=True)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if dated is None or not matches(
        [secret.encode() for secret in secrets], str(dated).encode() + b"." + body, candidates
    ):
        raise Rejected(400, "signature mismatch")
    check_window(dated, tolerance, now=now)


def _parse_header(signature_header: str) -> tuple[int | None, list[bytes]]:
    """The header's first ``t=`` as an int (None when it has none that parses, which the SDK
    refuses too) and its ``v1=`` signatures."""
    dated: int | None = None
    seen_t = False
    candidates: list[bytes] = []
    for item in signature_header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        if key == "t" and not seen_t:
            seen_t = True
            dated = int(value) if value.isdigit() and len(value) <= 12 else None
        elif key == "v1":
            candidates.append(value.encode())
    return dated, candidates


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from a ``billing.alert.triggered`` event.

    Reads the alert as API versions since 2024-09-30 write it (``usage_threshold``, with
    ``filters``) and as earlier ones did (``usage_threshold_config``, with ``filter``); the
    meter as an id or an expanded object; ``value`` as an integer or, as preview versions send
    it, a decimal string; ``currency`` and ``triggered_at`` where present. The title's
    ownership marker becomes :attr:`AlertEvent.alert_key`.

    Raises :class:`NotAnAlert` for other event types and for payloads missing a field the
    provider always sends, or holding a field of the wrong type.
    """
    if payload.get("type") != ALERT_EVENT_TYPE:
        raise NotAnAlert(f"event type {payload.get('type')!r} is not an alert")
    event_id = text(payload, "id", where="event")
    created = timestamp(payload, "created", where="event")
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        raise NotAnAlert("event.livemode is missing or not a boolean")
    obj = mapping(mapping(payload, "data", where="event"), "object", where="event.data")
    alert = mapping(obj, "alert", where="data.object")
    config, where = _threshold_config(alert)
    alert_name, alert_key = split_marker(text(alert, "title", where="alert"))
    customer = text(obj, "customer", where="data.object", required=False)
    if customer is None:
        customer = _filter_customer(alert, config, where)
    return checked_event(
        id=event_id,
        provider="stripe",
        type="alert.triggered",
        alert_id=text(alert, "id", where="alert"),
        alert_name=alert_name,
        meter_id=_id_of(config, "meter", where=where, required=True),
        customer_id=customer,
        subscription_id=None,
        threshold=decimal(config, "gte", where=where),
        threshold_mode="absolute",
        value=decimal(obj, "value", where="data.object", strings=True),
        occurred_at=created,
        livemode=livemode,
        alert_type=text(alert, "alert_type", where="alert", required=False),
        currency=text(obj, "currency", where="data.object", required=False),
        triggered_at=timestamp(obj, "triggered_at", where="data.object", required=False),
        alert_key=alert_key,
        raw=dict(payload),
    )


def _threshold_config(alert: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The alert's usage threshold and its path for messages, in either API version's shape."""
    config = alert.get("usage_threshold")
    where = "alert.usage_threshold"
    if config is None:
        config = alert.get(_OLD_THRESHOLD)
        where = f"alert.{_OLD_THRESHOLD}"
        if config is None:
            raise NotAnAlert(f"alert has neither usage_threshold nor {_OLD_THRESHOLD}")
    if not isinstance(config, dict):
        raise NotAnAlert(f"{where} is not an object")
    return config, where


def _id_of(obj: Mapping[str, Any], key: str, *, where: str, required: bool) -> str | None:
    """``obj[key]`` as an id, given as the id itself or as the expanded object."""
    value = obj.get(key)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        return text(value, "id", where=f"{where}.{key}")
    if value is None and not required:
        return None
    raise NotAnAlert(f"{where}.{key} is missing or not an id or object")


def _filter_customer(alert: Mapping[str, Any], config: Mapping[str, Any], where: str) -> str | None:
    """The customer the alert is scoped to: ``usage_threshold.filters`` (null or a list), or
    the ``filter`` object of API versions before 2024-09-30; None for an unscoped alert."""
    if "filters" in config:
        filters = config["filters"]
        if filters is None:
            return None
        if not isinstance(filters, list):
            raise NotAnAlert(f"{where}.filters is not a list")
        for index, item in enumerate(filters):
            if not isinstance(item, dict):
                raise NotAnAlert(f"{where}.filters[{index}] is not an object")
            customer = _id_of(item, "customer", where=f"{where}.filters[{index}]", required=False)
            if customer is not None:
                return customer
        return None
    scope = alert.get("filter")
    if scope is None:
        return None
    if not isinstance(scope, dict):
        raise NotAnAlert("alert.filter is not an object")
    return _id_of(scope, "customer", where="alert.filter", required=False)


class Stripe(SecretProvider):
    """Stripe deliveries, verified with one or more webhook signing secrets (the first signs
    test deliveries; the others are accepted too, for rotation).

    ``secrets`` may be one comma-separated string. ``tolerance`` is how old (in seconds) a
    signature may be; it must be positive, as the Stripe SDK takes 0 to mean "no check".
    ``allowed_ips`` restricts the source networks (see :mod:`alerthooks.sources`).
    """

    name = "stripe"
    env_hint = secret_env = SECRET_ENV
    alert_types = frozenset({ALERT_EVENT_TYPE})
    tolerance_error = (
        "stripe_tolerance must be a positive number of seconds, got {tolerance!r} "
        "(the Stripe SDK takes 0 to mean no staleness check)"
    )

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        if isinstance(secrets, str):
            secrets = secrets.split(",")
        super().__init__(
            [s.strip() for s in secrets if s and s.strip()],
            tolerance=tolerance,
            allowed_ips=allowed_ips,
        )

    @classmethod
    def from_secret(cls, secret: str) -> Stripe:
        """A provider with this one signing secret (``whsec_…``)."""
        secret = secret.strip()
        if not secret:
            raise ValueError("a Stripe signing secret cannot be empty")
        if ":" in secret or "," in secret:
            raise ValueError(
                "a Stripe signing secret (whsec_…) has no ':' or ','; USER:PASS is Chargebee's form"
            )
        return super().from_secret(secret)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` unless ``Stripe-Signature`` matches a configured secret."""
        verify(body, headers.get(SIGNATURE_HEADER), self._secrets, tolerance=self.tolerance)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The ``evt_…`` id."""
        return clean_key(payload.get("id"))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Stripe's event type, such as ``billing.alert.triggered``."""
        return clean_key(payload.get("type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def events_api(self) -> StripeEvents:
        """``GET /v1/events`` with the manager's credentials (``STRIPE_API_KEY``, and
        ``ALERTHOOKS_STRIPE_API_BASE`` to replace ``https://api.stripe.com``) and its retry
        policy; raises :class:`MissingCredentials` without a key."""
        return StripeEvents(StripeClient.from_env())

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """A ``Stripe-Signature`` header for ``body`` under the first secret, dated
        ``timestamp`` (Unix seconds, default now)."""
        if not self._secrets:
            raise ValueError(f"no Stripe signing secret: set {SECRET_ENV}")
        return {SIGNATURE_HEADER: signature_header(body, self._secrets[0], timestamp)}


StripeProvider = Stripe
"""The former name of :class:`Stripe`."""


class StripeEvents:
    """Stripe's Events API (``GET /v1/events?type=billing.alert.triggered&created[gte]=…``,
    following ``has_more`` with ``starting_after``); Stripe keeps 30 days of events."""

    retention: timedelta | None = EVENTS_RETENTION

    def __init__(self, api: StripeClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"StripeEvents({self._api!r})"

    async def events_since(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """Every ``billing.alert.triggered`` event created at or after ``since``, newest
        first."""
        async for event in self._api.events(ALERT_EVENT_TYPE, int(since.timestamp())):
            yield event

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()


def signature_header(
    body: bytes | str,
    secret: str,
    timestamp: int | None = None,
    *,
    extra_secrets: Sequence[str] = (),
) -> str:
    """A ``Stripe-Signature`` value for ``body``: ``t=…,v1=…`` (one ``v1`` per secret).

    Computed as Stripe does: HMAC-SHA256 over ``"{timestamp}.{body}"`` keyed by the secret.
    """
    raw = body.encode() if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else timestamp
    signed = str(ts).encode() + b"." + raw
    return ",".join(
        [f"t={ts}", *("v1=" + signature(key.encode(), signed) for key in (secret, *extra_secrets))]
    )
