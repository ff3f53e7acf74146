"""Metronome in the test kit: its webhook samples and :func:`metronome_event`, which builds any
of them as a fresh delivery (a new event id, the alert's ``timestamp`` now)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from functools import partial
from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_sample


def metronome_event(
    sample: str = "metronome_usage_threshold_reached",
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The Metronome sample ``sample`` with a new event id (a UUID, or ``id``) and, for alerts,
    ``properties.timestamp`` now (or the given aware datetime) as Metronome writes it
    (``2024-10-07T17:15:45.789Z``); ``overrides`` merge in recursively."""
    payload = load_sample(sample)
    payload["id"] = id or str(uuid.uuid4())
    properties = payload.get("properties")
    if isinstance(properties, dict) and "timestamp" in properties:
        moment = (timestamp or datetime.now(timezone.utc)).astimezone(timezone.utc)
        properties["timestamp"] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "metronome_usage_threshold_reached": "``alerts.usage_threshold_reached`` (``alert.triggered``)",
    "metronome_usage_threshold_resolved": "``alerts.usage_threshold_resolved`` (``alert.cleared``)",
    "metronome_spend_threshold_reached": "``alerts.spend_threshold_reached``",
    "metronome_low_remaining_credit_balance_reached": "``alerts.low_remaining_credit_balance_"
    "reached``",
    "metronome_invoice_finalized": "``invoice.finalized``: verified, acknowledged, never an alert",
}


def _register() -> None:
    for name, what in _SAMPLES.items():
        default = name == "metronome_usage_threshold_reached"
        register_sample(
            name,
            provider="metronome",
            file=f"{name}.json",
            build=partial(metronome_event, name),
            doc=f"A fresh Metronome {what} event.",
            default=default,
            fixture="metronome_alert" if default else None,
        )


_register()

__all__ = ["metronome_event"]
