"""pytest plugin, registered through the ``pytest11`` entry point: fixtures users take by name.

- ``alerthooks_client(app, **options)`` opens a :class:`~alerthooks.testing.SyncAlertHooksClient`
  over ``app`` (an ``AlertHooks`` or an app mounting one), closed when the test ends.
- ``stripe_alert``, ``chargebee_alert`` and ``chargebee_alert_cleared`` are fresh payloads
  (``billing.alert.triggered``, ``alert_status_changed`` in and out of alarm), each with a new
  event id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from alerthooks.testing.builders import chargebee_alert_status_changed, stripe_alert_triggered
from alerthooks.testing.client import SyncAlertHooksClient


@pytest.fixture
def alerthooks_client() -> Iterator[Callable[..., SyncAlertHooksClient]]:
    """A factory: ``client = alerthooks_client(app)`` opens a client over ``app`` with its
    lifespan running; ``client.send_stripe(payload)`` and ``client.send_chargebee(payload)``
    deliver signed and return the response (in queued mode once the worker is idle). Takes
    the options of :class:`~alerthooks.testing.AlertHooksClient` (``hooks=``, ``prefix=``, …).
    """
    opened: list[SyncAlertHooksClient] = []

    def open_client(app: Any, **options: Any) -> SyncAlertHooksClient:
        client = SyncAlertHooksClient(app, **options)
        opened.append(client)
        return client.__enter__()

    try:
        yield open_client
    finally:
        for client in reversed(opened):
            client.close()


@pytest.fixture
def stripe_alert() -> dict[str, Any]:
    """A fresh Stripe ``billing.alert.triggered`` event (see ``stripe_alert_triggered``)."""
    return stripe_alert_triggered()


@pytest.fixture
def chargebee_alert() -> dict[str, Any]:
    """A fresh Chargebee ``alert_status_changed`` event, ``in_alarm`` (``alert.triggered``)."""
    return chargebee_alert_status_changed("in_alarm")


@pytest.fixture
def chargebee_alert_cleared() -> dict[str, Any]:
    """A fresh Chargebee ``alert_status_changed`` event, ``within_limit`` (``alert.cleared``)."""
    return chargebee_alert_status_changed("within_limit")
