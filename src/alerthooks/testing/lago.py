"""Lago in the test kit: its webhook samples and :func:`lago_event`, which builds any of them as a
fresh delivery (a new triggered-alert id, ``triggered_at`` now)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_samples


def lago_event(
    sample: str = "lago_alert_triggered",
    *,
    triggered_at: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Lago sample ``sample`` with a new ``triggered_alert.lago_id`` and ``triggered_at``
    now (or the given aware datetime), as Lago writes it (ISO-8601, ``Z``); ``overrides`` merge
    in recursively (e.g. ``triggered_alert={"current_value": "9000.0"}``). Lago's event id is
    the ``X-Lago-Unique-Key`` header, which :meth:`~alerthooks.providers.Lago.sign` makes."""
    payload = load_sample(sample)
    alert = payload.get("triggered_alert")
    if isinstance(alert, dict):
        alert["lago_id"] = str(uuid.uuid4())
        moment = (triggered_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
        alert["triggered_at"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "lago_alert_triggered": "``alert.triggered`` on billable-metric units, two thresholds "
    "crossed (``usage``)",
    "lago_alert_triggered_spend": "``alert.triggered`` on the current usage amount (``spend``)",
    "lago_alert_triggered_wallet": "``alert.triggered`` on a falling wallet credit balance "
    "(``credit_balance``)",
    "lago_invoice_created": "``invoice.created``: verified, acknowledged, never an alert",
}

register_samples(
    "lago", "Lago", _SAMPLES, lago_event, default="lago_alert_triggered", fixture="lago_alert"
)

__all__ = ["lago_event"]
