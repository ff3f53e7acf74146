"""Flexprice in the test kit: its webhook samples and :func:`flexprice_event`, which builds any of
them as a fresh delivery (``triggered_at`` now where the payload has one)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_samples


def flexprice_event(
    sample: str = "flexprice_subscription_spend_threshold_reached",
    *,
    triggered_at: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Flexprice sample ``sample`` with ``triggered_at`` now (or the given aware datetime)
    where it has one; ``overrides`` merge in recursively (e.g. ``current_spend="1500"``)."""
    payload = load_sample(sample)
    if "triggered_at" in payload:
        moment = (triggered_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        payload["triggered_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "flexprice_subscription_spend_threshold_reached": "``subscription.spend.threshold_reached``",
    "flexprice_subscription_spend_threshold_recovered": "``subscription.spend."
    "threshold_recovered`` (``alert.cleared``)",
    "flexprice_wallet_credit_balance_dropped": "``wallet.credit_balance.dropped``",
    "flexprice_wallet_ongoing_balance_recovered": "``wallet.ongoing_balance.recovered`` "
    "(``alert.cleared``)",
    "flexprice_feature_wallet_balance_alert": "``feature.wallet_balance.alert``",
    "flexprice_entitlement_grant_exhausted": "``entitlement.grant.exhausted``",
    "flexprice_wallet_ongoing_balance_updated": "``wallet.ongoing_balance.updated``: verified, "
    "acknowledged, never an alert",
}

register_samples(
    "flexprice",
    "Flexprice",
    _SAMPLES,
    flexprice_event,
    default="flexprice_subscription_spend_threshold_reached",
    fixture="flexprice_alert",
)

__all__ = ["flexprice_event"]
