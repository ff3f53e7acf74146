"""Autumn in the test kit: its webhook samples and :func:`autumn_event`. Autumn's payloads carry
no id and no time (``webhook-id`` is the event id), so a fresh delivery is the sample as stored."""

from __future__ import annotations

from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_samples


def autumn_event(sample: str = "autumn_usage_alert_triggered", **overrides: Any) -> dict[str, Any]:
    """The Autumn sample ``sample``; ``overrides`` merge in recursively (e.g.
    ``data={"usage_alert": {"threshold": 90}}``)."""
    return merge_overrides(load_sample(sample), overrides)


_SAMPLES = {
    "autumn_usage_alert_triggered": "``balances.usage_alert_triggered`` at 80 % of the allowance",
    "autumn_usage_alert_remaining": "``balances.usage_alert_triggered`` on the remaining "
    "balance (``credit_balance``)",
    "autumn_limit_reached": "``balances.limit_reached`` (included allowance used up)",
    "autumn_customer_threshold_reached": "``customer.threshold_reached`` (API before 2.1)",
    "autumn_customer_products_updated": "``customer.products.updated``: verified, "
    "acknowledged, never an alert",
}

register_samples(
    "autumn",
    "Autumn",
    _SAMPLES,
    autumn_event,
    default="autumn_usage_alert_triggered",
    fixture="autumn_alert",
)

__all__ = ["autumn_event"]
