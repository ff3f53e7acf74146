"""Billing providers as plug-ins: the :class:`Provider` base class and one module per provider
(``verify``, ``sign``, ``normalize``, ``from_env``).

Only this package (and :mod:`alerthooks.manager` and :mod:`alerthooks.testing`) knows a
provider's payloads. Everything else speaks :class:`~alerthooks.events.AlertEvent` and calls
the methods of :class:`Provider`. The field readers a normalizer uses (``text``, ``mapping``,
``number``, ``decimal``, ``timestamp``, ``clean_key``) are in :mod:`alerthooks.providers.base`.
"""

from __future__ import annotations

from alerthooks.providers.autumn import Autumn
from alerthooks.providers.base import (
    EventsAPI,
    MissingCredentials,
    NotAnAlert,
    Provider,
    Rejected,
    RemoteStatus,
    SecretProvider,
    StatusAPI,
    Subject,
    Unavailable,
    build_event,
    checked_event,
)
from alerthooks.providers.chargebee import Chargebee
from alerthooks.providers.flexprice import Flexprice
from alerthooks.providers.lago import Lago
from alerthooks.providers.metronome import Metronome
from alerthooks.providers.openmeter import OpenMeter
from alerthooks.providers.orb import Orb
from alerthooks.providers.standard_webhooks import StandardWebhooksProvider
from alerthooks.providers.stripe import Stripe

BUILTIN: tuple[type[Provider], ...] = (
    Stripe,
    Chargebee,
    Orb,
    Metronome,
    Lago,
    OpenMeter,
    Autumn,
    Flexprice,
)
"""The built-in providers, in route order: ``AlertHooks()`` builds each with ``from_env()``."""


def builtin_providers() -> list[Provider]:
    """Every built-in provider configured from its environment variables."""
    return [cls.from_env() for cls in BUILTIN]


__all__ = [
    "BUILTIN",
    "Autumn",
    "Chargebee",
    "EventsAPI",
    "Flexprice",
    "Lago",
    "Metronome",
    "MissingCredentials",
    "NotAnAlert",
    "OpenMeter",
    "Orb",
    "Provider",
    "Rejected",
    "RemoteStatus",
    "SecretProvider",
    "StandardWebhooksProvider",
    "StatusAPI",
    "Stripe",
    "Subject",
    "Unavailable",
    "build_event",
    "builtin_providers",
    "checked_event",
]
