"""The deprecated provider keywords of ``AlertHooks(...)`` (``stripe_secret=``, ``chargebee_auth=``,
…), turned into the providers they describe, each with a ``DeprecationWarning`` naming what to
write instead: ``AlertHooks(providers=[Stripe(...), Chargebee(...)])``.

Only this module knows them; the facade hands it whatever keywords it was given.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

from alerthooks.providers.base import Provider
from alerthooks.sources import Networks, networks_from_env


class ProviderKeywords(TypedDict, total=False):
    """The deprecated keyword arguments of ``AlertHooks(...)``, by the provider they build."""

    stripe_secret: str | Sequence[str] | None
    stripe_tolerance: int | None
    stripe_allowed_ips: Networks | None
    chargebee_auth: tuple[str, str] | Sequence[tuple[str, str]] | None
    chargebee_allow_unauthenticated: bool | None
    chargebee_verify: Literal["auth", "fetch"] | None
    chargebee_site: str | None
    chargebee_api_key: str | None
    chargebee_allowed_ips: Networks | None


KEYWORDS: frozenset[str] = frozenset(ProviderKeywords.__annotations__)

# Each provider's keywords -> the argument of its constructor they stand for.
_STRIPE = {"stripe_secret": "secrets", "stripe_tolerance": "tolerance"}
_CHARGEBEE = {
    "chargebee_auth": "auth",
    "chargebee_allow_unauthenticated": "allow_unauthenticated",
    "chargebee_verify": "verify",
    "chargebee_site": "site",
    "chargebee_api_key": "api_key",
}


def _deprecated(cls: str, given: Iterable[str], arguments: Mapping[str, str]) -> None:
    keywords = sorted(given)
    replacement = ", ".join(
        arguments.get(k, k.split("_", 1)[1]) + "=..." for k in keywords if k in arguments
    )
    if any(k.endswith("_allowed_ips") for k in keywords):
        replacement = ", ".join(filter(None, [replacement, "allowed_ips=..."]))
    warnings.warn(
        f"AlertHooks({', '.join(f'{k}=...' for k in keywords)}) is deprecated; pass "
        f"providers=[{cls}({replacement})] instead (from alerthooks.providers import {cls})",
        DeprecationWarning,
        # The user's AlertHooks(...) call, four frames up: this function <- keyword_providers <-
        # with_keyword_providers <- AlertHooks.__init__ <- it.
        stacklevel=5,
    )


def keyword_providers(options: Mapping[str, Any]) -> list[Provider]:
    """The built-in providers that the deprecated keywords in ``options`` describe, built as
    they always were (a credential or allowlist left as None is read from the environment), one
    ``DeprecationWarning`` per provider. ``TypeError`` for a keyword that is none of them."""
    unknown = sorted(set(options) - KEYWORDS)
    if unknown:
        raise TypeError(f"AlertHooks() got an unexpected keyword argument {unknown[0]!r}")
    given = {k for k, v in options.items() if v is not None}
    built: list[Provider] = []
    if any(k.startswith("stripe_") for k in given):
        _deprecated("Stripe", (k for k in given if k.startswith("stripe_")), _STRIPE)
        built.append(_stripe(options))
    if any(k.startswith("chargebee_") for k in given):
        _deprecated("Chargebee", (k for k in given if k.startswith("chargebee_")), _CHARGEBEE)
        built.append(_chargebee(options))
    return built


def _stripe(options: Mapping[str, Any]) -> Provider:
    from alerthooks.providers.stripe import DEFAULT_TOLERANCE, SECRET_ENV, Stripe

    secret = options.get("stripe_secret")
    tolerance = options.get("stripe_tolerance")
    allowed_ips = options.get("stripe_allowed_ips")
    stripe = Stripe(
        os.environ.get(SECRET_ENV, "") if secret is None else secret,
        tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance,
        allowed_ips=allowed_ips,
    )
    if allowed_ips is None:
        stripe.allowed_ips = networks_from_env(stripe.name)
    return stripe


def _chargebee(options: Mapping[str, Any]) -> Provider:
    from alerthooks.providers.chargebee import PASSWORD_ENV, USERNAME_ENV, Chargebee

    auth = options.get("chargebee_auth")
    if auth is None:
        user, password = os.environ.get(USERNAME_ENV, ""), os.environ.get(PASSWORD_ENV, "")
        auth = [(user, password)] if user or password else []
    allowed_ips = options.get("chargebee_allowed_ips")
    chargebee = Chargebee(
        auth,
        allow_unauthenticated=bool(options.get("chargebee_allow_unauthenticated")),
        verify=options.get("chargebee_verify") or "auth",
        site=options.get("chargebee_site"),
        api_key=options.get("chargebee_api_key"),
        allowed_ips=allowed_ips,
    )
    if allowed_ips is None:
        chargebee.allowed_ips = networks_from_env(chargebee.name)
    return chargebee


def with_keyword_providers(
    given: Iterable[Provider] | None, keywords: Mapping[str, Any]
) -> list[Provider]:
    """The providers ``AlertHooks(providers=given, **keywords)`` serves: ``given`` (default:
    every built-in provider from its environment) with those the deprecated ``keywords`` build
    (by default in place of the built-in one of the same name). ``ValueError`` when a provider
    is given both in ``given`` and by keywords."""
    from alerthooks.providers import builtin_providers

    built = keyword_providers(keywords) if keywords else []
    if given is None:
        by_keyword = {p.name for p in built}
        return [*built, *(p for p in builtin_providers() if p.name not in by_keyword)]
    chosen = list(given)
    names = {getattr(p, "name", None) for p in chosen}
    for provider in built:
        if provider.name in names:
            raise ValueError(
                f"provider {provider.name!r} is given both in providers= and by "
                f"{provider.name}_* keyword arguments; give it one way"
            )
    return [*chosen, *built]
