"""HMAC-SHA256 signing, written once for every provider that signs with a shared secret.

Each scheme is a message built from the body and a few header values (Stripe:
``{t}.{body}``; Orb: ``v1:{timestamp}:{body}``; Metronome: ``{date}\\n{body}``; Standard
Webhooks: ``{id}.{timestamp}.{body}``), a digest written as hex or base64, and a date that must be
within a tolerance of now. A provider module builds the message and parses its headers; the
digest, the constant-time comparison against every candidate and the tolerance check live here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Callable, Mapping, Sequence

from alerthooks.providers.base import Rejected

Encoding = Callable[[bytes], bytes]
"""How a digest is written in a header: :data:`HEX` or :data:`BASE64`."""

HEX: Encoding = binascii.hexlify
"""Lower-case hex, as Stripe, Orb and Metronome write their signatures."""

BASE64: Encoding = base64.b64encode
"""Standard base64 with padding, as Standard Webhooks writes its signatures."""

MAX_CANDIDATES = 32
"""Most signatures compared per delivery: a header of 10,000 entries costs no more than this."""

STALE = "timestamp outside tolerance"
"""The reason given when a signature's date is too far from now."""


def digest(key: bytes, message: bytes) -> bytes:
    """The raw HMAC-SHA256 of ``message`` under ``key``."""
    return hmac.new(key, message, hashlib.sha256).digest()


def signature(key: bytes, message: bytes, encoding: Encoding = HEX) -> str:
    """The HMAC-SHA256 of ``message`` under ``key``, written with ``encoding``."""
    return encoding(digest(key, message)).decode("ascii")


def matches(
    keys: Sequence[bytes],
    message: bytes,
    candidates: Sequence[bytes],
    encoding: Encoding = HEX,
) -> bool:
    """Whether any of ``candidates`` (encoded signatures) is the HMAC of ``message`` under any
    of ``keys``. Every comparison is made, in constant time, so the answer's timing tells
    nothing about which one matched; at most :data:`MAX_CANDIDATES` candidates are read."""
    matched = False
    wanted = candidates[:MAX_CANDIDATES]
    for key in keys:
        expected = encoding(digest(key, message))
        for candidate in wanted:
            matched |= hmac.compare_digest(expected, candidate)
    return matched


def check_window(
    signed_at: float, tolerance: int, *, now: float | None = None, future_only: bool = False
) -> None:
    """Raise :class:`Rejected` (400, :data:`STALE`) unless ``signed_at`` (Unix seconds) is
    within ``tolerance`` seconds of ``now`` (default: the current time): either way, or with
    ``future_only`` only the future side (for schemes whose verifier checks the past later)."""
    current = time.time() if now is None else now
    if signed_at > current + tolerance or (not future_only and signed_at < current - tolerance):
        raise Rejected(400, STALE)


def ascii_values(entries: Sequence[str]) -> list[bytes]:
    """``entries`` that are ASCII, as bytes (a non-ASCII one can match no signature)."""
    return [entry.encode("ascii") for entry in entries if entry.isascii()]


# -- Standard Webhooks (standardwebhooks.com; Svix sends the same under ``svix-*`` names) ------

STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
"""The Standard Webhooks headers: the message id, its Unix timestamp, its signatures."""
SVIX_HEADERS = ("svix-id", "svix-timestamp", "svix-signature")
"""The same headers under Svix's names."""
SECRET_PREFIX = "whsec_"
MAX_SIGNATURE_HEADER = 4096
"""Longest ``webhook-signature`` read, in characters (each entry is 47)."""


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: the base64 after ``whsec_`` (the prefix is
    optional, as the reference library allows). Raises ``ValueError`` when it is not base64."""
    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a Standard Webhooks secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a Standard Webhooks secret cannot be empty")
    return key


def standard_message(msg_id: str, timestamp: str, body: bytes) -> bytes:
    """What Standard Webhooks signs: ``{id}.{timestamp}.{body}``."""
    return f"{msg_id}.{timestamp}.".encode() + body


def standard_headers(
    body: bytes, key: bytes, *, msg_id: str | None = None, timestamp: int | None = None
) -> dict[str, str]:
    """The three ``webhook-*`` headers for ``body`` under ``key``: a fresh ``msg_…`` id unless
    ``msg_id`` is given, dated ``timestamp`` (default now)."""
    msg_id = msg_id or "msg_" + _secrets.token_urlsafe(18)
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    sig = signature(key, standard_message(msg_id, stamp, body), BASE64)
    return {
        STANDARD_HEADERS[0]: msg_id,
        STANDARD_HEADERS[1]: stamp,
        STANDARD_HEADERS[2]: "v1," + sig,
    }


def standard_values(headers: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """The id, timestamp and signature header values, under the ``webhook-*`` names or else
    Svix's ``svix-*`` ones (``headers`` has lower-case names)."""
    names = STANDARD_HEADERS if any(n in headers for n in STANDARD_HEADERS) else SVIX_HEADERS
    return headers.get(names[0]), headers.get(names[1]), headers.get(names[2])


def verify_standard(
    body: bytes,
    msg_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    keys: Sequence[bytes],
    *,
    tolerance: int,
    now: float | None = None,
) -> None:
    """Check a Standard Webhooks delivery: any ``v1,`` entry of the space-separated
    ``signatures`` must be the HMAC of ``{id}.{timestamp}.{body}`` under one of ``keys``, and
    ``timestamp`` within ``tolerance`` seconds of now either way. Raises :class:`Rejected` (400)
    otherwise, naming what is wrong."""
    if not msg_id:
        raise Rejected(400, "missing webhook-id header")
    if not timestamp:
        raise Rejected(400, "missing webhook-timestamp header")
    if not signatures:
        raise Rejected(400, "missing webhook-signature header")
    if not keys:
        raise Rejected(400, "no webhook secret configured")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Rejected(400, "malformed webhook-timestamp header")
    check_window(int(timestamp), tolerance, now=now)
    if len(signatures) > MAX_SIGNATURE_HEADER:
        raise Rejected(400, "webhook-signature header too long")
    candidates = ascii_values(
        [entry[3:] for entry in signatures.split(" ") if entry.startswith("v1,")]
    )
    if not matches(keys, standard_message(msg_id, timestamp, body), candidates, BASE64):
        raise Rejected(400, "signature mismatch")
