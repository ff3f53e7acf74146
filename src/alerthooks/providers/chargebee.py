"""Chargebee: HTTP Basic authentication, ``alert_status_changed`` normalization, and optional
confirmation of each delivery by fetching the event back from the Chargebee API."""

from __future__ import annotations

import asyncio
import binascii
import dataclasses
import hmac
import os
import re
from base64 import b64decode, b64encode
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from alerthooks.apis.chargebee import (
    API_BASE_ENV,
    API_KEY_ENV,
    SITE_ENV,
    ChargebeeClient,
    key_from_meta,
    site_api_base,
)
from alerthooks.apis.http import ProviderError, RetryPolicy
from alerthooks.events import AlertEvent, AlertKind, EventType
from alerthooks.marker import split_marker
from alerthooks.providers.base import (
    NotAnAlert,
    Provider,
    Rejected,
    RemoteStatus,
    Subject,
    Unavailable,
    checked_event,
    clean_key,
    decimal,
    mapping,
    text,
    timestamp,
)
from alerthooks.sources import Networks, networks_from_env, parse_networks

ALERT_EVENT_TYPE = "alert_status_changed"
AUTH_HEADER = "authorization"
_ALARM_TYPES: dict[str, EventType] = {
    "in_alarm": "alert.triggered",
    "within_limit": "alert.cleared",
}
_MODES = ("absolute", "percentage")
KINDS: dict[str, AlertKind] = {
    "usage_exceeded": "usage",
    "spend_exceeded": "spend",
    "credit_balance_dropped": "credit_balance",
}
"""Chargebee's ``Alert.type`` values (chargebee-node v3.31.0, ``src/schema/alert.schema.ts``)
and the :attr:`AlertEvent.kind` of each; any other type is ``other``."""
# alert_status.alarm_status as Chargebee's API named it before its SDKs' v3.24.0.
_OLD_ALARM_STATUS = "alert_status"
USERNAME_ENV = "CHARGEBEE_WEBHOOK_USERNAME"
PASSWORD_ENV = "CHARGEBEE_WEBHOOK_PASSWORD"
DEFAULT_FETCH_TIMEOUT = 10.0
#: How hard ``verify="fetch"`` tries each delivery's event: Chargebee waits for the answer, so
#: fewer and quicker retries than the manager's (429, 5xx, resets and timeouts are retried).
FETCH_RETRY = RetryPolicy(attempts=3, backoff=0.1, max_backoff=1.0, timeout=DEFAULT_FETCH_TIMEOUT)
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


# Sent with every Basic-auth 401, as RFC 7235 requires of a 401.
CHALLENGE = {"www-authenticate": 'Basic realm="alerthooks"'}


def parse_basic_auth(header: str | None) -> tuple[str, str]:
    """Split an RFC 7617 ``Authorization: Basic …`` header into user and password.

    The scheme is case-insensitive and the password may contain colons. Raises
    :class:`Rejected` (401) when the header is missing or malformed.
    """
    if not header:
        raise Rejected(401, "missing Authorization header", CHALLENGE)
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Rejected(401, "Authorization is not Basic", CHALLENGE)
    try:
        decoded = b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Rejected(401, "malformed Basic credentials", CHALLENGE) from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise Rejected(401, "malformed Basic credentials", CHALLENGE)
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
        raise Rejected(401, "credentials do not match", CHALLENGE)


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from an ``alert_status_changed`` event.

    ``in_alarm`` becomes ``alert.triggered`` and ``within_limit`` ``alert.cleared``, read from
    ``alert_status.alarm_status`` (``alert_status.alert_status`` before Chargebee's API renamed
    it). Any kind of alert is read (``usage_exceeded``, ``spend_exceeded`` and
    ``credit_balance_dropped`` with their ``currency_code``, ...; see :data:`KINDS`), with or
    without a ``threshold``, a metered feature or a subscription of its own;
    ``alarm_triggered_at`` where present. The ownership marker in the
    name (or the manager's key in ``meta``) becomes :attr:`AlertEvent.alert_key`.

    Raises :class:`NotAnAlert` for other event types and for missing or unexpected ``content``.
    """
    if payload.get("event_type") != ALERT_EVENT_TYPE:
        raise NotAnAlert(f"event type {payload.get('event_type')!r} is not an alert")
    event_id = text(payload, "id", where="event")
    occurred_at = timestamp(payload, "occurred_at", where="event")
    content = mapping(payload, "content", where="event")
    alert = mapping(content, "alert", where="content")
    status = mapping(content, "alert_status", where="content")
    alarm = status.get("alarm_status")
    if alarm is None:
        alarm = status.get(_OLD_ALARM_STATUS)
    if not isinstance(alarm, str) or alarm not in _ALARM_TYPES:
        raise NotAnAlert(
            f"alert_status.alarm_status {alarm!r} is neither in_alarm nor within_limit"
        )
    threshold = alert.get("threshold")
    if threshold is None:
        mode = value = None
    elif not isinstance(threshold, dict):
        raise NotAnAlert("alert.threshold is not an object")
    else:
        mode = threshold.get("mode")
        if mode not in _MODES:
            raise NotAnAlert(f"alert.threshold.mode {mode!r} is neither absolute nor percentage")
        value = decimal(threshold, "value", where="alert.threshold")
    subscription = text(status, "subscription_id", where="alert_status", required=False)
    if subscription is None:
        subscription = text(alert, "subscription_id", where="alert", required=False)
    alert_id = text(alert, "id", where="alert")
    status_alert = text(status, "alert_id", where="alert_status", required=False)
    if status_alert is not None and status_alert != alert_id:
        raise NotAnAlert("alert_status.alert_id differs from alert.id")
    triggered_at = timestamp(status, "alarm_triggered_at", where="alert_status", required=False)
    if triggered_at is None:
        # Where Chargebee's API kept it before it moved to alert_status.
        triggered_at = timestamp(alert, "alarm_triggered_at", where="alert", required=False)
    alert_name, alert_key = split_marker(text(alert, "name", where="alert"))
    if alert_key is None:
        alert_key = key_from_meta(alert.get("meta"))
    alert_type = text(alert, "type", where="alert", required=False)
    return checked_event(
        id=event_id,
        provider="chargebee",
        type=_ALARM_TYPES[alarm],
        alert_id=alert_id,
        kind=KINDS.get(alert_type, "other") if alert_type else "other",
        alert_name=alert_name,
        meter_id=text(alert, "metered_feature_id", where="alert", required=False),
        customer_id=None,
        external_customer_id=None,
        subscription_id=subscription,
        threshold=value,
        threshold_mode=mode,
        value=None,
        occurred_at=occurred_at,
        livemode=None,
        alert_type=alert_type,
        currency=text(alert, "currency_code", where="alert", required=False),
        triggered_at=triggered_at,
        alert_key=alert_key,
        raw=dict(payload),
    )


class EventFetcher:
    """Fetches events from the Chargebee API (``GET /api/v2/events/{id}``, through
    :class:`~alerthooks.apis.chargebee.ChargebeeClient` with :data:`FETCH_RETRY`), to dispatch
    what Chargebee holds rather than what was posted (``AlertHooks(chargebee_verify="fetch")``).

    ``site`` and ``api_key`` default to env ``CHARGEBEE_SITE`` / ``CHARGEBEE_API_KEY``. Env
    ``ALERTHOOKS_CHARGEBEE_API_BASE`` (or ``api_base``) replaces ``https://{site}.chargebee.com``,
    for local fakes. ``timeout`` is each attempt's, in seconds.
    """

    def __init__(
        self,
        *,
        site: str | None = None,
        api_key: str | None = None,
        api_base: str | None = None,
        timeout: float = DEFAULT_FETCH_TIMEOUT,
        retry: RetryPolicy = FETCH_RETRY,
    ) -> None:
        site = site or os.environ.get(SITE_ENV) or None
        api_key = api_key or os.environ.get(API_KEY_ENV) or None
        api_base = api_base or os.environ.get(API_BASE_ENV) or None
        if not api_key:
            raise ValueError(
                f"chargebee_verify='fetch' needs chargebee_api_key (or env {API_KEY_ENV})"
            )
        if api_base is None:
            if not site:
                raise ValueError(
                    f"chargebee_verify='fetch' needs chargebee_site (or env {SITE_ENV})"
                )
            api_base = site_api_base(site)
        elif not api_base.startswith(("http://", "https://")):
            raise ValueError(f"{API_BASE_ENV}: {api_base!r} is not an http(s) URL")
        self.api_base = api_base
        self.timeout = timeout
        self.retry = retry
        self._site = site or ""
        self._api_key = api_key
        self._client: ChargebeeClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"EventFetcher(api_base={self.api_base!r}, api_key=<hidden>)"

    async def fetch(self, event_id: str) -> dict[str, Any]:
        """The event Chargebee holds under ``event_id``.

        Raises :class:`Rejected` (401) for an id that is not a plain Chargebee id (so a posted
        id can never steer the request to another resource), when Chargebee does not know the
        id (the delivery was not Chargebee's) or answers with another event; and
        :class:`Unavailable` when the API refuses or keeps failing.
        """
        if not _EVENT_ID.fullmatch(event_id):
            raise Rejected(401, "event id is malformed")
        try:
            event = await self._client_for_this_loop().retrieve_event(event_id)
        except ProviderError as exc:
            if exc.status is not None:
                raise Unavailable(f"Chargebee API answered {exc.status}") from None
            raise Unavailable(f"Chargebee API unreachable: {exc}") from None
        if event is None:
            raise Rejected(401, "event not found at Chargebee")
        if event.get("id") != event_id:
            raise Rejected(401, "Chargebee returned a different event")
        return event

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        client, self._client = self._client, None
        if client is not None and self._client_loop is asyncio.get_running_loop():
            await client.aclose()

    def _client_for_this_loop(self) -> ChargebeeClient:
        # httpx connections belong to the loop that opened them; a fetcher may outlive a loop.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            retry = dataclasses.replace(self.retry, timeout=self.timeout)
            self._client = ChargebeeClient(
                self._api_key, self._site, api_base=self.api_base, concurrency=100, retry=retry
            )
            self._client_loop = loop
        return self._client


def basic_auth_header(user: str, password: str) -> str:
    """An RFC 7617 ``Authorization`` value: ``Basic base64(user:password)``."""
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


def _credential_pairs(
    value: tuple[str, str] | Sequence[tuple[str, str]],
) -> list[tuple[str, str]]:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return [value]  # type: ignore[list-item]
    pairs = list(value)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise TypeError("chargebee_auth takes a (user, password) tuple or a list of them")
    return [(str(u), str(p)) for u, p in pairs]


class Chargebee(Provider):
    """Chargebee deliveries, authenticated with one or more Basic auth pairs (the first signs
    test deliveries; the others are accepted too, for rotation).

    A pair missing its user or its password does not count: with no complete pair the provider
    is not configured (503), unless ``allow_unauthenticated``. ``verify="fetch"`` fetches each
    event back from the Chargebee API by id (``site`` / ``api_key``, default env
    ``CHARGEBEE_SITE`` / ``CHARGEBEE_API_KEY``) and dispatches what the API returns: an id the
    API does not know is answered 401, an API that cannot be reached 503. Basic auth, when
    configured, is checked as well.
    """

    name = "chargebee"
    env_hint = f"{USERNAME_ENV}/{PASSWORD_ENV}"
    alert_types = frozenset({ALERT_EVENT_TYPE})

    def __init__(
        self,
        auth: tuple[str, str] | Sequence[tuple[str, str]] = (),
        *,
        allow_unauthenticated: bool = False,
        verify: Literal["auth", "fetch"] = "auth",
        site: str | None = None,
        api_key: str | None = None,
        allowed_ips: Networks | None = None,
        fetcher: EventFetcher | None = None,
    ) -> None:
        if verify not in ("auth", "fetch"):
            raise ValueError(f"chargebee_verify must be 'auth' or 'fetch', got {verify!r}")
        pairs = _credential_pairs(auth)
        self._credentials = tuple((u, p) for u, p in pairs if u and p)
        #: Pairs given without a user or a password (ignored; see the warning at startup).
        self.incomplete = len(pairs) - len(self._credentials)
        self.allow_unauthenticated = allow_unauthenticated
        if fetcher is None and verify == "fetch":
            fetcher = EventFetcher(site=site, api_key=api_key)
        self.fetcher = fetcher
        self.confirms = fetcher is not None
        self.allowed_ips = (
            None
            if allowed_ips is None
            else parse_networks(allowed_ips, setting=f"{self.name}_allowed_ips")
        )

    @classmethod
    def from_env(
        cls,
        *,
        allow_unauthenticated: bool = False,
        verify: Literal["auth", "fetch"] = "auth",
        site: str | None = None,
        api_key: str | None = None,
    ) -> Chargebee:
        """Credentials from env ``CHARGEBEE_WEBHOOK_USERNAME`` / ``CHARGEBEE_WEBHOOK_PASSWORD``,
        the allowlist from ``ALERTHOOKS_CHARGEBEE_ALLOWED_IPS``."""
        user = os.environ.get(USERNAME_ENV, "")
        password = os.environ.get(PASSWORD_ENV, "")
        provider = cls(
            [(user, password)] if user or password else [],
            allow_unauthenticated=allow_unauthenticated,
            verify=verify,
            site=site,
            api_key=api_key,
        )
        provider.allowed_ips = networks_from_env(cls.name)
        return provider

    @classmethod
    def from_secret(cls, secret: str) -> Chargebee:
        """A provider with this one Basic auth pair, given as ``USER:PASS`` (the password may
        hold ``:``)."""
        user, colon, password = secret.partition(":")
        if not colon:
            raise ValueError("Chargebee credentials take USER:PASS (no ':' given)")
        if not user or not password:
            raise ValueError("Chargebee credentials take USER:PASS, both non-empty")
        return cls([(user, password)])

    def __repr__(self) -> str:
        return (
            f"Chargebee(credentials=<{len(self._credentials)} hidden>, "
            f"allow_unauthenticated={self.allow_unauthenticated}, fetcher={self.fetcher!r})"
        )

    @property
    def configured(self) -> bool:
        """True when a complete credential pair or a fetcher is set, or unauthenticated
        delivery was opted into."""
        return bool(self._credentials) or self.allow_unauthenticated or self.fetcher is not None

    @property
    def credentials(self) -> tuple[tuple[str, str], ...]:
        """The accepted (user, password) pairs."""
        return self._credentials

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` (401) unless Basic auth matches a configured pair."""
        if not self._credentials and (self.allow_unauthenticated or self.fetcher is not None):
            return
        verify(headers.get(AUTH_HEADER), self._credentials)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The ``ev_…`` id."""
        return clean_key(payload.get("id"))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Chargebee's ``event_type``, such as ``alert_status_changed``."""
        return clean_key(payload.get("event_type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    def sign(self, body: bytes) -> dict[str, str]:
        """``Authorization: Basic …`` with the first credential pair (none needed when
        unauthenticated delivery is allowed)."""
        if not self._credentials:
            if self.configured:
                return {}
            raise ValueError(f"no Chargebee webhook credentials: set {self.env_hint}")
        return {AUTH_HEADER: basic_auth_header(*self._credentials[0])}

    def events_api(self) -> ChargebeeEvents:
        """``GET /api/v2/events`` with the manager's credentials and retry policy; raises
        :class:`MissingCredentials` without ``CHARGEBEE_API_KEY`` / ``CHARGEBEE_SITE``."""
        return ChargebeeEvents(ChargebeeClient.from_env())

    def status_api(self) -> ChargebeeStatuses:
        """The alert statuses of subscriptions and of global alerts, with the manager's
        credentials and retry policy; raises :class:`MissingCredentials` as
        :meth:`events_api` does."""
        return ChargebeeStatuses(ChargebeeClient.from_env())

    async def confirm(self, event_id: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The event as the Chargebee API holds it (with ``verify="fetch"``)."""
        if self.fetcher is None:
            return payload
        return await self.fetcher.fetch(event_id)

    async def aclose(self) -> None:
        """Close the fetcher's connections, if any."""
        if self.fetcher is not None:
            await self.fetcher.aclose()


ChargebeeProvider = Chargebee
"""The former name of :class:`Chargebee`."""


class ChargebeeEvents:
    """Chargebee's Events API (``GET /api/v2/events?event_type[is]=alert_status_changed&
    occurred_at[after]=…``, following ``next_offset`` with ``offset``)."""

    retention: timedelta | None = None

    def __init__(self, api: ChargebeeClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"ChargebeeEvents({self._api!r})"

    async def events_since(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """Every ``alert_status_changed`` event that occurred at or after ``since``."""
        # occurred_at[after] is exclusive; a second earlier includes ``since`` itself.
        async for event in self._api.events(ALERT_EVENT_TYPE, int(since.timestamp()) - 1):
            yield event

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()


_ALARM_STATES: dict[str, Literal["in_alarm", "within_limit"]] = {
    "in_alarm": "in_alarm",
    "within_limit": "within_limit",
}


class ChargebeeStatuses:
    """Chargebee's alert statuses: ``GET /api/v2/subscriptions/{id}/alert_statuses`` for each
    subscription asked about, and ``GET /api/v2/alerts/{id}/alert_statuses`` for each global
    alert (one without a subscription of its own) among the alerts asked about."""

    def __init__(self, api: ChargebeeClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"ChargebeeStatuses({self._api!r})"

    async def statuses(self, subjects: Sequence[Subject]) -> list[RemoteStatus]:
        """The status of each subscription in ``subjects``, and of every subscription of the
        global alerts among them."""
        found: dict[tuple[str, str], RemoteStatus] = {}
        subscriptions = sorted({s.subscription_id for s in subjects if s.subscription_id})
        for subscription in subscriptions:
            for obj in await self._api.alert_statuses("subscriptions", subscription):
                self._add(found, obj, subscription)
        asked = {s.alert_id for s in subjects}
        if asked:
            for alert in await self._api.alerts():
                alert_id = str(alert.get("id"))
                if alert_id in asked and not alert.get("subscription_id"):
                    for obj in await self._api.alert_statuses("alerts", alert_id):
                        self._add(found, obj, None)
        return list(found.values())

    @staticmethod
    def _add(
        found: dict[tuple[str, str], RemoteStatus], obj: dict[str, Any], subscription: str | None
    ) -> None:
        alarm = obj.get("alarm_status")
        if alarm is None:
            alarm = obj.get(_OLD_ALARM_STATUS)
        alert_id = obj.get("alert_id")
        subscription = obj.get("subscription_id") or subscription
        state = _ALARM_STATES.get(alarm) if isinstance(alarm, str) else None
        if state is None or not isinstance(alert_id, str) or not isinstance(subscription, str):
            return
        triggered = obj.get("alarm_triggered_at")
        since = (
            datetime.fromtimestamp(triggered, timezone.utc)
            if isinstance(triggered, int) and not isinstance(triggered, bool)
            else None
        )
        found[(alert_id, subscription)] = RemoteStatus(
            alert_id=alert_id, state=state, subscription_id=subscription, since=since
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()
