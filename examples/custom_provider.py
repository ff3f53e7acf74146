"""README's "Adding a provider": a billing API that signs with Standard Webhooks, in a few lines.
The base class verifies, signs, reads ACME_WEBHOOK_SECRET and dedups on the webhook-id header."""

from __future__ import annotations

from typing import Any

from alerthooks import AlertEvent
from alerthooks.providers import NotAnAlert, StandardWebhooksProvider, build_event


class Acme(StandardWebhooksProvider):
    """Acme Billing's balance alerts."""

    name = "acme"
    secret_env = env_hint = "ACME_WEBHOOK_SECRET"
    alert_types = frozenset({"balance.threshold"})

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """Read a ``balance.threshold`` event; anything else is not an alert."""
        if payload.get("type") not in self.alert_types:
            raise NotAnAlert(f"{payload.get('type')!r} is not an alert")
        data = payload.get("data")
        if not isinstance(data, dict):
            raise NotAnAlert("data is missing")
        return build_event(
            id=payload.get("id") or "",  # the receiver fills in webhook-id
            provider=self.name,
            type="alert.triggered",
            alert_id=data.get("alert_id"),
            customer_id=data.get("customer"),
            threshold=data.get("threshold"),
            value=data.get("value"),
            occurred_at=payload.get("timestamp"),
            raw=payload,
        )
