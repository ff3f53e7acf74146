"""Test kit: realistic payload builders, provider signing, and helpers to deliver events to an
:class:`~alerthooks.AlertHooks` without the providers."""

from alerthooks.testing.builders import (
    chargebee_alert_status_changed,
    chargebee_subscription_created,
    load_sample,
    sample_names,
    stripe_alert_triggered,
    stripe_customer_created,
)
from alerthooks.testing.signing import chargebee_auth_headers, stripe_signature_header

__all__ = [
    "chargebee_alert_status_changed",
    "chargebee_auth_headers",
    "chargebee_subscription_created",
    "load_sample",
    "sample_names",
    "stripe_alert_triggered",
    "stripe_customer_created",
    "stripe_signature_header",
]
