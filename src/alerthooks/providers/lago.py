"""Lago: ``X-Lago-Signature`` verification (``hmac`` and ``jwt``) and normalization of its
``alert.triggered`` webhooks.

Followed: getlago/lago-api at 1b1c24a (2026-08-21). ``app/models/webhook.rb``
(``generate_headers``): every delivery carries ``X-Lago-Signature``,
``X-Lago-Signature-Algorithm`` (``hmac`` or ``jwt``) and ``X-Lago-Unique-Key`` (the webhook
record's id, the same on each of Lago's retries). ``hmac`` is the base64 HMAC-SHA256 of the body
keyed by the organization's HMAC key; ``jwt`` is an RS256 JWT ``{data: <the body>, iss:
LAGO_API_URL}`` signed with the instance's RSA key, whose public half
``GET /api/v1/webhooks/json_public_key`` returns as ``{"webhook": {"public_key": base64(PEM)}}``.
Neither scheme dates the signature, so there is no replay window: a replay is a duplicate of the
``X-Lago-Unique-Key`` already stored.

The envelope is ``{webhook_type, object_type, organization_id, <object_type>: {...}}``
(``app/services/webhooks/base_service.rb``); ``alert.triggered`` carries ``triggered_alert``
(``app/serializers/v1/usage_monitoring/triggered_alert_serializer.rb``), whose numbers Ruby
writes as decimal strings (``"1000.0"``) and the OpenAPI file (getlago/lago-openapi) as numbers:
both are read.
"""

from __future__ import annotations

import base64
import binascii
import os
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from alerthooks.apis.lago import API_KEY_ENV, API_URL_ENV, DEFAULT_API_URL, fetch_public_key
from alerthooks.events import AlertEvent, AlertKind
from alerthooks.marker import split_marker
from alerthooks.providers.base import (
    NotAnAlert,
    Provider,
    Rejected,
    build_event,
    clean_key,
    iso_timestamp,
    lenient_decimal,
    mapping,
    text,
)
from alerthooks.providers.signing import BASE64, matches, signature
from alerthooks.sources import Networks, networks_from_env, parse_networks

SECRET_ENV = "LAGO_WEBHOOK_SECRET"
PUBLIC_KEY_ENV = "LAGO_WEBHOOK_PUBLIC_KEY"

SIGNATURE_HEADER = "x-lago-signature"
ALGORITHM_HEADER = "x-lago-signature-algorithm"
UNIQUE_KEY_HEADER = "x-lago-unique-key"
ALERT_WEBHOOK = "alert.triggered"
RESOLVED_WEBHOOK = "alert.resolved"
"""Not sent by lago-api today (its TriggeredAlert has a ``resolved`` kind, but no webhook);
read as ``alert.cleared`` if it comes with the same object, else kept ``unparsed``."""
JWT_EXTRA = 'the jwt signature needs PyJWT[crypto]: pip install "alerthooks-sdk[lago]"'

SPEND_TYPES = frozenset(
    {"current_usage_amount", "billable_metric_current_usage_amount", "lifetime_usage_amount"}
)
USAGE_TYPES = frozenset(
    {"billable_metric_current_usage_units", "billable_metric_lifetime_usage_units"}
)
WALLET_TYPES = frozenset(
    {
        "wallet_balance_amount",
        "wallet_credits_balance",
        "wallet_ongoing_balance_amount",
        "wallet_credits_ongoing_balance",
    }
)


def kind_of(alert_type: str | None) -> AlertKind:
    """The :attr:`AlertEvent.kind` of a Lago ``alert_type``: money alerts are ``spend``, unit
    alerts ``usage``, wallet alerts ``credit_balance``."""
    if alert_type in SPEND_TYPES:
        return "spend"
    if alert_type in USAGE_TYPES:
        return "usage"
    if alert_type in WALLET_TYPES:
        return "credit_balance"
    return "other"


def hmac_signature(body: bytes, secret: str) -> str:
    """The ``X-Lago-Signature`` of an ``hmac`` endpoint: base64 HMAC-SHA256 of the body."""
    return signature(secret.encode(), body, BASE64)


def _pyjwt() -> Any:
    """PyJWT, or ImportError naming the extra."""
    try:
        import jwt
    except ImportError:
        raise ImportError(JWT_EXTRA) from None
    return jwt


def _crypto() -> Any:
    """``cryptography``'s RSA primitives, or ImportError naming the extra."""
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise ImportError(JWT_EXTRA) from None
    return hashes, serialization, padding, rsa


def read_public_key(value: str) -> Any:
    """An RSA public key from a PEM, or from the base64 of a PEM as Lago's
    ``/api/v1/webhooks/json_public_key`` returns it. Raises ``ValueError`` (one line) when it
    is neither or not RSA, ``ImportError`` naming the extra when ``cryptography`` is missing."""
    _, serialization, _, rsa = _crypto()
    pem = value.strip().encode()
    if not pem.startswith(b"-----BEGIN"):
        try:
            pem = base64.b64decode(b"".join(pem.split()), validate=True).strip()
        except (binascii.Error, ValueError):
            raise ValueError("Lago public key: neither a PEM nor base64 of one") from None
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        raise ValueError("Lago public key: not a PEM public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("Lago public key: not an RSA key (Lago signs with RS256)")
    return key


def verify_jwt(token: str, body: bytes, public_key: Any, issuer: str) -> None:
    """Check a Lago ``jwt`` signature with PyJWT: RS256 only (``none``, ``HS256`` keyed with the
    public key and any other ``alg`` are refused, as is an unsupported ``crit``), the signature
    under ``public_key``, ``iss`` == ``issuer``, ``exp``/``nbf`` when present, and the ``data``
    claim equal to the exact body. Raises :class:`Rejected` (400)."""
    jwt = _pyjwt()
    try:
        claims = jwt.decode(
            token,
            public_key,
            algorithms=["RS256"],
            issuer=issuer,
            options={"require": ["iss"], "verify_aud": False},
        )
    except (jwt.InvalidIssuerError, jwt.MissingRequiredClaimError):  # "iss" is the one required
        raise Rejected(400, "jwt issuer is not the configured Lago API URL") from None
    except jwt.ExpiredSignatureError:
        raise Rejected(400, "jwt expired") from None
    except jwt.ImmatureSignatureError:
        raise Rejected(400, "jwt not valid yet") from None
    except (jwt.InvalidTokenError, ValueError, RecursionError):
        raise Rejected(400, "signature mismatch") from None
    data = claims.get("data")
    if not isinstance(data, str) or data.encode("utf-8", "surrogatepass") != body:
        raise Rejected(400, "jwt data claim is not the body")


class Lago(Provider):
    """Lago deliveries, verified with the workspace's HMAC token (``secrets``, several to
    rotate) for ``hmac`` endpoints, or with the instance's RSA public key (``public_key``: a PEM
    or base64 of one) for ``jwt`` endpoints, whose tokens must be RS256, issued by ``issuer``
    (the Lago API URL) and carry the exact body as their ``data`` claim.

    Lago dates nothing it signs, so there is no tolerance: redeliveries and replays are
    duplicates of the ``X-Lago-Unique-Key`` already stored. Without a token or a key the
    provider is not configured (503). ``jwt`` needs the ``lago`` extra (``cryptography``).
    """

    name = "lago"
    env_hint = f"{SECRET_ENV}, or {PUBLIC_KEY_ENV} or {API_KEY_ENV} for jwt"
    alert_types = frozenset({ALERT_WEBHOOK, RESOLVED_WEBHOOK})

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        public_key: str | None = None,
        issuer: str = DEFAULT_API_URL,
        allowed_ips: Networks | None = None,
    ) -> None:
        if isinstance(secrets, str):
            secrets = secrets.split(",")
        # A blank token would make a forgery signed with the empty key pass.
        self._secrets = tuple(s.strip() for s in secrets if isinstance(s, str) and s.strip())
        self._public_key = (
            read_public_key(public_key) if public_key and public_key.strip() else None
        )
        self.issuer = issuer.rstrip("/")
        self.allowed_ips = (
            None
            if allowed_ips is None
            else parse_networks(allowed_ips, setting=f"{self.name}_allowed_ips")
        )

    @classmethod
    def from_env(cls) -> Lago:
        """The HMAC token from env ``LAGO_WEBHOOK_SECRET`` (comma-separated to rotate); for
        ``jwt`` endpoints the public key from ``LAGO_WEBHOOK_PUBLIC_KEY``, or else, when no HMAC
        token is set either, fetched once (now, blocking, at most 10 s) with ``LAGO_API_KEY``;
        the issuer and API base from ``LAGO_API_URL`` (default Lago Cloud); the allowlist from
        ``ALERTHOOKS_LAGO_ALLOWED_IPS``."""
        api_url = os.environ.get(API_URL_ENV, "").strip() or DEFAULT_API_URL
        secrets = os.environ.get(SECRET_ENV, "")
        public_key = os.environ.get(PUBLIC_KEY_ENV, "").strip() or None
        api_key = os.environ.get(API_KEY_ENV, "").strip()
        if public_key is None and api_key and not secrets.replace(",", "").strip():
            public_key = fetch_public_key(api_url, api_key)
        provider = cls(secrets, public_key=public_key, issuer=api_url)
        provider.allowed_ips = networks_from_env(cls.name)
        return provider

    @classmethod
    def from_secret(cls, secret: str) -> Lago:
        """A provider that signs and verifies ``hmac`` deliveries with this HMAC token."""
        return cls([secret])

    def __repr__(self) -> str:
        return (
            f"Lago(secrets=<{len(self._secrets)} hidden>, "
            f"public_key={'set' if self._public_key is not None else None}, issuer={self.issuer!r})"
        )

    @property
    def configured(self) -> bool:
        """True when an HMAC token or a public key is set."""
        return bool(self._secrets) or self._public_key is not None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The accepted HMAC tokens."""
        return self._secrets

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` (400) unless ``X-Lago-Signature`` is a valid ``hmac``
        signature under a configured token or a valid RS256 ``jwt`` under the public key."""
        given = headers.get(SIGNATURE_HEADER)
        algorithm = headers.get(ALGORITHM_HEADER)
        if not given:
            raise Rejected(400, "missing X-Lago-Signature header")
        if algorithm == "hmac":
            if not self._secrets:
                raise Rejected(400, "hmac signature but no Lago HMAC token configured")
            if not given.isascii() or len(given) > 64:
                raise Rejected(400, "signature mismatch")
            keys = [s.encode() for s in self._secrets]
            if not matches(keys, body, [given.encode()], BASE64):
                raise Rejected(400, "signature mismatch")
        elif algorithm == "jwt":
            self._verify_jwt(body, given)
        else:
            raise Rejected(400, "missing or unknown X-Lago-Signature-Algorithm header")

    def _verify_jwt(self, body: bytes, token: str) -> None:
        if self._public_key is None:
            raise Rejected(400, "jwt signature but no Lago public key configured")
        # The token holds the body (base64 of its JSON-escaped text): anything far longer is not
        # one, and is refused before it costs a parse.
        if len(token) > 8 * len(body) + 4096:
            raise Rejected(400, "signature mismatch")
        verify_jwt(token, body, self._public_key, self.issuer)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """None: Lago's payloads have no event id; :meth:`delivery_id` is the key."""
        return None

    def delivery_id(self, headers: Mapping[str, str]) -> str | None:
        """``X-Lago-Unique-Key``, the same on each of Lago's retries of one webhook."""
        return clean_key(headers.get(UNIQUE_KEY_HEADER))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Lago's ``webhook_type``, such as ``alert.triggered``."""
        return clean_key(payload.get("webhook_type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def sign(self, body: bytes, *, unique_key: str | None = None) -> dict[str, str]:
        """The headers of an ``hmac`` delivery of ``body`` under the first token, with a fresh
        ``X-Lago-Unique-Key`` unless ``unique_key`` is given."""
        if not self._secrets:
            raise ValueError(f"no Lago HMAC token: set {SECRET_ENV}")
        return {
            "X-Lago-Signature": hmac_signature(body, self._secrets[0]),
            "X-Lago-Signature-Algorithm": "hmac",
            "X-Lago-Unique-Key": unique_key or str(uuid.uuid4()),
        }


def _crossed(alert: Mapping[str, Any]) -> list[Decimal]:
    crossed = alert.get("crossed_thresholds")
    if crossed is None:
        return []
    if not isinstance(crossed, list):
        raise NotAnAlert("triggered_alert.crossed_thresholds is not a list")
    values = []
    for index, entry in enumerate(crossed[:1000]):
        where = f"triggered_alert.crossed_thresholds[{index}]"
        if not isinstance(entry, dict):
            raise NotAnAlert(f"{where} is not an object")
        value = lenient_decimal(entry, "value", where=where)
        if value is not None:
            values.append(value)
    return values


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from Lago's ``alert.triggered`` webhook.

    Lago sends one event per evaluation, with every threshold it crossed; the event carries the
    most severe one: the highest when the value rose, the lowest when it fell (a balance;
    ``current_value`` below ``previous_value``, as Lago's decreasing alerts fire). All of them
    stay in ``raw``. Raises :class:`NotAnAlert` for other webhook types and for a payload
    missing what Lago always sends.
    """
    webhook_type = payload.get("webhook_type")
    if webhook_type not in (ALERT_WEBHOOK, RESOLVED_WEBHOOK):
        raise NotAnAlert(f"webhook type {webhook_type!r} is not an alert")
    where = payload.get("object_type") if webhook_type == RESOLVED_WEBHOOK else "triggered_alert"
    if not isinstance(where, str) or not where:
        raise NotAnAlert("event.object_type is missing")
    alert = mapping(payload, where, where="event")
    value = lenient_decimal(alert, "current_value", where=where)
    previous = lenient_decimal(alert, "previous_value", where=where)
    crossed = _crossed(alert)
    falling = value is not None and previous is not None and value < previous
    threshold = (min(crossed) if falling else max(crossed)) if crossed else None
    triggered_at = iso_timestamp(alert, "triggered_at", where=where, required=False)
    occurred_at = triggered_at or iso_timestamp(alert, "resolved_at", where=where)
    alert_type = text(alert, "alert_type", where=where, required=False)
    customer = text(alert, "external_customer_id", where=where, required=False) or text(
        alert, "customer_external_id", where=where, required=False
    )
    subscription = text(alert, "external_subscription_id", where=where, required=False) or text(
        alert, "subscription_external_id", where=where, required=False
    )
    name = text(alert, "alert_name", where=where, required=False)
    alert_name, alert_key = split_marker(name) if name else (None, None)
    return build_event(
        id="",  # the receiver sets X-Lago-Unique-Key
        provider="lago",
        type="alert.cleared" if webhook_type == RESOLVED_WEBHOOK else "alert.triggered",
        alert_id=text(alert, "lago_alert_id", where=where),
        alert_name=alert_name or None,
        alert_key=alert_key,
        meter_id=text(alert, "billable_metric_code", where=where, required=False),
        customer_id=customer,
        subscription_id=subscription,
        threshold=threshold,
        threshold_mode="absolute" if threshold is not None else None,
        value=value,
        occurred_at=occurred_at,
        triggered_at=triggered_at,
        livemode=None,
        alert_type=alert_type,
        currency=None,
        raw=dict(payload),
        kind=kind_of(alert_type),
        external_customer_id=customer,
    )


def jwt_headers(
    body: bytes, private_key: Any, *, issuer: str = DEFAULT_API_URL, unique_key: str | None = None
) -> dict[str, str]:
    """The headers of a ``jwt`` delivery of ``body`` signed with ``private_key`` (an RSA private
    key or its PEM), as Lago signs (``JWT.encode({data:, iss:}, key, "RS256")``)."""
    token = _pyjwt().encode({"data": body.decode(), "iss": issuer}, private_key, algorithm="RS256")
    return {
        "X-Lago-Signature": token,
        "X-Lago-Signature-Algorithm": "jwt",
        "X-Lago-Unique-Key": unique_key or str(uuid.uuid4()),
    }


__all__ = ["Lago", "jwt_headers", "kind_of", "normalize", "read_public_key", "verify_jwt"]
