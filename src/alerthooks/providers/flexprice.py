"""Flexprice: wallet, spend and entitlement alerts, delivered by Svix (Standard Webhooks) on
Flexprice Cloud and unsigned by a self-hosted instance's native sender.

Followed: flexprice/flexprice at e4b5303 (2026-08-22). ``internal/types/webhook.go`` (the event
names), ``internal/webhook/dto/alert.go`` and ``dto/wallet.go`` (the payloads),
``internal/webhook/payload/alert.go`` (which payload each alert gets),
``internal/types/alert.go`` (alert types, states ``ok``/``info``/``warning``/``in_alarm`` and the
``critical``/``warning``/``info`` thresholds of ``alert_settings``),
``internal/svix/client.go`` (Svix delivery adds ``event_type`` to the payload) and
``internal/webhook/handler/handler.go`` (native delivery POSTs the payload as built, unsigned:
the spend and entitlement payloads then carry no ``event_type``, which is read from their
``alert_type`` and ``alert_status``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from alerthooks.events import AlertEvent, EventType
from alerthooks.providers.base import (
    DEFAULT_TOLERANCE,
    NotAnAlert,
    build_event,
    clean_key,
    iso_timestamp,
    lenient_decimal,
    mapping,
    text,
)
from alerthooks.providers.signing import STANDARD_HEADERS, SVIX_HEADERS
from alerthooks.providers.standard_webhooks import StandardWebhooksProvider
from alerthooks.sources import Networks

SECRET_ENV = "FLEXPRICE_WEBHOOK_SECRET"

WALLET_TYPES: dict[str, tuple[EventType, str]] = {
    "wallet.credit_balance.dropped": ("alert.triggered", "credit_balance"),
    "wallet.credit_balance.recovered": ("alert.cleared", "credit_balance"),
    "wallet.ongoing_balance.dropped": ("alert.triggered", "current_balance"),
    "wallet.ongoing_balance.recovered": ("alert.cleared", "current_balance"),
}
"""Wallet alerts: the event and which balance of the alert it watches."""
FEATURE_ALERT = "feature.wallet_balance.alert"
GRANT_EXHAUSTED = "entitlement.grant.exhausted"
_CHANGES: tuple[tuple[str, EventType], ...] = (
    ("reached", "alert.triggered"),
    ("recovered", "alert.cleared"),
)
SPEND_TYPES: dict[str, EventType] = {
    f"subscription.{scope}.threshold_{change}": event
    for scope in ("spend", "line_item_spend", "group_spend")
    for change, event in _CHANGES
}
ALERT_EVENT_TYPES = frozenset({*WALLET_TYPES, FEATURE_ALERT, GRANT_EXHAUSTED, *SPEND_TYPES})

_SPEND_SCOPES = {
    "subscription_spend": "spend",
    "subscription_line_item_spend": "line_item_spend",
    "subscription_group_spend": "group_spend",
}
_GRANT_ALERTS = frozenset({"entitlement_grant_exhausted", "entitlement_grant_threshold"})
# The alert_settings threshold an alert state was measured against.
_LEVELS = {"in_alarm": "critical", "warning": "warning", "info": "info", "ok": "critical"}


def event_type(payload: Mapping[str, Any]) -> str | None:
    """The Flexprice event name: ``event_type`` where the payload has it (Svix delivery, wallet
    and feature alerts), else read from a spend or entitlement alert's ``alert_type`` and
    ``alert_status``."""
    given = payload.get("event_type")
    if given is not None:
        return clean_key(given)
    alert_type, status = payload.get("alert_type"), payload.get("alert_status")
    if not isinstance(alert_type, str):
        return None
    if alert_type in _SPEND_SCOPES:
        change = "recovered" if status == "ok" else "reached"
        return f"subscription.{_SPEND_SCOPES[alert_type]}.threshold_{change}"
    if alert_type in _GRANT_ALERTS:
        return GRANT_EXHAUSTED
    return None


def _threshold(alert: Mapping[str, Any], where: str) -> Decimal | None:
    settings = alert.get("alert_settings")
    if not isinstance(settings, dict):
        return None
    level = settings.get(_LEVELS.get(str(alert.get("state")), "critical"))
    if not isinstance(level, dict):
        return None
    return lenient_decimal(level, "threshold", where=f"{where}.alert_settings")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def normalize(payload: dict[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from one of Flexprice's alert webhooks.

    Dropped balances and reached spend thresholds are ``alert.triggered``, recovered ones
    ``alert.cleared``; ``feature.wallet_balance.alert`` is either, by its ``alert_status``;
    ``entitlement.grant.exhausted`` is triggered. Wallet and feature alerts carry no time:
    ``occurred_at`` is when the delivery is read.
    """
    name = event_type(payload)
    if name is None or name not in ALERT_EVENT_TYPES:
        raise NotAnAlert(f"event type {name!r} is not an alert")
    fields: dict[str, Any] = {
        "id": "",  # webhook-id, or the content's digest for unsigned delivery
        "provider": "flexprice",
        "livemode": None,
        "raw": payload,
        "alert_name": None,
        "meter_id": None,
        "subscription_id": None,
        "threshold_mode": None,
        "threshold": None,
        "currency": None,
    }
    if name in WALLET_TYPES:
        kind_event, balance = WALLET_TYPES[name]
        wallet = mapping(payload, "wallet", where="event")
        alert = mapping(payload, "alert", where="event")
        wallet_id = text(wallet, "id", where="wallet")
        alert_type = text(alert, "alert_type", where="alert", required=False) or (
            "low_credit_balance" if balance == "credit_balance" else "low_ongoing_balance"
        )
        customer_id = text(wallet, "customer_id", where="wallet", required=False)
        fields.update(
            type=kind_event,
            alert_id=f"{wallet_id}:{alert_type}",
            customer_id=customer_id,
            threshold=_threshold(alert, "alert"),
            value=lenient_decimal(alert, balance, where="alert"),
            currency=text(wallet, "currency", where="wallet", required=False),
            alert_type=alert_type,
            occurred_at=_now(),
        )
        kind = "credit_balance"
    elif name == FEATURE_ALERT:
        feature_id = text(payload, "feature_id", where="event")
        wallet_id = text(payload, "wallet_id", where="event")
        customer_id = text(payload, "customer_id", where="event", required=False)
        status = text(payload, "alert_status", where="event")
        fields.update(
            type="alert.cleared" if status == "ok" else "alert.triggered",
            alert_id=f"{wallet_id}:{feature_id}",
            meter_id=feature_id,
            customer_id=customer_id,
            value=lenient_decimal(payload, "current_balance", where="event"),
            alert_type=text(payload, "alert_type", where="event", required=False),
            occurred_at=_now(),
        )
        kind = "credit_balance"
    elif name == GRANT_EXHAUSTED:
        triggered_at = iso_timestamp(payload, "triggered_at", where="event")
        customer_id = text(payload, "customer_id", where="event", required=False)
        fields.update(
            type="alert.triggered",
            alert_id=text(payload, "entitlement_grant_id", where="event"),
            customer_id=customer_id,
            subscription_id=text(payload, "subscription_id", where="event", required=False),
            value=lenient_decimal(payload, "usage_ratio", where="event"),
            alert_type=text(payload, "alert_type", where="event", required=False),
            occurred_at=triggered_at,
            triggered_at=triggered_at,
        )
        kind = "usage"
    else:
        subscription = mapping(payload, "subscription", where="event")
        subscription_id = text(subscription, "id", where="subscription")
        scope = (
            text(payload, "subscription_line_item_id", where="event", required=False)
            or text(payload, "group_id", where="event", required=False)
            or subscription_id
        )
        alert_type = text(payload, "alert_type", where="event", required=False) or name
        threshold = lenient_decimal(payload, "threshold", where="event")
        triggered_at = iso_timestamp(payload, "triggered_at", where="event")
        customer_id = text(subscription, "customer_id", where="subscription", required=False)
        fields.update(
            type=SPEND_TYPES[name],
            alert_id=f"{scope}:{alert_type}",
            customer_id=customer_id,
            subscription_id=subscription_id,
            threshold=threshold,
            value=lenient_decimal(payload, "current_spend", where="event"),
            currency=text(subscription, "currency", where="subscription", required=False),
            alert_type=alert_type,
            occurred_at=triggered_at,
            triggered_at=triggered_at,
        )
        kind = "spend"
    if fields["threshold"] is not None:
        fields["threshold_mode"] = "absolute"
    fields.update(kind=kind, external_customer_id=None)
    return build_event(**fields)


class Flexprice(StandardWebhooksProvider):
    """Flexprice's webhooks: on Flexprice Cloud delivered by Svix and verified with the
    endpoint's ``whsec_…`` secrets (env ``FLEXPRICE_WEBHOOK_SECRET``, comma-separated to
    rotate).

    A self-hosted Flexprice sends its webhooks unsigned. They are refused (503, as any provider
    without credentials) unless ``allow_unauthenticated=True`` says to accept them, which only
    applies while no secret is set; restrict the sources with ``allowed_ips`` then. An unsigned
    delivery has no ``webhook-id``: the event id is the digest of its content, so a redelivery
    of the same payload is a duplicate.
    """

    name = "flexprice"
    env_hint = secret_env = SECRET_ENV
    alert_types = ALERT_EVENT_TYPES

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        allow_unauthenticated: bool = False,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        super().__init__(secrets, tolerance=tolerance, allowed_ips=allowed_ips)
        self.allow_unauthenticated = allow_unauthenticated

    @classmethod
    def from_env(  # type: ignore[override]
        cls, *, allow_unauthenticated: bool = False, tolerance: int = DEFAULT_TOLERANCE
    ) -> Flexprice:
        """Secrets from env ``FLEXPRICE_WEBHOOK_SECRET``; the allowlist from
        ``ALERTHOOKS_FLEXPRICE_ALLOWED_IPS``."""
        provider = super().from_env(tolerance=tolerance)
        provider.allow_unauthenticated = allow_unauthenticated
        return provider

    def __repr__(self) -> str:
        return (
            f"Flexprice(secrets=<{len(self.secrets)} hidden>, tolerance={self.tolerance}, "
            f"allow_unauthenticated={self.allow_unauthenticated})"
        )

    @property
    def unsigned(self) -> bool:
        """Whether deliveries are accepted without a signature (opted in, no secret set)."""
        return self.allow_unauthenticated and not self.secrets

    @property
    def configured(self) -> bool:
        """True when a secret is set or unsigned delivery was opted into."""
        return bool(self.secrets) or self.allow_unauthenticated

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Check the Standard Webhooks signature; accept anything when :attr:`unsigned`."""
        if self.unsigned:
            return
        super().verify(body, headers)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """None for signed delivery (``webhook-id`` is the key); for unsigned delivery the
        digest of the payload's content, ``fx_…``."""
        if not self.unsigned:
            return None
        try:
            canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
        except (RecursionError, ValueError):  # nested deeper than the encoder goes
            return None
        return "fx_" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:40]

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """The ``webhook-id`` (or ``svix-id``) header, when one is sent."""
        if not any(n in headers for n in (*STANDARD_HEADERS, *SVIX_HEADERS)):
            return None
        return super().delivery_id(headers)

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """See :func:`event_type`."""
        return event_type(payload)

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)


__all__ = ["Flexprice", "event_type", "normalize"]
