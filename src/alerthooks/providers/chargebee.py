"""Chargebee: HTTP Basic authentication and ``alert_status_changed`` normalization."""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from alerthooks.events import AlertEvent
from alerthooks.providers import NotAnAlert, Rejected, build_event, mapping, number, text

ALERT_EVENT_TYPE = "alert_status_changed"
AUTH_HEADER = "authorization"
_ALARM_TYPES = {"in_alarm": "alert.triggered", "within_limit": "alert.cleared"}
_MODES = ("absolute", "percentage")


def parse_basic_auth(header: str | None) -> tuple[str, str]:
    """Split an RFC 7617 ``Authorization: Basic …`` header into user and password.

    The scheme is case-insensitive and the password may contain colons. Raises
    :class:`Rejected` (401) when the header is missing or malformed.
    """
    if not header:
        raise Rejected(401, "missing Authorization header")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Rejected(401, "Authorization is not Basic")
    try:
        decoded = b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Rejected(401, "malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise Rejected(401, "malformed Basic credentials")
    return user, password


def verify(header: str | None, credentials: Sequence[tuple[str, str]]) -> None:
    """Accept ``header`` when it carries one of ``credentials``, compared in constant time.

    Every pair is compared, so the time taken does not tell which one nearly matched.
    """
    user, password = parse_basic_auth(header)
    given_user, given_password = user.encode(), password.encode()
    matched = False
    for expected_user, expected_password in credentials:
        same_user = hmac.compare_digest(given_user, expected_user.encode())
        same_password = hmac.compare_digest(given_password, expected_password.encode())
        matched |= same_user & same_password
    if not matched:
        raise Rejected(401, "credentials do not match")


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from an ``alert_status_changed`` event.

    ``in_alarm`` becomes ``alert.triggered`` and ``within_limit`` ``alert.cleared``. Raises
    :class:`NotAnAlert` for other event types and for missing or unexpected ``content``.
    """
    if payload.get("event_type") != ALERT_EVENT_TYPE:
        raise NotAnAlert(f"event type {payload.get('event_type')!r} is not an alert")
    event_id = text(payload, "id", where="event")
    occurred = number(payload, "occurred_at", where="event")
    content = mapping(payload, "content", where="event")
    alert = mapping(content, "alert", where="content")
    status = mapping(content, "alert_status", where="content")
    alarm = status.get("alarm_status")
    if not isinstance(alarm, str) or alarm not in _ALARM_TYPES:
        raise NotAnAlert(
            f"alert_status.alarm_status {alarm!r} is neither in_alarm nor within_limit"
        )
    threshold = mapping(alert, "threshold", where="alert")
    mode = threshold.get("mode")
    if mode not in _MODES:
        raise NotAnAlert(f"alert.threshold.mode {mode!r} is neither absolute nor percentage")
    value = number(threshold, "value", where="alert.threshold")
    subscription = text(status, "subscription_id", where="alert_status", required=False)
    if subscription is None:
        subscription = text(alert, "subscription_id", where="alert", required=False)
    alert_id = text(alert, "id", where="alert")
    status_alert = text(status, "alert_id", where="alert_status", required=False)
    if status_alert is not None and status_alert != alert_id:
        raise NotAnAlert("alert_status.alert_id differs from alert.id")
    try:
        occurred_at = datetime.fromtimestamp(occurred, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise NotAnAlert("event.occurred_at is out of range") from None
    return build_event(
        id=event_id,
        provider="chargebee",
        type=_ALARM_TYPES[alarm],
        alert_id=alert_id,
        alert_name=text(alert, "name", where="alert"),
        meter_id=text(alert, "metered_feature_id", where="alert", required=False),
        customer_id=None,
        subscription_id=subscription,
        threshold=Decimal(value) if isinstance(value, int) else Decimal(repr(value)),
        threshold_mode=mode,
        value=None,
        occurred_at=occurred_at,
        livemode=None,
        raw=dict(payload),
    )


class ChargebeeProvider:
    """Chargebee deliveries, authenticated with one or more Basic auth pairs."""

    name = "chargebee"

    def __init__(
        self, credentials: Sequence[tuple[str, str]], *, allow_unauthenticated: bool = False
    ) -> None:
        self._credentials = tuple((str(u), str(p)) for u, p in credentials)
        self.allow_unauthenticated = allow_unauthenticated

    def __repr__(self) -> str:
        return (
            f"ChargebeeProvider(credentials=<{len(self._credentials)} hidden>, "
            f"allow_unauthenticated={self.allow_unauthenticated})"
        )

    @property
    def configured(self) -> bool:
        """True when a credential pair is set or unauthenticated delivery was opted into."""
        return bool(self._credentials) or self.allow_unauthenticated

    @property
    def credentials(self) -> tuple[tuple[str, str], ...]:
        """The accepted (user, password) pairs (for signing test deliveries)."""
        return self._credentials

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` (401) unless Basic auth matches a configured pair."""
        if self.allow_unauthenticated and not self._credentials:
            return
        verify(headers.get(AUTH_HEADER), self._credentials)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The ``ev_…`` id."""
        value = payload.get("id")
        return value if isinstance(value, str) and value else None

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Chargebee's ``event_type``, such as ``alert_status_changed``."""
        value = payload.get("event_type")
        return value if isinstance(value, str) else None

    normalize = staticmethod(normalize)
