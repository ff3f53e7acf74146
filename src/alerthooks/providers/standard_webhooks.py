"""The Standard Webhooks scheme (standardwebhooks.com), which Svix-delivered providers use.

A delivery carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (Svix sends
the same as ``svix-id``, ``svix-timestamp``, ``svix-signature``); the signature list holds
space-separated ``v1,<base64>`` entries, each an HMAC-SHA256 of ``{id}.{timestamp}.{body}`` keyed
by the base64 after the secret's ``whsec_`` prefix. This is what the reference library checks
(``libraries/python/standardwebhooks/webhooks.py`` in standard-webhooks/standard-webhooks),
and its test vectors pass here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerthooks.providers.base import DEFAULT_TOLERANCE, SecretProvider, clean_key
from alerthooks.providers.signing import (
    standard_headers,
    standard_key,
    standard_values,
    verify_standard,
)
from alerthooks.sources import Networks


class StandardWebhooksProvider(SecretProvider):
    """A provider that signs with the Standard Webhooks scheme: subclass it, set :attr:`name`,
    :attr:`secret_env` and :attr:`alert_types`, and write :meth:`normalize`.

    ``secrets`` are ``whsec_…`` strings (the prefix is optional; a list, or one comma-separated
    string, to rotate). ``tolerance`` is how far (in seconds, either way) ``webhook-timestamp``
    may be from now. The ``webhook-id`` header is the delivery's idempotency key: it is the
    event id wherever the payload has no ``id`` of its own, so :meth:`normalize` may leave
    :attr:`AlertEvent.id` empty and the receiver fills it in. A secret that is not base64 is a
    ``ValueError`` naming the provider.
    """

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        super().__init__(secrets, tolerance=tolerance, allowed_ips=allowed_ips)
        try:
            self._keys = tuple(standard_key(secret) for secret in self.secrets)
        except ValueError as exc:
            raise ValueError(f"{self.name or type(self).__name__} webhook secret: {exc}") from None

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`~alerthooks.providers.Rejected` (400) unless a ``v1`` signature
        matches a configured secret and the timestamp is within the tolerance."""
        msg_id, timestamp, signatures = standard_values(headers)
        verify_standard(body, msg_id, timestamp, signatures, self._keys, tolerance=self.tolerance)

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """The ``webhook-id`` (or ``svix-id``) header."""
        return clean_key(standard_values(headers)[0])

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The payload's own ``id`` where it has one; else None, and the receiver uses
        :meth:`delivery_id`."""
        return clean_key(payload.get("id"))

    def sign(
        self, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        """The three ``webhook-*`` headers for ``body`` under the first secret: a fresh
        ``webhook-id`` on every call unless ``msg_id`` is given (the same id again is a
        redelivery), dated ``timestamp`` (Unix seconds, default now)."""
        if not self._keys:
            raise ValueError(f"no {self.name} webhook secret: set {self.secret_env}")
        return standard_headers(body, self._keys[0], msg_id=msg_id, timestamp=timestamp)
