"""pytest plugin, registered through the ``pytest11`` entry point: fixtures users take by name.

- ``alerthooks_client(app, **options)`` opens a :class:`~alerthooks.testing.SyncAlertHooksClient`
  over ``app`` (an ``AlertHooks`` or an app mounting one), closed when the test ends.
- ``alerthooks_sample(name)`` builds any registered sample as a fresh delivery
  (:func:`~alerthooks.testing.build_sample`).
- One fixture per sample that names one in the registry: ``stripe_alert``,
  ``chargebee_alert`` and ``chargebee_alert_cleared`` (``billing.alert.triggered``,
  ``alert_status_changed`` in and out of alarm), ``orb_alert``
  (``subscription.usage_exceeded``), ``metronome_alert``
  (``alerts.usage_threshold_reached``), ``lago_alert``, ``openmeter_alert``, ``autumn_alert`` and
  ``flexprice_alert`` for the built-in providers, each a fresh payload with a
  new event id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from alerthooks.testing.client import SyncAlertHooksClient
from alerthooks.testing.samples import Builder, build_sample, samples


@pytest.fixture
def alerthooks_client() -> Iterator[Callable[..., SyncAlertHooksClient]]:
    """A factory: ``client = alerthooks_client(app)`` opens a client over ``app`` with its
    lifespan running; ``client.deliver(provider, payload)`` (and ``client.send_stripe``,
    ``client.send_chargebee``) deliver signed and return the response (in queued mode once the
    worker is idle). Takes the options of :class:`~alerthooks.testing.AlertHooksClient`
    (``hooks=``, ``prefix=``, …).
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
def alerthooks_sample() -> Callable[[str], dict[str, Any]]:
    """A factory: ``alerthooks_sample("stripe_alert_triggered")`` is that sample as a fresh
    delivery (any name of ``alerthooks.testing.sample_names()``)."""
    return build_sample


def _sample_fixture(name: str, build: Builder, doc: str) -> Any:
    def fixture() -> dict[str, Any]:
        return build()

    fixture.__name__ = fixture.__qualname__ = name
    fixture.__doc__ = doc
    return pytest.fixture(name=name)(fixture)


def _add_sample_fixtures(namespace: dict[str, Any]) -> None:
    """Define the fixture each registered sample names, in this module (where pytest finds a
    plugin's fixtures)."""
    for sample in samples():
        if sample.fixture is not None:
            namespace[sample.fixture] = _sample_fixture(sample.fixture, sample.build, sample.doc)


_add_sample_fixtures(globals())
