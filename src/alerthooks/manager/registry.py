"""The providers the manager knows, in one place: ``alerts.toml`` table name -> spec.

Adding a provider means a module beside :mod:`alerthooks.manager.stripe` (its table, its
credentials, its API client and a :class:`~alerthooks.manager.spec.ProviderSpec`) and one line
below; a provider outside this package calls :func:`register`.
"""

from __future__ import annotations

from typing import Any

from alerthooks.manager import chargebee, lago, metronome, openmeter, orb, stripe
from alerthooks.manager.spec import ProviderSpec

#: Every registered provider by name, in the order plans list them.
PROVIDERS: dict[str, ProviderSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        stripe.SPEC,
        chargebee.SPEC,
        orb.SPEC,
        metronome.SPEC,
        lago.SPEC,
        openmeter.SPEC,
    )
}


def register(spec: ProviderSpec[Any, Any]) -> None:
    """Add a provider (or replace the one of the same name)."""
    PROVIDERS[spec.name] = spec


def provider_spec(name: str) -> ProviderSpec[Any, Any]:
    """The registered provider ``name``; raises ``KeyError`` naming the known ones."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None
