"""Stripe: ``Stripe-Signature`` verification and ``billing.alert.triggered`` normalization."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import stripe

from alerthooks.events import AlertEvent
from alerthooks.providers.base import (
    NotAnAlert,
    Provider,
    Rejected,
    checked_event,
    clean_key,
    mapping,
    number,
    text,
)
from alerthooks.sources import Networks, networks_from_env, parse_networks

ALERT_EVENT_TYPE = "billing.alert.triggered"
SIGNATURE_HEADER = "stripe-signature"
DEFAULT_TOLERANCE = 300
SECRET_ENV = "STRIPE_WEBHOOK_SECRET"

# Bound once: the SDK resolves ``stripe.WebhookSignature`` lazily through a module __getattr__
# that runs an import lookup on every access.
_verify_header = stripe.WebhookSignature.verify_header
_SignatureVerificationError = stripe.SignatureVerificationError


def verify(
    body: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
) -> None:
    """Check a ``Stripe-Signature`` header against ``body``; any of ``secrets`` may match.

    Raises :class:`Rejected` (400) when the header is missing, malformed, matches no secret, or
    its timestamp is older than ``tolerance`` seconds.
    """
    if not signature_header:
        raise Rejected(400, "missing Stripe-Signature header")
    if not secrets:
        raise Rejected(400, "no Stripe webhook secret configured")
    if not signature_header.isascii():
        raise Rejected(400, "malformed Stripe-Signature header")
    try:
        payload = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    stale = False
    for secret in secrets:
        try:
            _verify_header(payload, signature_header, secret, tolerance)
            return
        except _SignatureVerificationError as exc:
            stale = stale or "tolerance" in str(exc)
    raise Rejected(400, "timestamp outside tolerance" if stale else "signature mismatch")


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from a ``billing.alert.triggered`` event.

    Raises :class:`NotAnAlert` for other event types and for payloads missing a field the
    provider always sends.
    """
    if payload.get("type") != ALERT_EVENT_TYPE:
        raise NotAnAlert(f"event type {payload.get('type')!r} is not an alert")
    event_id = text(payload, "id", where="event")
    created = number(payload, "created", where="event")
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        raise NotAnAlert("event.livemode is missing or not a boolean")
    obj = mapping(mapping(payload, "data", where="event"), "object", where="event.data")
    alert = mapping(obj, "alert", where="data.object")
    threshold = mapping(alert, "usage_threshold", where="alert")
    meter = threshold.get("meter")
    if isinstance(meter, dict):
        meter = text(meter, "id", where="alert.usage_threshold.meter")
    elif not isinstance(meter, str) or not meter:
        raise NotAnAlert("alert.usage_threshold.meter is missing or not an id or object")
    return checked_event(
        id=event_id,
        provider="stripe",
        type="alert.triggered",
        alert_id=text(alert, "id", where="alert"),
        alert_name=text(alert, "title", where="alert"),
        meter_id=meter,
        customer_id=text(obj, "customer", where="data.object"),
        subscription_id=None,
        threshold=_decimal(number(threshold, "gte", where="alert.usage_threshold")),
        threshold_mode="absolute",
        value=_decimal(number(obj, "value", where="data.object")),
        occurred_at=_utc(created),
        livemode=livemode,
        raw=dict(payload),
    )


def _decimal(value: int | float) -> Decimal:
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _utc(timestamp: int | float) -> datetime:
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise NotAnAlert("event timestamp is out of range") from None


class Stripe(Provider):
    """Stripe deliveries, verified with one or more webhook signing secrets (the first signs
    test deliveries; the others are accepted too, for rotation).

    ``tolerance`` is how old (in seconds) a signature may be; it must be positive, as the
    Stripe SDK takes 0 to mean "no check". ``allowed_ips`` restricts the source networks (see
    :mod:`alerthooks.sources`).
    """

    name = "stripe"
    env_hint = SECRET_ENV
    alert_types = frozenset({ALERT_EVENT_TYPE})

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        if isinstance(secrets, str):
            secrets = secrets.split(",")
        self._secrets = tuple(s.strip() for s in secrets if s and s.strip())
        if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
            raise ValueError(
                f"stripe_tolerance must be a positive number of seconds, got {tolerance!r} "
                "(the Stripe SDK takes 0 to mean no staleness check)"
            )
        self.tolerance = tolerance
        self.allowed_ips = (
            None
            if allowed_ips is None
            else parse_networks(allowed_ips, setting=f"{self.name}_allowed_ips")
        )

    @classmethod
    def from_env(cls, *, tolerance: int = DEFAULT_TOLERANCE) -> Stripe:
        """Secrets from env ``STRIPE_WEBHOOK_SECRET`` (comma-separated to rotate), the
        allowlist from ``ALERTHOOKS_STRIPE_ALLOWED_IPS``."""
        provider = cls(os.environ.get(SECRET_ENV, ""), tolerance=tolerance)
        provider.allowed_ips = networks_from_env(cls.name)
        return provider

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
        return cls([secret])

    def __repr__(self) -> str:
        return f"Stripe(secrets=<{len(self._secrets)} hidden>, tolerance={self.tolerance})"

    @property
    def configured(self) -> bool:
        """True when at least one signing secret is set."""
        return bool(self._secrets)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The accepted signing secrets."""
        return self._secrets

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

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """A ``Stripe-Signature`` header for ``body`` under the first secret, dated
        ``timestamp`` (Unix seconds, default now)."""
        if not self._secrets:
            raise ValueError(f"no Stripe signing secret: set {SECRET_ENV}")
        return {SIGNATURE_HEADER: signature_header(body, self._secrets[0], timestamp)}


StripeProvider = Stripe
"""The former name of :class:`Stripe`."""


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
    parts = [f"t={ts}"]
    for key in (secret, *extra_secrets):
        parts.append("v1=" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)
