"""Sign deliveries the way the providers do. Each provider's :meth:`~alerthooks.providers.
Provider.sign` does it for configured credentials; these helpers take the credentials as
arguments."""

from __future__ import annotations

from alerthooks.providers.chargebee import basic_auth_header
from alerthooks.providers.stripe import signature_header as stripe_signature_header


def chargebee_auth_headers(user: str, password: str) -> dict[str, str]:
    """``Authorization: Basic …`` for Chargebee's webhook Basic auth (RFC 7617)."""
    return {"Authorization": basic_auth_header(user, password)}


__all__ = ["chargebee_auth_headers", "stripe_signature_header"]
