"""Test kit: realistic payload builders, provider signing, and clients that deliver signed
events to an :class:`~alerthooks.AlertHooks` (or an app mounting one) without the providers."""

from alerthooks.testing.builders import (
    build_sample,
    chargebee_alert_status_changed,
    chargebee_subscription_created,
    default_sample,
    load_sample,
    sample_names,
    stripe_alert_triggered,
    stripe_customer_created,
)
from alerthooks.testing.client import AlertHooksClient, SyncAlertHooksClient, find_hooks
from alerthooks.testing.fakes import FakeChargebee, FakeStripe, Fault
from alerthooks.testing.signing import chargebee_auth_headers, stripe_signature_header

__all__ = [
    "AlertHooksClient",
    "FakeChargebee",
    "FakeStripe",
    "Fault",
    "SyncAlertHooksClient",
    "build_sample",
    "chargebee_alert_status_changed",
    "chargebee_auth_headers",
    "chargebee_subscription_created",
    "default_sample",
    "find_hooks",
    "load_sample",
    "sample_names",
    "stripe_alert_triggered",
    "stripe_customer_created",
    "stripe_signature_header",
]
