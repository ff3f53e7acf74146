"""Realistic provider payloads built from the samples in ``fixtures/``.

Every builder returns a fresh dict with a new event id unless one is given. The builders live
beside their provider (:mod:`alerthooks.testing.stripe`, :mod:`alerthooks.testing.chargebee`);
the registry of named samples is :mod:`alerthooks.testing.samples`. This module gathers both.
"""

from __future__ import annotations

from alerthooks.testing.chargebee import (
    chargebee_alert_status_changed,
    chargebee_subscription_created,
)
from alerthooks.testing.samples import (
    build_sample,
    default_sample,
    load_sample,
    merge_overrides,
    register_sample,
    sample_names,
)
from alerthooks.testing.stripe import stripe_alert_triggered, stripe_customer_created

__all__ = [
    "build_sample",
    "chargebee_alert_status_changed",
    "chargebee_subscription_created",
    "default_sample",
    "load_sample",
    "merge_overrides",
    "register_sample",
    "sample_names",
    "stripe_alert_triggered",
    "stripe_customer_created",
]
