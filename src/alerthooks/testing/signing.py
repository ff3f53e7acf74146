"""Sign deliveries the way the providers do."""

from __future__ import annotations

import hashlib
import hmac
import time
from base64 import b64encode


def stripe_signature_header(
    body: bytes | str,
    secret: str,
    timestamp: int | None = None,
    *,
    extra_secrets: tuple[str, ...] = (),
) -> str:
    """A ``Stripe-Signature`` value for ``body``: ``t=…,v1=…`` (one ``v1`` per secret).

    Computed as Stripe does: HMAC-SHA256 over ``"{timestamp}.{body}"`` keyed by the secret.
    """
    raw = body.encode() if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else timestamp
    signed = str(ts).encode() + b"." + raw
    parts = [f"t={ts}"]
    for key in (secret, *extra_secrets):
        parts.append("v1=" + hmac.new(key.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


def chargebee_auth_headers(user: str, password: str) -> dict[str, str]:
    """``Authorization: Basic …`` for Chargebee's webhook Basic auth (RFC 7617)."""
    token = b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}
