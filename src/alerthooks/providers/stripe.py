"""Stripe: ``Stripe-Signature`` verification and normalization of billing alerts
(``billing.alert.triggered`` and ``billing.alert.recovered``; usage, spend and credit-balance
alerts; snapshot and thin events).

Shapes follow stripe-python's ``private-preview`` branch (15.4.0a5, July 2026):
``stripe/billing/_alert.py``, ``_alert_triggered.py``, ``_alert_recovered.py`` and
``stripe/events/_v1_billing_alert_triggered_event.py``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple

from alerthooks.apis.http import MissingCredentials, ProviderError
from alerthooks.apis.stripe import API_KEY_ENV, StripeClient
from alerthooks.events import AlertEvent, AlertKind, EventType
from alerthooks.marker import split_marker
from alerthooks.providers.base import (
    NotAnAlert,
    Rejected,
    SecretProvider,
    checked_event,
    clean_key,
    decimal,
    mapping,
    text,
    timestamp,
)
from alerthooks.providers.signing import check_window, matches, signature
from alerthooks.sources import Networks

ALERT_EVENT_TYPE = "billing.alert.triggered"
RECOVERED_EVENT_TYPE = "billing.alert.recovered"
ALERT_EVENT_TYPES: dict[str, EventType] = {
    ALERT_EVENT_TYPE: "alert.triggered",
    RECOVERED_EVENT_TYPE: "alert.cleared",
}
"""Stripe's alert events (snapshot events, ``object: "event"``) and what each one means."""
THIN_OBJECT = "v2.core.event"
"""The ``object`` of a thin event, as event destinations send them."""
THIN_ALERT_PREFIX = "v1.billing.alert."
"""The type prefix of thin alert events (``v1.billing.alert.triggered`` and any Stripe adds)."""
# An event id as Stripe writes one (evt_…, evt_test_…), safe to put in a request path.
_API_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
# The alert types whose configuration sits under a key of the same name, and their kind.
_CONFIGS: dict[str, AlertKind] = {
    "usage_threshold": "usage",
    "spend_threshold": "spend",
    "credit_balance_threshold": "credit_balance",
}
SIGNATURE_HEADER = "stripe-signature"
DEFAULT_TOLERANCE = 300
SECRET_ENV = "STRIPE_WEBHOOK_SECRET"
#: How long Stripe keeps events in its Events API.
EVENTS_RETENTION = timedelta(days=30)
MAX_SIGNATURE_HEADER = 4096
"""Longest ``Stripe-Signature`` accepted, in characters: Stripe sends ``t=`` and one ``v1=``
(64 hex digits) per active signing secret, about 80 characters each."""
MAX_SIGNATURE_ENTRIES = 32
"""Most ``key=value`` entries accepted in a ``Stripe-Signature``."""
# The alert's threshold as API versions before 2024-09-30 name it (since: ``usage_threshold``).
_OLD_THRESHOLD = "usage_threshold_config"


def verify(
    body: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check a ``Stripe-Signature`` header against ``body``; any of ``secrets`` may match.

    Reads the header as the Stripe SDK's ``WebhookSignature.verify_header`` does (the first
    ``t=``, every ``v1=``; HMAC-SHA256 of ``"{t}.{body}"``) and checks it with
    :mod:`alerthooks.providers.signing`. Raises :class:`Rejected` (400) when the header is
    missing, malformed, too long (over :data:`MAX_SIGNATURE_HEADER` characters or
    :data:`MAX_SIGNATURE_ENTRIES` entries), matches no secret, or its timestamp is more than
    ``tolerance`` seconds away from ``now`` (default: the current time), in the past or (which
    the Stripe SDK does not check) in the future.
    """
    if not signature_header:
        raise Rejected(400, "missing Stripe-Signature header")
    if not secrets:
        raise Rejected(400, "no Stripe webhook secret configured")
    if (
        len(signature_header) > MAX_SIGNATURE_HEADER
        or signature_header.count(",") >= MAX_SIGNATURE_ENTRIES
    ):
        raise Rejected(400, "Stripe-Signature header too long")
    if not signature_header.isascii():
        raise Rejected(400, "malformed Stripe-Signature header")
    dated, candidates = _parse_header(signature_header)
    if dated is not None:
        check_window(dated, tolerance, now=now, future_only=True)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(400, "body is not UTF-8") from None
    if dated is None or not matches(
        [secret.encode() for secret in secrets], str(dated).encode() + b"." + body, candidates
    ):
        raise Rejected(400, "signature mismatch")
    check_window(dated, tolerance, now=now)


def is_thin_alert(event_type: object) -> bool:
    """Whether ``event_type`` names a thin alert event (``v1.billing.alert.*``)."""
    return isinstance(event_type, str) and event_type.startswith(THIN_ALERT_PREFIX)


def _parse_header(signature_header: str) -> tuple[int | None, list[bytes]]:
    """The header's first ``t=`` as an int (None when it has none that parses, which the SDK
    refuses too) and its ``v1=`` signatures."""
    dated: int | None = None
    seen_t = False
    candidates: list[bytes] = []
    for item in signature_header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        if key == "t" and not seen_t:
            seen_t = True
            dated = int(value) if value.isdigit() and len(value) <= 12 else None
        elif key == "v1":
            candidates.append(value.encode())
    return dated, candidates


def normalize(payload: Mapping[str, Any]) -> AlertEvent:
    """Build an :class:`AlertEvent` from a ``billing.alert.triggered`` (``alert.triggered``) or
    ``billing.alert.recovered`` (``alert.cleared``) event, of any of Stripe's three alert types.

    :attr:`~AlertEvent.threshold` is the alert's own number: ``usage_threshold.gte``;
    ``credit_balance_threshold.lte.monetary.value`` and ``spend_threshold.gte.amount.value``
    (integers in the currency's minor unit, as Stripe states them) or the custom pricing
    unit's decimal ``value``. ``currency`` comes from the event, else from the threshold's
    amount (None for a custom pricing unit). ``customer_id`` comes from the event's
    ``customer``, else the alert's customer filter; ``meter_id`` is set for usage alerts only.

    Reads usage alerts as API versions since 2024-09-30 write them (``usage_threshold``, with
    ``filters``) and as earlier ones did (``usage_threshold_config``, with ``filter``); the
    meter and the customer as ids or expanded objects; ``value`` as a number or a decimal
    string. The title's ownership marker becomes :attr:`AlertEvent.alert_key`.

    Raises :class:`NotAnAlert` for other event types (thin events included: see
    :meth:`Stripe.expand`) and for payloads missing a field Stripe always sends, or holding a
    field of the wrong type.
    """
    event_type = payload.get("type")
    if not isinstance(event_type, str) or event_type not in ALERT_EVENT_TYPES:
        if payload.get("object") == THIN_OBJECT and is_thin_alert(event_type):
            raise NotAnAlert(f"thin event: set {API_KEY_ENV} to read it")
        raise NotAnAlert(f"event type {event_type!r} is not an alert")
    event_id = text(payload, "id", where="event")
    created = timestamp(payload, "created", where="event")
    livemode = payload.get("livemode")
    if not isinstance(livemode, bool):
        raise NotAnAlert("event.livemode is missing or not a boolean")
    obj = mapping(mapping(payload, "data", where="event"), "object", where="event.data")
    alert = mapping(obj, "alert", where="data.object")
    alert_type = text(alert, "alert_type", where="alert", required=False)
    threshold = _threshold(alert, alert_type)
    alert_name, alert_key = split_marker(text(alert, "title", where="alert"))
    customer = _id_of(obj, "customer", where="data.object", required=False)
    if customer is None and threshold.customer is not None:
        customer = threshold.customer()
    currency = text(obj, "currency", where="data.object", required=False)
    if currency is None:
        currency = threshold.currency
    return checked_event(
        id=event_id,
        provider="stripe",
        type=ALERT_EVENT_TYPES[event_type],
        alert_id=text(alert, "id", where="alert"),
        kind=threshold.kind,
        alert_name=alert_name,
        meter_id=threshold.meter,
        customer_id=customer,
        external_customer_id=text(obj, "external_customer_id", where="data.object", required=False),
        subscription_id=None,
        threshold=threshold.value,
        threshold_mode=None if threshold.value is None else "absolute",
        value=decimal(obj, "value", where="data.object", strings=True),
        occurred_at=created,
        livemode=livemode,
        alert_type=alert_type,
        currency=currency,
        triggered_at=timestamp(obj, "triggered_at", where="data.object", required=False),
        alert_key=alert_key,
        raw=dict(payload),
    )


class _Threshold(NamedTuple):
    """What an alert's threshold configuration says, whichever of the three it is;
    ``customer`` reads the customer its filters scope it to (only asked when the event names
    none)."""

    kind: AlertKind
    value: Decimal | None
    currency: str | None
    meter: str | None
    customer: Callable[[], str | None] | None


def _threshold(alert: Mapping[str, Any], alert_type: str | None) -> _Threshold:
    """Read the configuration ``alert_type`` names (the one present when the type is absent,
    as in API versions that had one type); an alert type Stripe adds later is ``other``."""
    if alert_type is None:
        alert_type = next((t for t in _CONFIGS if alert.get(t) is not None), "usage_threshold")
    if alert_type == "usage_threshold":
        return _usage(alert)
    if alert_type not in _CONFIGS:
        return _Threshold("other", None, None, None, None)
    config = alert.get(alert_type)
    where = f"alert.{alert_type}"
    if config is None:
        raise NotAnAlert(f"{where} is missing for an alert of type {alert_type}")
    if not isinstance(config, dict):
        raise NotAnAlert(f"{where} is not an object")
    if alert_type == "credit_balance_threshold":
        lte = mapping(config, "lte", where=where)
        value, currency = _amount(lte, "balance_type", "monetary", where=f"{where}.lte")
        return _Threshold(
            "credit_balance", value, currency, None, partial(_filter_customer, config, where)
        )
    gte = mapping(config, "gte", where=where)
    value, currency = _amount(gte, "type", "amount", where=f"{where}.gte")
    filters = config.get("filters")
    if filters is not None and not isinstance(filters, dict):
        raise NotAnAlert(f"{where}.filters is not an object")
    return _Threshold("spend", value, currency, None, None)


def _amount(
    obj: Mapping[str, Any], type_key: str, money_key: str, *, where: str
) -> tuple[Decimal | None, str | None]:
    """A credit-balance ``lte`` or spend ``gte``: the money amount (an integer in minor units,
    with its currency) or the custom pricing unit's decimal string (no currency)."""
    kind = text(obj, type_key, where=where, required=False)
    if kind is None:  # not stated: whichever of the two is present
        kind = money_key if obj.get(money_key) is not None else "custom_pricing_unit"
    if kind == money_key:
        money = mapping(obj, money_key, where=where)
        value = decimal(money, "value", where=f"{where}.{money_key}")
        return value, text(money, "currency", where=f"{where}.{money_key}")
    if kind == "custom_pricing_unit":
        unit = mapping(obj, "custom_pricing_unit", where=where)
        value = decimal(unit, "value", where=f"{where}.custom_pricing_unit", strings=True)
        return value, None
    return None, None  # an amount type Stripe adds later: no threshold to state


def _usage(alert: Mapping[str, Any]) -> _Threshold:
    """A usage alert's threshold, meter and customer filter, in either API version's shape."""
    config = alert.get("usage_threshold")
    where = "alert.usage_threshold"
    if config is None:
        config = alert.get(_OLD_THRESHOLD)
        where = f"alert.{_OLD_THRESHOLD}"
        if config is None:
            raise NotAnAlert(f"alert has neither usage_threshold nor {_OLD_THRESHOLD}")
    if not isinstance(config, dict):
        raise NotAnAlert(f"{where} is not an object")
    return _Threshold(
        "usage",
        decimal(config, "gte", where=where),
        None,
        _id_of(config, "meter", where=where, required=True),
        partial(_filter_customer, config, where)
        if "filters" in config
        else partial(_old_filter_customer, alert),
    )


def _id_of(obj: Mapping[str, Any], key: str, *, where: str, required: bool) -> str | None:
    """``obj[key]`` as an id, given as the id itself or as the expanded object."""
    value = obj.get(key)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict):
        return text(value, "id", where=f"{where}.{key}")
    if value is None and not required:
        return None
    raise NotAnAlert(f"{where}.{key} is missing or not an id or object")


def _filter_customer(config: Mapping[str, Any], where: str) -> str | None:
    """The customer a usage or credit-balance alert is scoped to by its ``filters`` (null or a
    list); None for an alert scoped to no customer."""
    filters = config.get("filters")
    if filters is None:
        return None
    if not isinstance(filters, list):
        raise NotAnAlert(f"{where}.filters is not a list")
    for index, item in enumerate(filters):
        if not isinstance(item, dict):
            raise NotAnAlert(f"{where}.filters[{index}] is not an object")
        customer = _id_of(item, "customer", where=f"{where}.filters[{index}]", required=False)
        if customer is not None:
            return customer
    return None


def _old_filter_customer(alert: Mapping[str, Any]) -> str | None:
    """The customer of API versions before 2024-09-30: the alert's ``filter`` object."""
    scope = alert.get("filter")
    if scope is None:
        return None
    if not isinstance(scope, dict):
        raise NotAnAlert("alert.filter is not an object")
    return _id_of(scope, "customer", where="alert.filter", required=False)


class Stripe(SecretProvider):
    """Stripe deliveries, verified with one or more webhook signing secrets (the first signs
    test deliveries; the others are accepted too, for rotation).

    ``secrets`` may be one comma-separated string. ``tolerance`` is how old (in seconds) a
    signature may be; it must be positive, as the Stripe SDK takes 0 to mean "no check".
    ``allowed_ips`` restricts the source networks (see :mod:`alerthooks.sources`).
    """

    name = "stripe"
    env_hint = secret_env = SECRET_ENV
    alert_types = frozenset(ALERT_EVENT_TYPES)
    _thin_client: StripeClient | None = None
    _thin_loop: asyncio.AbstractEventLoop | None = None
    tolerance_error = (
        "stripe_tolerance must be a positive number of seconds, got {tolerance!r} "
        "(the Stripe SDK takes 0 to mean no staleness check)"
    )

    def __init__(
        self,
        secrets: str | Sequence[str] = (),
        *,
        tolerance: int = DEFAULT_TOLERANCE,
        allowed_ips: Networks | None = None,
    ) -> None:
        if isinstance(secrets, str):
            secrets = secrets.split(",")
        super().__init__(
            [s.strip() for s in secrets if s and s.strip()],
            tolerance=tolerance,
            allowed_ips=allowed_ips,
        )

    @classmethod
    def from_secret(cls, secret: str) -> Stripe:
        """A provider with this one signing secret (``whsec_…``)."""
        secret = secret.strip()
        if not secret:
            raise ValueError("a Stripe signing secret cannot be empty")
        if ":" in secret or "," in secret:
            raise ValueError(
                "a Stripe signing secret (whsec_…) has no ':' or ','; USER:PASS is Chargebee's form"
            )
        return super().from_secret(secret)

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`Rejected` unless ``Stripe-Signature`` matches a configured secret."""
        verify(body, headers.get(SIGNATURE_HEADER), self._secrets, tolerance=self.tolerance)

    def event_id(self, payload: Mapping[str, Any]) -> str | None:
        """The ``evt_…`` id."""
        return clean_key(payload.get("id"))

    def event_type(self, payload: Mapping[str, Any]) -> str | None:
        """Stripe's event type, such as ``billing.alert.triggered``."""
        return clean_key(payload.get("type"))

    def normalize(self, payload: dict[str, Any]) -> AlertEvent:
        """See :func:`normalize`."""
        return normalize(payload)

    async def resolve(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A thin alert event (``object: "v2.core.event"``, type ``v1.billing.alert.*``) read
        from Stripe's API with ``STRIPE_API_KEY`` (and ``ALERTHOOKS_STRIPE_API_BASE``): ``GET
        /v2/core/events/{id}`` names the snapshot event in ``snapshot_event``, and ``GET
        /v1/events/{snapshot_event}`` is the event returned, with the manager's retry policy.
        Any other delivery is returned as it is.

        Raises :class:`NotAnAlert` when the key is not set (``thin event: set STRIPE_API_KEY to
        read it``) or the API cannot give the snapshot event."""
        if not self.refers(payload):
            return payload
        thin_id = payload.get("id")
        if not isinstance(thin_id, str) or not _API_ID.fullmatch(thin_id):
            raise NotAnAlert("thin event: its id is not a Stripe event id")
        context = payload.get("context")
        context = context if isinstance(context, str) and context else None
        api = self._thin_api()
        try:
            thin = await api.fetch_thin_event(thin_id, context=context)
            snapshot_id = thin.get("snapshot_event")
            if not isinstance(snapshot_id, str) or not _API_ID.fullmatch(snapshot_id):
                raise NotAnAlert(f"thin event: Stripe's API names no snapshot_event for {thin_id}")
            event = await api.fetch_event(snapshot_id, context=context)
        except ProviderError as exc:
            raise NotAnAlert(f"thin event: Stripe's API could not give it: {exc}") from None
        if event.get("id") != snapshot_id:
            raise NotAnAlert(f"thin event: Stripe's API answered another event for {snapshot_id}")
        return event

    def refers(self, payload: Mapping[str, Any]) -> bool:
        """True for a thin alert event (``object: "v2.core.event"``, type
        ``v1.billing.alert.*``): :meth:`resolve` reads the event it refers to."""
        return payload.get("object") == THIN_OBJECT and is_thin_alert(payload.get("type"))

    def _thin_api(self) -> StripeClient:
        """The client thin events are read with (one per event loop, made on first use);
        :class:`NotAnAlert` without ``STRIPE_API_KEY``."""
        loop = asyncio.get_running_loop()
        if self._thin_client is None or self._thin_loop is not loop:
            try:
                self._thin_client = StripeClient.from_env()
            except MissingCredentials:
                raise NotAnAlert(f"thin event: set {API_KEY_ENV} to read it") from None
            self._thin_loop = loop
        return self._thin_client

    async def aclose(self) -> None:
        """Close the client thin events were read with, if any."""
        client, self._thin_client = self._thin_client, None
        if client is not None and self._thin_loop is asyncio.get_running_loop():
            await client.aclose()

    def is_alert_type(self, event_type: str | None) -> bool:
        """``billing.alert.triggered``, ``billing.alert.recovered`` and every thin
        ``v1.billing.alert.*`` type."""
        return event_type in ALERT_EVENT_TYPES or is_thin_alert(event_type)

    def events_api(self) -> StripeEvents:
        """``GET /v1/events`` with the manager's credentials (``STRIPE_API_KEY``, and
        ``ALERTHOOKS_STRIPE_API_BASE`` to replace ``https://api.stripe.com``) and its retry
        policy; raises :class:`MissingCredentials` without a key."""
        return StripeEvents(StripeClient.from_env())

    def sign(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        """A ``Stripe-Signature`` header for ``body`` under the first secret, dated
        ``timestamp`` (Unix seconds, default now)."""
        if not self._secrets:
            raise ValueError(f"no Stripe signing secret: set {SECRET_ENV}")
        return {SIGNATURE_HEADER: signature_header(body, self._secrets[0], timestamp)}


StripeProvider = Stripe
"""The former name of :class:`Stripe`."""


class StripeEvents:
    """Stripe's Events API (``GET /v1/events?type=billing.alert.triggered&created[gte]=…``,
    then the same for ``billing.alert.recovered``, following ``has_more`` with
    ``starting_after``); Stripe keeps 30 days of events."""

    retention: timedelta | None = EVENTS_RETENTION

    def __init__(self, api: StripeClient) -> None:
        self._api = api

    def __repr__(self) -> str:
        return f"StripeEvents({self._api!r})"

    async def events_since(self, since: datetime) -> AsyncIterator[dict[str, Any]]:
        """Every ``billing.alert.triggered`` and ``billing.alert.recovered`` event created at
        or after ``since``, newest first within each type."""
        for event_type in ALERT_EVENT_TYPES:
            async for event in self._api.events(event_type, int(since.timestamp())):
                yield event

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._api.aclose()


def signature_header(
    body: bytes | str,
    secret: str,
    timestamp: int | None = None,
    *,
    extra_secrets: Sequence[str] = (),
) -> str:
    """A ``Stripe-Signature`` value for ``body``: ``t=…,v1=…`` (one ``v1`` per secret).

    Computed as Stripe does: HMAC-SHA256 over ``"{timestamp}.{body}"`` keyed by the secret.
    """
    raw = body.encode() if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else timestamp
    signed = str(ts).encode() + b"." + raw
    return ",".join(
        [f"t={ts}", *("v1=" + signature(key.encode(), signed) for key in (secret, *extra_secrets))]
    )
