"""Orb in the test kit: its webhook samples and :func:`orb_event`, which builds any of them as
a fresh delivery (a new event id, ``created_at`` now)."""

from __future__ import annotations

import secrets
import string
from datetime import datetime, timezone
from functools import partial
from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_sample

_ID_ALPHABET = string.ascii_letters + string.digits


def _event_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def orb_event(
    sample: str = "orb_subscription_usage_exceeded",
    *,
    id: str | None = None,
    created_at: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Orb sample ``sample`` with a new event id (or ``id``) and ``created_at`` now (or the
    given aware datetime), as Orb writes it (ISO-8601 with ``+00:00``); ``overrides`` merge in
    recursively (e.g. ``properties={"evaluated_quantity": 2000}``)."""
    payload = load_sample(sample)
    payload["id"] = id or _event_id()
    moment = created_at or datetime.now(timezone.utc)
    payload["created_at"] = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "orb_subscription_usage_exceeded": "``subscription.usage_exceeded`` (``alert.triggered``)",
    "orb_subscription_cost_exceeded": "``subscription.cost_exceeded`` (``alert.triggered``)",
    "orb_customer_credit_balance_dropped": "``customer.credit_balance_dropped``",
    "orb_customer_credit_balance_depleted": "``customer.credit_balance_depleted``",
    "orb_customer_credit_balance_recovered": "``customer.credit_balance_recovered`` "
    "(``alert.cleared``)",
    "orb_customer_created": "``customer.created``: verified, acknowledged, never an alert",
}


def _register() -> None:
    for name, what in _SAMPLES.items():
        default = name == "orb_subscription_usage_exceeded"
        register_sample(
            name,
            provider="orb",
            file=f"{name}.json",
            build=partial(orb_event, name),
            doc=f"A fresh Orb {what} event.",
            default=default,
            fixture="orb_alert" if default else None,
        )


_register()

__all__ = ["orb_event"]
