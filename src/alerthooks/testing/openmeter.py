"""OpenMeter in the test kit: its notification samples and :func:`openmeter_event`, which builds
any of them as a fresh delivery (a new event id, ``timestamp`` now)."""

from __future__ import annotations

import secrets
from datetime import datetime, timezone
from typing import Any

from alerthooks.testing.samples import load_sample, merge_overrides, register_samples

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(moment: datetime | None = None) -> str:
    """A ULID (OpenMeter's ids): 48 bits of milliseconds, 80 random bits, Crockford base32."""
    millis = int((moment or datetime.now(timezone.utc)).timestamp() * 1000)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def rfc3339(moment: datetime) -> str:
    """``moment`` as OpenMeter writes times: UTC, milliseconds, ``Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z"


def openmeter_event(
    sample: str = "openmeter_balance_threshold",
    *,
    id: str | None = None,
    timestamp: datetime | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """The OpenMeter sample ``sample`` with a new event id (or ``id``) and ``timestamp`` now (or
    the given aware datetime); ``overrides`` merge in recursively (e.g.
    ``data={"threshold": {"value": 90}}``)."""
    moment = timestamp or datetime.now(timezone.utc)
    payload = load_sample(sample)
    payload["id"] = id or ulid(moment)
    payload["timestamp"] = rfc3339(moment)
    return merge_overrides(payload, overrides)


_SAMPLES = {
    "openmeter_balance_threshold": "``entitlements.balance.threshold`` at 80 % usage "
    "(``alert.triggered``)",
    "openmeter_balance_threshold_balance_value": "``entitlements.balance.threshold`` on the "
    "remaining balance (``credit_balance``)",
    "openmeter_entitlements_reset": "``entitlements.reset`` (``alert.cleared``)",
    "openmeter_invoice_created": "``invoice.created``: verified, acknowledged, never an alert",
}

register_samples(
    "openmeter",
    "OpenMeter",
    _SAMPLES,
    openmeter_event,
    default="openmeter_balance_threshold",
    fixture="openmeter_alert",
)

__all__ = ["openmeter_event", "ulid"]
